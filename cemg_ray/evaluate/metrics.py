"""HR@K and NDCG@K for one held-out target per user over a full ranking of the catalog."""

from __future__ import annotations

import numpy as np


def target_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its top-K row, or -1 when it is absent."""
    hits = topk == targets[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1), -1)


def hr_ndcg(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Mean HR@K and NDCG@K from target ranks (one relevant item: NDCG = 1/log2(rank+2))."""
    out: dict[str, float] = {}
    n = max(1, len(ranks))
    for k in ks:
        hit = (ranks >= 0) & (ranks < k)
        out[f"HR@{k}"] = float(hit.sum() / n)
        gains = np.where(hit, 1.0 / np.log2(np.clip(ranks, 0, None) + 2.0), 0.0)
        out[f"NDCG@{k}"] = float(gains.sum() / n)
    return out
