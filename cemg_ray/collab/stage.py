"""The ``lightgcn`` stage: collaborative item embeddings from the training interactions only.

Training runs in Ray Train workers; the report's validation Recall/NDCG@20 (a sanity check of the embeddings, a full
ranking of the catalog per user) runs in one Ray task on at most ``lightgcn.sanity_users`` users, so the driver only
writes the report: the embeddings (one propagation over the whole graph with the trained weights) are computed and
written by a Ray task too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from cemg_ray import artifacts
from cemg_ray.collab.config import LightGCNConfig
from cemg_ray.collab.lightgcn import Graph, embeddings, recall_ndcg_at, train
from cemg_ray.data.split import Ragged, load_split
from cemg_ray.raytrain import run_config
from cemg_ray.stagekit import StageContext
from cemg_ray.store import Store

if TYPE_CHECKING:
    from ray.train import Checkpoint

log = logging.getLogger("cemg_ray")

SANITY_K = 20
# scores the sanity check holds at once (float32, 128 MiB): users are ranked in chunks of this many / items, so its
# memory is the chunk x items, whatever the number of users
SCORE_BUDGET = 1 << 25
MAX_CHUNK = 2048  # users per chunk on small catalogs (recall_ndcg_at's own batch)


def run(ctx: StageContext) -> dict:
    """Train LightGCN (BPR) on ``Split.train`` edges and save user and item embeddings; the validation sanity
    check runs in a Ray task (:func:`sanity_check`)."""
    from cemg_ray.raytask import run_in_task

    cfg = ctx.cfg
    split = load_split(ctx.store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    _, items = split.train_pairs()
    # graph user ids are positions in the split's user list, so validation rows line up (one repeat, no array per user)
    lengths = np.fromiter((len(s) for s in split.train), dtype=np.int64, count=len(split.train))
    rows = np.repeat(np.arange(len(split.train), dtype=np.int64), lengths)
    graph = Graph(num_users=len(split.train), num_items=split.num_items, users=rows, items=items)
    ctx.ensure_ray()
    ctx.store.delete(artifacts.LIGHTGCN_CHECKPOINTS)  # a finished stage is re-run only when its config changed
    checkpoint = train(graph, cfg.lightgcn,
                       run_config(ctx.store, artifacts.LIGHTGCN_CHECKPOINTS, "lightgcn", max_failures=1))
    # the final propagation over the whole graph, in a task: 8.1 GB and 56 CPU-s of the driver at 1M items
    written = run_in_task(ctx, "cemg_ray.collab.stage:write_embeddings",
                          {"checkpoint": checkpoint, "cfg": cfg.lightgcn.model_dump(), "num_users": graph.num_users,
                           "num_items": graph.num_items, "users": graph.users, "items": graph.items})
    history = written["epochs"]
    picked = sanity_rows(graph.num_users, cfg.lightgcn.sanity_users, cfg.lightgcn.seed)
    histories = split.train[picked]  # a view; only the picked users' items travel to the task
    checked = run_in_task(ctx, "cemg_ray.collab.stage:sanity_check",
                          {"rows": picked, "values": histories.flat(), "lengths": histories.lengths(),
                           "targets": np.asarray(split.valid_target)[picked]})
    sanity, worker = checked["valid"], checked["worker"]
    report = {"edges": int(len(items)), "users": graph.num_users, "items": graph.num_items,
              "valid": sanity, "valid_users": checked["valid_users"], "valid_worker": worker, "epochs": history,
              "embedding_worker": written["worker"]}
    ctx.store.write_json(artifacts.LIGHTGCN_REPORT, report)
    log.info("lightgcn: valid %s on %d of %d users", {k: round(v, 4) for k, v in sanity.items()},
             checked["valid_users"], graph.num_users)
    return {"edges": report["edges"], "valid": sanity, "valid_users": checked["valid_users"], "valid_worker": worker}


def write_embeddings(store: Store, checkpoint: Checkpoint, cfg: dict, num_users: int, num_items: int,
                     users: np.ndarray, items: np.ndarray) -> dict[str, Any]:
    """The trained weights turned into the stage's output (run by :func:`run` in a Ray task): user and item
    embeddings written to ``lightgcn/item_emb.safetensors``; returns the epoch log."""
    graph = Graph(num_users=num_users, num_items=num_items, users=users, items=items)
    user_emb, item_emb, history = embeddings(graph, LightGCNConfig(**cfg), checkpoint)
    store.write_tensors(artifacts.LIGHTGCN_EMB,
                        {"item_emb": item_emb.astype(np.float32), "user_emb": user_emb.astype(np.float32)})
    return {"epochs": history}


def sanity_rows(num_users: int, limit: int, seed: int) -> np.ndarray:
    """The users (positions in the split's user list) the sanity check ranks: all of them up to ``limit``, else a
    seeded sample of ``limit``, sorted, so a re-run of the same config reports the same figure."""
    if num_users <= limit:
        return np.arange(num_users, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(num_users, size=limit, replace=False)).astype(np.int64)


def sanity_check(store: Store, rows: np.ndarray, values: np.ndarray, lengths: np.ndarray, targets: np.ndarray,
                 k: int = SANITY_K, score_budget: int = SCORE_BUDGET) -> dict[str, Any]:
    """The sanity check's work (run by :func:`run` in a Ray task): Recall/NDCG@k of the ``rows`` users' validation
    ``targets`` against every item, their training items (``values`` split by ``lengths``) masked, with the
    embeddings the stage wrote; users are ranked in chunks of at most ``score_budget`` scores."""
    emb = store.read_tensors(artifacts.LIGHTGCN_EMB)
    item_emb = emb["item_emb"]
    user_emb = emb["user_emb"][np.asarray(rows, dtype=np.int64)]
    ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
    histories = Ragged(np.asarray(values), ends - lengths, ends)
    chunk = max(1, min(MAX_CHUNK, score_budget // max(len(item_emb), 1)))
    return {"valid": recall_ndcg_at(user_emb, item_emb, histories, np.asarray(targets), k=k, batch=chunk),
            "valid_users": len(rows)}
