"""Config of the generator (T5 / decoder-only) training and constrained decoding."""

from __future__ import annotations

from typing import Literal

from cemg_ray.configbase import Section


class TrainConfig(Section):
    backbone: Literal["t5", "decoder"] = "t5"
    pretrained: str | None = None  # hub id or local path; None builds from config (from scratch)
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 6
    d_ff: int = 1024
    dropout: float = 0.1
    lora: bool = False
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: int = 2
    offload: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    num_workers: int = 1
    use_gpu: bool = False
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    patience: int = 3
    seed: int = 0


class DecodeConfig(Section):
    num_beams: int = 20
    batch_size: int = 256
