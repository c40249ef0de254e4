"""The ``lightgcn`` stage: collaborative item embeddings from the training interactions only."""

from __future__ import annotations

import logging

import numpy as np

from cemg_ray import artifacts
from cemg_ray.collab.lightgcn import Graph, fit, recall_ndcg_at
from cemg_ray.data.split import load_split
from cemg_ray.raytrain import run_config
from cemg_ray.stagekit import StageContext

log = logging.getLogger("cemg_ray")


def run(ctx: StageContext) -> dict:
    """Train LightGCN (BPR) on ``Split.train`` edges and save user and item embeddings."""
    cfg = ctx.cfg
    split = load_split(ctx.store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    _, items = split.train_pairs()
    # graph user ids are positions in the split's user list, so validation rows line up (one repeat, no array per user)
    lengths = np.fromiter((len(s) for s in split.train), dtype=np.int64, count=len(split.train))
    rows = np.repeat(np.arange(len(split.train), dtype=np.int64), lengths)
    graph = Graph(num_users=len(split.train), num_items=split.num_items, users=rows, items=items)
    ctx.ensure_ray()
    ctx.store.delete(artifacts.LIGHTGCN_CHECKPOINTS)  # a finished stage is re-run only when its config changed
    user_emb, item_emb, history = fit(graph, cfg.lightgcn,
                                      run_config(ctx.store, artifacts.LIGHTGCN_CHECKPOINTS, "lightgcn", max_failures=1))
    sanity = recall_ndcg_at(user_emb, item_emb, split.train, split.valid_target, k=20)
    ctx.store.write_tensors(artifacts.LIGHTGCN_EMB,
                            {"item_emb": item_emb.astype(np.float32), "user_emb": user_emb.astype(np.float32)})
    report = {"edges": int(len(items)), "users": graph.num_users, "items": graph.num_items,
              "valid": sanity, "epochs": history}
    ctx.store.write_json(artifacts.LIGHTGCN_REPORT, report)
    log.info("lightgcn: valid %s", {k: round(v, 4) for k, v in sanity.items()})
    return {"edges": report["edges"], "valid": sanity}
