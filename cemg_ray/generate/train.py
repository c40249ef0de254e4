"""Generator training on Ray Train: DDP or DeepSpeed ZeRO, checkpoints, resume, early stopping.

Checkpoints are reported through the shared harness (``cemg_ray.raytrain``: after the last epoch and at most
every ``train.checkpoint_every_s``); Ray Train restarts a failed worker group from the latest one
(``FailureConfig``), and a re-submitted job with the same run name and storage continues from it too. Model
selection is on validation NDCG@10 (``train.valid_list``: the constrained beam search serving runs, or the dense
head's ranking), on a fixed sample of users.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cemg_ray import artifacts
from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.engines import Engine, make_engine
from cemg_ray.generate.family import GeneratorFamily, family_for
from cemg_ray.generate.tokens import TokenLayout
from cemg_ray.raytrain import CheckpointCadence, all_reduce, report, torch_trainer, worker_rank
from cemg_ray.tokenize.codes import load_codes

if TYPE_CHECKING:
    from collections.abc import Callable

    from ray.train import Checkpoint, Result, RunConfig

    from cemg_ray.generate.prefix_index import PrefixIndex

log = logging.getLogger("cemg_ray")

STATE_FILE = "trainer_state.json"
BEST_FILE = "best_model.safetensors"


def ndcg_hr_at(items: np.ndarray, targets: np.ndarray, k: int) -> tuple[float, float]:
    """Sums (not means) of NDCG@k and HR@k: callers add them across workers."""
    hit = items[:, :k] == targets[:, None]
    ranks = np.where(hit.any(1), hit.argmax(1), -1)
    found = ranks >= 0
    return float((1.0 / np.log2(ranks[found] + 2)).sum()), float(found.sum())


def validate(model: torch.nn.Module, family: GeneratorFamily, data: dict[str, np.ndarray], index: PrefixIndex,
             beams: int, batch: int = 128, valid_list: str = "beam") -> tuple[float, float]:
    """Sums of validation NDCG@10 and HR@10 with the constrained beam search that serving runs (or, with
    ``valid_list="dense"``, the item-level generator's dense ranking of the whole catalog)."""
    model.eval()
    nd, hr = 0.0, 0.0
    for s in range(0, len(data["target_item"]), batch):
        rows = {key: value[s:s + batch] for key, value in data.items()}
        items = family.top_k(model, rows, index, beams, 10, valid_list)
        a, b = ndcg_hr_at(items, rows["target_item"], 10)
        nd, hr = nd + a, hr + b
    model.train()
    return nd, hr


def budget_schedule(warmup_steps: int, budget_s: float, clock: dict) -> Callable[[int], float]:
    """Linear warm-up in steps, then cosine decay over the wall-clock budget (``clock['train_s']`` / budget).

    A step-based cosine needs the number of steps in advance; under a time budget that number depends on
    the machine, so the decay follows training seconds instead and reaches zero when the budget ends.
    """

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(warmup_steps, 1))
        frac = min(1.0, clock["train_s"] / budget_s)
        return warm * 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor


def _schedule(cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int,
              clock: dict) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine over the step budget, or over the wall-clock budget (``train.max_train_s``)."""
    from transformers import get_cosine_schedule_with_warmup

    if cfg.max_train_s is None:
        return get_cosine_schedule_with_warmup(opt, min(cfg.warmup_steps, total_steps // 2), total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, budget_schedule(cfg.warmup_steps, cfg.max_train_s, clock))


def _resume(engine: Engine, checkpoint: Checkpoint, rank: int) -> tuple[dict | None, dict | None]:
    """(trainer state, best weights) from a Ray Train checkpoint, the engine's own state loaded."""
    from safetensors.torch import load_file

    with checkpoint.as_directory() as d:
        state = json.loads(open(os.path.join(d, STATE_FILE)).read())
        engine.load(d)
        best = load_file(os.path.join(d, BEST_FILE)) if os.path.exists(os.path.join(d, BEST_FILE)) else None
    if rank == 0:
        log.info("resumed from checkpoint after epoch %s (step %s)", state["epoch"], state["step"])
    return state, best


