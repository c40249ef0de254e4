"""Most-popular baseline: rank items by interaction count in the training split."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cemg_ray import artifacts
from cemg_ray.store import Store

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig


class PopularityRecommender:
    """The same top-K for every user; the floor every model must beat, and serving's fallback."""

    name = "popularity"

    def __init__(self, counts: np.ndarray, model_version: str = "popularity"):
        self.counts = np.asarray(counts)
        # stable order: ties broken by item index, so results are reproducible
        self.order = np.argsort(-self.counts, kind="stable")
        self.model_version = model_version

    @classmethod
    def load(cls, cfg: JobConfig, store: Store) -> PopularityRecommender:
        return cls.from_store(store)

    @classmethod
    def from_store(cls, store: Store) -> PopularityRecommender:
        return cls(artifacts.read_popularity(store), "popularity")

    def recommend(self, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        k_eff = min(k, len(self.order))
        top = np.full(k, -1, dtype=np.int64)
        top[:k_eff] = self.order[:k_eff]
        scores = np.full(k, -np.inf, dtype=np.float32)
        scores[:k_eff] = self.counts[top[:k_eff]]
        return np.tile(top, (len(histories), 1)), np.tile(scores, (len(histories), 1))
