"""One Ray task per stage: how a stage whose work is a single process (no training loop, no checkpoints) keeps it out
of the driver, so that a head with ``num_cpus: 0`` can drive any job.

The task opens the run directory itself (``StageContext.worker_store``), writes its outputs there and hands back only
its JSON report, with the process and node it ran on. Ray retries a task whose node died (``max_retries``); the
stage's writes go to its staging view and are committed by the runner only when the stage succeeds, so a retry
overwrites a half-written output rather than mixing with it.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cemg_ray.stagekit import StageContext

log = logging.getLogger("cemg_ray")

# Ray's own default for tasks: a task whose worker or node died is run again this many times
NODE_LOSS_RETRIES = 3


def _call(function: str, store_kwargs: dict[str, Any], kwargs: dict[str, Any], threads: int) -> dict[str, Any]:
    """The task body: open the store, call ``function(store, **kwargs)``, say where it ran."""
    import ray
    import torch

    from cemg_ray.store import Store

    torch.set_num_threads(max(1, threads))
    module, attr = function.split(":")
    report = getattr(importlib.import_module(module), attr)(Store(**store_kwargs), **kwargs)
    return {**report, "worker": {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}}


def run_in_task(ctx: StageContext, function: str, kwargs: dict[str, Any], cpus: float = 1.0,
                memory_mb: int | None = None, gpus: float = 0.0) -> dict[str, Any]:
    """Run ``function`` ("module:attr", called as ``function(store, **kwargs)`` and returning a JSON-able report) in one
    Ray task with the stage's resources; return its report with ``report["worker"]`` = {pid, node_id}.

    A request no node can meet fails at once naming the stage (Ray would otherwise wait for such a node forever)."""
    import ray

    from cemg_ray.raycluster import check_fits

    ctx.ensure_ray()
    request = {"CPU": cpus, "GPU": gpus, "memory": float(memory_mb or 0) * 2**20}
    check_fits(ctx.name or function, request, what="task")
    options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": NODE_LOSS_RETRIES,
                               "name": f"{ctx.name or 'stage'}:{function.split(':')[1]}"}
    if memory_mb:
        options["memory"] = int(memory_mb) * 2**20
    task = ray.remote(_call).options(**options)
    try:
        return ray.get(task.remote(function, ctx.worker_store(), kwargs, max(1, int(cpus))))
    except ray.exceptions.RayTaskError as exc:
        # the task's own error (a bad input file, a wrong field) reaches the user as if raised here, with its
        # message and type, not behind the task's remote traceback (kept in the job log at debug level)
        log.debug("stage %s: its task failed:\n%s", ctx.name, exc)
        if isinstance(exc.cause, Exception):
            raise exc.cause from None
        raise
