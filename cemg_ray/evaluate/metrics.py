"""HR@K and NDCG@K for one held-out target per user over a full ranking of the catalog."""

from __future__ import annotations

import numpy as np


def target_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its top-K row, or -1 when it is absent."""
    hits = topk == targets[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1), -1)


def _per_user(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's hit (0/1) and gain (1/log2(rank+2) when hit) at cut-off k."""
    hit = (ranks >= 0) & (ranks < k)
    gains = np.where(hit, 1.0 / np.log2(np.clip(ranks, 0, None) + 2.0), 0.0)
    return hit.astype(np.float64), gains


def hr_ndcg(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Mean HR@K and NDCG@K from target ranks (one relevant item: NDCG = 1/log2(rank+2))."""
    out: dict[str, float] = {}
    n = max(1, len(ranks))
    for k in ks:
        hit, gains = _per_user(ranks, k)
        out[f"HR@{k}"] = float(hit.sum() / n)
        out[f"NDCG@{k}"] = float(gains.sum() / n)
    return out


def standard_errors(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Standard error of each mean of ``hr_ndcg`` over the users (sample std / sqrt(n)).

    Two models' figures on one split differ by more than noise only when the gap is a few of these; model
    selection rules ("within one standard error of the best") read them from here.
    """
    out: dict[str, float] = {}
    n = len(ranks)
    for k in ks:
        hit, gains = _per_user(ranks, k)
        for name, values in ((f"HR@{k}", hit), (f"NDCG@{k}", gains)):
            out[name] = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return out
