"""The one Ray Train harness of the trained stages (LightGCN, the generator, and through :func:`train_in_worker`
SASRec and the tokenizer): how a worker group starts, where its checkpoints live, when it reports them, and the
reductions its ranks agree through.

Each stage keeps only what is its own: the model, the loss, what a checkpoint holds and how it resumes from one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cemg_ray.store import Store

if TYPE_CHECKING:
    from ray.train import Result, RunConfig
    from ray.train.torch import TorchTrainer

# A worker group's start that timed out (Ray Train: RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S, 60 s by default) is tried
# this many more times, then the stage fails; Ray Train's own default is to retry without limit.
START_RETRIES = 2
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
# Ray Train's (internal) errors of a worker group that did not start: the ones its controller retries
START_FAILURES = ("WorkerGroupStartupTimeoutError", "WorkerGroupStartupFailedError")


def run_config(store: Store, rel: str, name: str, max_failures: int = 0, num_to_keep: int | None = 2,
               score_attribute: str | None = None, score_order: str = "max",
               start_retries: int = START_RETRIES) -> RunConfig:
    """A RunConfig whose storage is ``run_dir/<rel>``: a local folder or the S3 bucket of the run.

    Using the same ``name`` under the same storage makes Ray Train pick up the last checkpoint of
    an earlier attempt (a re-submitted job continues rather than restarts). A worker group that does not start
    is retried ``start_retries`` times (the controller's failure limit; only start failures count against it):
    Ray Train's default, no limit, left a job waiting forever with nothing said.
    """
    import ray.train

    if store.is_local:
        storage_path, filesystem = os.path.abspath(store.path(rel)), None
        os.makedirs(storage_path, exist_ok=True)
    else:
        storage_path, filesystem = store.path(rel), store.fs
    return ray.train.RunConfig(
        name=name,
        storage_path=storage_path,
        storage_filesystem=filesystem,
        failure_config=ray.train.FailureConfig(max_failures=max_failures, controller_failure_limit=start_retries),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=num_to_keep, checkpoint_score_attribute=score_attribute,
            checkpoint_score_order=score_order),
    )


class StageTrainer:
    """A stage's ``TorchTrainer`` whose ``fit`` turns a worker group that never started into a message.

    Why: a request that fits a node but never finds that much free at once (other actors hold it, the node went
    away) timed out and was retried without limit; after the bounded retries of :func:`run_config` the stage now
    fails with its name, the request and the cluster's free resources instead of Ray Train's controller error.
    """

    def __init__(self, stage: str, trainer: TorchTrainer, request: dict[str, float], num_workers: int,
                 attempts: int) -> None:
        self.stage, self.trainer, self.request = stage, trainer, request
        self.num_workers, self.attempts = num_workers, attempts

    def fit(self) -> Result:
        import ray
        from ray.train import ControllerError

        from cemg_ray.raycluster import WorkerGroupStartError, fmt_resources

        try:
            return self.trainer.fit()
        except ControllerError as exc:
            if type(exc.controller_failure).__name__ not in START_FAILURES:
                raise
            free = {k: v for k, v in ray.available_resources().items() if k in self.request}
            raise WorkerGroupStartError(
                f"stage {self.stage}: the worker group ({self.num_workers} worker(s), each asking for "
                f"{fmt_resources(self.request)}) did not start in {self.attempts} attempt(s) of "
                f"{os.environ.get(START_TIMEOUT_ENV, '60')} s ({START_TIMEOUT_ENV}); free now: "
                f"{fmt_resources(free) or 'nothing'}; free the resources, lower the request or add a node") from exc


def torch_trainer(stage: str, loop: Callable[[dict], None], loop_config: dict[str, Any], run_config: RunConfig,
                  num_workers: int = 1, use_gpu: bool = False, cpus_per_worker: float = 1.0) -> StageTrainer:
    """The one way a stage starts a worker group: its request checked against the cluster's nodes first (a request
    no node can meet fails at once with the stage's name, never waits), a start that cannot succeed bounded
    (:class:`StageTrainer`), gloo on CPUs, NCCL on GPUs."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from cemg_ray.raycluster import check_fits

    request = {"CPU": cpus_per_worker, "GPU": 1.0 if use_gpu else 0.0}
    check_fits(stage, request)
    trainer = TorchTrainer(
        loop, train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": cpus_per_worker}),
        run_config=run_config,
    )
    limit = getattr(run_config.failure_config, "controller_failure_limit", -1)
    return StageTrainer(stage, trainer, {k: v for k, v in request.items() if v}, num_workers,
                        attempts=limit + 1 if limit >= 0 else 0)


def worker_rank() -> tuple[int, int]:
    """(rank, world size) of this Ray Train worker."""
    import ray.train

    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def all_reduce(values: list[float], op: str = "sum") -> list[float]:
    """``values`` summed (or their maximum, ``op="max"``) over the worker group; unchanged outside one."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.tolist()


class CheckpointCadence:
    """When a worker group reports a checkpoint: after its last epoch, when asked to, or once ``every_s`` seconds
    have passed since the last one. Each ``ray.train.report`` costs about 2 s of synchronisation with the
    controller (measured on the demo: 30 LightGCN epochs of 0.03 s took 73 s with a report per epoch), so epochs
    travel in the checkpoint's history instead. Every rank gets the same answer: the report is collective."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.last = time.perf_counter()

    def due(self, last_epoch: bool = False, force: bool = False) -> bool:
        mine = last_epoch or force or time.perf_counter() - self.last >= self.every_s
        agreed = all_reduce([float(mine)], "max")[0] > 0
        if agreed:
            self.last = time.perf_counter()
        return agreed


def report(metrics: dict[str, Any], fill: Callable[[str], None] | None = None, attach: bool = True) -> None:
    """Report ``metrics`` with a checkpoint: ``fill(folder)`` writes this rank's part (on every rank that takes part
    in a collective save), ``attach`` says whether this rank's folder is handed to Ray Train."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        if fill is not None:
            fill(tmp)
        checkpoint = ray.train.Checkpoint.from_directory(tmp) if fill is not None and attach else None
        ray.train.report(metrics, checkpoint=checkpoint)


WORKER_TENSORS, WORKER_META = "tensors.safetensors", "meta.json"  # a one-worker hand-over's checkpoint files


def _one_worker_loop(config: dict[str, Any]) -> None:
    """Ray Train worker of :func:`train_in_worker`: call the named function and report what it returns."""
    import importlib

    import ray
    import torch
    from safetensors.torch import save_file

    if not config["use_gpu"]:
        torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    module, attr = config["function"].split(":")
    tensors, meta = getattr(importlib.import_module(module), attr)(**config["kwargs"])
    meta = {**meta, "worker": {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}}

    def fill(folder: str) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, os.path.join(folder, WORKER_TENSORS))
        with open(os.path.join(folder, WORKER_META), "w") as f:
            json.dump(meta, f)

    report({}, fill)


def train_in_worker(stage: str, function: str, kwargs: dict[str, Any], run_config: RunConfig,
                    cpus_per_worker: float = 1.0, use_gpu: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``function`` ("module:attr", called with ``kwargs``; it returns (tensors, JSON-able meta)) in one Ray
    Train worker with the stage's resources and hand back (tensors, meta): how a stage that trains a single-process
    model keeps its heavy work out of the driver. ``meta["worker"]`` says where it ran (pid, node)."""
    from safetensors.torch import load_file

    trainer = torch_trainer(stage, _one_worker_loop,
                            {"function": function, "kwargs": kwargs, "cpus_per_worker": cpus_per_worker,
                             "use_gpu": use_gpu},
                            run_config, num_workers=1, use_gpu=use_gpu, cpus_per_worker=cpus_per_worker)
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"stage {stage}: its worker reported no result ({result.error})")
    with result.checkpoint.as_directory() as d:
        tensors = load_file(os.path.join(d, WORKER_TENSORS))
        meta = json.loads(open(os.path.join(d, WORKER_META)).read())
    return tensors, meta
