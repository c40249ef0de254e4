"""Check Serve configs before deploying: ``python -m serve_app.config_check serve_app/config.yaml [rayservice.yaml]``.

Ray Serve's own schema accepts unknown keys silently (a misspelt ``max_replica`` just does nothing),
so every key is checked against the schema's fields, the import path is imported and each
``user_config`` is validated the way the deployment's ``reconfigure`` will validate it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from pydantic import BaseModel


def _unknown(where: str, data: dict, model: type[BaseModel]) -> list[str]:
    names = set()
    for name, f in model.model_fields.items():
        names |= {name, f.alias or name}
    return [f"{where}.{k}: unknown key (Ray Serve would ignore it)" for k in data if k not in names]


def check_serve_config(conf: dict) -> list[str]:
    """Every problem found in a Serve config (as loaded from YAML); empty when it is deployable."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    from serve_app.app import validate_user_config

    try:
        ServeDeploySchema.model_validate(conf)
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the field
        return [f"not a valid Serve config: {exc}"]
    problems = _unknown("<root>", conf, ServeDeploySchema)
    problems += _unknown("http_options", conf.get("http_options") or {}, HTTPOptionsSchema)
    for a, app in enumerate(conf["applications"]):
        where = f"applications[{a}]"
        problems += _unknown(where, app, ServeApplicationSchema)
        module, _, attr = app["import_path"].partition(":")
        try:
            if not hasattr(importlib.import_module(module), attr):
                problems.append(f"{where}.import_path: {module} has no attribute {attr!r}")
        except ImportError as exc:
            problems.append(f"{where}.import_path: cannot import {module}: {exc}")
        for d, dep in enumerate(app.get("deployments") or []):
            dwhere = f"{where}.deployments[{d}]"
            problems += _unknown(dwhere, dep, DeploymentSchema)
            auto = dep.get("autoscaling_config") or {}
            problems += _unknown(f"{dwhere}.autoscaling_config", auto, AutoscalingConfig)
            if auto and auto.get("min_replicas", 1) > auto.get("max_replicas", 1):
                problems.append(f"{dwhere}.autoscaling_config: min_replicas > max_replicas")
            problems += _unknown(f"{dwhere}.ray_actor_options", dep.get("ray_actor_options") or {},
                                 RayActorOptionsSchema)
            if "user_config" in dep:
                try:
                    validate_user_config(dep["user_config"])
                except ValueError as exc:
                    problems.append(f"{dwhere}.{exc}")
    return problems


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    bad = 0
    for path in paths or ["serve_app/config.yaml"]:
        conf = yaml.safe_load(Path(path).read_text())
        if isinstance(conf, dict) and conf.get("kind") == "RayService":  # a KubeRay manifest: its embedded config
            embedded = (conf.get("spec") or {}).get("serveConfigV2")
            conf = yaml.safe_load(embedded) if isinstance(embedded, str) else None
            if conf is None:
                print(f"{path}: spec.serveConfigV2: missing or not a YAML string")
                bad += 1
                continue
        problems = check_serve_config(conf) if isinstance(conf, dict) else ["not a mapping"]
        bad += bool(problems)
        print(f"{path}: " + ("ok" if not problems else "\n  " + "\n  ".join(problems)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
