"""Everything a replica needs to answer requests, loaded from one run directory.

A ``ModelState`` is never changed once built: a new ``user_config`` builds a new one and the
deployment swaps the reference, so a request already running finishes on the version it started
with. Loading goes through the same model registry as evaluation and export (``cemg_ray.recommenders``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cemg_ray import artifacts
from cemg_ray.config import JobConfig
from cemg_ray.recommenders import fetch_size, load, model_stage, unseen_top_k
from cemg_ray.store import Store
from serve_app.schemas import ServeConfig

log = logging.getLogger("cemg_ray.serve")


class LoadError(RuntimeError):
    """The run directory cannot serve the requested model; the message says what is missing."""


@dataclass
class Resolved:
    """A request mapped to item indices, with the ids that were ignored and why it cannot be served."""

    history: np.ndarray
    unknown: list[str] = field(default_factory=list)
    error: str | None = None
    status: int = 422


class ModelState:
    def __init__(self, conf: ServeConfig):
        self.conf = conf
        run_dir = conf.run_dir
        if "://" not in run_dir:  # a local path: Store would create a missing one, so check first
            local = Path(run_dir).expanduser().resolve()
            if not local.is_dir():
                raise LoadError(f"run_dir {run_dir!r} ({local}) does not exist")
            run_dir = str(local)
        store = Store(run_dir, conf.endpoint_url, conf.region)
        if not store.exists(artifacts.MANIFEST):
            raise LoadError(f"run_dir {store.root_uri} has no manifest.json: not a run directory")
        self.cfg = JobConfig.model_validate(store.read_json(artifacts.MANIFEST)["config"])
        self.cfg.run_dir = run_dir
        stage = model_stage(conf.model)
        marker = artifacts.read_marker(store, stage) or {}
        if marker.get("status") != "ok":
            raise LoadError(f"model {conf.model!r} needs the {stage!r} stage, which has not completed in "
                            f"{store.root_uri}; run: cemg-ray run JOB.yaml --stages {stage}")
        self.recommender = load(conf.model, self.cfg, store)
        self.model_version = self.recommender.model_version
        self.popular = None
        if store.exists(artifacts.POPULARITY):
            from cemg_ray.evaluate.popularity import PopularityRecommender

            self.popular = PopularityRecommender.from_store(store)
        items = store.read_parquet(artifacts.ITEMS, columns=["item_idx", "item_id"])
        idx = np.asarray(items.column("item_idx").to_numpy(), dtype=np.int64)
        self.item_ids = np.empty(len(idx), dtype=object)
        self.item_ids[idx] = [str(i) for i in items.column("item_id").to_pylist()]
        self.item_index = {iid: int(i) for i, iid in enumerate(self.item_ids)}
        seqs = store.read_parquet(artifacts.SEQUENCES, columns=["user_id", "items"])
        self.user_history = {str(u): np.asarray(s, dtype=np.int64)
                             for u, s in zip(seqs.column("user_id").to_pylist(), seqs.column("items").to_pylist())}
        self.code_config = store.read_json(artifacts.CODES_META) if store.exists(artifacts.CODES_META) else None
        self.run_uri = store.root_uri
        log.info("serve: loaded %s (%s) from %s: %d items, %d users", conf.model, self.model_version,
                 self.run_uri, len(self.item_ids), len(self.user_history))

    def metadata(self) -> dict:
        return {"model": self.conf.model, "model_version": self.model_version, "run_dir": self.run_uri,
                "catalog_size": len(self.item_ids), "users": len(self.user_history), "max_k": self.conf.max_k,
                "max_history": self.conf.max_history, "history_used": self.cfg.dataset.max_len,
                "code_config": self.code_config, "popular_fallback": self.popular is not None}

    def resolve(self, user_id: str | None, history: list[str] | None) -> Resolved:
        """Map a request to item indices; unknown ids are dropped and reported."""
        if user_id is not None:
            if user_id not in self.user_history:
                return Resolved(np.zeros(0, np.int64), error=f"unknown user_id {user_id!r}; send a 'history' "
                                "of item ids for users the model has not seen", status=404)
            return Resolved(self.user_history[user_id])
        known, unknown = [], []
        for iid in history or []:
            idx = self.item_index.get(iid)
            if idx is None:
                unknown.append(iid)
            else:
                known.append(idx)
        if history and not known:
            return Resolved(np.zeros(0, np.int64), unknown, "none of the history's item ids is in the catalog")
        if not known and self.popular is None:
            return Resolved(np.zeros(0, np.int64), unknown, "empty history, and this run has no popularity "
                            "baseline to fall back to")
        return Resolved(np.asarray(known, dtype=np.int64), unknown)

    def recommend(self, histories: list[np.ndarray], ks: list[int],
                  exclude: list[bool]) -> list[list[tuple[str, float]]]:
        """One ranked list per history (one model call for the whole batch); empty histories get popular items.

        With ``exclude`` the model is asked for ``k`` plus the number of distinct seen items, so the
        list is still ``k`` long after the seen ones are removed.
        """
        n = len(self.item_ids)
        seen = [set(h.tolist()) if ex else set() for h, ex in zip(histories, exclude)]
        want = max(fetch_size(k, len(s), n) for k, s in zip(ks, seen))
        asked = [h[-self.cfg.dataset.max_len:] for h in histories]
        rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        nonempty = [i for i, h in enumerate(asked) if len(h)]
        if nonempty:
            items, scores = self.recommender.recommend([asked[i] for i in nonempty], want)
            rows.update({i: (items[r], scores[r]) for r, i in enumerate(nonempty)})
        if len(nonempty) < len(asked):
            pop_items, pop_scores = self.popular.recommend([np.zeros(0, np.int64)], want)
            for i in set(range(len(asked))) - set(nonempty):
                rows[i] = (pop_items[0], pop_scores[0])
        return [[(str(self.item_ids[item]), score) for item, score in unseen_top_k(*rows[i], seen[i], ks[i], n)]
                for i in range(len(histories))]
