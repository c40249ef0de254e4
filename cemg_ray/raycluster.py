"""Connecting to Ray: join the configured cluster or start a local one (token auth left on)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cemg_ray.config import RayConfig

log = logging.getLogger("cemg_ray")


def ensure_ray(ray_cfg: RayConfig) -> None:
    """Initialise Ray once per process. ``address=None`` starts a local cluster."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": True,
                    "include_dashboard": False}
    address = ray_cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        kwargs["address"] = address
    else:
        if ray_cfg.num_cpus is not None:
            kwargs["num_cpus"] = ray_cfg.num_cpus
        if ray_cfg.num_gpus is not None:
            kwargs["num_gpus"] = ray_cfg.num_gpus
    ray.init(**kwargs)
    res = ray.cluster_resources()
    log.info("ray: connected (%s CPUs, %s GPUs)", res.get("CPU", 0), res.get("GPU", 0))
