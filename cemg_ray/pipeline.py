"""Stage registry, ordering, skip-if-done and the run manifest.

A stage is a plain function ``run(ctx) -> report`` registered with :func:`stage`. Its identity
is a hash of the dataset section, its own config sections and the hashes of the stages it
reads from; when ``_stages/<name>.json`` in the run directory carries the same hash and status
``ok``, the stage is skipped, so an interrupted job resumes where it stopped. A stage writes its
outputs under ``_staging/<stage>/`` while it runs (the last good ones stay readable); they are swapped in
and the marker is written last, which makes it the commit point.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from cemg_ray import artifacts
from cemg_ray.artifacts import read_marker
from cemg_ray.config import JobConfig
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")


@dataclass
class StageContext:
    """What a stage gets: the resolved config, the run directory and its upstream hashes."""

    cfg: JobConfig
    store: Store
    name: str = ""

    def ensure_ray(self) -> None:
        """Connect to the configured cluster, or start a local one, once per process."""
        from cemg_ray.raycluster import ensure_ray

        ensure_ray(self.cfg.ray)


@dataclass
class Stage:
    name: str
    run: Callable[[StageContext], dict[str, Any]]
    sections: tuple[str, ...] = ()
    after: tuple[str, ...] | Callable[[JobConfig], tuple[str, ...]] = ()
    doc: str = ""

    def deps(self, cfg: JobConfig) -> tuple[str, ...]:
        """Upstream stages; a callable ``after`` lets a stage depend on what its config asks for."""
        return tuple(self.after(cfg)) if callable(self.after) else self.after


# Pipeline order; the module named beside each stage registers it on import.
STAGE_MODULES: dict[str, str] = {
    "data": "cemg_ray.data.stage",
    "popularity": "cemg_ray.evaluate.stage",
    "sasrec": "cemg_ray.evaluate.stage",
    "features": "cemg_ray.features.stage",
    "pca": "cemg_ray.features.stage",
    "lightgcn": "cemg_ray.collab.stage",
    "tokenize": "cemg_ray.tokenize.stage",
    "train": "cemg_ray.generate.stage",
    "evaluate": "cemg_ray.evaluate.stage",
    "export": "cemg_ray.export.stage",
}

_REGISTRY: dict[str, Stage] = {}


def stage(name: str, sections: tuple[str, ...] = (),
          after: tuple[str, ...] | Callable[[JobConfig], tuple[str, ...]] = ()) -> Callable:
    """Register ``fn`` as the stage ``name``; ``sections`` are the config sections it depends on."""

    def deco(fn: Callable[[StageContext], dict[str, Any]]) -> Callable:
        if name not in STAGE_MODULES:
            raise ValueError(f"stage {name!r} is not in pipeline.STAGE_MODULES")
        _REGISTRY[name] = Stage(name, fn, tuple(sections), after, (fn.__doc__ or "").strip())
        return fn

    return deco


def get_stage(name: str) -> Stage:
    if name not in STAGE_MODULES:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_MODULES)}")
    if name not in _REGISTRY:
        importlib.import_module(STAGE_MODULES[name])
    return _REGISTRY[name]


def stage_hash(cfg: JobConfig, name: str, _memo: dict[str, str] | None = None) -> str:
    memo = {} if _memo is None else _memo
    if name in memo:
        return memo[name]
    st = get_stage(name)
    parts = [name, cfg.section_hash("dataset", *st.sections)]
    parts += [stage_hash(cfg, dep, memo) for dep in st.deps(cfg)]
    memo[name] = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return memo[name]


def stage_config(cfg: JobConfig, name: str) -> dict[str, Any]:
    """The resolved config sections a stage's hash covers (``dataset`` and its own), as JSON values."""
    return {s: getattr(cfg, s).model_dump(mode="json") for s in ("dataset", *get_stage(name).sections)}


def is_done(store: Store, cfg: JobConfig, name: str) -> bool:
    info = read_marker(store, name) or {}
    return info.get("status") == "ok" and info.get("hash") == stage_hash(cfg, name)


class StageMissingError(RuntimeError):
    """A stage needs the output of one that has not completed in this run directory for this config."""


def require(store: Store, cfg: JobConfig, name: str) -> None:
    """Fail with a clear message when a stage this one reads from has not completed."""
    if not is_done(store, cfg, name):
        raise StageMissingError(
            f"stage {name!r} has no completed output for this config in {store.root_uri}; "
            f"run it first: cemg-ray run JOB.yaml --stages {name}")


