"""LightGCN: the ranking metric on a hand case, and the stage's sanity check on the demo run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemg_ray.collab.config import LightGCNConfig
from cemg_ray.collab.lightgcn import Graph, build_model, recall_ndcg_at, sample_negatives


def _graph(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    return Graph(40, 25, rng.integers(0, 40, 300), rng.integers(0, 25, 300))


def test_csr_adjacency_gives_the_edge_index_embeddings_and_gradients() -> None:
    graph, cfg = _graph(), LightGCNConfig(dim=8, num_layers=3)
    reference = build_model(graph, cfg, normalize=True)  # torch_geometric normalising edge_index per call
    fast = build_model(graph, cfg)
    fast.load_state_dict(reference.state_dict())
    labels = torch.tensor([[0, 1, 2], [40, 41, 60]])
    ref_out, fast_out = reference(graph.edge_index(), labels), fast(graph.adjacency(), labels)
    assert torch.allclose(reference.get_embedding(graph.edge_index()), fast.get_embedding(graph.adjacency()),
                          atol=1e-6)
    ref_out.sum().backward()
    fast_out.sum().backward()
    assert torch.allclose(reference.embedding.weight.grad, fast.embedding.weight.grad, atol=1e-6)


def test_negatives_avoid_training_positives() -> None:
    graph = Graph(3, 4, np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3]))  # user 0 has one free item: 3
    users = np.zeros(2000, dtype=np.int64)
    neg = sample_negatives(users, 4, graph.positive_keys(), np.random.default_rng(0))
    # two redraws leave a positive with probability (3/4)^3 per sample; the redraws must lower it
    assert (neg == 3).mean() > 0.5
    assert set(np.unique(neg)) <= {0, 1, 2, 3}


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
    # every epoch is in the report although Ray Train saw only the checkpointed ones (the log rides in them)
    assert [e["epoch"] for e in report["epochs"]] == list(range(cfg.lightgcn.epochs))
    assert all(e["loss"] > 0 and e["epoch_s"] >= 0 for e in report["epochs"])
