"""Config of the LightGCN stage."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from cemg_ray.configbase import Section


class LightGCNConfig(Section):
    HASH_IGNORE: ClassVar[frozenset[str]] = frozenset({"checkpoint_every_s"})
    # added after run directories existed: at its default it leaves their stage hash as it was
    HASH_OMIT_WHEN_DEFAULT: ClassVar[frozenset[str]] = frozenset({"sanity_users"})

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
    # the report's validation Recall/NDCG@20 ranks every item for at most this many users (a seeded sample of them
    # above it; the report says how many): its cost grows as users x items. 25,000 covers every user of the demo and
    # of Amazon Beauty (22,363); on a 25,000-user sample a Recall@20 near 0.1 has a standard error of 0.002
    sanity_users: int = Field(25_000, ge=1)
