"""Ray Train plumbing shared by the trained stages: where checkpoints live and how runs resume."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cemg_ray.store import Store

if TYPE_CHECKING:
    from ray.train import RunConfig


def run_config(store: Store, rel: str, name: str, max_failures: int = 0, num_to_keep: int | None = 2,
               score_attribute: str | None = None, score_order: str = "max") -> RunConfig:
    """A RunConfig whose storage is ``run_dir/<rel>``: a local folder or the S3 bucket of the run.

    Using the same ``name`` under the same storage makes Ray Train pick up the last checkpoint of
    an earlier attempt (a re-submitted job continues rather than restarts).
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
        failure_config=ray.train.FailureConfig(max_failures=max_failures),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=num_to_keep, checkpoint_score_attribute=score_attribute,
            checkpoint_score_order=score_order),
    )
