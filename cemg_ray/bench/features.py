"""``cemg-ray bench features``: items/s of Ray Data extraction (1 and 2 actors) against a plain loop.

Same encoder, same items, same batches, measured in one run and printed as ratios. Every timing
covers what a job pays: loading the encoder (in the process, or in each actor, which also imports
torch/transformers there) and encoding every item. Outside the clock: starting and warming up the
local Ray cluster, and one encoder load in the driver (so the weights file is in the page cache for
all three). The 1-minute load average is printed because other work on the machine skews the figures.
Items come from the synthetic catalog, or from a run directory's item table (``artifacts.ITEMS``, e.g. Beauty).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from cemg_ray import artifacts
from cemg_ray.bench import emit

if TYPE_CHECKING:
    from cemg_ray.features.config import FeaturesConfig


def load_items(n: int, run_dir: str | None) -> pa.Table:
    """``n`` items from a run directory's catalog, or a synthetic catalog of ``n`` items."""
    if run_dir:
        from cemg_ray.store import Store

        items = artifacts.read_items(Store(run_dir))
        return items.slice(0, min(n, items.num_rows))
    from cemg_ray.config import SyntheticConfig
    from cemg_ray.data.synthetic import make_catalog

    return make_catalog(SyntheticConfig(num_items=n, num_users=max(50, n // 10), num_clusters=8)).items


def _plain_loop(items: pa.Table, modality: str, cfg: FeaturesConfig) -> int:
    """The baseline: one process, load the encoder, encode batch after batch (the same batches as Ray gets)."""
    from cemg_ray.features.extract import BatchEncoder, _input_table

    enc = BatchEncoder(modality, cfg.model_dump())
    table = _input_table(items, modality)
    cols = table.column_names
    done = 0
    for s in range(0, table.num_rows, cfg.batch_size):
        sl = table.slice(s, cfg.batch_size)
        done += len(enc({c: sl.column(c).to_numpy(zero_copy_only=False) for c in cols})["item_idx"])
    return done


def run(items: int, modality: str, model: str | None, batch_size: int, cpus_per_actor: float,
        threads_per_actor: int | None, actors: list[int], run_dir: str | None,
        plain_threads: int | None = None) -> dict:
    import ray
    import torch

    from cemg_ray.features.config import FeaturesConfig
    from cemg_ray.features.extract import extract_with_ray

    table = load_items(items, run_dir)
    enc_cfg = {"model": model} if model else {}
    cfg = FeaturesConfig(batch_size=batch_size, cpus_per_actor=cpus_per_actor, threads_per_actor=threads_per_actor,
                         gpus_per_actor=0, **{modality: enc_cfg})
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        ray.data.range(8).map_batches(lambda b: b, batch_size=4).materialize()  # start workers outside the clock

        @ray.remote(num_cpus=cpus_per_actor)
        def actor_threads() -> int:
            return torch.get_num_threads()

        worker_threads = threads_per_actor or ray.get(actor_threads.remote())
        from cemg_ray.features.extract import BatchEncoder

        BatchEncoder(modality, cfg.model_dump())  # imports and weights file into the page cache, outside the clock
        load_before = os.getloadavg()[0]
        default_threads = torch.get_num_threads()
        if plain_threads:
            torch.set_num_threads(plain_threads)
        t0 = time.perf_counter()
        n = _plain_loop(table, modality, cfg)
        plain_s = time.perf_counter() - t0
        plain_used = torch.get_num_threads()
        torch.set_num_threads(default_threads)
        out: dict = {
            "date": datetime.now(UTC).date().isoformat(),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
                       f"ray {ray.__version__}, GPUs {int(ray.cluster_resources().get('GPU', 0))}",
            "modality": modality, "model": getattr(cfg, modality).model, "items": n, "batch_size": batch_size,
            "cpus_per_actor": cpus_per_actor, "torch_threads": {"plain": plain_used,
                                                                "per_actor": worker_threads},
            "items_per_s": {"plain_loop": n / plain_s}, "wall_s": {"plain_loop": plain_s},
        }
        for k in actors:
            t0 = time.perf_counter()
            res = extract_with_ray(table, modality, cfg, num_actors=k)
            wall = time.perf_counter() - t0
            assert res.num_rows == n
            out["items_per_s"][f"ray_{k}_actors"] = n / wall
            out["wall_s"][f"ray_{k}_actors"] = wall
        out["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    finally:
        if started_ray:
            ray.shutdown()
    ips = out["items_per_s"]
    out["ratios"] = {f"ray_{k}_actors_vs_plain": ips[f"ray_{k}_actors"] / ips["plain_loop"] for k in actors}
    if len(actors) > 1:
        out["ratios"][f"ray_{actors[-1]}_vs_{actors[0]}_actors"] = (ips[f"ray_{actors[-1]}_actors"]
                                                                   / ips[f"ray_{actors[0]}_actors"])
    return out


def _print(res: dict) -> None:
    print(f"feature extraction: {res['items']:,} items, {res['modality']} encoder {res['model']}, "
          f"batch {res['batch_size']} ({res['machine']}, {res['date']})")
    threads = res["torch_threads"]
    print(f"  torch threads: plain loop {threads['plain']}, each actor {threads['per_actor']} "
          f"({res['cpus_per_actor']} CPU per actor); 1-min load average {res['load_average_1min']['before']} "
          f"before, {res['load_average_1min']['after']} after")
    for name, v in res["items_per_s"].items():
        print(f"  {name:<16}{v:>9.1f} items/s  ({res['wall_s'][name]:.1f} s, encoder load included)")
    for name, v in res["ratios"].items():
        print(f"  {name:<26}{v:>6.2f}x")


def _cmd(args: argparse.Namespace) -> int:
    actors = [int(a) for a in args.actors.split(",") if a.strip()]
    res = run(args.items, args.modality, args.model, args.batch_size, args.cpus_per_actor, args.threads_per_actor,
              actors, args.run_dir, args.plain_threads)
    emit(res, args.json, _print)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="items/s of Ray Data feature extraction (1, 2 actors) vs a plain loop")
    p.add_argument("--items", type=int, default=2000, help="number of items to encode")
    p.add_argument("--modality", choices=["text", "image"], default="text")
    p.add_argument("--model", help="encoder (default: the job default, minilm / efficientnet-lite0)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cpus-per-actor", type=float, default=0.5)
    p.add_argument("--threads-per-actor", type=int, default=None, help="torch threads per actor (default: Ray's)")
    p.add_argument("--plain-threads", type=int, default=None, help="torch threads of the plain loop (default: torch's)")
    p.add_argument("--actors", default="1,2", help="actor pool sizes to measure")
    p.add_argument("--run-dir", help="take the items from this run directory's item table (the data stage's output)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd)
