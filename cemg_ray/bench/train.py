"""``cemg-ray bench train``: Ray Train's cost over a plain torch loop, same generator, data and steps.

Both paths train the item-level generator (``cemg_ray/generate/itemseq.py``) from the same seed on the
same pre-built batches of dense windows (a synthetic catalog of the given size), with the same AdamW and
gradient clipping. The plain path is a loop in this process; the Ray Train path is a ``TorchTrainer``
with one worker (DDP via ``ray.train.torch.prepare_model``, gloo on CPU) that runs the identical loop.
Steady-state examples/s are timed inside each loop after warm-up steps; the Ray path's fixed cost
(cluster, worker group, process group) is the rest of its wall time. The plain loop runs a second time with the
Ray cluster up and idle beside it, so that the gap splits into what Ray's daemons take from two shared cores and
what Ray Train's worker itself costs. The worker's cost is split further by the same loop in a plain Ray actor:
in its main thread (a Ray worker process: nice 15, Ray's environment), in a side thread (Ray Train runs the
training function in one), and in a side thread with glibc's malloc held to one arena (``MALLOC_ARENA_MAX=1``).
The Ray Train path runs once more with that setting in its workers' environment (``ray_train_ddp_one_malloc_arena``).

One run on this 2-core VM drifts by up to 30 % between identical loops, so ``--rounds N`` repeats the plain loop and
both Ray Train paths N times, alternating, and reports each path's median and the median of the per-round ratios:
a ratio of neighbours in time, not of runs minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.tokens import TokenLayout


def _setup(items: int, users: int, max_len: int, d_model: int,
           seed: int = 0) -> tuple[TrainConfig, TokenLayout, np.ndarray, dict[str, np.ndarray]]:
    from cemg_ray.bench.decode import random_catalog
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.dataset import item_tensors
    from cemg_ray.generate.tokens import TokenLayout

    codes = random_catalog(items, 4, 256, seed)
    layout = TokenLayout(tuple([256] * 4 + [int(codes[:, -1].max()) + 1]))
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, items, size=int(n)) for n in rng.integers(5, max_len + 2, size=users)]
    data = item_tensors(seqs, max_len, "dense")
    cfg = TrainConfig(backbone="decoder", history="items", objective="dense", d_model=d_model, num_layers=2,
                      num_heads=4, d_ff=4 * d_model, dropout=0.1, seed=seed)
    return cfg, layout, codes, data


def train_steps(model: torch.nn.Module, data: dict[str, np.ndarray], batch: int, steps: int, warmup: int,
                seed: int = 0, rank: int = 0, world: int = 1) -> dict:
    """The loop every path runs: ``warmup`` untimed steps, then ``steps`` timed ones.

    With ``world`` > 1 (DDP workers) each worker trains on its share ``rank::world`` of the same global batch,
    so the workers together take the plain loop's steps over the same examples; examples count globally.
    """
    from cemg_ray.generate.itemseq import trim_right_padding

    gen = torch.Generator().manual_seed(seed)
    n = len(data["items"])
    items, labels = torch.as_tensor(data["items"]).long(), torch.as_tensor(data["labels"]).long()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    order = torch.randperm(n, generator=gen)
    t0, examples, last = None, 0, 0.0
    for s in range(warmup + steps):
        if s == warmup:
            t0 = time.perf_counter()
        idx = order[(s * batch) % max(n - batch, 1):][:batch]
        mine = idx[rank::world]
        b = trim_right_padding({"items": items[mine], "labels": labels[mine]})
        loss = model(**b).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        last = float(loss.detach())
        if s >= warmup:
            examples += len(idx)
    sec = time.perf_counter() - t0
    if world > 1:  # the global batch's loss: the mean of the workers' shares' losses
        shared = torch.tensor([last])
        torch.distributed.all_reduce(shared)
        last = float(shared) / world
    return {"examples_per_s": examples / sec, "seconds": sec, "examples": examples, "last_loss": last}


def _model_and_data(config: dict) -> tuple[torch.nn.Module, dict[str, np.ndarray]]:
    """The catalog, windows and generator every Ray path builds from ``config`` (same seed as the plain loop)."""
    from cemg_ray.generate.itemseq import build_item_model

    torch.set_num_threads(config["threads"])
    cfg, layout, codes, data = _setup(config["items"], config["users"], config["max_len"], config["d_model"])
    return build_item_model(cfg, layout, codes, config["max_len"]), data


def _loop_from_config(config: dict) -> dict:
    """The timed loop on ``config``'s model and data: what the plain Ray actor paths run."""
    model, data = _model_and_data(config)
    return train_steps(model, data, config["batch"], config["steps"], config["warmup"])


