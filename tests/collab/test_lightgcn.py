"""LightGCN: the ranking metric on a hand case, and the stage's sanity check (in a Ray task, on a bounded sample of
users) on the demo run and a small one."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cemg_ray.collab.config import LightGCNConfig
from cemg_ray.collab.lightgcn import Graph, build_model, recall_ndcg_at, sample_negatives
from cemg_ray.collab.stage import sanity_check, sanity_rows


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
    from cemg_ray.data.split import load_split

    cfg, store = demo_run
    report = store.read_json("lightgcn/report.json")
    emb = store.read_tensors("lightgcn/item_emb.safetensors")
    assert emb["item_emb"].shape == (300, cfg.lightgcn.dim)
    assert report["valid"]["Recall@20"] > 3 * 20 / 300  # random ranking gets 20/300
    # the figure, ranked in a Ray task, is the one the driver computed before (every user, the same embeddings)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    assert report["valid_users"] == report["users"] == len(split.train) <= cfg.lightgcn.sanity_users
    assert report["valid"] == recall_ndcg_at(emb["user_emb"], emb["item_emb"], split.train, split.valid_target, k=20)
    stage = store.read_json("manifest.json")["stages"]["lightgcn"]["report"]
    assert stage["valid_worker"]["pid"] != os.getpid() and stage["valid_worker"]["node_id"]
    assert stage["valid"] == report["valid"] and stage["valid_users"] == report["valid_users"]
    # every epoch is in the report although Ray Train saw only the checkpointed ones (the log rides in them)
    assert [e["epoch"] for e in report["epochs"]] == list(range(cfg.lightgcn.epochs))
    assert all(e["loss"] > 0 and e["epoch_s"] >= 0 for e in report["epochs"])


def test_sanity_users_are_everyone_up_to_the_limit_then_a_seeded_sample() -> None:
    assert sanity_rows(40, 40, seed=0).tolist() == list(range(40))
    sample = sanity_rows(1000, 50, seed=3)
    assert len(sample) == len(np.unique(sample)) == 50 and (np.diff(sample) > 0).all() and sample.max() < 1000
    assert (sanity_rows(1000, 50, seed=3) == sample).all() and (sanity_rows(1000, 50, seed=4) != sample).any()


def test_sanity_check_ranks_only_the_sampled_users_in_chunks_bounded_by_the_budget(tmp_path) -> None:
    """What the task computes, called here: the picked users' figure equals the full ranking of those users, and a
    budget of a few users' scores per chunk changes nothing."""
    from cemg_ray import artifacts
    from cemg_ray.store import Store

    rng = np.random.default_rng(0)
    users, items = 300, 90
    user_emb, item_emb = rng.normal(size=(users, 8)).astype(np.float32), rng.normal(size=(items, 8)).astype(np.float32)
    histories = [rng.choice(items, size=rng.integers(1, 6), replace=False) for _ in range(users)]
    targets = np.array([rng.choice(np.setdiff1d(np.arange(items), h)) for h in histories])
    store = Store(str(tmp_path))
    store.write_tensors(artifacts.LIGHTGCN_EMB, {"item_emb": item_emb, "user_emb": user_emb})

    def task(rows: np.ndarray, budget: int) -> dict:
        picked = [histories[r] for r in rows]
        return sanity_check(store, rows, np.concatenate(picked), np.array([len(h) for h in picked]), targets[rows],
                            score_budget=budget)

    everyone = task(sanity_rows(users, 1000, seed=0), budget=1 << 25)
    assert everyone == {"valid": recall_ndcg_at(user_emb, item_emb, histories, targets, k=20), "valid_users": users}
    rows = sanity_rows(users, 64, seed=0)
    sampled = task(rows, budget=3 * items)  # 3 users a chunk
    expected = recall_ndcg_at(user_emb[rows], item_emb, [histories[r] for r in rows], targets[rows], k=20)
    assert sampled["valid_users"] == 64 and sampled["valid"] == pytest.approx(expected, abs=1e-12)
    assert sampled["valid"] != everyone["valid"]


def test_sanity_users_at_its_default_keeps_the_stage_hash_of_earlier_runs() -> None:
    from cemg_ray.config import _hash_payload, load_config
    from cemg_ray.stagekit import stage_hash

    default = load_config(None)
    assert "sanity_users" not in _hash_payload(default.lightgcn)  # run directories written before it stay valid
    assert stage_hash(load_config(None, ["lightgcn.sanity_users=25000"]), "lightgcn") == stage_hash(default,
                                                                                                    "lightgcn")
    assert stage_hash(load_config(None, ["lightgcn.sanity_users=10"]), "lightgcn") != stage_hash(default, "lightgcn")


def test_the_stage_ranks_in_a_ray_task_on_a_seeded_sample_of_users(small_job) -> None:
    """Real local Ray: training in Ray Train, the sanity check in a task (not this process), on ``sanity_users``
    users; the figure is the full ranking of exactly those users."""
    from cemg_ray import artifacts
    from cemg_ray.config import load_config
    from cemg_ray.data.split import load_split
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    cfg = load_config(None, [f"run_dir={small_job.run_dir}", "dataset.synthetic.num_users=120",
                             "dataset.synthetic.num_items=60", "dataset.synthetic.num_clusters=4",
                             "lightgcn.epochs=2", "lightgcn.dim=8", "lightgcn.sanity_users=50", "lightgcn.seed=7"])
    manifest = run_pipeline(cfg, ["data", "lightgcn"])
    stage = manifest["stages"]["lightgcn"]["report"]
    assert stage["valid_worker"]["pid"] != os.getpid() and stage["valid_worker"]["node_id"]
    store = Store(cfg.run_dir)
    report = store.read_json(artifacts.LIGHTGCN_REPORT)
    assert report["users"] == 120 and report["valid_users"] == stage["valid_users"] == 50
    assert report["valid_worker"] == stage["valid_worker"]
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    emb = store.read_tensors(artifacts.LIGHTGCN_EMB)
    rows = sanity_rows(120, 50, seed=7)
    assert report["valid"] == recall_ndcg_at(emb["user_emb"][rows], emb["item_emb"], split.train[rows],
                                             split.valid_target[rows], k=20)
