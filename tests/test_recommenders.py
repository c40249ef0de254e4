"""One registry, one loader, one version rule and one exclusion rule for evaluation, serving and export."""

from __future__ import annotations

import numpy as np
import pytest

from cemg_ray import recommenders
from cemg_ray.recommenders import MODELS, UnknownModelError, fetch_bucket, fetch_size, recommend_rows, unseen_top_k


def test_fetch_size_leaves_k_after_the_seen_items_and_never_exceeds_the_catalog() -> None:
    assert fetch_size(10, 7, 1000) == 17
    assert fetch_size(10, 995, 1000) == 1000
    assert fetch_size(10, 0, 5) == 5


def test_fetch_bucket_rounds_up_to_whole_beam_widths_and_leaves_beamless_models_alone() -> None:
    assert [fetch_bucket(w, 20) for w in (1, 13, 20, 21, 40, 41)] == [20, 20, 20, 40, 40, 60]
    assert fetch_bucket(37, None) == 37 and fetch_bucket(37, 0) == 37


def test_fetch_buckets_never_ask_a_model_for_more_items_than_its_catalog() -> None:
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.itemseq import build_item_model
    from cemg_ray.generate.recommender import ItemCEMGRecommender
    from cemg_ray.generate.tokens import TokenLayout

    layout, codes = TokenLayout((4, 3, 2)), np.array([[0, 0, 0], [0, 0, 1], [0, 2, 0], [1, 1, 0], [2, 0, 0],
                                                      [2, 1, 0], [3, 2, 0], [3, 2, 1]])
    cfg = TrainConfig(backbone="decoder", history="items", objective="dense", d_model=16, num_layers=1,
                      num_heads=2, d_ff=32, dropout=0.0)
    rec = ItemCEMGRecommender(build_item_model(cfg, layout, codes, 5).eval(), codes, 5, num_beams=20)
    rows = recommend_rows(rec, [np.array([1, 2]), np.array([3])], [5, 8])
    for items, _ in rows:  # one call at the catalog's 8 items (not the bucket's 20): every item, once
        assert sorted(items.tolist()) == list(range(8))


def test_a_users_beam_list_does_not_depend_on_who_shares_the_batch(demo_run) -> None:
    """A short history decoded beside a long one (whose seen items need a wider beam) gets the list it gets
    alone, at the configured width; the long one gets the list of its own bucket."""
    from cemg_ray.config import JobConfig
    from cemg_ray.export.stage import ExportDecoder

    cfg, store = demo_run
    rec = recommenders.load("cemg", cfg, store)
    beams = rec.num_beams
    short, long_ = np.array([3, 1, 4]), np.arange(5, 5 + beams + 10)
    wants = [fetch_size(10, len(set(short.tolist())), rec.num_items), fetch_size(10, len(long_), rec.num_items)]
    assert fetch_bucket(wants[1], beams) > beams  # the long history needs a wider beam
    together = recommend_rows(rec, [short, long_], wants)
    alone_short = recommend_rows(rec, [short], wants[:1])[0]
    np.testing.assert_array_equal(together[0][0], alone_short[0])
    np.testing.assert_array_equal(together[0][0], rec.recommend([short], beams)[0][0])
    np.testing.assert_array_equal(together[1][0], rec.recommend([long_], fetch_bucket(wants[1], beams))[0][0])
    assert len(together[1][0]) >= wants[1]

    raw = cfg.model_dump(mode="json")
    raw["export"] = {**raw["export"], "model": "cemg", "k": 10}
    decoder = ExportDecoder(JobConfig.model_validate(raw).model_dump(mode="json"), store.root_uri)
    both = decoder({"user_id": np.asarray(["s", "l"], dtype=object), "items": [short.tolist(), long_.tolist()]})
    solo = decoder({"user_id": np.asarray(["s"], dtype=object), "items": [short.tolist()]})
    assert list(both["item_id"][both["user_id"] == "s"]) == list(solo["item_id"])
    assert len(solo["item_id"]) == 10 and not set(solo["item_id"]) & {decoder.run.item_ids[i] for i in short}


