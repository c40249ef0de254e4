"""The run directory's ``manifest.json``: what each invocation ran, with which config, code and packages.

Kept out of the runner: a run of some stages keeps the record of the others, each stage's record keeps the
config sections its outputs were made with, and the configs of earlier invocations stay listed.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from cemg_ray import artifacts
from cemg_ray.config import JobConfig
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")

MAX_PREVIOUS_CONFIGS = 10


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


class RunManifest:
    """This invocation's manifest, merged with the run directory's earlier one and written after every stage."""

    def __init__(self, store: Store, cfg: JobConfig) -> None:
        self.store = store
        self.data: dict[str, Any] = {
            "job": cfg.name,
            "run_dir": store.root_uri,
            "config": cfg.model_dump(mode="json"),
            "versions": package_versions(),
            "git_commit": _git_commit(),
            "started": datetime.now(UTC).isoformat(),
            "stages": {},
        }
        if store.exists(artifacts.MANIFEST):
            self._merge_earlier()

    def _merge_earlier(self) -> None:
        try:
            before = artifacts.read_manifest(self.store)
        except Exception:  # noqa: BLE001 - an unreadable manifest is replaced, never trusted
            log.warning("manifest.json in %s is unreadable; starting a new one", self.store.root_uri)
            return
        self.data["stages"] = dict(before.get("stages", {}))
        previous = list(before.get("previous_configs", []))
        if before.get("config") is not None and before["config"] != self.data["config"]:
            previous.append({"started": before.get("started"), "git_commit": before.get("git_commit"),
                             "config": before["config"]})
        if previous:
            self.data["previous_configs"] = previous[-MAX_PREVIOUS_CONFIGS:]

    def skipped(self, name: str, config_hash: str, marker: dict[str, Any]) -> None:
        """The record of the run that produced the outputs stays: its wall time, report and config."""
        self.data["stages"][name] = {**{k: v for k, v in marker.items() if k != "status"}, "status": "skipped",
                                     "hash": config_hash, "wall_s_now": 0.0}

    def failed(self, name: str, config_hash: str, wall: float, exc: BaseException) -> None:
        self.data["stages"][name] = {"status": "failed", "hash": config_hash, "wall_s": round(wall, 3),
                                     "error": f"{type(exc).__name__}: {exc}"}
        self.write()

    def ok(self, name: str, entry: dict[str, Any]) -> None:
        self.data["stages"][name] = entry
        self.write()

    def finish(self) -> dict[str, Any]:
        self.data["finished"] = datetime.now(UTC).isoformat()
        self.write()
        return self.data

    def write(self) -> None:
        artifacts.write_manifest(self.store, self.data)
