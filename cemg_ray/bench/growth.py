"""``cemg-ray bench growth``: how each stage's wall time grows with the catalog, measured by running it.

For each catalog size the real pipeline (``run_pipeline``: Ray Data features, Ray Train LightGCN and
generator, the tokenizer, evaluation, the Ray Data export) runs on the synthetic catalog with that many
items and ``--users-per-item`` times as many users, every trained stage for ``--epochs`` epochs. The stage
wall times come from the run's manifest, as a user's run records them, so they include each stage's fixed
cost (cluster and worker start, model loading); the smallest size shows what that fixed part is.

Growth per 10x is ``(t_large / t_small) ** (1 / log10(n_large / n_small))`` between consecutive sizes:
10 is linear, 100 quadratic, below 10 a fixed cost still dominating.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from cemg_ray.bench import emit
from cemg_ray.bench.memory import WorkerMemorySampler, stage_windows
from cemg_ray.plotting import pyplot

MEMORY_FILE = "bench-memory.json"  # per stage: the driver's and the largest worker's peak memory
STAGES = ["data", "popularity", "features", "pca", "lightgcn", "tokenize", "train", "evaluate", "export"]
# what a stage's time scales with, for the table (per item, per user, per interaction)
SCALES_WITH = {
    "data": "interactions", "popularity": "interactions", "features": "items", "pca": "items",
    "lightgcn": "interactions x graph", "tokenize": "items", "train": "interactions", "evaluate": "users",
    "export": "users",
}


def size_overrides(items: int, users_per_item: float, epochs: int, run_dir: str,
                   tokenize_epochs: int | None = None) -> list[str]:
    """``--set`` overrides that scale the job to ``items`` items, one epoch budget for every trained stage.

    The tokenizer gets ``tokenize_epochs`` (default ``epochs``): after one RQ-VAE epoch the codes collide (on a
    10,000-item catalog 75 distinct codes, up to 4,773 items under one), the disambiguation level grows with the
    collisions, and evaluation and export then time the collisions rather than the catalog.
    """
    users = max(1, round(items * users_per_item))
    # codes enough for the catalog: codebook^levels >= 4 x items keeps the disambiguation level short
    levels = 3
    codebook = max(16, 2 ** math.ceil(math.log2(round((4 * items) ** (1 / levels)))))
    return [
        f"run_dir={run_dir}",
        f"dataset.synthetic.num_items={items}",
        f"dataset.synthetic.num_users={users}",
        f"lightgcn.epochs={epochs}",
        f"tokenize.epochs={epochs if tokenize_epochs is None else tokenize_epochs}",
        f"tokenize.num_levels={levels}",
        f"tokenize.codebook_size={codebook}",
        f"train.epochs={epochs}",
        "train.valid_users=200",
        "evaluate.models=[cemg]",
        "export.model=cemg",
        "export.cpus_per_actor=0.5",
        "export.date=2026-01-01",
        f"export.output={run_dir}/export",
    ]


def growth_per_10x(t_small: float, t_large: float, n_small: int, n_large: int) -> float | None:
    """The factor by which time grows per 10x size between two measurements (None if not measurable)."""
    if t_small <= 0 or t_large <= 0 or n_large <= n_small:
        return None
    return (t_large / t_small) ** (1.0 / math.log10(n_large / n_small))


def precomputed_vectors(folder: str, items: int, dims: tuple[int, int], seed: int = 0) -> list[str]:
    """Write random item vectors (text, image) for a catalog of ``items`` and return the ``--set`` overrides that
    make the features stage read them instead of running the encoders, so the encoders' rate (measured on its own:
    ``cemg-ray bench features``) does not hide how the rest of the pipeline grows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    overrides = []
    for modality, dim in zip(("text", "image"), dims):
        path = os.path.join(folder, f"vectors-{items}-{modality}.npy")
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            np.save(path, rng.standard_normal((items, dim), dtype=np.float32))
        overrides.append(f"features.{modality}.precomputed={path}")
    return overrides


def memory_per_stage(manifest: dict[str, Any], sampler: WorkerMemorySampler | None) -> dict[str, Any]:
    """{stage: {"driver_mib", "worker_mib", "worker"}}: the driver's peak from the manifest, the largest Ray
    worker's private memory from the sampler over the stage's window."""
    out: dict[str, Any] = {}
    windows = stage_windows(manifest)
    for name, entry in manifest["stages"].items():
        driver = entry.get("driver", {}).get("peak_rss_mib")
        if sampler and name in windows:  # one sampling interval either side: a stage shorter than it still has one
            start, end = windows[name]
            worker, who = sampler.peak_between(start - sampler.every_s, end + sampler.every_s)
        else:
            worker, who = 0, ""
        out[name] = {"driver_mib": driver, "worker_mib": round(worker / 2**20, 1) if worker else None,
                     "worker": who or None}
    return out


