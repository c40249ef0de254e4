"""Bulk export: top-K recommendations for every user, decoded on a Ray Data actor pool.

Each actor loads the model once and decodes batches of users; rows (user_id, rank, item_id,
score, model_version) are staged as Parquet and committed atomically under
``<output>/dt=YYYY-MM-DD/`` (see :mod:`cemg_ray.export.commit`). The model reads the last
``dataset.max_len`` items of a user's whole known sequence and recommends what comes next; with
``exclude_seen`` nothing anywhere in that sequence is recommended again.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from cemg_ray.artifacts import read_sequences
from cemg_ray.config import JobConfig
from cemg_ray.export.commit import STAGING, commit, committed_manifest
from cemg_ray.recommenders import (
    FALLBACK_MODEL,
    default_model,
    model_stage,
    model_version,
)
from cemg_ray.stagekit import StageContext, require
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

OUTPUT_SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                           ("score", pa.float32()), ("model_version", pa.string())])


class ExportDecoder:
    """Ray Data actor around the one predictor that serving and the Python API use (:class:`cemg_ray.api.Run`):
    loaded once per actor, it ranks batches of users with ``Run.rank``, the same method a serving replica calls."""

    def __init__(self, cfg_json: dict[str, Any], run_dir: str):
        from cemg_ray.api import Run

        cfg = JobConfig.model_validate(cfg_json)
        store = Store(run_dir, cfg.storage.endpoint_url, cfg.storage.region)
        self.run = Run(store, cfg.export.model, cfg=cfg)
        self.k, self.exclude_seen = cfg.export.k, cfg.export.exclude_seen
        self.version = self.run.model_version

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sequences = [np.asarray(h, dtype=np.int64) for h in batch["items"]]
        n = len(sequences)
        ranked = self.run.rank(sequences, [self.k] * n, [self.exclude_seen] * n)
        users, ranks, out_items, out_scores = [], [], [], []
        for uid, row in zip(batch["user_id"], ranked):
            for rank, (item, score) in enumerate(row, start=1):
                users.append(uid)
                ranks.append(rank)
                out_items.append(item)
                out_scores.append(score)
        return {"user_id": np.asarray(users, dtype=object), "rank": np.asarray(ranks, dtype=np.int32),
                "item_id": np.asarray(out_items, dtype=object), "score": np.asarray(out_scores, dtype=np.float32),
                "model_version": np.asarray([self.version] * len(users), dtype=object)}


def export_target(cfg: JobConfig, run_store: Store) -> tuple[Store, str]:
    out = cfg.export.output or run_store.uri("export")
    date = cfg.export.date or datetime.now(UTC).strftime("%Y-%m-%d")  # ExportConfig validated the format
    return Store(out, cfg.storage.endpoint_url, cfg.storage.region), f"dt={date}"


def run_export(cfg: JobConfig, run_store: Store) -> dict:
    """Export every user's top-K; a partition already committed for the same model version is kept."""
    import ray.data

    from cemg_ray.raycluster import check_fits, ensure_ray

    if cfg.export.model is None:  # the run's default list: resolved once, so every actor loads the same one
        cfg = cfg.model_copy(update={"export": cfg.export.model_copy(update={"model": default_model(run_store)})})
    ecfg = cfg.export
    out, partition = export_target(cfg, run_store)
    version = model_version(ecfg.model, run_store, cfg)
    done = committed_manifest(out, partition)
    if (done and not ecfg.force and done.get("model") == ecfg.model and done.get("model_version") == version
            and done.get("k") == ecfg.k):
        log.info("export: %s/%s already committed for %s; nothing to do", out.root_uri, partition, version)
        return {**done, "skipped": True}
    ensure_ray(cfg.ray)
    t0 = time.perf_counter()
    users = read_sequences(run_store, ["user_id", "items"])
    attempt = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    out.delete(f"{partition}/{STAGING}")  # leftovers of killed attempts
    blocks = ecfg.num_blocks or max(4 * ecfg.num_actors, 1)
    cfg_json = cfg.model_dump(mode="json")
    root = os.path.abspath(run_store.root_uri) if run_store.is_local else run_store.root_uri
    check_fits("export", {"CPU": ecfg.cpus_per_actor, "GPU": ecfg.gpus_per_actor or 0.0}, what="decoder actor")
    ds = ray.data.from_arrow(users).repartition(blocks)
    ds = ds.map_batches(ExportDecoder, fn_constructor_kwargs={"cfg_json": cfg_json, "run_dir": root},
                        batch_size=ecfg.batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=ecfg.num_actors), num_cpus=ecfg.cpus_per_actor,
                        num_gpus=ecfg.gpus_per_actor or None)
    staging = out.path(f"{partition}/{STAGING}/{attempt}")
    ds.write_parquet(staging, filesystem=out.fs, schema=OUTPUT_SCHEMA)
    rows = pads.dataset(staging, filesystem=out.fs, format="parquet").count_rows()  # from the files' footers
    wall = time.perf_counter() - t0
    # a user whose top-(k + history) held fewer than k unseen real items gets a shorter list: counted, not hidden
    missing = users.num_rows * ecfg.k - rows
    if missing:
        log.warning("export: %d rows short of %d users x k=%d (short lists after excluding seen items)",
                    missing, users.num_rows, ecfg.k)
    manifest = {"model": ecfg.model, "model_version": version, "k": ecfg.k, "users": users.num_rows, "rows": rows,
                "rows_missing": missing,
                "run_dir": run_store.root_uri, "partition": out.uri(partition), "attempt": attempt,
                "wall_s": round(wall, 2), "users_per_s": round(users.num_rows / max(wall, 1e-9), 1),
                "finished": datetime.now(UTC).isoformat()}
    manifest["files"] = commit(out, partition, attempt, manifest)
    log.info("export: %d users, %d rows -> %s (%.1f users/s)", users.num_rows, rows, out.uri(partition),
             manifest["users_per_s"])
    return manifest


def upstream(cfg: JobConfig) -> tuple[str, ...]:
    return ("data", model_stage(cfg.export.model or FALLBACK_MODEL, "export.model"))


def check_inputs(cfg: JobConfig, store: Store) -> None:
    """Fail before any work when the exported model or the data are not in the run directory."""
    for dep in upstream(cfg):
        require(store, cfg, dep)


def run(ctx: StageContext) -> dict:
    """Write every user's top-K under <output>/dt=YYYY-MM-DD/ with _SUCCESS last."""
    check_inputs(ctx.cfg, ctx.store)
    return run_export(ctx.cfg, ctx.store)