def _ray_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    model, data = _model_and_data(config)
    model = ray.train.torch.prepare_model(model)
    out = train_steps(model, data, config["batch"], config["steps"], config["warmup"], rank=rank, world=world)
    out["malloc_arena_max"] = os.environ.get("MALLOC_ARENA_MAX")  # proof that the path's environment arrived
    out["workers"], out["threads_per_worker"] = world, torch.get_num_threads()
    if rank != 0:  # the workers step in lockstep (DDP's all-reduce); rank 0's timings stand for the group
        ray.train.report(out)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # Ray Train returns what a worker reports with a checkpoint
        with open(os.path.join(tmp, "timings.json"), "w") as f:
            json.dump(out, f)
        ray.train.report(out, checkpoint=ray.train.Checkpoint.from_directory(tmp))


class LoopActor:
    """A plain Ray actor running the loop: in its main thread (the process Ray gives a worker: nice 15, Ray's
    environment), or in a side thread, as Ray Train runs a training function (``TrainingThread``)."""

    def __init__(self, config: dict) -> None:
        self.config = config

    def main_thread(self) -> dict:
        return _loop_from_config(self.config)

    def side_thread(self) -> dict:
        import threading

        out: dict = {}
        thread = threading.Thread(target=lambda: out.update(result=_loop_from_config(self.config)), name="loop")
        thread.start()
        thread.join()
        return out["result"]


def _actor_paths(config: dict) -> dict[str, dict]:
    """The loop in a plain Ray actor's main thread, in its side thread, and in a side thread with glibc's malloc
    held to one arena (a side thread otherwise allocates from an arena of its own)."""
    import ray

    actor = ray.remote(num_cpus=config["threads"])(LoopActor)
    out = {}
    for name, method, env in (("ray_actor_main_thread", "main_thread", {}),
                              ("ray_actor_side_thread", "side_thread", {}),
                              ("ray_actor_side_thread_one_malloc_arena", "side_thread", {"MALLOC_ARENA_MAX": "1"})):
        handle = actor.options(runtime_env={"env_vars": env} if env else None).remote(config)
        out[name] = ray.get(getattr(handle, method).remote())
        ray.kill(handle)
    return out


def _fit_ray_train(config: dict) -> dict:
    """One ``TorchTrainer`` run of the loop (``config["workers"]`` DDP workers, default 1, each with
    ``config["threads"]`` CPUs and torch threads; gloo); rank 0's timings."""
    import tempfile

    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    storage = tempfile.mkdtemp(prefix="cemg-bench-train-")
    trainer = TorchTrainer(_ray_worker, train_loop_config=config, torch_config=TorchConfig(backend="gloo"),
                           scaling_config=ray.train.ScalingConfig(num_workers=config.get("workers", 1),
                                                                  resources_per_worker={"CPU": config["threads"]}),
                           run_config=ray.train.RunConfig(storage_path=storage, name="bench-train"))
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"bench train: the Ray Train worker reported nothing ({result.error})")
    with result.checkpoint.as_directory() as d, open(os.path.join(d, "timings.json")) as f:
        return json.load(f)


def _fit_ray_train_with_env(config: dict, env: dict[str, str]) -> dict:
    """The same ``TorchTrainer`` run, started from a task whose runtime environment holds ``env``: the trainer's
    actors and its worker inherit it (Ray passes a task's runtime environment on to the actors it creates)."""
    import ray

    task = ray.remote(num_cpus=0)(_fit_ray_train).options(runtime_env={"env_vars": env})
    return ray.get(task.remote(config))


def _split_config(config: dict) -> dict | None:
    """The same CPUs as one worker per thread: ``threads`` DDP workers of one torch thread each (None for one
    thread). On a few cores one op rarely keeps two threads busy, so separate processes may use them better."""
    if config["threads"] < 2:
        return None
    return {**config, "workers": config["threads"], "threads": 1}


