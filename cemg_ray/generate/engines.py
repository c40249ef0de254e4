"""How one optimisation step, a checkpoint and a resume differ between DDP and DeepSpeed, in one place each.

``train_loop`` talks to an engine only: ``forward``, ``step(loss)``, ``save(folder, rank)``, ``load(folder)``,
``lr()``. DDP (through ``ray.train.torch.prepare_model``) clips gradients and steps the optimiser and the
scheduler itself and writes its checkpoint from rank 0; DeepSpeed owns the optimiser, the scheduler and
gradient clipping (``ds_config``) and every rank writes its own shard.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import torch

from cemg_ray.generate.config import TrainConfig

DDP_STATE = "train_state.pt"
DEEPSPEED_TAG = "ckpt"


class Engine(Protocol):
    module: torch.nn.Module  # the unwrapped model: validation, best-state copies, saving
    every_rank_writes: bool  # whether each rank writes checkpoint files (DeepSpeed shards) or rank 0 only

    def forward(self, **batch: torch.Tensor) -> Any: ...  # a transformers ModelOutput
    def step(self, loss: torch.Tensor) -> None: ...
    def save(self, folder: str, rank: int) -> None: ...
    def load(self, folder: str) -> None: ...
    def lr(self) -> float: ...
    def train(self) -> None: ...


def ds_config(cfg: TrainConfig) -> dict:
    zero: dict = {"stage": cfg.zero_stage}
    if cfg.offload and cfg.zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.use_gpu}
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.precision == "bf16"},
        "fp16": {"enabled": cfg.precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }


class DDPEngine:
    every_rank_writes = False

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, grad_clip: float):
        import ray.train.torch

        self.wrapped = ray.train.torch.prepare_model(model)
        self.module = self.wrapped.module if hasattr(self.wrapped, "module") else self.wrapped
        self.opt, self.sched, self.grad_clip = opt, sched, grad_clip
        self.params = [p for p in self.module.parameters() if p.requires_grad]

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.wrapped(**batch)

    def step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        self.sched.step()

    def save(self, folder: str, rank: int) -> None:
        if rank == 0:
            torch.save({"model": self.module.state_dict(), "opt": self.opt.state_dict(),
                        "sched": self.sched.state_dict()}, os.path.join(folder, DDP_STATE))

    def load(self, folder: str) -> None:
        saved = torch.load(os.path.join(folder, DDP_STATE), weights_only=True)
        self.module.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["opt"])
        self.sched.load_state_dict(saved["sched"])

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def train(self) -> None:
        self.wrapped.train()


class DeepSpeedEngine:
    every_rank_writes = True

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, cfg: TrainConfig):
        import deepspeed

        self.engine, _, _, self.sched = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                                             config=ds_config(cfg))
        self.module = self.engine.module

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.engine(**batch)

    def step(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)
        self.engine.step()  # optimiser, scheduler and gradient clipping (ds_config) in one call

    def save(self, folder: str, rank: int) -> None:  # noqa: ARG002 - every rank writes its shard
        self.engine.save_checkpoint(folder, tag=DEEPSPEED_TAG)

    def load(self, folder: str) -> None:
        self.engine.load_checkpoint(folder, tag=DEEPSPEED_TAG)

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def train(self) -> None:
        self.engine.train()


def make_engine(cfg: TrainConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any) -> Engine:
    if cfg.strategy == "deepspeed":
        return DeepSpeedEngine(model, opt, sched, cfg)
    return DDPEngine(model, opt, sched, cfg.grad_clip)
