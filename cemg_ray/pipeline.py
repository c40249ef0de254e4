"""The runner: the requested stages in pipeline order, skip-if-done, staging and the commit of each stage.

Stages are declared in ``cemg_ray/stages.py`` (the table this runner reads) and written against the kit of
``cemg_ray/stagekit.py``. A stage's identity is a hash of the dataset section, its own config sections and the
hashes of the stages it reads from; when ``_stages/<name>.json`` in the run directory carries the same hash and
status ``ok``, the stage is skipped, so an interrupted job resumes where it stopped. A stage writes its outputs
under ``_staging/<stage>/`` while it runs (the last good ones stay readable); they are swapped in and the marker
is written last, which makes it the commit point. The manifest's bookkeeping is ``cemg_ray/run_manifest.py``'s.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from cemg_ray import artifacts
from cemg_ray.config import JobConfig
from cemg_ray.console import PROGRESS, STAGE_NOTE
from cemg_ray.driver_usage import DriverUsage
from cemg_ray.run_manifest import RunManifest
from cemg_ray.stagekit import StageContext, is_done, require, stage_config, stage_hash
from cemg_ray.stages import STAGES, outputs, spec
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")
progress = logging.getLogger(PROGRESS).info


def resolve_stages(cfg: JobConfig, requested: list[str] | None) -> list[str]:
    names = requested or cfg.stages or list(STAGES)
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise KeyError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(STAGES)}")
    order = list(STAGES)
    return sorted(dict.fromkeys(names), key=order.index)


def staging_store(store: Store, name: str, config_hash: str) -> Store:
    """The view a stage runs against: its outputs written under ``_staging/<stage>/`` until they commit.

    A staging area left by an attempt with the same config is kept, so a killed run resumes from its
    checkpoints there; one left by another config is cleared first.
    """
    staging = f"{artifacts.STAGING}/{name}"
    stamp = f"{staging}/{artifacts.STAGING_HASH}"
    if store.exists(staging) and (not store.exists(stamp) or store.read_text(stamp) != config_hash):
        store.delete(staging)
    store.write_text(stamp, config_hash)
    return store.staged(outputs(name), staging)


def commit_staged(store: Store, name: str, marker_entry: dict[str, Any]) -> None:
    """Swap a stage's staged outputs in for the last good ones, then write its marker (the commit point).

    The old marker goes first, so no marker ever stands beside outputs it did not describe; the old outputs
    move to ``_previous/<stage>/`` and are deleted once the new marker is written. Locally each step is one
    rename (readers wait milliseconds, not the stage's run); on S3 a move is a copy then a delete.
    """
    staging, kept = f"{artifacts.STAGING}/{name}", f"{artifacts.PREVIOUS}/{name}"
    marker = artifacts.stage_marker(name)
    store.delete(kept)
    store.move(marker, f"{kept}/{marker}")
    for rel in outputs(name):
        store.move(rel, f"{kept}/{rel}")
        store.move(f"{staging}/{rel}", rel)
    store.write_json(marker, marker_entry)
    store.delete(kept)
    store.delete(staging)
    for area in (artifacts.PREVIOUS, artifacts.STAGING):  # no empty folders left behind in the run directory
        if store.is_dir(area) and not store.list(area, recursive=True):
            store.delete(area)


def run_stage(cfg: JobConfig, store: Store, name: str, config_hash: str,
              usage: DriverUsage | None = None) -> tuple[dict[str, Any], float]:
    """Run one stage against its staging view: (its report, wall seconds); ``usage`` records what it cost the
    driver process (CPU seconds, peak memory)."""
    log.info("stage %s: running (config %s)", name, config_hash)
    t0 = time.perf_counter()
    with usage or DriverUsage():
        report = spec(name).run()(StageContext(cfg=cfg, store=staging_store(store, name, config_hash), name=name))
    return report or {}, time.perf_counter() - t0


def run_pipeline(cfg: JobConfig, stages: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Run the requested stages in pipeline order and return the run manifest."""
    store = Store.for_job(cfg)
    names = resolve_stages(cfg, stages)
    manifest = RunManifest(store, cfg)
    for name in names:
        h = stage_hash(cfg, name)
        if not force and is_done(store, cfg, name):
            progress("stage %-10s skipped (outputs exist for config %s)", name, h)
            manifest.skipped(name, h, store.read_json(artifacts.stage_marker(name)))
            continue
        for dep in spec(name).deps(cfg):  # declared once, in the stage table, checked here for every stage
            require(store, cfg, dep)
        t0 = time.perf_counter()
        usage = DriverUsage()
        try:
            report, wall = run_stage(cfg, store, name, h, usage)
        except BaseException as exc:
            wall = time.perf_counter() - t0
            if artifacts.read_marker(store, name):
                log.warning("stage %s failed; the outputs of its last good run are untouched", name)
            log.error("stage %-10s failed after %.1fs", name, wall)
            manifest.failed(name, h, wall, exc)
            if isinstance(exc, OSError):  # what was being done, for an OS error that may name no path (cli.py)
                exc.add_note(f"{STAGE_NOTE}{name} (run directory {store.uri()})")
            raise
        entry = {"status": "ok", "hash": h, "wall_s": round(wall, 3), "driver": usage.as_entry(), "report": report,
                 "finished": datetime.now(UTC).isoformat(), "config": stage_config(cfg, name)}
        commit_staged(store, name, entry)
        manifest.ok(name, entry)
        progress("stage %-10s ok in %.1fs", name, wall)
    return manifest.finish()
