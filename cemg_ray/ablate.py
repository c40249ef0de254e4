"""The paper's ablations (its Table 4) over several seeds from one command: ``cemg-ray ablate JOB.yaml``.

Each row is the job with a few overrides; each (row, seed) is a full run directory under
``<run_dir>/ablate/seed<k>/<row>/`` with its own manifest and metrics, so any cell can be re-run or
inspected alone. Stages whose config does not change between cells are computed once and copied in
(data, features, pca for every cell; lightgcn, popularity and sasrec once per seed): a copied stage keeps
its marker, so the pipeline sees it as done for exactly that config and skips it. The baselines (popularity,
SASRec) are the rows "without the sequence model": the same split, no semantic IDs, no generator.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

from cemg_ray import artifacts
from cemg_ray.config import JobConfig, load_config
from cemg_ray.pipeline import run_pipeline
from cemg_ray.stagekit import is_done
from cemg_ray.stages import outputs
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

SEED_KEYS = ("lightgcn.seed", "tokenize.seed", "train.seed", "sasrec.seed")
SHARED_STAGES = ("data", "features", "pca")  # seed-free: one copy for every cell
PER_SEED_STAGES = ("lightgcn", "popularity", "sasrec")  # one per seed, shared by that seed's rows
KS = (5, 10, 20)


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    overrides: tuple[str, ...] = ()
    model: str = "cemg"  # the evaluate model whose figures fill the row


ROWS: tuple[Row, ...] = (
    Row("full", "CEMG (full)"),
    Row("wo_image", "w/o image", ("tokenize.use_image=false",)),
    Row("wo_text", "w/o text", ("tokenize.use_text=false",)),
    Row("wo_collab", "w/o collab", ("tokenize.use_collab=false",)),
    Row("wo_guide", "w/o guide (equal weights)", ("tokenize.use_guide=false",)),
    Row("sasrec", "w/o sequence model: SASRec", model="sasrec"),
    Row("popularity", "w/o sequence model: popularity", model="popularity"),
)
ROWS_BY_NAME = {r.name: r for r in ROWS}
GENERATOR_ROWS = tuple(r.name for r in ROWS if r.model == "cemg")


def cell_config(job: str | None, overrides: list[str], row: Row, seed: int) -> JobConfig:
    """The job of one cell: the user's overrides, the row's, the seed in every seeded stage."""
    base = load_config(job, overrides)
    cell_dir = f"{base.run_dir.rstrip('/')}/ablate/seed{seed}/{row.name}"
    models = ["popularity", "sasrec", "cemg"] if row.name == "full" else [row.model]
    sets = [*overrides, *row.overrides, *(f"{k}={seed}" for k in SEED_KEYS), f"run_dir={cell_dir}",
            f"evaluate.models=[{','.join(models)}]", "evaluate.split=test"]
    return load_config(job, sets)


def stages_of(row: Row) -> list[str]:
    if row.name == "full":
        return ["data", "popularity", "sasrec", "features", "pca", "lightgcn", "tokenize", "train", "evaluate"]
    if row.model != "cemg":
        return []  # read from the seed's full cell
    return ["data", "features", "pca", "lightgcn", "tokenize", "train", "evaluate"]


def adopt_stage(src: Store, dst: Store, cfg: JobConfig, stage: str) -> bool:
    """Copy ``stage``'s outputs and marker from ``src`` when they are done for ``cfg``; True when copied."""
    if not is_done(src, cfg, stage) or is_done(dst, cfg, stage):
        return False
    for out in outputs(stage):
        for rel in src.list(out, recursive=True) if src.is_dir(out) else [out] if src.exists(out) else []:
            dst.write_bytes(rel, src.read_bytes(rel))
    dst.write_bytes(artifacts.stage_marker(stage), src.read_bytes(artifacts.stage_marker(stage)))
    return True


def _store(cfg: JobConfig) -> Store:
    return Store.for_job(cfg)


