"""Evaluate any recommender that returns top-K item ids for a batch of histories."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from cemg_ray.data.split import Split
from cemg_ray.evaluate.metrics import hr_ndcg, standard_errors, target_ranks

if TYPE_CHECKING:
    from cemg_ray.recommenders import Recommender

log = logging.getLogger("cemg_ray")


def evaluate(rec: Recommender, split: Split, which: str = "test", ks: list[int] | None = None,
             batch_size: int = 512, limit: int | None = None) -> dict:
    """Full-ranking HR/NDCG overall and on cold-start targets (<= cold_start_max train interactions)."""
    ks = sorted(ks or [5, 10, 20])
    histories, targets = split.histories(which)
    if limit is not None:
        histories, targets = histories[:limit], targets[:limit]
    kmax = max(ks)
    ranks = np.empty(len(targets), dtype=np.int64)
    # users in order of history length: batches of similar lengths carry little padding (a
    # recommender's answer for a user does not depend on the other users of its batch)
    order = np.argsort([len(h) for h in histories], kind="stable")
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(targets), batch_size), desc=f"eval {rec.name}", unit="batch",
                      leave=False, mininterval=5):
        rows = order[start:start + batch_size]
        items, _ = rec.recommend([histories[r] for r in rows], kmax)
        ranks[rows] = target_ranks(np.asarray(items), targets[rows])
    wall = time.perf_counter() - t0
    cold = split.cold_items()[targets]
    return {
        "overall": hr_ndcg(ranks, ks),
        "cold_start": hr_ndcg(ranks[cold], ks),
        "overall_se": standard_errors(ranks, ks),
        "cold_start_se": standard_errors(ranks[cold], ks),
        "users": int(len(targets)),
        "cold_start_users": int(cold.sum()),
        "split": which,
        "users_per_s": round(len(targets) / max(wall, 1e-9), 1),
    }
