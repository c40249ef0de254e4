"""Config of the baselines trained for comparison."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from cemg_ray.configbase import Section


class SASRecConfig(Section):
    """The field's SASRec recipe (docs/EXPERIMENTS.md "SASRec"): d 64, 2 blocks, dropout 0.5 on hidden states
    and attention, Adam without weight decay, batch 256, histories up to 50 items, early stopping on
    validation NDCG@10."""

    HASH_OMIT_WHEN_DEFAULT: ClassVar[frozenset[str]] = frozenset({"cpus_per_worker", "use_gpu"})

    dim: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    max_len: int = Field(50, ge=1)
    epochs: int = Field(200, ge=1)  # at most: early stopping on validation NDCG@10 ends training
    patience: int = Field(10, ge=1)  # epochs without a better validation NDCG@10 before stopping
    valid_users: int | None = Field(None, ge=1)  # users scored after each epoch (None: every user)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    # the Ray Train worker it trains in (the driver only reads its weights back): CPUs (also its torch threads),
    # or a GPU
    cpus_per_worker: float = Field(2.0, gt=0)
    use_gpu: bool = False