def _report(engine: Engine, state: dict, best_state: dict | None, metrics: dict, rank: int,
            checkpoint: bool = True) -> None:
    """Report the epoch's metrics to Ray Train with a checkpoint (engine state, trainer state with the history
    of every epoch, best weights) when ``checkpoint``; otherwise nothing (the history travels in the state)."""
    from safetensors.torch import save_file

    if not checkpoint:  # each report costs ~2 s of controller sync; the epoch is in the next checkpoint's history
        return

    def fill(folder: str) -> None:
        engine.save(folder, rank)  # collective under DeepSpeed: every rank takes part
        if rank == 0:
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump(state, f)
            if best_state is not None:
                # a plain dict of CPU copies: under ZeRO the live parameters are views into one flat
                # buffer (and tied), which safetensors' save_model refuses to write
                save_file(best_state, os.path.join(folder, BEST_FILE))

    report(metrics, fill, attach=engine.every_rank_writes or rank == 0)


def _train_epoch(engine: Engine, cfg: TrainConfig, state: dict, clock: dict, batches: Callable[[torch.Tensor], dict],
                 perm: torch.Tensor, total_steps: int, epoch: int, rank: int) -> tuple[float, int, int, float]:
    """One epoch's steps over ``perm`` until the step or wall-clock budget ends.

    Returns (loss sum, steps, examples trained, seconds): a budget can end the epoch early, so the examples are
    counted rather than taken from ``len(perm)``.
    """
    t0 = time.perf_counter()
    loss_sum, count, seen = 0.0, 0, 0
    clock["train_s"] = state.get("train_s", 0.0)
    for s in range(0, len(perm), cfg.batch_size):
        if state["step"] >= total_steps:
            break
        if cfg.max_train_s is not None:
            clock["train_s"] = state.get("train_s", 0.0) + time.perf_counter() - t0
            if clock["train_s"] >= cfg.max_train_s:
                break  # the budget ends inside this epoch: validate and checkpoint what was reached
        idx = perm[s:s + cfg.batch_size]
        loss = engine.forward(**batches(idx)).loss
        engine.step(loss)
        loss_sum += loss.item()
        count += 1
        seen += len(idx)
        state["step"] += 1
        if rank == 0 and cfg.log_every and count % cfg.log_every == 0:  # progress inside a long epoch
            rate, steps = count / (time.perf_counter() - t0), math.ceil(len(perm) / cfg.batch_size)
            log.info("epoch %d step %d/%d loss %.4f %.2f steps/s, epoch ends in %.1f min", epoch, count, steps,
                     loss_sum / count, rate, (steps - count) / rate / 60)
    return loss_sum, count, seen, time.perf_counter() - t0


def _budget_spent(cfg: TrainConfig, state: dict, total_steps: int) -> bool:
    return (state["step"] >= total_steps or state["bad_epochs"] >= cfg.patience
            or (cfg.max_train_s is not None and state.get("train_s", 0.0) >= cfg.max_train_s))


