"""From RQ codes to unique item ids, and the statistics that tell a healthy codebook.

Uniqueness uses an extra disambiguation level (TIGER's choice) rather than re-assigning
colliding items to other codes: the M semantic levels stay exactly what the RQ-VAE chose, so
items that look alike keep sharing prefixes, and the last token only tells them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cemg_ray.artifacts import CODES

if TYPE_CHECKING:
    from cemg_ray.store import Store


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """Append a level numbering the items that share all M codes (0, 1, ... by item order)."""
    codes = np.asarray(codes, dtype=np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    pos_sorted = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    suffix = np.empty(len(codes), dtype=np.int64)
    suffix[order] = pos_sorted
    return np.concatenate([codes, suffix[:, None]], axis=1)


def level_stats(codes: np.ndarray, codebook_size: int) -> list[dict]:
    """Per level: utilisation (share of codes used), perplexity of code usage, prefix uniqueness."""
    out = []
    n = len(codes)
    for lvl in range(codes.shape[1]):
        counts = np.bincount(codes[:, lvl], minlength=codebook_size)
        p = counts[counts > 0] / max(n, 1)
        prefixes = len(np.unique(codes[:, :lvl + 1], axis=0))
        out.append({"level": lvl, "used": int((counts > 0).sum()), "utilisation": float((counts > 0).mean()),
                    "perplexity": float(np.exp(-(p * np.log(p)).sum())), "unique_prefixes": int(prefixes)})
    return out


def collision_stats(codes: np.ndarray) -> dict:
    """How many items share their full M-level code with another item (before disambiguation)."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    shared = counts[inverse.reshape(-1)] > 1
    return {"items": int(len(codes)), "unique_codes": int(len(counts)),
            "colliding_items": int(shared.sum()), "collision_rate": float(shared.mean()) if len(codes) else 0.0,
            "max_items_per_code": int(counts.max()) if len(counts) else 0}


def next_free_suffix(existing: np.ndarray, prefix: np.ndarray) -> int:
    """The first disambiguation value not taken by ``existing`` [N, M+1] rows under ``prefix`` [M]."""
    match = (existing[:, :-1] == prefix).all(1)
    taken = set(existing[match, -1].tolist())
    s = 0
    while s in taken:
        s += 1
    return s


def load_codes(store: Store) -> np.ndarray:
    """Item codes [N, L] in item_idx order (the table is written in that order; sorting makes it a contract)."""
    table = store.read_parquet(CODES).sort_by("item_idx")
    return np.asarray(table.column("codes").to_pylist(), dtype=np.int64)
