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
    assert len(solo["item_id"]) == 10 and not set(solo["item_id"]) & {decoder.item_ids[i] for i in short}


def test_unseen_top_k_drops_seen_padding_and_non_finite_scores_in_order() -> None:
    items = np.array([4, -1, 2, 9, 7, 3, 1])
    scores = np.array([5.0, 4.0, 3.0, np.inf * -1, 2.0, 1.0, 0.5])
    assert unseen_top_k(items, scores, {2}, 3, catalog=8) == [(4, 5.0), (7, 2.0), (3, 1.0)]
    assert unseen_top_k(items, scores, set(), 10, catalog=8) == [(4, 5.0), (2, 3.0), (7, 2.0), (3, 1.0), (1, 0.5)]


def test_unknown_model_names_the_key_and_the_known_models() -> None:
    with pytest.raises(UnknownModelError) as err:
        recommenders.spec("cemgg", "export.model")
    assert "export.model" in str(err.value) and "cemg_cold" in str(err.value)


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
    assert versions["cemg"] == generator and versions["cemg_cold"] == generator + "+cold"
    assert versions["popularity"].startswith("popularity-")


def test_serving_and_export_return_the_same_list_for_the_same_user(demo_run) -> None:
    from cemg_ray.export.stage import ExportDecoder
    from serve_app.model_state import ModelState
    from serve_app.schemas import ServeConfig

    cfg, store = demo_run
    raw = cfg.model_dump(mode="json")
    raw["export"] = {**raw["export"], "model": "sasrec", "k": 7}
    from cemg_ray.config import JobConfig

    decoder = ExportDecoder(JobConfig.model_validate(raw).model_dump(mode="json"), store.root_uri)
    seqs = store.read_parquet("data/sequences.parquet").slice(0, 6).to_pydict()
    batch = {"user_id": np.asarray(seqs["user_id"], dtype=object), "items": seqs["items"]}
    exported = decoder(batch)
    state = ModelState(ServeConfig(run_dir=store.root_uri, model="sasrec"))
    served = state.rank([np.asarray(s, dtype=np.int64) for s in seqs["items"]], [7] * 6, [True] * 6)
    for u, uid in enumerate(seqs["user_id"]):
        rows = exported["user_id"] == uid
        assert list(exported["item_id"][rows]) == [item for item, _ in served[u]]
        assert len(served[u]) == 7
    assert set(exported["model_version"]) == {state.model_version}
