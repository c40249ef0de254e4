"""``cemg-ray bench train`` on a tiny catalog: the plain loop and Ray Train run the same steps, with a ratio."""

from __future__ import annotations

import pytest


def test_bench_train_runs_both_paths_on_the_same_steps() -> None:
    from cemg_ray.bench.train import run

    out = run(items=200, users=300, max_len=8, d_model=16, batch=32, steps=5, warmup=1, threads=2, rounds=2)
    plain, beside, ray_ddp = out["plain_torch"], out["plain_torch_ray_idle_beside"], out["ray_train_ddp"]
    assert plain["examples"] == beside["examples"] == ray_ddp["examples"] == 5 * 32
    # same seed, data and steps on all three paths
    assert plain["last_loss"] == pytest.approx(ray_ddp["last_loss"], rel=1e-4)
    assert plain["last_loss"] == pytest.approx(beside["last_loss"], rel=1e-4)
    assert out["ratio_ray_over_plain_with_ray_idle"] == pytest.approx(
        ray_ddp["examples_per_s"] / beside["examples_per_s"])
    assert out["ratio_ray_over_plain"] == pytest.approx(ray_ddp["examples_per_s"] / plain["examples_per_s"])
    assert out["ray_fixed_cost_s"] > 0
    for name in ("ray_actor_main_thread", "ray_actor_side_thread", "ray_actor_side_thread_one_malloc_arena"):
        assert out[name]["examples"] == 5 * 32
        assert out[name]["last_loss"] == pytest.approx(plain["last_loss"], rel=1e-4)
        assert out[f"ratio_{name}_over_plain"] == pytest.approx(out[name]["examples_per_s"] / plain["examples_per_s"])
    arena = out["ray_train_ddp_one_malloc_arena"]
    assert arena["malloc_arena_max"] == "1" and ray_ddp["malloc_arena_max"] is None  # each path's own environment
    assert arena["last_loss"] == pytest.approx(plain["last_loss"], rel=1e-4)
    alt = out["alternating"]
    assert alt["rounds"] == 2 and len(alt["examples_per_s"]) == 2
    assert alt["examples_per_s"][0]["ray_train_ddp"] == ray_ddp["examples_per_s"]
    second = alt["examples_per_s"][1]
    assert alt["median_ratio_over_plain"]["ray_train_ddp"] == pytest.approx(
        (ray_ddp["examples_per_s"] / plain["examples_per_s"] + second["ray_train_ddp"] / second["plain_torch"]) / 2)
    # the same CPUs as two DDP workers of one thread each, each on its half of every global batch
    split = out["ray_train_ddp_one_thread_per_worker"]
    assert split["workers"] == 2 and split["threads_per_worker"] == 1 and ray_ddp["workers"] == 1
    assert split["examples"] == 5 * 32
    assert split["last_loss"] == pytest.approx(plain["last_loss"], rel=0.05)  # mean of the halves' means
    assert out["ratio_ray_one_thread_per_worker_over_plain"] == pytest.approx(
        split["examples_per_s"] / plain["examples_per_s"])
    assert second["ray_train_ddp_one_thread_per_worker"] > 0
