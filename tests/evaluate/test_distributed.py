"""Evaluation on a Ray Data actor pool gives the in-process figures to the last digit."""

from __future__ import annotations

from cemg_ray.data.split import load_split
from cemg_ray.evaluate.distributed import Ask, evaluate_on_actors
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.recommenders import load

# a baseline, SASRec, and the generator under four policies (one load of it in each actor), the blend included
LISTS = ["popularity", "sasrec", "cemg", "cemg:dense", "cemg:beam", "cemg:blend(content_weight=8,cold_bias=1)"]


def _with(cfg, **evaluate_keys):
    return cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update=evaluate_keys)})


def test_actors_rank_every_list_of_both_splits_in_one_pass_and_the_figures_equal_the_harness(demo_run) -> None:
    cfg, store = demo_run
    cfg = _with(cfg, num_actors=2, cpus_per_actor=0.5, batch_size=64)  # both actors and the driver fit 2 CPUs
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    # the stage's two parts: a selection on validation at @10, the models on test at @5/10/20, blocks mixing both
    asks = [Ask("valid", ["cemg", "cemg:dense", "sasrec"], [10]), Ask("test", LISTS, [20, 5, 10])]
    there = evaluate_on_actors(cfg, store, asks, split)
    assert [list(part) for part in there] == [asks[0].models, LISTS]
    for ask, part in zip(asks, there):
        for ref in ask.models:
            rec = load(ref, cfg, store)
            here = evaluate(rec, split, ask.split, ask.ks, 64)
            row, version = part[ref]
            assert row.pop("users_per_s") > 0
            here.pop("users_per_s")
            assert row == here, (ask.split, ref)
            assert version == rec.model_version


def test_a_models_own_list_with_its_history_items(demo_run) -> None:
    cfg, store = demo_run
    cfg = _with(cfg, num_actors=1, cpus_per_actor=0.5, batch_size=50, exclude_seen=False)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    (there,) = evaluate_on_actors(cfg, store, [Ask("valid", ["sasrec", "cemg:dense"], [10])], split)
    for ref in ("sasrec", "cemg:dense"):
        here = evaluate(load(ref, cfg, store), split, "valid", [10], 50, exclude_seen=False)
        here.pop("users_per_s"), there[ref][0].pop("users_per_s")
        assert there[ref][0] == here, ref
