"""``cemg-ray bench export``: users/s of the bulk export (Ray Data actor pool) against a plain loop.

The same trained run, model, k and batches, measured in one run: the plain loop runs the export's
own decoder (``ExportDecoder``) in this process, batch after batch, without writing; the export
runs the real stage (actor pool, Parquet staging, atomic commit) with 1 and 2 actors into a
temporary folder, or into ``--output`` (e.g. an ``s3://`` prefix) to include the store's write cost.
Each timing includes the model load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from cemg_ray import artifacts

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store


def _job(run_dir: str, overrides: dict) -> tuple[JobConfig, Store]:
    """The run's resolved config (from its manifest) with export overrides."""
    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store

    store = Store(run_dir)
    if not store.exists(artifacts.MANIFEST):
        raise SystemExit(f"bench export: {store.uri('manifest.json')} not found; train a run first "
                         "(e.g. make demo) and pass its run directory")
    raw = store.read_json(artifacts.MANIFEST)["config"]
    raw["run_dir"] = run_dir
    raw["export"] = {**raw.get("export", {}), **overrides}
    return JobConfig.model_validate(raw), store


def _plain_loop(cfg: JobConfig, run_dir: str, store: Store) -> tuple[int, float]:
    """One process: the export's own decoder (model load, ranking, seen-item filter) over every user's batch."""
    from cemg_ray.export.stage import ExportDecoder

    t0 = time.perf_counter()
    decoder = ExportDecoder(cfg.model_dump(mode="json"), run_dir)
    users = store.read_parquet(artifacts.SEQUENCES, columns=["user_id", "items"])
    bs = cfg.export.batch_size
    for s in range(0, users.num_rows, bs):
        sl = users.slice(s, bs)
        decoder({"user_id": np.asarray(sl.column("user_id").to_pylist(), dtype=object),
                 "items": sl.column("items").to_pylist()})
    return users.num_rows, time.perf_counter() - t0


def run(run_dir: str, model: str, k: int, batch_size: int, actors: list[int], cpus_per_actor: float,
        output: str | None) -> dict:
    import ray
    import torch

    from cemg_ray.export.stage import run_export
    from cemg_ray.raycluster import ensure_ray

    run_dir = run_dir if "://" in run_dir else os.path.abspath(run_dir)
    base = {"model": model, "k": k, "batch_size": batch_size, "cpus_per_actor": cpus_per_actor, "force": True,
            "date": datetime.now(UTC).strftime("%Y-%m-%d")}
    cfg, store = _job(run_dir, base)
    load_before = round(os.getloadavg()[0], 2)
    users, plain_s = _plain_loop(cfg, run_dir, store)
    results = [{"path": "plain loop", "actors": 0, "users": users, "wall_s": round(plain_s, 2),
                "users_per_s": round(users / plain_s, 1)}]
    ensure_ray(cfg.ray)
    with tempfile.TemporaryDirectory() as tmp:
        for n in actors:
            out = output.rstrip("/") + f"/bench-{n}" if output else os.path.join(tmp, f"bench-{n}")
            job, _ = _job(run_dir, {**base, "num_actors": n, "output": out})
            t0 = time.perf_counter()
            manifest = run_export(job, store)
            wall = time.perf_counter() - t0
            results.append({"path": f"Ray Data, {n} actor(s)", "actors": n, "users": manifest["users"],
                            "rows": manifest["rows"], "wall_s": round(wall, 2),
                            "users_per_s": round(manifest["users"] / wall, 1)})
    plain = results[0]["users_per_s"]
    ratios = {f"{r['path']} / plain loop": round(r["users_per_s"] / plain, 2) for r in results[1:]}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"torch {torch.__version__}, ray {ray.__version__}",
        "run_dir": run_dir, "model": model, "k": k, "batch_size": batch_size, "cpus_per_actor": cpus_per_actor,
        "output": output or "local temporary folder",
        "load_average_1m": [load_before, round(os.getloadavg()[0], 2)], "results": results, "ratios": ratios,
    }


def _print(out: dict) -> None:
    print(f"export benchmark, {out['date']}, {out['machine']}; 1-min load average before/after "
          f"{out['load_average_1m']}")
    print(f"model {out['model']} from {out['run_dir']}; k={out['k']}; batch {out['batch_size']}; "
          f"{out['cpus_per_actor']} CPU per actor; output: {out['output']}")
    print(f"{'path':>22} {'users':>8} {'wall s':>8} {'users/s':>9}")
    for r in out["results"]:
        print(f"{r['path']:>22} {r['users']:>8} {r['wall_s']:>8} {r['users_per_s']:>9}")
    for name, value in out["ratios"].items():
        print(f"  {name}: {value}x")


def _cmd(args: argparse.Namespace) -> int:
    actors = [int(x) for x in args.actors.split(",") if x.strip()]
    out = run(args.run_dir, args.model, args.k, args.batch_size, actors, args.cpus_per_actor, args.output)
    print(json.dumps(out, indent=2) if args.json else "", end="" if not args.json else "\n")
    if not args.json:
        _print(out)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="users/s of the bulk export (1 and 2 actors) against a plain loop")
    p.add_argument("--run-dir", default="runs/demo", help="a trained run directory (default: runs/demo)")
    p.add_argument("--model", default="cemg", help="model to export (cemg, sasrec, popularity, ...)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--actors", default="1,2", help="comma-separated actor-pool sizes (default: 1,2)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--output", help="write the exports here (e.g. s3://bucket/bench) instead of a temp folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd)