def train_loop(config: dict) -> None:
    """Ray Train worker: ``config`` holds the TrainConfig, run-dir coordinates and the layout."""
    import ray.train
    import ray.train.torch

    from cemg_ray.generate.dataset import length_grouped_order
    from cemg_ray.generate.decoding import build_index
    from cemg_ray.store import Store

    cfg = TrainConfig(**config["cfg"])
    layout = TokenLayout.from_json(config["layout"])
    if not cfg.use_gpu:
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    rank, world = worker_rank()
    store = Store(**config["store"])
    train = store.read_tensors(artifacts.GENERATOR_TRAIN_DATA)
    valid = store.read_tensors(artifacts.GENERATOR_VALID_DATA)
    codes = load_codes(store)
    index = build_index(codes, layout)
    valid = {k: v[rank::world] for k, v in valid.items()}

    family = family_for(cfg)
    model = family.build(cfg, layout, codes, store, config["max_items"])
    keys = family.batch_keys
    if cfg.init_from:  # warm start (cemg-ray refresh); a resumed checkpoint below still wins
        from cemg_ray.refresh.warmstart import warm_start

        warm_start(model, cfg.init_from, store.endpoint_url, store.region, log if rank == 0 else None)
    n = len(train[keys[0]])
    total_steps = cfg.max_steps or math.ceil(math.ceil(n / world) / cfg.batch_size) * cfg.epochs
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    clock = {"train_s": 0.0}  # training seconds so far (validation excluded): the budgeted schedule's progress
    engine = make_engine(cfg, model, opt, _schedule(cfg, opt, total_steps, clock))
    core = engine.module
    state = {"epoch": -1, "step": 0, "best_ndcg": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [],
             "train_s": 0.0}
    best_state: dict[str, torch.Tensor] | None = None
    resumed = ray.train.get_checkpoint()
    if resumed:
        state, best_state = _resume(engine, resumed, rank)

    tensors = {k: torch.as_tensor(train[k]) for k in keys}
    lengths = family.lengths(tensors)

    def batches(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = family.model_batch(model, {k: v[rows] for k, v in tensors.items()})
        return {k: v.to(ray.train.torch.get_device()) for k, v in batch.items()} if cfg.use_gpu else batch

    cadence = CheckpointCadence(cfg.checkpoint_every_s)
    engine.train()
    for epoch in range(state["epoch"] + 1, cfg.epochs):
        if _budget_spent(cfg, state, total_steps):
            break  # steps, patience or the wall-clock budget (checked between epochs)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        perm = torch.randperm(n, generator=gen)[rank::world]
        if cfg.group_by_length:
            perm = perm[length_grouped_order(lengths[perm], cfg.batch_size, gen)]
        loss_sum, count, seen, train_s = _train_epoch(engine, cfg, state, clock, batches, perm, total_steps, epoch,
                                                      rank)
        state["train_s"] = state.get("train_s", 0.0) + train_s
        nd, hr = validate(core, family, valid, index, cfg.valid_beams, valid_list=cfg.valid_list)
        loss_tot, cnt_tot, nd, hr, seen_tot = all_reduce([loss_sum, count, nd, hr, seen])
        users = max(config["valid_users"], 1)
        metrics = {"epoch": epoch, "step": state["step"], "loss": loss_tot / max(cnt_tot, 1),
                   "valid_ndcg10": nd / users, "valid_hr10": hr / users, "train_s": round(train_s, 2),
                   "examples": int(seen_tot), "examples_per_s": round(seen_tot / max(train_s, 1e-9), 1),
                   "lr": engine.lr()}
        if metrics["valid_ndcg10"] > state["best_ndcg"]:
            state.update(best_ndcg=metrics["valid_ndcg10"], best_epoch=epoch, bad_epochs=0)
            best_state = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["history"].append(metrics)
        last = epoch + 1 >= cfg.epochs or _budget_spent(cfg, state, total_steps)
        due = cadence.due(last_epoch=last, force=cfg.kill_worker_after_epoch == epoch)
        _report(engine, state, best_state, metrics, rank, checkpoint=due)
        if cfg.kill_worker_after_epoch == epoch and not resumed and rank == world - 1:
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection: a worker dies after a checkpoint


def fit(cfg: TrainConfig, layout: TokenLayout, store: dict[str, Any], valid_users: int, run_config: RunConfig,
        max_items: int = 20) -> Result:
    """Train the generator on Ray Train; ``store`` opens the stage's view of the run directory in the workers
    (``StageContext.worker_store``)."""
    if cfg.strategy == "deepspeed" and not cfg.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    env = {"DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu" if not cfg.use_gpu else "cuda")}
    run_config.worker_runtime_env = {"env_vars": env}
    trainer = torch_trainer("train", train_loop,
                            {"cfg": cfg.model_dump(), "layout": layout.to_json(), "store": store,
                             "valid_users": valid_users, "max_items": max_items},
                            run_config, num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                            cpus_per_worker=cfg.cpus_per_worker)
    return trainer.fit()
