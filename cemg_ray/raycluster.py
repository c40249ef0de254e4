"""Connecting to Ray: join the configured cluster or start a local one (token auth left on)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from cemg_ray.console import PROGRESS

if TYPE_CHECKING:
    from cemg_ray.config import RayConfig

log = logging.getLogger("cemg_ray")
progress = logging.getLogger(PROGRESS).info  # a console line (cemg_ray/console.py)

# runs in every worker of a local cluster this module starts (runtime_env's worker_process_setup_hook)
LOCAL_WORKER_HOOK = "cemg_ray.raycluster.set_up_local_worker"

# Ray Train's detached placement-group cleaner (Ray 2.60) logs this once a second when the State API is unreachable
CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
STATE_API_RETRY_WARNING = "Failed to query Ray Train Controller actor state"


class DropStateApiRetryWarning(logging.Filter):
    """Drop the cleaner's "State API unavailable" retry warning, and nothing else it logs.

    Why: a local cluster that ``cemg-ray`` starts runs without the dashboard, which serves the State API, so the
    cleaner can never ask whether the training's controller is alive and warned once a second through every
    training stage (108 lines in a 4-minute run). What the cleaner is for — removing a dead run's placement group —
    happens anyway there: the cluster ends with the ``cemg-ray`` process that started it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(STATE_API_RETRY_WARNING)


def pin_own_cluster_address() -> None:
    """Point a worker's ``RAY_ADDRESS`` at its own cluster.

    Why: Ray Train's detached placement-group cleaner finds the State API through ``RAY_ADDRESS`` or, without it,
    the host's clusters; with two local clusters on one host it fails ("Found multiple active Ray instances") or
    asks the other one, which can remove the training's placement group (docs/OPERATIONS.md).
    """
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def set_up_local_worker() -> None:
    """Every worker of a local cluster ``cemg-ray`` started: its own cluster's address, no State API retry spam."""
    pin_own_cluster_address()
    cleaner_log = logging.getLogger(CLEANER_LOGGER)
    if not any(isinstance(f, DropStateApiRetryWarning) for f in cleaner_log.filters):
        cleaner_log.addFilter(DropStateApiRetryWarning())


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
    if not address or address == "local":
        if ray_cfg.num_cpus is not None:
            kwargs["num_cpus"] = ray_cfg.num_cpus
        if ray_cfg.num_gpus is not None:
            kwargs["num_gpus"] = ray_cfg.num_gpus
        kwargs["runtime_env"] = {"worker_process_setup_hook": LOCAL_WORKER_HOOK}
    import ray.data  # noqa: F401 - imported here so that its progress bars are switched off with the rest

    from cemg_ray.console import capture_native_stderr, quiet_ray_libraries, route_worker_output

    quiet_ray_libraries()  # before and after init: Ray sets its loggers up when it is imported and again here
    capture_native_stderr()
    ray.init(**kwargs)
    quiet_ray_libraries()
    route_worker_output()
    res = ray.cluster_resources()
    joined = bool(address) and address != "local"
    progress("ray: %s %s (%s CPUs, %s GPUs)", "joined the cluster at" if joined else "started a local cluster at",
             ray.get_runtime_context().gcs_address, res.get("CPU", 0), res.get("GPU", 0))


class InfeasibleRequestError(ValueError):
    """A stage asks each worker for more than any alive node offers; Ray would wait for such a node forever."""


class WorkerGroupStartError(InfeasibleRequestError):
    """A request that fits a node but found no node with that much free within the bounded start attempts."""


def check_fits(stage: str, request: dict[str, float], what: str = "worker") -> None:
    """Fail at once when no alive node can hold one ``what`` of ``stage`` with ``request`` ({"CPU": 2, "GPU": 1}).

    Ray Train retries a worker group's start without limit and Ray Data waits for resources with no message, so a
    request no node can meet would hang the job; the message names the stage, the request and the largest node."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    wanted = {k: float(v) for k, v in request.items() if v}
    if not nodes or any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes):
        return
    largest = {k: max(node.get(k, 0.0) for node in nodes) for k in wanted}
    raise InfeasibleRequestError(
        f"stage {stage}: each {what} asks for {fmt_resources(wanted)}, but no node of the cluster has that much "
        f"(largest per resource: {fmt_resources(largest)}, {len(nodes)} node(s)); lower the request in the job "
        f"or add a larger node")


def fmt_resources(resources: dict[str, float]) -> str:
    """``{"CPU": 2.0, "GPU": 1.0}`` as ``2 CPU, 1 GPU`` for a message."""
    return ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items()))
