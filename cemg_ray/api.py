"""The Python API: a trained run directory as one object, for notebooks and scripts.

    from cemg_ray.api import open_run

    run = open_run("runs/demo")                       # or "s3://bucket/runs/demo"
    run.recommend_for_users(["u1", "u2"], k=10)       # known users: their own histories
    run.recommend([["i3", "i17"]], k=10)              # any history of item ids
    run.recommend([["i3"]], k=10, policy="dense_all") # another decoding policy of the same generator
    run.codes(["i3"])                                 # semantic IDs
    run.assign_codes("new_items.jsonl")               # codes for items added after training

It loads through the same registry (``cemg_ray.recommenders``) and applies the same exclusion rule as
the evaluation, the bulk export and the serving replicas (``serve_app.model_state`` builds on this class).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cemg_ray import artifacts
from cemg_ray.config import JobConfig
from cemg_ray.recommenders import Recommender, fetch_size, load, rank_unseen, unseen_top_k
from cemg_ray.store import Store

log = logging.getLogger("cemg_ray")


MAX_POLICY_VIEWS = 16  # views of the loaded generator under other policies kept per Run (each is a cheap copy)


class RunError(RuntimeError):
    """The directory is not a usable run for the requested model; the message says what is missing."""


class Run:
    """A run directory's model, catalog and users, loaded once and never changed: the one predictor that the
    Python API, the serving replicas (``serve_app.model_state``) and the bulk export's actors
    (``export.stage.ExportDecoder``) rank through."""

    def __init__(self, store: Store, model: str | None = None, policy: str | None = None,
                 cfg: JobConfig | None = None):
        """``cfg``: the job's resolved config (a job's stage, such as export); None: the run's own (its manifest)."""
        from cemg_ray.recommenders import default_model, model_stage

        if not store.exists(artifacts.MANIFEST):
            raise RunError(f"run_dir {store.root_uri} has no manifest.json: not a run directory")
        self.store = store
        self.cfg = cfg or JobConfig.model_validate(artifacts.read_manifest(store)["config"])
        if cfg is None:
            self.cfg.run_dir = store.root_uri
        model = model or default_model(store)  # the list the run chose on validation
        if policy:  # another decoding of the same model: cemg:hybrid + policy "dense" -> cemg:dense
            from cemg_ray.recommenders import model_name

            model = f"{model_name(model)}:{policy}"
        self.model = model
        stage = model_stage(model)
        if (artifacts.read_marker(store, stage) or {}).get("status") != "ok":
            raise RunError(f"model {model!r} needs the {stage!r} stage, which has not completed in "
                           f"{store.root_uri}; run: cemg-ray run JOB.yaml --stages {stage}")
        self.recommender: Recommender = load(model, self.cfg, store)
        self._by_policy: dict[str, Recommender] = {}  # the loaded generator under other policies, per request
        self.model_version = self.recommender.model_version
        self.popular = None
        if store.exists(artifacts.POPULARITY):
            from cemg_ray.evaluate.popularity import PopularityRecommender

            self.popular = PopularityRecommender.from_store(store)
        items = artifacts.read_items(store, ["item_idx", "item_id"])
        idx = np.asarray(items.column("item_idx").to_numpy(), dtype=np.int64)
        self.item_ids = np.empty(len(idx), dtype=object)
        self.item_ids[idx] = [str(i) for i in items.column("item_id").to_pylist()]
        self.item_index = {iid: int(i) for i, iid in enumerate(self.item_ids)}
        self.code_config = artifacts.read_codes_meta(store) if store.exists(artifacts.CODES_META) else None
        self.run_uri = store.root_uri

    @functools.cached_property
    def user_history(self) -> dict[str, np.ndarray]:
        """Every user's full sequence, read on first use (the export's actors are sent their users instead)."""
        seqs = artifacts.read_sequences(self.store, ["user_id", "items"])
        return {str(u): np.asarray(s, dtype=np.int64)
                for u, s in zip(seqs.column("user_id").to_pylist(), seqs.column("items").to_pylist())}

    # -- the core every consumer shares (item indices in, ranked item ids out) ------------------------------------
    def recommender_for(self, policy: str | None = None) -> Recommender:
        """The loaded model, or the same loaded generator decoding with another named ``policy`` (with its knobs:
        ``hybrid(weight=0.7)``); nothing is reloaded."""
        from cemg_ray.recommenders import model_name, with_policy

        if not policy:
            return self.recommender
        if policy not in self._by_policy:
            if len(self._by_policy) >= MAX_POLICY_VIEWS:  # requests may send any knobs: keep the newest few
                self._by_policy.pop(next(iter(self._by_policy)))
            ref = f"{model_name(self.model)}:{policy}"
            self._by_policy[policy] = with_policy(self.recommender, ref, self.cfg, self.store)
        return self._by_policy[policy]

    def rank_indices(self, histories: list[np.ndarray], ks: list[int], exclude: list[bool],
                     policy: str | None = None) -> list[list[tuple[int, float]]]:
        """One ranked list of (item_idx, score) per history of item indices; empty histories get popular items.

        With ``exclude`` the model is asked for ``k`` plus the number of distinct seen items, so the list is still
        ``k`` long after the seen ones are removed (``recommenders.rank_unseen``); the model reads the last
        ``dataset.max_len`` items. ``policy``: another decoding of the loaded generator (:meth:`recommender_for`).
        """
        rec = self.recommender_for(policy)
        n = len(self.item_ids)
        seen = [set(h.tolist()) if ex else set() for h, ex in zip(histories, exclude)]
        asked = [h[-self.cfg.dataset.max_len:] for h in histories]
        out: list[list[tuple[int, float]]] = [[] for _ in histories]
        nonempty = [i for i, h in enumerate(asked) if len(h)]
        if nonempty:
            ranked = rank_unseen(rec, [asked[i] for i in nonempty], [ks[i] for i in nonempty],
                                 [seen[i] for i in nonempty], n)
            for i, row in zip(nonempty, ranked):
                out[i] = row
        empty = [i for i, h in enumerate(asked) if not len(h)]
        if empty:
            if self.popular is None:
                raise RunError(f"an empty history needs the popularity baseline, which {self.run_uri} does not have")
            want = max(fetch_size(ks[i], len(seen[i]), n) for i in empty)
            pop_items, pop_scores = self.popular.recommend([np.zeros(0, np.int64)], want)
            for i in empty:
                out[i] = unseen_top_k(pop_items[0], pop_scores[0], seen[i], ks[i], n)
        return out

    def rank(self, histories: list[np.ndarray], ks: list[int], exclude: list[bool],
             policy: str | None = None) -> list[list[tuple[str, float]]]:
        """:meth:`rank_indices` with catalog item ids: what serving's replicas and the export's actors return."""
        return [[(str(self.item_ids[item]), score) for item, score in row]
                for row in self.rank_indices(histories, ks, exclude, policy)]

    # -- by ids, for people ---------------------------------------------------------------------------------------
    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = True,
                  policy: str | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item id, score) per history of item ids; ids not in the catalog are an error that names them."""
        idx = []
        for n, history in enumerate(histories):
            unknown = [i for i in history if i not in self.item_index]
            if unknown:
                raise KeyError(f"histories[{n}]: item id(s) not in the catalog: {unknown[:5]}")
            idx.append(np.asarray([self.item_index[i] for i in history], dtype=np.int64))
        return self.rank(idx, [k] * len(idx), [exclude_seen] * len(idx), policy)

    def recommend_for_users(self, user_ids: Sequence[str], k: int = 10, exclude_seen: bool = True,
                            policy: str | None = None) -> dict[str, list[tuple[str, float]]]:
        """Top-``k`` for users of the run's data, from their own full histories."""
        unknown = [u for u in user_ids if str(u) not in self.user_history]
        if unknown:
            raise KeyError(f"user id(s) not in {self.run_uri}: {unknown[:5]}")
        lists = self.rank([self.user_history[str(u)] for u in user_ids], [k] * len(user_ids),
                          [exclude_seen] * len(user_ids), policy)
        return {str(u): ranked for u, ranked in zip(user_ids, lists)}

    def codes(self, item_ids: Sequence[str]) -> dict[str, list[int]]:
        """Semantic IDs (all levels, the disambiguation level last) of catalog items or items added since."""
        from cemg_ray.tokenize.assign import existing_codes

        ids, table = existing_codes(self.store)
        where = {iid: n for n, iid in enumerate(ids)}
        unknown = [i for i in item_ids if i not in where]
        if unknown:
            raise KeyError(f"item id(s) without codes in {self.run_uri}: {unknown[:5]}")
        return {i: table[where[i]].tolist() for i in item_ids}

    def assign_codes(self, items: str | Path) -> dict[str, Any]:
        """Codes for new items (Parquet or JSON lines) through the trained encoders, PCA, fusion and RQ-VAE."""
        from cemg_ray.tokenize.assign import assign_codes, read_new_items

        return assign_codes(self.cfg, self.store, read_new_items(str(items)))


def run_store(run_dir: str | Path, endpoint_url: str | None = None, region: str | None = None) -> Store:
    """The Store of an existing run directory; a local path that does not exist is an error, not created."""
    uri = str(run_dir)
    if "://" not in uri:
        local = Path(uri).expanduser().resolve()
        if not local.is_dir():
            raise RunError(f"run_dir {uri!r} ({local}) does not exist")
        uri = str(local)
    return Store(uri, endpoint_url, region)


def open_run(run_dir: str | Path, model: str | None = None, endpoint_url: str | None = None,
             region: str | None = None, policy: str | None = None) -> Run:
    """Open a trained run directory (a local path or ``s3://bucket/prefix``; credentials from the AWS chain).

    ``model``: a registered model, optionally with a decoding policy (``cemg``, ``cemg:hybrid``, ``sasrec``);
    None: the run's default list (``eval/default_model.json``, chosen on validation), else ``cemg``.
    ``policy``: decode the model with this named policy instead (``open_run(d, policy="dense_all")``)."""
    return Run(run_store(run_dir, endpoint_url, region), model, policy)
