"""Config of the baselines trained for comparison."""

from __future__ import annotations

from pydantic import Field

from cemg_ray.configbase import Section


class SASRecConfig(Section):
    dim: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    max_len: int = Field(50, ge=1)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