def _git_commit() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    names = ["cemg-ray", "ray", "torch", "transformers", "deepspeed", "torch-geometric", "pyarrow",
             "boto3", "peft", "pydantic", "numpy"]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def resolve_stages(cfg: JobConfig, requested: list[str] | None) -> list[str]:
    names = requested or cfg.stages or list(STAGE_MODULES)
    unknown = [n for n in names if n not in STAGE_MODULES]
    if unknown:
        raise KeyError(f"unknown stage(s) {', '.join(unknown)}; stages are: {', '.join(STAGE_MODULES)}")
    order = list(STAGE_MODULES)
    return sorted(dict.fromkeys(names), key=order.index)


MAX_PREVIOUS_CONFIGS = 10


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
    return store.staged(artifacts.STAGE_OUTPUTS[name], staging)


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
    for rel in artifacts.STAGE_OUTPUTS[name]:
        store.move(rel, f"{kept}/{rel}")
        store.move(f"{staging}/{rel}", rel)
    store.write_json(marker, marker_entry)
    store.delete(kept)
    store.delete(staging)
    for area in (artifacts.PREVIOUS, artifacts.STAGING):  # no empty folders left behind in the run directory
        if store.is_dir(area) and not store.list(area, recursive=True):
            store.delete(area)


def run_pipeline(cfg: JobConfig, stages: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Run the requested stages in pipeline order and return the run manifest."""
    store = Store.for_job(cfg)
    names = resolve_stages(cfg, stages)
    manifest: dict[str, Any] = {
        "job": cfg.name,
        "run_dir": store.root_uri,
        "config": cfg.model_dump(mode="json"),
        "versions": package_versions(),
        "git_commit": _git_commit(),
        "started": datetime.now(UTC).isoformat(),
        "stages": {},
    }
    if store.exists(artifacts.MANIFEST):  # a run of some stages keeps the record of the others
        try:
            before = artifacts.read_manifest(store)
            manifest["stages"] = dict(before.get("stages", {}))
            # ``config`` is this invocation's; each stage's record keeps the config sections its outputs were
            # made with, and the configs of earlier invocations stay listed (the last MAX_PREVIOUS_CONFIGS)
            previous = list(before.get("previous_configs", []))
            if before.get("config") is not None and before["config"] != manifest["config"]:
                previous.append({"started": before.get("started"), "git_commit": before.get("git_commit"),
                                 "config": before["config"]})
            if previous:
                manifest["previous_configs"] = previous[-MAX_PREVIOUS_CONFIGS:]
        except Exception:  # noqa: BLE001 - an unreadable manifest is replaced, never trusted
            log.warning("manifest.json in %s is unreadable; starting a new one", store.root_uri)
    for name in names:
        st = get_stage(name)
        h = stage_hash(cfg, name)
        if not force and is_done(store, cfg, name):
            log.info("stage %s: outputs exist for config %s, skipped", name, h)
            # the record of the run that produced the outputs stays: its wall time, report and config
            done = store.read_json(artifacts.stage_marker(name))
            manifest["stages"][name] = {**{k: v for k, v in done.items() if k != "status"}, "status": "skipped",
                                        "hash": h, "wall_s_now": 0.0}
            continue
        for dep in st.deps(cfg):  # declared once, in @stage(after=...), checked here for every stage
            require(store, cfg, dep)
        log.info("stage %s: running (config %s)", name, h)
        t0 = time.perf_counter()
        try:
            report = st.run(StageContext(cfg=cfg, store=staging_store(store, name, h), name=name)) or {}
        except BaseException as exc:
            if artifacts.read_marker(store, name):
                log.warning("stage %s failed; the outputs of its last good run are untouched", name)
            wall = time.perf_counter() - t0
            manifest["stages"][name] = {"status": "failed", "hash": h, "wall_s": round(wall, 3),
                                        "error": f"{type(exc).__name__}: {exc}"}
            artifacts.write_manifest(store, manifest)
            raise
        wall = time.perf_counter() - t0
        entry = {"status": "ok", "hash": h, "wall_s": round(wall, 3), "report": report,
                 "finished": datetime.now(UTC).isoformat(), "config": stage_config(cfg, name)}
        commit_staged(store, name, entry)
        manifest["stages"][name] = entry
        log.info("stage %s: ok in %.1fs", name, wall)
        artifacts.write_manifest(store, manifest)
    manifest["finished"] = datetime.now(UTC).isoformat()
    artifacts.write_manifest(store, manifest)
    return manifest

