"""Config of the LightGCN stage."""

from __future__ import annotations

from cemg_ray.configbase import Section


class LightGCNConfig(Section):
    dim: int = 64
    num_layers: int = 3
    epochs: int = 20
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 1e-4
    num_workers: int = 1
    use_gpu: bool = False
    seed: int = 0
