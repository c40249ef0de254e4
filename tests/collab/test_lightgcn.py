"""LightGCN: the ranking metric on a hand case, and the stage's sanity check on the demo run."""

from __future__ import annotations

import numpy as np
import pytest

from cemg_ray.collab.lightgcn import recall_ndcg_at


def test_recall_ndcg_masks_training_items() -> None:
    users = np.array([[1.0, 0.0]])
    items = np.array([[5.0, 0], [4.0, 0], [3.0, 0], [0, 1.0]])
    # item 0 is a training item and is masked, so the target (item 2) ranks second
    out = recall_ndcg_at(users, items, [np.array([0])], np.array([2]), k=2)
    assert out["Recall@2"] == 1.0 and out["NDCG@2"] == pytest.approx(1 / np.log2(3))
    assert recall_ndcg_at(users, items, [np.array([0])], np.array([2]), k=1)["Recall@1"] == 0.0


def test_lightgcn_stage_beats_random_on_validation(demo_run) -> None:
    cfg, store = demo_run
    report = store.read_json("lightgcn/report.json")
    emb = store.read_tensors("lightgcn/item_emb.safetensors")
    assert emb["item_emb"].shape == (300, cfg.lightgcn.dim)
    assert report["valid"]["Recall@20"] > 3 * 20 / 300  # random ranking gets 20/300