def test_unseen_top_k_drops_seen_padding_and_non_finite_scores_in_order() -> None:
    items = np.array([4, -1, 2, 9, 7, 3, 1])
    scores = np.array([5.0, 4.0, 3.0, np.inf * -1, 2.0, 1.0, 0.5])
    assert unseen_top_k(items, scores, {2}, 3, catalog=8) == [(4, 5.0), (7, 2.0), (3, 1.0)]
    assert unseen_top_k(items, scores, set(), 10, catalog=8) == [(4, 5.0), (2, 3.0), (7, 2.0), (3, 1.0), (1, 0.5)]


def test_unknown_model_names_the_key_and_the_known_models() -> None:
    with pytest.raises(UnknownModelError) as err:
        recommenders.spec("cemgg", "export.model")
    assert "export.model" in str(err.value) and "sasrec" in str(err.value)


def test_registry_holds_trained_models_only_and_old_names_say_what_to_write() -> None:
    assert set(MODELS) == {"popularity", "sasrec", "cemg", "mscgrec"}
    with pytest.raises(UnknownModelError, match="write 'cemg:hybrid'"):
        recommenders.spec("cemg_hybrid", "evaluate.models")


def test_every_model_loads_from_a_run_with_its_name_and_a_distinct_version(demo_run) -> None:
    cfg, store = demo_run
    versions = {}
    for name in MODELS:
        if MODELS[name].scheme not in (None, recommenders.tokenize_scheme(store)):  # mscgrec on this cemg run
            with pytest.raises(recommenders.SchemeMismatchError):
                recommenders.load(name, cfg, store)
            continue
        rec = recommenders.load(name, cfg, store)
        items, scores = rec.recommend([np.array([0, 1, 2])], 5)
        assert rec.name == name and items.shape == (1, 5) and ((items >= 0) | (items == -1)).all()
        versions[name] = rec.model_version
    assert len(set(versions.values())) == len(versions) >= len(MODELS) - 1
    generator = store.read_json("generate/report.json")["model_version"]
    assert versions["cemg"] == generator
    assert versions["popularity"].startswith("popularity-")


def test_serving_and_export_rank_through_the_same_predictor(demo_run) -> None:
    """One predictor: the export's Ray Data actor holds an ``api.Run`` and calls its ``rank``, the method a
    serving replica (a ``Run`` subclass that adds its limits) calls, so the two cannot drift apart."""
    from cemg_ray.api import Run
    from cemg_ray.config import JobConfig
    from cemg_ray.export.stage import ExportDecoder
    from serve_app.model_state import ModelState

    cfg, store = demo_run
    raw = cfg.model_dump(mode="json")
    raw["export"] = {**raw["export"], "model": "sasrec", "k": 7}
    decoder = ExportDecoder(JobConfig.model_validate(raw).model_dump(mode="json"), store.root_uri)
    assert type(decoder.run) is Run and issubclass(ModelState, Run) and ModelState.rank is Run.rank
    assert "user_history" not in vars(decoder.run)  # an actor is sent its users; it never reads them all
    seqs = store.read_parquet("data/sequences.parquet").slice(0, 6).to_pydict()
    exported = decoder({"user_id": np.asarray(seqs["user_id"], dtype=object), "items": seqs["items"]})
    ranked = decoder.run.rank([np.asarray(s, dtype=np.int64) for s in seqs["items"]], [7] * 6, [True] * 6)
    for u, uid in enumerate(seqs["user_id"]):
        assert list(exported["item_id"][exported["user_id"] == uid]) == [item for item, _ in ranked[u]]
    assert set(exported["model_version"]) == {decoder.run.model_version}


