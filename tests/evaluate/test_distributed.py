"""Evaluation on a Ray Data actor pool gives the in-process figures to the last digit."""

from __future__ import annotations

from cemg_ray.data.split import load_split
from cemg_ray.evaluate.distributed import evaluate_on_actors
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.recommenders import load


def test_actors_rank_with_the_runs_predictor_and_the_figures_equal_the_harness(demo_run) -> None:
    cfg, store = demo_run
    sharded = {"num_actors": 2, "cpus_per_actor": 0.5, "batch_size": 64}  # both actors and the driver fit 2 CPUs
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update=sharded)})
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    for ref in ("sasrec", "cemg:dense"):
        here = evaluate(load(ref, cfg, store), split, "test", [5, 10, 20], 64)
        there, version = evaluate_on_actors(cfg, store, ref, split, "test", [5, 10, 20])
        here.pop("users_per_s"), there.pop("users_per_s")
        assert there == here, ref
        assert version == load(ref, cfg, store).model_version
