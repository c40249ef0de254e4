"""What a stage's function needs from the pipeline, and no more: its context, the identity of a stage's outputs
(config hashes) and ``require`` for the stages it reads. The runner (``cemg_ray/pipeline.py``) sits above this."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from cemg_ray.artifacts import read_marker
from cemg_ray.config import JobConfig
from cemg_ray.stages import spec
from cemg_ray.store import Store


@dataclass
class StageContext:
    """What a stage gets: the resolved config, the run directory (its staging view) and its name."""

    cfg: JobConfig
    store: Store
    name: str = ""

    def ensure_ray(self) -> None:
        """Connect to the configured cluster, or start a local one, once per process."""
        from cemg_ray.raycluster import ensure_ray

        ensure_ray(self.cfg.ray)

    def worker_store(self) -> dict[str, Any]:
        """``Store(**ctx.worker_store())`` opens this stage's view of the run directory in a Ray worker: an absolute
        root (a worker's working directory differs from the driver's) and the staging redirect."""
        store = self.store
        root = os.path.abspath(store.root_uri) if store.is_local else store.root_uri
        return {"root": root, "endpoint_url": self.cfg.storage.endpoint_url, "region": self.cfg.storage.region,
                "redirect": store.redirect or {}}


def stage_hash(cfg: JobConfig, name: str, _memo: dict[str, str] | None = None) -> str:
    """A stage's identity: the dataset section, its own sections and the hashes of the stages it reads."""
    memo = {} if _memo is None else _memo
    if name in memo:
        return memo[name]
    st = spec(name)
    parts = [name, cfg.section_hash("dataset", *st.sections)]
    parts += [stage_hash(cfg, dep, memo) for dep in st.deps(cfg)]
    memo[name] = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return memo[name]


def stage_config(cfg: JobConfig, name: str) -> dict[str, Any]:
    """The resolved config sections a stage's hash covers (``dataset`` and its own), as JSON values."""
    return {s: getattr(cfg, s).model_dump(mode="json") for s in ("dataset", *spec(name).sections)}


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