def test_every_policy_is_a_view_of_one_loaded_generator_and_decodes_as_a_fresh_load(demo_run) -> None:
    cfg, store = demo_run
    base = recommenders.load("cemg", cfg, store)
    histories = [np.array([0, 1, 2]), np.array([5])]
    versions = set()
    for name in cfg.decode.named():
        fresh = recommenders.load(f"cemg:{name}", cfg, store)
        view = recommenders.with_policy(base, f"cemg:{name}", cfg, store)
        assert view.model is base.model and view.name == f"cemg:{name}"  # nothing reloaded
        for a, b in zip(fresh.recommend(histories, 10), view.recommend(histories, 10)):
            np.testing.assert_array_equal(a, b)
        assert view.model_version == fresh.model_version
        versions.add(view.model_version)
    assert len(versions) == len(cfg.decode.named())  # one version per policy
    with pytest.raises(ValueError, match="not a generator"):
        recommenders.load("sasrec:beam", cfg, store)


def test_the_blend_at_weight_one_is_sasrecs_list_and_names_the_sasrec_it_read(demo_run) -> None:
    cfg, store = demo_run
    histories = [np.array([0, 1, 2]), np.array([5]), np.array([7, 3])]
    sasrec = recommenders.load("sasrec", cfg, store)
    only_sasrec = recommenders.load("cemg:blend(weight=1.0)", cfg, store)
    np.testing.assert_array_equal(only_sasrec.recommend(histories, 10)[0], sasrec.recommend(histories, 10)[0])
    only_dense = recommenders.load("cemg:blend(weight=0.0)", cfg, store)
    dense_all = recommenders.load("cemg:dense_all", cfg, store)
    np.testing.assert_array_equal(only_dense.recommend(histories, 10)[0], dense_all.recommend(histories, 10)[0])
    blend = recommenders.load("cemg:blend", cfg, store)
    assert blend.model_version.endswith("+blend+" + sasrec.model_version)  # a retrained SASRec: another list
    # its stages: the generator's and SASRec's, so evaluate waits for both and preflight asks for both
    assert recommenders.stages_for(["cemg:blend"], cfg) == ["train", "sasrec"]
    assert recommenders.stages_for(["cemg:dense_all"], cfg) == ["train"]


def test_the_blend_without_a_trained_sasrec_says_which_stage_to_run(demo_run) -> None:
    from cemg_ray.generate.policy import BlendPolicy
    from cemg_ray.generate.recommender import ItemCEMGRecommender

    cfg, store = demo_run
    gen = recommenders.load("cemg:dense_all", cfg, store)
    with pytest.raises(ValueError, match="needs the run's SASRec.*--stages sasrec"):
        ItemCEMGRecommender(gen.model, gen.codes, cfg.dataset.max_len, policy=BlendPolicy(),
                            cold_items=np.zeros(len(gen.codes), dtype=bool), sasrec=None)
    # the blend's inputs asked of a generator loaded without SASRec or content vectors: the same messages
    bare = ItemCEMGRecommender(gen.model, gen.codes, cfg.dataset.max_len, policy=gen.policy,
                               cold_items=np.zeros(len(gen.codes), dtype=bool))
    with pytest.raises(ValueError, match="needs the run's SASRec"):
        bare.blend_inputs([np.array([0, 1])])
    with_sasrec = ItemCEMGRecommender(gen.model, gen.codes, cfg.dataset.max_len, policy=gen.policy,
                                      cold_items=np.zeros(len(gen.codes), dtype=bool),
                                      sasrec=lambda: recommenders.load("sasrec", cfg, store))
    dense, sasrec, sim = with_sasrec.blend_inputs([np.array([0, 1])])
    assert dense.shape == sasrec.shape == (1, len(gen.codes)) and sim is None
    with pytest.raises(ValueError, match="needs the run's content"):
        with_sasrec.blend_inputs([np.array([0, 1])], content_window=3)