def _median(values: list[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def _alternating_rounds(config: dict, rounds: int, first: dict[str, dict]) -> dict:
    """``rounds`` rounds of plain loop, Ray Train, Ray Train with one malloc arena (round 1 is ``first``); each
    path's median examples/s and the median of the per-round ratios to the plain loop of the same round."""
    import ray

    from cemg_ray.generate.itemseq import build_item_model

    split = _split_config(config)
    names = ("plain_torch", "ray_train_ddp", "ray_train_ddp_one_malloc_arena") + (
        ("ray_train_ddp_one_thread_per_worker",) if split else ())
    per_round = [{n: first[n]["examples_per_s"] for n in names}]
    for _ in range(rounds - 1):
        cfg, layout, codes, data = _setup(config["items"], config["users"], config["max_len"], config["d_model"])
        plain = train_steps(build_item_model(cfg, layout, codes, config["max_len"]), data, config["batch"],
                            config["steps"], config["warmup"])
        own = not ray.is_initialized()  # the plain loop ran without a cluster of ours beside it
        if own:
            ray.init(num_cpus=max(config["threads"], 1), include_dashboard=False, log_to_driver=False)
        try:
            ray_out = _fit_ray_train(config)
            arena = _fit_ray_train_with_env(config, {"MALLOC_ARENA_MAX": "1"})
            per_worker = _fit_ray_train(split) if split else None
        finally:
            if own:
                ray.shutdown()
        per_round.append({"plain_torch": plain["examples_per_s"], "ray_train_ddp": ray_out["examples_per_s"],
                          "ray_train_ddp_one_malloc_arena": arena["examples_per_s"],
                          **({"ray_train_ddp_one_thread_per_worker": per_worker["examples_per_s"]}
                             if per_worker else {})})
    return summarize_rounds(per_round)


def summarize_rounds(per_round: list[dict[str, float]]) -> dict:
    """Each path's median examples/s over the rounds, and the median of its per-round ratio to the plain loop of
    the same round (``plain_torch``, in every round): a ratio of neighbours in time, not of runs minutes apart."""
    names = list(per_round[0])
    return {
        "rounds": len(per_round), "examples_per_s": per_round,
        "median_examples_per_s": {n: _median([r[n] for r in per_round]) for n in names},
        "median_ratio_over_plain": {n: _median([r[n] / r["plain_torch"] for r in per_round])
                                    for n in names if n != "plain_torch"},
    }


def run(items: int, users: int, max_len: int, d_model: int, batch: int, steps: int, warmup: int,
        threads: int, rounds: int = 1) -> dict:
    import ray

    from cemg_ray.generate.itemseq import build_item_model

    torch.set_num_threads(threads)
    cfg, layout, codes, data = _setup(items, users, max_len, d_model)
    plain = train_steps(build_item_model(cfg, layout, codes, max_len), data, batch, steps, warmup)
    config = {"items": items, "users": users, "max_len": max_len, "d_model": d_model, "batch": batch,
              "steps": steps, "warmup": warmup, "threads": threads}
    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(threads, 1), include_dashboard=False, log_to_driver=False)
    try:
        # the same plain loop again, the Ray cluster idling beside it: what Ray's daemons alone cost the loop
        beside = train_steps(build_item_model(cfg, layout, codes, max_len), data, batch, steps, warmup)
        ray_out = _fit_ray_train(config)
        arena = _fit_ray_train_with_env(config, {"MALLOC_ARENA_MAX": "1"})
        split = _split_config(config)
        per_worker = _fit_ray_train(split) if split else None
        actors = _actor_paths(config)
    finally:
        if started:
            ray.shutdown()
    wall = time.perf_counter() - t0
    if arena.get("malloc_arena_max") != "1":
        raise RuntimeError("bench train: MALLOC_ARENA_MAX=1 did not reach the Ray Train worker's environment")
    paths = {"plain_torch": plain, "ray_train_ddp": ray_out, "ray_train_ddp_one_malloc_arena": arena}
    if per_worker:
        paths["ray_train_ddp_one_thread_per_worker"] = per_worker
    alternating = _alternating_rounds(config, rounds, paths) if rounds > 1 else None
    timed = (ray_out["seconds"] + arena["seconds"] + beside["seconds"] + (per_worker["seconds"] if per_worker else 0)
             + sum(a["seconds"] for a in actors.values()))
    return {
        "machine": f"{platform.machine()} {threads} threads, torch {torch.__version__}",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "items": items, "windows": int(len(data["items"])), "d_model": d_model, "batch": batch, "steps": steps,
        "plain_torch": plain, "plain_torch_ray_idle_beside": beside, "ray_train_ddp": ray_out,
        "ray_train_ddp_one_malloc_arena": arena, "ray_train_ddp_one_thread_per_worker": per_worker, **actors,
        "ray_fixed_cost_s": wall - timed,
        "ratio_ray_over_plain": ray_out["examples_per_s"] / plain["examples_per_s"],
        "ratio_plain_with_ray_idle_over_plain": beside["examples_per_s"] / plain["examples_per_s"],
        "ratio_ray_over_plain_with_ray_idle": ray_out["examples_per_s"] / beside["examples_per_s"],
        "ratio_ray_one_malloc_arena_over_plain": arena["examples_per_s"] / plain["examples_per_s"],
        "ratio_ray_one_thread_per_worker_over_plain": (per_worker["examples_per_s"] / plain["examples_per_s"]
                                                       if per_worker else None),
        **{f"ratio_{name}_over_plain": a["examples_per_s"] / plain["examples_per_s"] for name, a in actors.items()},
        "alternating": alternating,
    }


PATHS = ("plain_torch", "plain_torch_ray_idle_beside", "ray_train_ddp", "ray_train_ddp_one_malloc_arena",
         "ray_train_ddp_one_thread_per_worker", "ray_actor_main_thread", "ray_actor_side_thread",
         "ray_actor_side_thread_one_malloc_arena")


def _cmd(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise SystemExit(f"bench train: --rounds must be at least 1, got {args.rounds}")
    res = run(args.items, args.users, args.max_len, args.d_model, args.batch_size, args.steps, args.warmup,
              args.threads, args.rounds)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"generator training, item-level GPT-2 d {res['d_model']}, {res['items']:,} items, {res['windows']:,} "
          f"windows, batch {res['batch']}, {res['steps']} timed steps ({res['machine']}; 1-min load "
          f"{res['load_average_1m']})")
    for name in PATHS:
        r = res[name]
        if r is None:  # one thread: no split into workers
            continue
        print(f"  {name:<40}{r['examples_per_s']:>10.1f} examples/s  ({r['seconds']:.1f} s, "
              f"last loss {r['last_loss']:.3f})")
    print(f"  Ray Train / plain loop: {res['ratio_ray_over_plain']:.3f}x (target >= 0.9x); Ray's fixed cost "
          f"{res['ray_fixed_cost_s']:.1f} s (cluster, worker group, process group)")
    print(f"  Ray Train with one malloc arena in its workers' environment / plain loop: "
          f"{res['ratio_ray_one_malloc_arena_over_plain']:.3f}x")
    if res["ratio_ray_one_thread_per_worker_over_plain"] is not None:
        per_worker = res["ray_train_ddp_one_thread_per_worker"]
        print(f"  Ray Train, {per_worker['workers']} DDP workers of one thread each (same global batch and steps) / "
              f"plain loop: {res['ratio_ray_one_thread_per_worker_over_plain']:.3f}x (target >= 0.9x)")
    print(f"  plain loop with the Ray cluster idle beside it / plain loop: "
          f"{res['ratio_plain_with_ray_idle_over_plain']:.3f}x; Ray Train / that loop: "
          f"{res['ratio_ray_over_plain_with_ray_idle']:.3f}x")
    print("  Ray actor / plain loop: main thread {:.3f}x, side thread {:.3f}x, side thread with one malloc arena "
          "{:.3f}x".format(*(res[f"ratio_{n}_over_plain"] for n in PATHS[5:])))
    alt = res["alternating"]
    if alt:
        print(f"  {alt['rounds']} alternating rounds (plain loop, Ray Train, Ray Train with one malloc arena):")
        for i, r in enumerate(alt["examples_per_s"], 1):
            print(f"    round {i}: " + ", ".join(f"{n} {v:.1f}" for n, v in r.items()))
        med = alt["median_ratio_over_plain"]
        print(f"  median per-round ratio over the plain loop: Ray Train {med['ray_train_ddp']:.3f}x, with one malloc "
              f"arena {med['ray_train_ddp_one_malloc_arena']:.3f}x (target >= 0.9x)")
        if "ray_train_ddp_one_thread_per_worker" in med:
            print(f"    one thread per DDP worker: {med['ray_train_ddp_one_thread_per_worker']:.3f}x")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="generator training: Ray Train (DDP) vs a plain torch loop, same steps")
    p.add_argument("--items", type=int, default=12101)
    p.add_argument("--users", type=int, default=22363)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate the plain loop and both Ray Train paths this many times; report medians")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
