"""``cemg-ray bench export``: users/s of the bulk export (Ray Data actor pool) against a plain loop.

The same trained run, model, k and batches, measured in one run: the plain loop runs the export's
own decoder (``ExportDecoder``) in this process, batch after batch, without writing; the export
runs the real stage (actor pool, Parquet staging, atomic commit) with 1 and 2 actors into a
temporary folder, or into ``--output`` (e.g. an ``s3://`` prefix) to include the store's write cost.
Each timing includes the model load.

At scale (``--users 10000,100000,200000``): for each size, a copy of the run directory whose user table
holds that many users, drawn with replacement from the run's own users (their real histories, new user
ids), so the trained model and catalog are the run's; the fixed cost (actor start, model load, staging,
commit) is measured separately as the export of a single batch, and the per-user rate is also given
without it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
    raw = artifacts.read_manifest(store)["config"]
    raw["run_dir"] = run_dir
    raw["export"] = {**raw.get("export", {}), **overrides}
    return JobConfig.model_validate(raw), store


def _plain_loop(cfg: JobConfig, run_dir: str, store: Store) -> tuple[int, float]:
    """One process: the export's own decoder (model load, ranking, seen-item filter) over every user's batch."""
    from cemg_ray.export.stage import ExportDecoder

    t0 = time.perf_counter()
    decoder = ExportDecoder(cfg.model_dump(mode="json"), run_dir)
    users = artifacts.read_sequences(store, ["user_id", "items"])
    bs = cfg.export.batch_size
    for s in range(0, users.num_rows, bs):
        sl = users.slice(s, bs)
        decoder({"user_id": np.asarray(sl.column("user_id").to_pylist(), dtype=object),
                 "items": sl.column("items").to_pylist()})
    return users.num_rows, time.perf_counter() - t0


def scaled_run(run_dir: str, users: int, folder: str, seed: int = 0) -> str:
    """A copy of a local run directory with ``users`` users drawn from its own (ids ``<id>~<n>``).

    The model, codes and catalog are copied unchanged; features and checkpoints are left out (the export
    does not read them).
    """
    import pyarrow as pa

    from cemg_ray.store import Store

    if "://" in run_dir:
        raise SystemExit("bench export --users: the run directory must be local (it is copied)")
    if users < 1:
        raise SystemExit(f"bench export --users: expected a positive number of users, got {users}")
    dst = os.path.join(folder, f"users-{users}")
    shutil.copytree(run_dir, dst, ignore=shutil.ignore_patterns("features", "checkpoints", "eval", "*.log"))
    seqs = artifacts.read_sequences(Store(run_dir))
    pick = np.random.default_rng(seed).integers(0, seqs.num_rows, users)
    table = seqs.take(pa.array(pick))
    ids = [f"{u}~{n}" for n, u in enumerate(table.column("user_id").to_pylist())]
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id", pa.array(ids))
    artifacts.write_sequences(Store(dst), table)
    return dst


def run_scaled(run_dir: str, sizes: list[int], model: str, k: int, batch_size: int, actors: list[int],
               cpus_per_actor: float) -> dict:
    """``run`` at each user count, plus each path's fixed cost (one batch of users) and the rate without it."""
    with tempfile.TemporaryDirectory() as tmp:
        fixed = run(scaled_run(run_dir, batch_size, tmp), model, k, batch_size, actors, cpus_per_actor, None)
        fixed_s = {r["path"]: r["wall_s"] for r in fixed["results"]}
        rows = []
        for n in sizes:
            out = run(scaled_run(run_dir, n, tmp), model, k, batch_size, actors, cpus_per_actor, None)
            for r in out["results"]:
                net = r["wall_s"] - fixed_s[r["path"]]
                rows.append({**r, "fixed_s": fixed_s[r["path"]],
                             "users_per_s_without_fixed": round(n / net, 1) if net > 0 else None,
                             "vs_plain_loop": round(r["users_per_s"] / out["results"][0]["users_per_s"], 2)})
            shutil.rmtree(os.path.join(tmp, f"users-{n}"), ignore_errors=True)
    return {**{key: out[key] for key in ("date", "machine", "model", "k", "batch_size", "cpus_per_actor")},
            "run_dir": os.path.abspath(run_dir), "sizes": sizes, "fixed_users": batch_size,
            "load_average_1m": [fixed["load_average_1m"][0], out["load_average_1m"][1]], "results": rows}


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


def _print_scaled(out: dict) -> None:
    print(f"export benchmark at scale, {out['date']}, {out['machine']}; 1-min load average before/after "
          f"{out['load_average_1m']}")
    print(f"model {out['model']} from {out['run_dir']} (users drawn from its own); k={out['k']}; batch "
          f"{out['batch_size']}; {out['cpus_per_actor']} CPU per actor; "
          f"fixed cost = exporting {out['fixed_users']} users")
    print(f"{'path':>22} {'users':>8} {'wall s':>8} {'users/s':>9} {'vs loop':>8} {'fixed s':>8} {'w/o fixed':>10}")
    for r in out["results"]:
        print(f"{r['path']:>22} {r['users']:>8} {r['wall_s']:>8} {r['users_per_s']:>9} {r['vs_plain_loop']:>7}x "
              f"{r['fixed_s']:>8} {r['users_per_s_without_fixed']!s:>10}")


def _cmd(args: argparse.Namespace) -> int:
    actors = [int(x) for x in args.actors.split(",") if x.strip()]
    if args.users:
        try:
            sizes = [int(x) for x in args.users.split(",") if x.strip()]
        except ValueError:
            raise SystemExit(f"bench export: --users takes comma-separated counts, got {args.users!r}") from None
        out = run_scaled(args.run_dir, sizes, args.model, args.k, args.batch_size, actors, args.cpus_per_actor)
        print(json.dumps(out, indent=2)) if args.json else _print_scaled(out)
        return 0
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
    p.add_argument("--users", help="comma-separated user counts (e.g. 10000,100000,200000): users drawn from the "
                                   "run's own, each size timed, the fixed cost apart")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd)
