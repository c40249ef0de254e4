"""Evaluation on a Ray Data actor pool gives the in-process figures to the last digit."""

from __future__ import annotations

from cemg_ray.data.split import load_split
from cemg_ray.evaluate.distributed import evaluate_on_actors
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.recommenders import load

# a baseline, SASRec, and the generator under four policies (one load of it in each actor), the blend included
LISTS = ["popularity", "sasrec", "cemg", "cemg:dense", "cemg:beam", "cemg:blend(content_weight=8,cold_bias=1)"]


def test_actors_rank_every_list_in_one_pass_and_the_figures_equal_the_harness(demo_run) -> None:
    cfg, store = demo_run
    sharded = {"num_actors": 2, "cpus_per_actor": 0.5, "batch_size": 64}  # both actors and the driver fit 2 CPUs
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update=sharded)})
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    there = evaluate_on_actors(cfg, store, LISTS, split, "test", [5, 10, 20])
    assert list(there) == LISTS
    for ref in LISTS:
        rec = load(ref, cfg, store)
        here = evaluate(rec, split, "test", [5, 10, 20], 64)
        row, version = there[ref]
        assert row.pop("users_per_s") > 0
        here.pop("users_per_s")
        assert row == here, ref
        assert version == rec.model_version


def test_the_validation_split_and_a_model_own_list_with_history_items(demo_run) -> None:
    cfg, store = demo_run
    update = {"num_actors": 1, "cpus_per_actor": 0.5, "batch_size": 50, "exclude_seen": False}
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update=update)})
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    there = evaluate_on_actors(cfg, store, ["sasrec", "cemg:dense"], split, "valid", [10])
    for ref in ("sasrec", "cemg:dense"):
        here = evaluate(load(ref, cfg, store), split, "valid", [10], 50, exclude_seen=False)
        here.pop("users_per_s"), there[ref][0].pop("users_per_s")
        assert there[ref][0] == here, ref
