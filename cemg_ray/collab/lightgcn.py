"""LightGCN on the training interactions, trained with BPR through Ray Train.

The model and its BPR loss are torch_geometric's ``LightGCN``; this module adds the bipartite
graph layout (users ``0..U-1``, items ``U..U+N-1``), negative sampling, the Ray Train loop and a
full-ranking Recall/NDCG@20 on the validation split as a sanity check of the embeddings (run by the stage in a Ray
task, ``cemg_ray.collab.stage.sanity_check``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from cemg_ray.collab.config import LightGCNConfig
from cemg_ray.raytrain import CheckpointCadence, report, torch_trainer, worker_rank

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ray.train import Checkpoint, RunConfig
    from torch_geometric.nn import LightGCN

log = logging.getLogger("cemg_ray")


@dataclass
class Graph:
    num_users: int
    num_items: int
    users: np.ndarray  # training edges (row index into the split's user list)
    items: np.ndarray

    def edge_index(self) -> torch.Tensor:
        """Undirected bipartite edge index; item node ids are shifted by ``num_users``."""
        # copies: the arrays may be read-only views of Ray's object store, which torch warns about
        u = torch.from_numpy(np.array(self.users, dtype=np.int64))
        i = torch.from_numpy(np.array(self.items, dtype=np.int64)) + self.num_users
        return torch.stack([torch.cat([u, i]), torch.cat([i, u])])

    def adjacency(self) -> torch.Tensor:
        """The symmetric-normalised adjacency ``D^-1/2 A D^-1/2`` as a sparse CSR tensor, built once.

        ``LightGCN(..., normalize=False)`` given this runs each layer as one sparse-dense product
        instead of re-normalising and scattering messages over ``edge_index`` on every call (same
        embeddings: ``tests/collab/test_lightgcn.py``; speed: ``cemg-ray bench lightgcn``).
        """
        from torch_geometric.nn.conv.gcn_conv import gcn_norm
        from torch_geometric.utils import to_torch_csr_tensor

        n = self.num_users + self.num_items
        index, weight = gcn_norm(self.edge_index(), None, n, add_self_loops=False)
        return to_torch_csr_tensor(index, weight, size=(n, n))

    def positive_keys(self) -> np.ndarray:
        """Sorted ``user * num_items + item`` keys of the training edges, for vectorised lookups."""
        return np.unique(self.users.astype(np.int64) * self.num_items + self.items.astype(np.int64))


def build_model(graph: Graph, cfg: LightGCNConfig, normalize: bool = False) -> LightGCN:
    """torch_geometric's LightGCN; ``normalize=False`` expects ``Graph.adjacency()`` (pre-normalised)."""
    from torch_geometric.nn import LightGCN

    return LightGCN(graph.num_users + graph.num_items, cfg.dim, cfg.num_layers, normalize=normalize)


def sample_negatives(users: np.ndarray, num_items: int, positive_keys: np.ndarray | None,
                     rng: np.random.Generator) -> np.ndarray:
    """Uniform negatives; a sample that hits a training positive is redrawn (twice at most).

    ``positive_keys`` are the sorted ``user * num_items + item`` keys (``Graph.positive_keys``):
    one ``searchsorted`` per round instead of a Python set lookup per sample.
    """
    neg = rng.integers(0, num_items, size=len(users))
    if positive_keys is not None and len(positive_keys):
        users = users.astype(np.int64)
        for _ in range(2):
            keys = users * num_items + neg
            pos = np.minimum(np.searchsorted(positive_keys, keys), len(positive_keys) - 1)
            bad = positive_keys[pos] == keys
            if not bad.any():
                break
            neg[bad] = rng.integers(0, num_items, size=int(bad.sum()))
    return neg


