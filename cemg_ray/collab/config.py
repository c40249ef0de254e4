"""Config of the LightGCN stage."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from cemg_ray.configbase import Section


class LightGCNConfig(Section):
    HASH_IGNORE: ClassVar[frozenset[str]] = frozenset({"checkpoint_every_s"})

    dim: int = Field(64, ge=1)
    num_layers: int = Field(3, ge=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(4096, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    seed: int = 0
    # a resumable checkpoint at most this often (and after the last epoch): an epoch on a small graph takes well
    # under a second, and a checkpoint per epoch costs more than the epoch itself
    checkpoint_every_s: float = Field(30.0, ge=0)
