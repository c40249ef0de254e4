"""Config of the baselines trained for comparison."""

from __future__ import annotations

from cemg_ray.configbase import Section


class SASRecConfig(Section):
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