def run_ablation(job: str | None, overrides: list[str], seeds: list[int], rows: list[str]) -> dict[str, Any]:
    """Run every (row, seed) cell, then write ``ablate/summary.json`` and ``ablate/summary.md``."""
    unknown = [r for r in rows if r not in ROWS_BY_NAME]
    if unknown:
        raise ValueError(f"ablate: unknown row(s) {unknown}; known: {sorted(ROWS_BY_NAME)}")
    chosen = [ROWS_BY_NAME[r] for r in rows]
    base = load_config(job, overrides)
    shared = _store(base)
    cells: dict[str, dict[str, Any]] = {r.name: {} for r in chosen}
    for seed in seeds:
        full_cfg = cell_config(job, overrides, ROWS_BY_NAME["full"], seed)
        full_store = _store(full_cfg)
        order = [ROWS_BY_NAME["full"], *(r for r in chosen if r.name != "full")]
        for row in order:
            cfg = cell_config(job, overrides, row, seed)
            store = _store(cfg)
            stages = stages_of(row)
            if stages:
                for st in SHARED_STAGES:
                    adopt_stage(shared, store, cfg, st)
                if row.name != "full":
                    for st in PER_SEED_STAGES:
                        adopt_stage(full_store, store, cfg, st)
                t0 = time.perf_counter()
                log.info("ablate: seed %d, row %s -> %s", seed, row.name, store.uri())
                manifest = run_pipeline(cfg, stages)
                for st in SHARED_STAGES:  # the first cell computes them; later cells copy
                    adopt_stage(store, shared, base, st)
                wall = time.perf_counter() - t0
                metrics = store.read_json(artifacts.METRICS)
                cell_walls = {n: s.get("wall_s") for n, s in manifest["stages"].items() if s["status"] == "ok"}
            else:
                metrics = full_store.read_json(artifacts.METRICS)
                wall, cell_walls = 0.0, {}
            if row.name in cells:
                m = metrics[row.model]
                cells[row.name][seed] = {"overall": m["overall"], "cold_start": m["cold_start"],
                                         "users": m["users"], "cold_start_users": m.get("cold_start_users"),
                                         "wall_s": round(wall, 1), "stage_wall_s": cell_walls,
                                         "run_dir": store.uri() if stages else full_store.uri()}
    summary = summarize(chosen, cells)
    shared.write_json("ablate/summary.json", {"seeds": seeds, "rows": summary, "cells": cells})
    shared.write_bytes("ablate/summary.md", summary_markdown(chosen, summary, seeds).encode())
    return {"rows": summary, "cells": cells}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(rows: list[Row], cells: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Mean and sample standard deviation over seeds of every metric, overall and cold-start."""
    out = {}
    for row in rows:
        runs = list(cells[row.name].values())
        out[row.name] = {"label": row.label, "seeds": len(runs),
                         "wall_s": _mean_std([r["wall_s"] for r in runs])}
        for part in ("overall", "cold_start"):
            out[row.name][part] = {k: _mean_std([r[part][k] for r in runs]) for k in runs[0][part]}
    return out


def summary_markdown(rows: list[Row], summary: dict[str, dict], seeds: list[int]) -> str:
    cols = [f"{m}@{k}" for k in KS for m in ("HR", "NDCG")]
    lines = [f"Mean +- std over seeds {seeds} (test split, full ranking).", "",
             "| row | part | " + " | ".join(cols) + " | wall s |", "|---|---|" + "---|" * (len(cols) + 1)]
    for row in rows:
        s = summary[row.name]
        for part in ("overall", "cold_start"):
            vals = " | ".join(f"{s[part][c]['mean']:.4f} +- {s[part][c]['std']:.4f}" for c in cols)
            wall = f"{s['wall_s']['mean']:.0f}" if part == "overall" else ""
            lines.append(f"| {row.label} | {part.replace('_', '-')} | {vals} | {wall} |")
    return "\n".join(lines) + "\n"


def _cmd_ablate(args: Any) -> int:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not seeds:
        raise ValueError("ablate: --seeds needs at least one seed")
    result = run_ablation(args.job, list(args.set), seeds, rows)
    print(summary_markdown([ROWS_BY_NAME[r] for r in rows], result["rows"], seeds))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ablate", help="the paper's ablation rows over several seeds, mean +- std (Table 4)")
    p.add_argument("job", help="job YAML (the full model's settings)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--rows", default=",".join(r.name for r in ROWS),
                   help=f"comma-separated rows (default all: {', '.join(r.name for r in ROWS)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=_cmd_ablate)
