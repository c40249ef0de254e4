"""Everything a replica needs to answer requests, loaded from one run directory.

A ``ModelState`` is immutable once built; a new ``user_config`` builds a new one and the
deployment swaps the reference, so requests already running finish on the version they started.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from cemg_ray.config import JobConfig
from cemg_ray.evaluate.popularity import PopularityRecommender
from cemg_ray.evaluate.stage import load_by_name
from cemg_ray.store import Store
from serve_app.schemas import ServeConfig

log = logging.getLogger("cemg_ray.serve")


@dataclass
class Resolved:
    """A request mapped to item indices, with what was ignored and why."""

    history: np.ndarray
    unknown: list[str] = field(default_factory=list)
    error: str | None = None


class ModelState:
    def __init__(self, conf: ServeConfig):
        self.conf = conf
        store = Store(conf.run_dir, conf.endpoint_url, conf.region)
        manifest = store.read_json("manifest.json")
        self.cfg = JobConfig.model_validate(manifest["config"])
        self.cfg.run_dir = conf.run_dir
        self.recommender = load_by_name(conf.model, self.cfg, store)
        self.popular = PopularityRecommender.from_store(store)
        items = store.read_parquet("data/items.parquet", columns=["item_idx", "item_id"])
        self.item_ids = np.asarray(items.column("item_id").to_pylist(), dtype=object)
        self.item_index = {iid: i for i, iid in enumerate(self.item_ids)}
        seqs = store.read_parquet("data/sequences.parquet", columns=["user_id", "items"])
        sequences = [np.asarray(s, dtype=np.int64) for s in seqs.column("items").to_pylist()]
        self.user_history = dict(zip(seqs.column("user_id").to_pylist(), sequences))
        self.model_version = str(getattr(self.recommender, "model_version", conf.model))
        self.code_config = store.read_json("tokenize/meta.json") if store.exists("tokenize/meta.json") else None
        log.info("serve: loaded %s (%s) from %s: %d items, %d users", conf.model, self.model_version,
                 conf.run_dir, len(self.item_ids), len(self.user_history))

    def metadata(self) -> dict:
        return {"model": self.conf.model, "model_version": self.model_version, "run_dir": self.conf.run_dir,
                "catalog_size": len(self.item_ids), "users": len(self.user_history), "max_k": self.conf.max_k,
                "max_history": self.cfg.dataset.max_len, "code_config": self.code_config}

    def resolve(self, user_id: str | None, history: list[str] | None) -> Resolved:
        if user_id is not None:
            if user_id not in self.user_history:
                return Resolved(np.zeros(0, np.int64), error=f"unknown user_id {user_id!r}")
            return Resolved(np.asarray(self.user_history[user_id], dtype=np.int64))
        known, unknown = [], []
        for iid in history or []:
            idx = self.item_index.get(iid)
            (known if idx is not None else unknown).append(idx if idx is not None else iid)
        if history and not known:
            return Resolved(np.zeros(0, np.int64), unknown, error="none of the history's item ids is in the catalog")
        return Resolved(np.asarray(known, dtype=np.int64), unknown)

    def recommend(self, histories: list[np.ndarray], ks: list[int],
                  exclude: list[bool]) -> list[list[tuple[str, float]]]:
        """One ranked list per history; empty histories get the popular items."""
        kmax = max(ks) if ks else 1
        asked = [h[-self.cfg.dataset.max_len:] for h in histories]
        extra = max((len(h) for h, ex in zip(asked, exclude) if ex), default=0)
        want = min(kmax + extra, len(self.item_ids))
        nonempty = [i for i, h in enumerate(asked) if len(h)]
        out: list[list[tuple[str, float]]] = [[] for _ in histories]
        results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if nonempty:
            items, scores = self.recommender.recommend([asked[i] for i in nonempty], want)
            results.update({i: (items[r], scores[r]) for r, i in enumerate(nonempty)})
        pop_items, pop_scores = self.popular.recommend([np.zeros(0, np.int64)], want)
        for i, h in enumerate(histories):
            items, scores = results.get(i, (pop_items[0], pop_scores[0]))
            seen = set(h.tolist()) if exclude[i] else set()
            for item, score in zip(items.tolist(), scores.tolist()):
                if item < 0 or item in seen:
                    continue
                out[i].append((str(self.item_ids[item]), float(score)))
                if len(out[i]) == ks[i]:
                    break
        return out
