"""``cemg-ray bench train`` on a tiny catalog: the plain loop and Ray Train run the same steps, with a ratio.

One round (each further ``--rounds`` round repeats three of the paths measured here, about 40 s of Ray Train starts
on two cores): the medians over rounds are ``summarize_rounds``'s, tested on given figures."""

from __future__ import annotations

import pytest


def test_bench_train_runs_both_paths_on_the_same_steps() -> None:
    from cemg_ray.bench.train import run

    out = run(items=200, users=300, max_len=8, d_model=16, batch=32, steps=5, warmup=1, threads=2, rounds=1)
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
    assert out["alternating"] is None  # one round: nothing to take a median of
    # the same CPUs as two DDP workers of one thread each, each on its half of every global batch
    split = out["ray_train_ddp_one_thread_per_worker"]
    assert split["workers"] == 2 and split["threads_per_worker"] == 1 and ray_ddp["workers"] == 1
    assert split["examples"] == 5 * 32
    assert split["last_loss"] == pytest.approx(plain["last_loss"], rel=0.05)  # mean of the halves' means
    assert out["ratio_ray_one_thread_per_worker_over_plain"] == pytest.approx(
        split["examples_per_s"] / plain["examples_per_s"])


def test_rounds_are_summarized_by_medians_of_per_round_ratios() -> None:
    from cemg_ray.bench.train import summarize_rounds

    rounds = [{"plain_torch": 100.0, "ray_train_ddp": 50.0}, {"plain_torch": 200.0, "ray_train_ddp": 180.0},
              {"plain_torch": 80.0, "ray_train_ddp": 60.0}]
    out = summarize_rounds(rounds)
    assert out["rounds"] == 3 and out["examples_per_s"] == rounds
    assert out["median_examples_per_s"] == {"plain_torch": 100.0, "ray_train_ddp": 60.0}
    # ratios 0.5, 0.9, 0.75: the median of the ratios (0.75), not the ratio of the medians (0.6)
    assert out["median_ratio_over_plain"] == {"ray_train_ddp": pytest.approx(0.75)}
