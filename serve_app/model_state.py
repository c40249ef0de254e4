"""Everything a replica needs to answer requests, loaded from one run directory.

A ``ModelState`` is never changed once built: a new ``user_config`` builds a new one and the
deployment swaps the reference, so a request already running finishes on the version it started
with. It is the Python API's ``Run`` (``cemg_ray.api``) with the serving limits beside it, so a replica loads
and ranks exactly as a notebook, the evaluation and the export do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from cemg_ray.api import Run, RunError, run_store
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


class ModelState(Run):
    """A ``Run`` plus the serving limits of its ``user_config``."""

    def __init__(self, conf: ServeConfig):
        self.conf = conf
        try:
            super().__init__(run_store(conf.run_dir, conf.endpoint_url, conf.region), conf.model)
        except RunError as exc:
            raise LoadError(str(exc)) from None
        log.info("serve: loaded %s (%s) from %s: %d items, %d users", self.model, self.model_version,
                 self.run_uri, len(self.item_ids), len(self.user_history))

    def metadata(self) -> dict:
        return {"model": self.model, "model_version": self.model_version, "run_dir": self.run_uri,
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
