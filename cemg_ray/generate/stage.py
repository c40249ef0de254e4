"""The ``train`` stage: pre-tokenise sequences, train the generator on Ray Train, save the best model."""

from __future__ import annotations

import logging
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from cemg_ray import artifacts
from cemg_ray.data.split import load_split
from cemg_ray.generate.family import family_for
from cemg_ray.generate.model import layout_for
from cemg_ray.generate.train import BEST_FILE, STATE_FILE, fit
from cemg_ray.plotting import pyplot
from cemg_ray.raytrain import run_config
from cemg_ray.stagekit import StageContext, stage_hash
from cemg_ray.tokenize.codes import load_codes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("cemg_ray")


def mean_examples_per_s(history: list[dict]) -> float | None:
    """The run's training rate: examples over training seconds, summed over epochs (a short last epoch, cut by
    the wall-clock budget, would make its own rate meaningless as the run's). Epochs recorded before the history
    counted examples fall back to their own rate times their seconds."""
    seconds = sum(h["train_s"] for h in history)
    if not history or seconds <= 0:
        return None
    examples = sum(h.get("examples", h["examples_per_s"] * h["train_s"]) for h in history)
    return round(examples / seconds, 1)


def curves_figure(history: list[dict]) -> Figure:
    fig, ax1 = pyplot().subplots(figsize=(5.5, 3.2))
    ep = [h["epoch"] for h in history]
    ax1.plot(ep, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(ep, [h["valid_ndcg10"] for h in history], "s-", color="tab:red", label="valid NDCG@10")
    ax2.set_ylabel("valid NDCG@10", color="tab:red")
    fig.tight_layout()
    return fig


def run(ctx: StageContext) -> dict:
    """Train the generator on every prefix of the training sequences; keep the best-on-validation model."""
    cfg, tcfg, store = ctx.cfg, ctx.cfg.train, ctx.store
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    codes = load_codes(store)
    meta = artifacts.read_codes_meta(store)
    layout = layout_for(tcfg, meta["level_sizes"])
    max_items = cfg.dataset.max_len
    rng = np.random.default_rng(tcfg.seed)
    sample = np.sort(rng.permutation(len(split.valid_target))[:tcfg.valid_users])
    valid_hists, valid_targets = [split.valid_history[i] for i in sample], split.valid_target[sample]
    family = family_for(tcfg)
    family.check_inputs(tcfg, store)
    train, valid, examples = family.training_tensors(tcfg, split, codes, layout, (valid_hists, valid_targets),
                                                     max_items)
    store.write_tensors(artifacts.GENERATOR_TRAIN_DATA, train)
    store.write_tensors(artifacts.GENERATOR_ITEM_COUNTS, {"train_counts": split.train_counts})
    store.write_tensors(artifacts.GENERATOR_VALID_DATA, valid)
    log.info("train: %d supervised positions in %d rows, %d validation users, vocabulary %d", examples,
             len(next(iter(train.values()))), len(sample), layout.vocab_size)
    ctx.ensure_ray()
    # the run name carries the stage hash: a re-submitted job with the same config resumes its checkpoints
    name = f"train-{stage_hash(cfg, 'train')}"
    result = fit(tcfg, layout, ctx.worker_store(), len(sample),
                 run_config(store, artifacts.GENERATOR_CHECKPOINTS, name, max_failures=tcfg.max_failures,
                            num_to_keep=2),
                 max_items)
    if result.checkpoint is None:
        raise RuntimeError(f"train: no checkpoint was reported ({result.error})")
    import json

    from safetensors.torch import load_file

    model = family.build(tcfg, layout, codes, store, max_items)
    with result.checkpoint.as_directory() as d:
        state = json.loads(open(f"{d}/{STATE_FILE}").read())
        model.load_state_dict(load_file(f"{d}/{BEST_FILE}"))
    with tempfile.TemporaryDirectory() as tmp:
        family.save(model, layout, tmp)
        store.delete(artifacts.GENERATOR_MODEL)
        store.upload_dir(tmp, artifacts.GENERATOR_MODEL)
    history = state["history"]
    store.write_json(artifacts.GENERATOR_HISTORY, history)
    store.write_figure(artifacts.GENERATOR_CURVES, curves_figure(history))
    info = family.describe(model)
    report = {"examples": examples, "history": tcfg.history, "objective": tcfg.objective,
              "train_s": round(state.get("train_s", 0.0), 1), "valid_users": int(len(sample)),
              "vocab_size": layout.vocab_size,
              "parameters": info["parameters"], "trainable": info["trainable"], "epochs_run": len(history),
              "best_epoch": state["best_epoch"], "best_valid_ndcg10": state["best_ndcg"],
              "steps": state["step"], "model_version": name,
              "examples_per_s": mean_examples_per_s(history)}
    store.write_json(artifacts.GENERATOR_REPORT, report)
    return report