def _row(manifest: dict[str, Any], items: int, users: int, stages: list[str], total: float | None,
         memory: dict[str, Any] | None = None) -> dict[str, Any]:
    data = manifest["stages"].get("data", {}).get("report", {}).get("stats", {})
    done = {s: manifest["stages"][s]["wall_s"] for s in stages
            if manifest["stages"].get(s, {}).get("status", "ok") == "ok" and "wall_s" in manifest["stages"].get(s, {})}
    codes = manifest["stages"].get("tokenize", {}).get("report", {}).get("before_disambiguation", {})
    return {"items": items, "users": users, "interactions": data.get("interactions"), "wall_s": done,
            "total_s": round(total if total is not None else sum(done.values()), 2),
            # what sets the decoder's last step: the most items that share one code prefix
            "max_items_per_code": codes.get("max_items_per_code"),
            "tokenize_epochs": manifest.get("config", {}).get("tokenize", {}).get("epochs"),
            "memory_mib": {s: m for s, m in (memory or {}).items() if s in stages}}


def run(job: str, sizes: list[int], users_per_item: float, epochs: int, stages: list[str],
        extra: list[str], keep: str | None = None, tokenize_epochs: int | None = None,
        precomputed_dims: tuple[int, int] | None = None) -> dict[str, Any]:
    import json

    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline

    rows: list[dict[str, Any]] = []
    base = keep or tempfile.mkdtemp(prefix="cemg-growth-")
    for n in sizes:
        run_dir = os.path.join(base, f"items-{n}")
        vectors = precomputed_vectors(os.path.join(base, "vectors"), n, precomputed_dims) if precomputed_dims else []
        cfg = load_config(job, size_overrides(n, users_per_item, epochs, run_dir, tokenize_epochs) + vectors + extra)
        t0 = time.perf_counter()
        with WorkerMemorySampler() as sampler:
            manifest = run_pipeline(cfg, stages, force=True)
        memory = memory_per_stage(manifest, sampler)
        with open(os.path.join(run_dir, MEMORY_FILE), "w") as f:  # beside the manifest, for --from-kept
            json.dump(memory, f, indent=1)
        rows.append(_row(manifest, n, cfg.dataset.synthetic.num_users, stages, time.perf_counter() - t0, memory))
    return summarise(rows, job, epochs, users_per_item, stages, base if keep else None)


def from_kept(folder: str, stages: list[str]) -> dict[str, Any]:
    """The table of a sweep kept with ``--keep`` (its ``items-N`` run directories), read from their manifests.

    A sweep stopped part-way still tabulates: a size's row holds the stages its manifest records as finished
    (``total_s`` is then their sum), so a long sweep's early sizes are not lost with its last one.
    """
    import json

    if not os.path.isdir(folder):
        raise SystemExit(f"bench growth --from-kept: {folder} is not a folder (a --keep sweep's run directories)")
    manifests, memory = [], {}
    for name in os.listdir(folder):
        path = os.path.join(folder, name, "manifest.json")
        if name.startswith("items-") and name[6:].isdigit() and os.path.exists(path):
            with open(path) as f:
                manifests.append(json.load(f))
            mem_path = os.path.join(folder, name, MEMORY_FILE)
            # a size stopped part-way has no worker samples: its driver peaks still come from the manifest
            if os.path.exists(mem_path):
                with open(mem_path) as f:
                    memory[int(name[6:])] = json.load(f)
    if not manifests:
        raise SystemExit(f"bench growth --from-kept: no items-N/manifest.json under {folder}")
    manifests.sort(key=lambda m: m["config"]["dataset"]["synthetic"]["num_items"])
    rows = []
    for m in manifests:
        n = m["config"]["dataset"]["synthetic"]["num_items"]
        rows.append(_row(m, n, m["config"]["dataset"]["synthetic"]["num_users"], stages, None,
                         memory.get(n) or memory_per_stage(m, None)))
    first = manifests[0]
    return summarise(rows, first.get("job") or "kept", first["config"]["train"]["epochs"],
                     round(rows[0]["users"] / rows[0]["items"], 2), stages, folder, load=None)


def summarise(rows: list[dict[str, Any]], job: str, epochs: int, users_per_item: float, stages: list[str],
              run_dirs: str | None, load: float | None = -1.0) -> dict[str, Any]:
    """Growth per 10x between consecutive sizes for every stage, and the run's machine, date and load."""
    growth = {}
    for s in stages:
        growth[s] = [growth_per_10x(a["wall_s"].get(s, 0), b["wall_s"].get(s, 0), a["items"], b["items"])
                     for a, b in zip(rows, rows[1:])]
    return {
        "job": job, "epochs": epochs, "users_per_item": users_per_item, "stages": stages, "rows": rows,
        "growth_per_10x": growth, "scales_with": {s: SCALES_WITH.get(s, "") for s in stages},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": datetime.now(UTC).date().isoformat(),
        # the load now, at the end of a sweep just run; unknown for a kept one read later
        "load_average_1m": round(os.getloadavg()[0], 2) if load is not None else None, "run_dirs": run_dirs,
    }


