"""The promote-or-keep rule, and the files serving reads, changed only on promotion.

Serving loads a run directory named by its ``user_config.run_dir`` and reloads when that changes (``serve deploy``
with a new value: each replica loads the new version beside the old one, then swaps; ``serve_app/app.py``). A
promotion therefore (1) exports the new version's lists when asked, (2) writes the Serve config whose
``run_dir`` is the new version (``refresh.serve_config``, from ``refresh.serve_template``), and (3) last, the marker
``<root>/serving.json`` naming the version being served, which the next refresh starts from. A rejection writes none
of them: only its own version folder, with the report that says why.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from cemg_ray.store import Store

MARKER = "serving.json"
MODEL_DEPLOYMENT = "ModelReplica"


@dataclass
class Decision:
    promote: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason}


def decide(previous: float, refreshed: float, metric: str, margin: float, users: int) -> Decision:
    """Promote when ``refreshed >= previous - margin`` on a holdout that has users; else keep the previous."""
    if users == 0:
        return Decision(False, f"the holdout has no users: nothing to judge the refreshed model on ({metric})")
    floor = previous - margin
    figures = (f"{metric} refreshed {refreshed:.4f} vs previous {previous:.4f} on {users} holdout users; "
               f"margin {margin:g}, so the floor is {floor:.4f}")
    if refreshed >= floor:
        return Decision(True, f"promoted: {figures}")
    return Decision(False, f"kept the previous version: the refreshed model is worse by {previous - refreshed:.4f}, "
                           f"more than the margin ({figures})")


def read_marker(root: Store) -> dict[str, Any] | None:
    """The version serving reads (``<root>/serving.json``), or None before the first promotion."""
    return root.read_json(MARKER) if root.exists(MARKER) else None


def write_marker(root: Store, run_dir: str, version: str, model_version: str, previous: str, reason: str) -> None:
    root.write_json(MARKER, {"run_dir": run_dir, "version": version, "model_version": model_version,
                             "previous_run_dir": previous, "promoted_at": datetime.now(UTC).isoformat(),
                             "reason": reason})


def check_template(template: str) -> None:
    """Fail before any work when the Serve config template has no ModelReplica user_config to point."""
    _point(_load(template), "x", template)


def _load(path: str) -> dict[str, Any]:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"refresh.serve_template: cannot read {path}: {exc}") from None


def _point(conf: dict[str, Any], run_dir: str, where: str) -> dict[str, Any]:
    found = 0
    for app in conf.get("applications") or []:
        for dep in app.get("deployments") or []:
            if dep.get("name") == MODEL_DEPLOYMENT and isinstance(dep.get("user_config"), dict):
                dep["user_config"]["run_dir"] = run_dir
                found += 1
    if not found:
        raise ValueError(f"refresh.serve_template: {where} has no applications[].deployments[] named "
                         f"{MODEL_DEPLOYMENT} with a user_config")
    return conf


def write_serve_config(template: str, out: str, run_dir: str) -> None:
    """``template`` with the model deployment's ``user_config.run_dir`` set to ``run_dir``, written atomically to
    ``out`` (``serve deploy out`` then changes only ``user_config``: Serve reconfigures the running replicas)."""
    conf = _point(_load(template), run_dir, template)
    header = (f"# written by cemg-ray refresh on {datetime.now(UTC).isoformat(timespec='seconds')} from {template};\n"
              f"# apply with: serve deploy {out}\n")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(header + yaml.safe_dump(conf, sort_keys=False))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
