"""Evaluate any recommender that returns top-K item ids for a batch of histories."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from cemg_ray.data.split import Split
from cemg_ray.evaluate.metrics import hr_ndcg, standard_errors, target_ranks
from cemg_ray.recommenders import rank_unseen

if TYPE_CHECKING:
    from cemg_ray.recommenders import Recommender

log = logging.getLogger("cemg_ray")


def ranked_lists(rec: Recommender, histories: list[np.ndarray], k: int, exclude_seen: bool) -> np.ndarray:
    """Each history's top-``k`` item ids ([B, k], ``-1`` where the model ranks fewer), its own items removed
    when ``exclude_seen``: the same fetch buckets and filter as the Python API, export and serving use."""
    if not exclude_seen:
        items, _ = rec.recommend(histories, k)
        return np.asarray(items)
    seen = [set(np.asarray(h).tolist()) for h in histories]
    catalog = getattr(rec, "num_items", None) or 1 << 62
    return padded(rank_unseen(rec, histories, [k] * len(histories), seen, catalog), k)


def padded(ranked: list[list[tuple[int, float]]], k: int) -> np.ndarray:
    """Ranked (item, score) rows as item ids [B, k], ``-1`` after a row's last item."""
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for r, row in enumerate(ranked):
        out[r, :len(row)] = [item for item, _ in row]
    return out


def evaluate(rec: Recommender, split: Split, which: str = "test", ks: list[int] | None = None,
             batch_size: int = 512, limit: int | None = None, exclude_seen: bool = True) -> dict:
    """Full-ranking HR/NDCG overall and on cold-start targets (<= cold_start_max train interactions), every user
    ranked in this process (``evaluate.distributed`` ranks them on a Ray Data actor pool instead).

    ``exclude_seen``: a user's history items are removed before the top-K (the field's protocol, and what
    users of the API, export and serving get)."""
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
                      leave=False, mininterval=5, disable=None):  # None: no bar off a terminal
        rows = order[start:start + batch_size]
        items = ranked_lists(rec, [histories[r] for r in rows], kmax, exclude_seen)
        ranks[rows] = target_ranks(items, targets[rows])
    return summarize(ranks, split.cold_items()[targets], ks, which, exclude_seen, time.perf_counter() - t0)


def summarize(ranks: np.ndarray, cold: np.ndarray, ks: list[int], which: str, exclude_seen: bool,
              wall: float) -> dict:
    """The metrics row of one model from each user's 0-based target rank (-1: not in the top ``max(ks)``)."""
    return {
        "overall": hr_ndcg(ranks, ks),
        "cold_start": hr_ndcg(ranks[cold], ks),
        "overall_se": standard_errors(ranks, ks),
        "cold_start_se": standard_errors(ranks[cold], ks),
        "users": int(len(ranks)),
        "cold_start_users": int(cold.sum()),
        "split": which,
        "exclude_seen": exclude_seen,
        "users_per_s": round(len(ranks) / max(wall, 1e-9), 1),
    }
