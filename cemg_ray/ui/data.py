"""The run as the page sees it. This is the only module of the UI that calls into ``cemg_ray.api.Run``, so a
rename there is one edit here; everything else of the UI works on the plain dicts this module returns.

Ranking goes through ``Run.recommend_for_users`` / ``Run.recommend`` (the same registry, default list and
exclusion rule as the evaluation, the export and serving). What the page shows beside a ranking and ``Run``
does not offer is computed here from the run's public artifacts: titles and pictures from the item table,
cold-start flags from the training split (``data.split.load_split``: the evaluation's own definition).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cemg_ray import artifacts
from cemg_ray.api import RunError, open_run
from cemg_ray.data.split import load_split
from cemg_ray.store import Store
from cemg_ray.ui.images import ImageSource, image_root

MAX_K = 200  # a page of results, not an export: the bulk export is the tool for long lists
MAX_PAGE = 500


class BadInput(ValueError):
    """A request the run cannot answer; ``field`` and ``value`` name what was wrong, ``status`` the HTTP code."""

    def __init__(self, field: str, value: Any, message: str, status: int = 400):
        super().__init__(message)
        self.field, self.value, self.message, self.status = field, value, message, status


def _score(value: float) -> float | None:
    """JSON has no infinities (a padded popularity row scores -inf): those become null."""
    value = float(value)
    return value if math.isfinite(value) else None


class RunView:
    """One opened run: its users, its catalog with everything the page shows per item, and its rankings."""

    def __init__(self, run_dir: str | Path, model: str | None = None, endpoint_url: str | None = None,
                 region: str | None = None):
        run = open_run(run_dir, model=model, endpoint_url=endpoint_url, region=region)
        self._run = run
        self._lock = threading.Lock()  # one model call at a time: the page's requests come from a thread pool
        self.store: Store = run.store
        self.cfg = run.cfg
        self.model: str = run.model
        self.model_version: str = str(run.model_version)
        self.run_uri: str = run.run_uri
        self.item_ids: list[str] = [str(i) for i in run.item_ids]
        self.item_index: dict[str, int] = dict(run.item_index)
        self._history: dict[str, np.ndarray] = run.user_history
        self.user_ids: list[str] = list(self._history)
        self._codes: dict[str, list[int]] = run.codes(self.item_ids) if self.store.exists(artifacts.CODES) else {}

        items = artifacts.read_items(self.store)
        names = items.column_names
        n = len(self.item_ids)
        self.titles: list[str | None] = items.column("title").to_pylist() if "title" in names else [None] * n
        # indexed chunk by chunk: joined into one array, a million images overflow its 32-bit offsets
        embedded = items.column("image") if "image" in names else [None] * n
        uris = items.column("image_uri").to_pylist() if "image_uri" in names else [None] * n
        ds = self.cfg.dataset
        self.images = ImageSource(_NullableBytes(embedded), uris, image_root(ds.images_dir, ds.path))
        self.cold_start_max: int = ds.cold_start_max
        self.max_len: int = ds.max_len
        self.train_counts = load_split(self.store, ds.max_len, ds.cold_start_max).train_counts
        self._search = [f"{i}\n{t or ''}".lower() for i, t in zip(self.item_ids, self.titles)]

    # -- what the page lists -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The header of the page: which run, which list, how large, and the cold-start threshold."""
        return {"run": self.run_uri, "name": self.cfg.name, "model": self.model, "model_version": self.model_version,
                "users": len(self.user_ids), "items": len(self.item_ids), "cold_start_max": self.cold_start_max,
                "max_len": self.max_len, "max_k": self.max_k, "has_codes": bool(self._codes)}

    @property
    def max_k(self) -> int:
        return min(MAX_K, len(self.item_ids))

    def users(self, q: str = "", offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of user ids (with their history lengths) whose id contains ``q``, case-insensitive."""
        _check_page(offset, limit)
        q = q.strip().lower()
        found = [u for u in self.user_ids if q in u.lower()] if q else self.user_ids
        page = found[offset:offset + limit]
        return {"total": len(found), "offset": offset, "limit": limit,
                "users": [{"user_id": u, "history_length": int(len(self._history[u]))} for u in page]}

    def items(self, q: str = "", offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of catalog items whose id or title contains ``q``: what the history box suggests."""
        _check_page(offset, limit)
        q = q.strip().lower()
        found = [i for i, text in enumerate(self._search) if q in text] if q else range(len(self.item_ids))
        page = found[offset:offset + limit]
        return {"total": len(found), "offset": offset, "limit": limit, "items": [self._item(i) for i in page]}

    def item(self, item_id: str) -> dict[str, Any]:
        return self._item(self._item_idx("item_id", item_id, status=404))

    def image(self, item_id: str) -> tuple[bytes, str] | None:
        return self.images.read(self._item_idx("item_id", item_id, status=404))

    # -- rankings (through Run) ------------------------------------------------------------------------------------
    def for_user(self, user_id: str, k: int = 10, exclude_seen: bool = True) -> dict[str, Any]:
        """A known user's history and their top-``k`` from that history, as ``Run.recommend_for_users`` gives it."""
        self._check_k(k)
        if user_id not in self._history:
            raise BadInput("user_id", user_id, f"user_id {user_id!r} is not a user of {self.run_uri}", status=404)
        with self._lock:
            ranked = self._run.recommend_for_users([user_id], k=k, exclude_seen=exclude_seen)[user_id]
        history = [int(i) for i in self._history[user_id]]
        return self._answer(history, ranked, k, exclude_seen, user_id=user_id)

    def for_history(self, history: Sequence[str], k: int = 10, exclude_seen: bool = True) -> dict[str, Any]:
        """The top-``k`` for a typed history of catalog item ids (oldest first), as ``Run.recommend`` gives it."""
        self._check_k(k)
        idx = [self._item_idx(f"history[{n}]", iid) for n, iid in enumerate(history)]
        try:
            with self._lock:
                ranked = self._run.recommend([list(history)], k=k, exclude_seen=exclude_seen)[0]
        except RunError as exc:  # an empty history on a run without the popularity baseline
            raise BadInput("history", list(history), str(exc), status=409) from exc
        return self._answer(idx, ranked, k, exclude_seen, user_id=None)

    def code_usage(self) -> list[dict[str, Any]]:
        """Per level of the semantic IDs: how many catalog items take each code value (the disambiguation last)."""
        if not self._codes:
            return []
        table = np.asarray([self._codes[i] for i in self.item_ids], dtype=np.int64)
        last = table.shape[1] - 1
        return [{"level": lvl, "counts": np.bincount(table[:, lvl]).tolist(), "disambiguation": lvl == last}
                for lvl in range(table.shape[1])]

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _check_k(self, k: int) -> None:
        if not 1 <= k <= self.max_k:
            raise BadInput("k", k, f"k must be between 1 and {self.max_k} (the catalog has {len(self.item_ids)} "
                                   f"items), got {k}")

    def _item_idx(self, field: str, item_id: str, status: int = 400) -> int:
        idx = self.item_index.get(item_id)
        if idx is None:
            raise BadInput(field, item_id, f"{field}: item id {item_id!r} is not in the catalog of {self.run_uri}",
                           status=status)
        return idx

    def _item(self, idx: int) -> dict[str, Any]:
        iid = self.item_ids[idx]
        count = int(self.train_counts[idx])
        return {"item_id": iid, "title": self.titles[idx], "image_url": self.images.url(idx, iid),
                "semantic_id": self._codes.get(iid), "train_interactions": count,
                "cold_start": count <= self.cold_start_max}

    def _answer(self, history: list[int], ranked: list[tuple[str, float]], k: int, exclude_seen: bool,
                user_id: str | None) -> dict[str, Any]:
        window = len(history) - self.max_len  # positions before this one are truncated away before ranking
        return {
            "user_id": user_id, "model": self.model, "model_version": self.model_version, "k": k,
            "exclude_seen": exclude_seen,
            "history": [{**self._item(i), "position": p, "seen_by_model": p >= window}
                        for p, i in enumerate(history)],
            "recommendations": [{**self._item(self.item_index[iid]), "rank": r + 1, "score": _score(score)}
                                for r, (iid, score) in enumerate(ranked)],
        }


class _NullableBytes:
    """Index an Arrow binary column (or a list) lazily: the pictures stay in Arrow memory, not Python objects."""

    def __init__(self, column: Any):
        self._column = column

    def __getitem__(self, idx: int) -> bytes | None:
        value = self._column[idx]
        return value.as_py() if hasattr(value, "as_py") else value

    def __len__(self) -> int:
        return len(self._column)


def _check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise BadInput("offset", offset, f"offset must be >= 0, got {offset}")
    if not 1 <= limit <= MAX_PAGE:
        raise BadInput("limit", limit, f"limit must be between 1 and {MAX_PAGE}, got {limit}")
