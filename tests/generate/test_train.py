"""Generator training on Ray Train: backbones, LoRA, a killed worker resumes, DeepSpeed on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.dataset import build_tensors, history_matrix, prefix_examples
from cemg_ray.generate.model import build_model, load_model, save_model
from cemg_ray.generate.token_family import lm_batch
from cemg_ray.generate.tokens import EOS_ID, PAD_ID, TokenLayout

LAYOUT = TokenLayout((4, 4, 3))
CODES = np.array([[0, 1, 0], [0, 1, 1], [2, 3, 0], [3, 0, 2]])


def test_every_prefix_is_an_example_and_histories_are_left_padded() -> None:
    hists, targets = prefix_examples([np.array([0, 1, 2, 3])], max_items=2)
    assert targets.tolist() == [1, 2, 3]
    assert [h.tolist() for h in hists] == [[0], [0, 1], [1, 2]]
    ids, mask = history_matrix([np.array([2])], CODES, LAYOUT, max_items=2)
    assert ids[0].tolist() == [PAD_ID] * 3 + (LAYOUT.encode_items(CODES[2])).tolist() + [EOS_ID]
    assert mask[0].tolist() == [0, 0, 0, 1, 1, 1, 1]
    t = build_tensors(hists, targets, CODES, LAYOUT, 2)
    assert t["labels"].tolist()[0] == LAYOUT.encode_items(CODES[1]).tolist()
    assert LAYOUT.token_names()[LAYOUT.encode_items(CODES[2])[0]] == "<a_2>"


@pytest.mark.parametrize("backbone", ["t5", "decoder"])
@pytest.mark.parametrize("lora", [False, True])
def test_backbones_train_step_save_and_load(tmp_path, backbone: str, lora: bool) -> None:
    cfg = TrainConfig(backbone=backbone, d_model=32, num_layers=1, num_heads=2, d_kv=16, d_ff=64, lora=lora,
                      lora_target_modules=["q", "v"] if backbone == "t5" else ["q_proj", "v_proj"])
    model = build_model(cfg, LAYOUT)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert (trainable < total) == lora
    t = build_tensors(*prefix_examples([np.array([0, 1, 2, 3])], 2), CODES, LAYOUT, 2)
    batch = lm_batch({k: torch.as_tensor(v) for k, v in t.items() if k != "target_item"}, backbone == "t5")
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    save_model(model, LAYOUT, tmp_path / "m")
    loaded, layout = load_model(tmp_path / "m")
    assert layout == LAYOUT
    assert not any("lora" in n for n, _ in loaded.named_parameters())  # LoRA merged for serving


def _train_report(demo_run, tmp_path, overrides: list[str]) -> dict:
    """Re-train on a copy of the demo run, so the shared run keeps its model for the other tests."""
    import shutil

    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    cfg, store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(store.root_uri, run_dir, ignore=shutil.ignore_patterns("checkpoints", "model"))
    job = load_config(None, [f"{k}={v}" for k, v in _flat(cfg.model_dump(mode="json"))] + overrides
                      + [f"run_dir={run_dir}"])
    manifest = run_pipeline(job, ["train"])
    return manifest["stages"]["train"]["report"], Store(str(run_dir))


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    import json

    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", json.dumps(v)))
    return out


def test_killed_worker_resumes_from_its_checkpoint(demo_run, tmp_path) -> None:
    # the worker SIGKILLs itself after epoch 1's checkpoint on the first attempt; a restart from
    # scratch would die again and fail the run, so success means it resumed from the checkpoint
    report, store = _train_report(demo_run, tmp_path, ["train.epochs=3", "train.kill_worker_after_epoch=1",
                                                       "train.checkpoint_every_s=0", "train.max_failures=1",
                                                       "train.patience=10", "train.valid_users=50"])
    history = store.read_json("generate/history.json")
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert report["epochs_run"] == 3


def test_checkpoints_only_every_checkpoint_every_s_and_after_the_last_epoch(demo_run, tmp_path) -> None:
    from pathlib import Path

    report, store = _train_report(demo_run, tmp_path, ["train.epochs=3", "train.checkpoint_every_s=100000",
                                                       "train.patience=10", "train.valid_users=50"])
    history = store.read_json("generate/history.json")
    assert [h["epoch"] for h in history] == [0, 1, 2]  # every epoch reported
    seconds = sum(h["train_s"] for h in history)
    assert all(h["examples"] > 0 for h in history)
    assert report["examples_per_s"] == pytest.approx(sum(h["examples"] for h in history) / seconds, rel=1e-3)
    saved = [p for p in (Path(store.root_uri) / "generate" / "checkpoints").rglob("checkpoint_*") if p.is_dir()]
    assert len(saved) == 1  # the last epoch's only (every epoch would keep num_to_keep=2)
    assert report["epochs_run"] == 3 and store.exists("generate/model/model.safetensors")


def test_token_layout_still_trains_serves_and_is_reported(demo_run, tmp_path) -> None:
    """The paper's layout (every code a token, one example per prefix) stays selectable beside the item one."""
    from cemg_ray.generate.policy import BUILTIN
    from cemg_ray.generate.recommender import CEMGRecommender, load_recommender

    report, store = _train_report(demo_run, tmp_path, ["train.backbone=t5", "train.history=tokens",
                                                       "train.dense_weight=0", "train.objective=prefix",
                                                       "train.content_input=false", "train.d_kv=16", "train.epochs=1",
                                                       "train.valid_users=50"])
    assert report["history"] == "tokens" and report["objective"] == "prefix" and report["steps"] > 0
    cfg, _ = demo_run
    rec = load_recommender(cfg, store)
    assert isinstance(rec, CEMGRecommender)
    items, _ = rec.recommend([np.array([0, 1, 2])], 5)
    assert ((items >= 0) & (items < rec.num_items)).all()
    from cemg_ray.generate.policy import ColdSharePolicy

    with pytest.raises(ValueError, match="item-level generator"):
        load_recommender(cfg, store, policy=ColdSharePolicy())
    assert rec.with_policy(BUILTIN["unconstrained"]).constrained is False


def test_item_level_generator_trains_on_two_ddp_workers(demo_run, tmp_path) -> None:
    """Two Ray Train workers of one CPU each (DDP over gloo): the item-level generator has no parameter left
    without a gradient, which DDP would refuse; the run finishes and saves a loadable model."""
    from cemg_ray.generate.recommender import load_recommender

    report, store = _train_report(demo_run, tmp_path, ["train.num_workers=2", "train.cpus_per_worker=1",
                                                       "train.epochs=1", "train.valid_users=50"])
    assert report["epochs_run"] == 1 and report["steps"] > 0
    rec = load_recommender(demo_run[0], store)
    items, _ = rec.recommend([np.array([0, 1, 2])], 5)
    assert ((items >= 0) & (items < rec.num_items)).all()


def test_deepspeed_zero2_on_cpu(demo_run, tmp_path) -> None:
    report, store = _train_report(demo_run, tmp_path, ["train.strategy=deepspeed", "train.zero_stage=2",
                                                       "train.epochs=1", "train.valid_users=50"])
    assert report["epochs_run"] == 1 and report["steps"] > 0
    assert store.exists("generate/model/model.safetensors")