def _print(res: dict[str, Any]) -> None:
    sizes = [r["items"] for r in res["rows"]]
    print(f"stage wall time (s) by catalog size, synthetic catalog, {res['users_per_item']} users per item, "
          f"{res['epochs']} epoch(s) per trained stage ({res['machine']}; 1-min load {res['load_average_1m']}, "
          f"{res['date']})")
    head = f"  {'stage':<11}" + "".join(f"{n:>12,}" for n in sizes)
    steps = [f"x{b // a} growth" if b % a == 0 else "growth" for a, b in zip(sizes, sizes[1:])]
    print(head + "".join(f"{h:>14}" for h in steps) + "   scales with")
    users = "".join(f"{r['users']:>12,}" for r in res["rows"])
    print(f"  {'(users)':<11}{users}")
    shared = "".join(f"{r.get('max_items_per_code') or '-':>12}" for r in res["rows"])
    print(f"  {'(max/code)':<11}{shared}   items under one code prefix (RQ-VAE epochs: "
          f"{', '.join(str(r.get('tokenize_epochs')) for r in res['rows'])})")
    for s in res["stages"]:
        cells = "".join(f"{r['wall_s'].get(s, float('nan')):>12.2f}" for r in res["rows"])
        grow = "".join(f"{'-' if g is None else f'{g:.2f} / 10x':>14}" for g in res["growth_per_10x"][s])
        print(f"  {s:<11}{cells}{grow}   {res['scales_with'][s]}")
    print(f"  {'total':<11}" + "".join(f"{r['total_s']:>12.2f}" for r in res["rows"]))
    print("peak memory (MiB): driver / largest Ray worker (private: resident minus shared pages)")
    for s in res["stages"]:
        cells = []
        for r in res["rows"]:
            m = r.get("memory_mib", {}).get(s, {})
            cells.append(f"{_mib(m.get('driver_mib'))} / {_mib(m.get('worker_mib'))}")
        print(f"  {s:<11}" + "".join(f"{c:>16}" for c in cells))


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def plot(res: dict[str, Any], path: str) -> None:
    """Stage wall time against catalog size on log-log axes, with a linear-growth guide from the smallest size."""
    plt = pyplot()

    sizes = [r["items"] for r in res["rows"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in res["stages"]:
        ax.plot(sizes, [r["wall_s"].get(s, float("nan")) for r in res["rows"]], marker="o", label=s)
    total = [r["total_s"] for r in res["rows"]]
    ax.plot(sizes, total, marker="s", c="black", label="whole job")
    ax.plot(sizes, [total[0] * n / sizes[0] for n in sizes], ls="--", c="grey", label="whole job if it grew linearly")
    ax.set(xscale="log", yscale="log", xlabel=f"catalog items (users = items x {res['users_per_item']:g})",
           ylabel="stage wall time (s)", title=f"stage time by catalog size ({res['epochs']} epoch per trained stage)")
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _cmd(args: argparse.Namespace) -> int:
    sizes = sorted(int(s) for s in args.items.split(",") if s.strip())
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"bench growth: --stages: unknown {', '.join(unknown)}; known: {', '.join(STAGES)}")
    if args.from_kept:
        res = from_kept(args.from_kept, stages)
    else:
        # the pipeline's workers print their progress through the driver's stdout: with --json that goes to stderr,
        # so that stdout holds the JSON alone
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
            dims = tuple(int(d) for d in args.precomputed.split(",")) if args.precomputed else None
            if dims is not None and len(dims) != 2:
                raise SystemExit(f"bench growth: --precomputed wants TEXT_DIM,IMAGE_DIM (e.g. 384,256), got "
                                 f"{args.precomputed!r}")
            res = run(args.job, sizes, args.users_per_item, args.epochs, stages, args.set or [], args.keep,
                      args.tokenize_epochs, dims)
    emit(res, args.json, _print)
    if args.plot:
        plot(res, args.plot)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("growth", help="each stage's wall time on synthetic catalogs of growing size (the pipeline run)")
    p.add_argument("--job", default="jobs/demo.yaml", help="the job whose settings are scaled (default: the demo)")
    p.add_argument("--items", default="1000,10000,100000", help="catalog sizes (comma-separated)")
    p.add_argument("--users-per-item", type=float, default=1.85, help="users per item (Beauty: 22,363 / 12,101)")
    p.add_argument("--epochs", type=int, default=1, help="epochs of every trained stage (lightgcn, tokenize, train)")
    p.add_argument("--tokenize-epochs", type=int, default=20,
                   help="RQ-VAE epochs (default 20: one epoch leaves most items colliding on a few codes)")
    p.add_argument("--stages", default=",".join(STAGES), help="stages to time, in pipeline order")
    p.add_argument("--precomputed", metavar="TEXT_DIM,IMAGE_DIM",
                   help="random item vectors of these widths in place of the encoders (their own rate: bench "
                        "features), so the rest of the pipeline's growth shows")
    p.add_argument("--set", action="append", help="extra KEY=VALUE overrides of the job (repeatable)")
    p.add_argument("--keep", help="keep the run directories under this folder (default: a temporary folder)")
    p.add_argument("--plot", help="also write a log-log plot of the stage times here (PNG)")
    p.add_argument("--from-kept", metavar="DIR",
                   help="run nothing: tabulate the items-N run directories a --keep sweep left in DIR (a stopped "
                        "sweep's finished stages included)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