def split_embeddings(model: LightGCN, graph: Graph, edge_index: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Final (layer-averaged) user and item embeddings."""
    with torch.no_grad():
        emb = model.get_embedding(edge_index)
    return emb[:graph.num_users].numpy().copy(), emb[graph.num_users:].numpy().copy()


def recall_ndcg_at(user_emb: np.ndarray, item_emb: np.ndarray, histories: Sequence[np.ndarray],
                   targets: np.ndarray, k: int = 20, batch: int = 2048) -> dict[str, float]:
    """Full-ranking Recall@k / NDCG@k with one target per user; training items are masked. Users are scored
    ``batch`` at a time, so its memory is ``batch`` x items."""
    ue, ie = torch.as_tensor(user_emb), torch.as_tensor(item_emb)
    hits, gains = 0.0, 0.0
    for s in range(0, len(targets), batch):
        scores = ue[s:s + batch] @ ie.T
        for r, hist in enumerate(histories[s:s + batch]):
            if len(hist):
                scores[r, torch.as_tensor(hist, dtype=torch.long)] = -torch.inf
        tgt = torch.as_tensor(targets[s:s + batch], dtype=torch.long)
        tscore = scores.gather(1, tgt[:, None])
        rank = (scores > tscore).sum(1)
        hit = rank < k
        hits += float(hit.sum())
        gains += float((1.0 / torch.log2(rank[hit].double() + 2)).sum())
    n = max(len(targets), 1)
    return {f"Recall@{k}": hits / n, f"NDCG@{k}": gains / n}


def train_loop(config: dict) -> None:
    """Ray Train worker loop: BPR over shuffled training edges; a checkpoint at most every ``checkpoint_every_s``
    seconds and after the last epoch (``raytrain.CheckpointCadence``), the epochs' log inside it."""
    import ray.train
    import ray.train.torch

    cfg = LightGCNConfig(**config["cfg"])
    graph = Graph(config["num_users"], config["num_items"], config["users"], config["items"])
    torch.manual_seed(cfg.seed)
    rank, world = worker_rank()
    model = build_model(graph, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start_epoch, log = 0, []
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"), weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch = int(state["epoch"]) + 1
        log = list(state.get("log", []))
    model = ray.train.torch.prepare_model(model)
    core = model.module if hasattr(model, "module") else model
    edge_index = graph.adjacency()
    seen = graph.positive_keys()
    n_edges = len(graph.users)
    cadence = CheckpointCadence(cfg.checkpoint_every_s)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        perm = rng.permutation(n_edges)[rank::world]
        neg = sample_negatives(graph.users[perm], graph.num_items, seen, rng)
        total, steps = 0.0, 0
        model.train()
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            u = torch.as_tensor(graph.users[idx], dtype=torch.long)
            pos = torch.as_tensor(graph.items[idx], dtype=torch.long) + graph.num_users
            ng = torch.as_tensor(neg[s:s + cfg.batch_size], dtype=torch.long) + graph.num_users
            label_index = torch.stack([torch.cat([u, u]), torch.cat([pos, ng])])
            rankings = model(edge_index, label_index)
            half = len(idx)
            nodes = torch.unique(torch.cat([u, pos, ng]))
            loss = core.recommendation_loss(rankings[:half], rankings[half:], node_id=nodes,
                                            lambda_reg=cfg.weight_decay)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        metrics = {"epoch": epoch, "loss": total / max(steps, 1), "epoch_s": time.perf_counter() - t0}
        log.append(metrics)
        if not cadence.due(last_epoch=epoch == cfg.epochs - 1):
            continue

        def fill(folder: str, epoch: int = epoch) -> None:
            torch.save({"model": core.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "log": log},
                       os.path.join(folder, "state.pt"))

        report(metrics, fill if rank == 0 else None)


def train(graph: Graph, cfg: LightGCNConfig, run_config: RunConfig) -> Checkpoint:
    """Train with ``cfg.num_workers`` Ray Train workers; return the last checkpoint (weights and epoch log)."""
    trainer = torch_trainer("lightgcn", train_loop,
                            {"cfg": cfg.model_dump(), "num_users": graph.num_users, "num_items": graph.num_items,
                             "users": graph.users, "items": graph.items},
                            run_config, num_workers=cfg.num_workers, use_gpu=cfg.use_gpu)
    return trainer.fit().checkpoint


def embeddings(graph: Graph, cfg: LightGCNConfig, checkpoint: Checkpoint) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """User and item embeddings of a checkpoint's weights (one propagation over the whole graph) and its epoch log.
    The stage runs this in a Ray task: its memory and CPU grow with the graph."""
    model = build_model(graph, cfg)
    with checkpoint.as_directory() as d:
        state = torch.load(os.path.join(d, "state.pt"), weights_only=True)
    model.load_state_dict(state["model"])
    model.eval()
    user_emb, item_emb = split_embeddings(model, graph, graph.adjacency())
    history = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
               for row in state.get("log", [])]
    return user_emb, item_emb, history
