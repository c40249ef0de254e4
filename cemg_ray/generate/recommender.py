"""CEMG as a Recommender: histories of item_idx in, top-K real items out, decoded by a policy (policy.py)."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cemg_ray import artifacts
from cemg_ray.generate.dataset import history_matrix
from cemg_ray.generate.decoding import build_index, decode_items, decode_unconstrained
from cemg_ray.generate.policy import NEEDS_COLD, NEEDS_DENSE, NEEDS_SASREC, BeamPolicy, BlendPolicy
from cemg_ray.store import Store

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.generate.itemseq import ItemSeqGenerator
    from cemg_ray.generate.tokens import TokenLayout


class PolicyViews:
    """What both generator families share about decoding policies: a view of the loaded model under another
    policy (nothing reloaded), checked by the family's own ``_checked``."""

    policy: Any

    def _checked(self, policy: Any) -> Any:
        raise NotImplementedError

    def with_policy(self, policy: Any) -> PolicyViews:
        """This loaded model decoding with ``policy`` instead."""
        view = copy.copy(self)
        view.policy = self._checked(policy)
        return view

    @property
    def constrained(self) -> bool:
        return getattr(self.policy, "constrained", True)


class ItemCEMGRecommender(PolicyViews):
    """The item-level generator (``train.history: items``) behind the ``recommend`` contract, decoding with one
    policy (cemg_ray/generate/policy.py). :meth:`with_policy` gives the same loaded model under another policy
    (the model, its prefix indexes and the dense head's item vectors are shared, not reloaded)."""

    name = "cemg"

    def __init__(self, model: ItemSeqGenerator, codes: np.ndarray, max_items: int, num_beams: int = 20,
                 policy: Any = None, model_version: str = "cemg", cold_items: np.ndarray | None = None,
                 sasrec: Callable[[], Any] | None = None, content: Callable[[], np.ndarray] | None = None):
        """``sasrec`` / ``content``: load the run's SASRec (``SASRecRecommender``) / its items' unit content vectors
        [N, d] for the ``blend`` policy, once, on first use; None where the run has none."""
        self.model, self.layout, self.codes = model, model.layout, codes
        self.max_items, self.num_beams = max_items, num_beams
        self.model_version = model_version
        self.index = build_index(codes, model.layout)
        self.cold_ids = None if cold_items is None else torch.as_tensor(np.flatnonzero(cold_items))
        self._load_sasrec, self._load_content = sasrec, content
        self._shared: dict[str, Any] = {}  # lazily built, shared by every policy's view of this model
        self.policy = self._checked(BeamPolicy() if policy is None else policy)

    def _checked(self, policy: Any) -> Any:
        if policy.kind in NEEDS_DENSE and not self.model.has_dense_head:
            raise ValueError(f"decoding policy {policy.kind!r} needs a generator trained with a dense head "
                             "(train.dense_weight > 0); this run's has none")
        if policy.kind in NEEDS_COLD and self.cold_ids is None:
            raise ValueError(f"decoding policy {policy.kind!r} needs the cold-start items")
        if policy.kind in NEEDS_SASREC and self._load_sasrec is None:
            raise ValueError(f"decoding policy {policy.kind!r} needs the run's SASRec, which it has not trained: "
                             "add the sasrec stage to the run (cemg-ray run JOB.yaml --stages sasrec)")
        if getattr(policy, "content_weight", 0) and self._load_content is None:
            raise ValueError(f"decoding policy {policy.kind!r} with content_weight > 0 needs the run's content "
                             "vectors (pca/reduced.safetensors), which it has not computed: a catalog without text "
                             "or images has none; use content_weight=0")
        return policy

    def _sasrec(self) -> Any:
        if "sasrec" not in self._shared:
            if self._load_sasrec is None:
                self._checked(BlendPolicy())  # raises, saying which stage to run
            self._shared["sasrec"] = self._load_sasrec()
        return self._shared["sasrec"]

    def _content(self) -> torch.Tensor:
        if "content" not in self._shared:
            if self._load_content is None:
                self._checked(BlendPolicy(content_weight=1.0))  # raises, saying why there is none
            self._shared["content"] = torch.as_tensor(self._load_content())
        return self._shared["content"]

    @property
    def num_items(self) -> int:
        return len(self.codes)

    def _dense_keys(self) -> torch.Tensor:
        if "dense_keys" not in self._shared:
            with torch.inference_mode():
                self._shared["dense_keys"] = self.model.dense_keys()  # the catalog's vectors, once per model
        return self._shared["dense_keys"]

    def _cold_index(self) -> Any:
        from cemg_ray.generate.item_decoding import subset_index

        if "cold_index" not in self._shared:
            self._shared["cold_index"] = subset_index(self.codes, self.cold_ids.numpy(), self.index)
        return self._shared["cold_index"]

    def recommend(self, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        from cemg_ray.generate.itemseq import right_padded

        if not len(histories):
            return np.full((0, k), -1, dtype=np.int64), np.full((0, k), -np.inf, dtype=np.float32)
        with torch.inference_mode():
            hidden = self.model.last_hidden(torch.as_tensor(right_padded(histories, self.max_items)))
            if self.policy.kind == "blend":
                items, scores = self._blend(hidden, histories, k)
            else:
                items, scores = self._decode(hidden, k, max(self.num_beams, k))
        return items.numpy(), scores.numpy().astype(np.float32)

    def _blend(self, hidden: torch.Tensor, histories: list[np.ndarray], k: int) -> tuple[torch.Tensor, torch.Tensor]:
        from cemg_ray.generate.item_decoding import blend_top_k

        policy = self.policy
        dense, sasrec, sim = self.blend_inputs(histories, policy.content_window if policy.content_weight else 0,
                                               hidden)
        return blend_top_k(dense, sasrec, policy.weight, self.cold_ids, policy.cold_bias, k, sim,
                           policy.content_weight)

    @torch.inference_mode()
    def blend_inputs(self, histories: list[np.ndarray], content_window: int = 0, hidden: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """What the ``blend`` policy mixes, each [B, N]: the dense head's logits, SASRec's logits and (with a
        ``content_window``) the content similarity; ``jobs/experiments/blend_grid.py`` scores its knobs from these."""
        from cemg_ray.generate.item_decoding import history_content_sim
        from cemg_ray.generate.itemseq import right_padded

        if hidden is None:
            hidden = self.model.last_hidden(torch.as_tensor(right_padded(histories, self.max_items)))
        dense = self.model.dense_logits(hidden, keys=self._dense_keys())
        sim = history_content_sim(self._content(), histories, content_window) if content_window else None
        return dense, self._sasrec().logits(histories), sim

    def _decode(self, hidden: torch.Tensor, k: int, beams: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's decoding from the backbone's last states [B, d]: (item_idx [B, k], scores [B, k])."""
        from cemg_ray.generate.item_decoding import (
            beam_search_from_hidden,
            dense_hybrid,
            dense_merge,
            dense_rerank,
            reserve_cold_share,
            unconstrained_from_hidden,
        )

        model, policy, kind = self.model, self.policy, self.policy.kind
        search = beam_search_from_hidden if self.constrained else unconstrained_from_hidden
        if kind == "dense_all":
            return dense_rerank(model, hidden, None, None, k, keys=self._dense_keys())
        if kind == "merge":
            candidates, _ = search(model, hidden, self.index, beams, k)
            return dense_merge(model, hidden, candidates, self.cold_ids, k, policy.cold_bias, self._dense_keys())
        if kind in ("hybrid", "dense"):
            candidates, log_probs = search(model, hidden, self.index, beams, beams)
            if kind == "hybrid":
                return dense_hybrid(model, hidden, candidates, log_probs, self.cold_ids, k, policy.weight,
                                    policy.cold_bias, self._dense_keys())
            return dense_rerank(model, hidden, candidates, self.cold_ids, k, policy.cold_bias, self._dense_keys())
        items, scores = search(model, hidden, self.index, beams, k)
        cold_index = self._cold_index() if kind == "cold_share" else None
        if cold_index is not None:
            if "is_cold" not in self._shared:
                self._shared["is_cold"] = torch.zeros(len(self.codes), dtype=torch.bool)
                self._shared["is_cold"][self.cold_ids] = True
            cold_k = min(k, cold_index.num_items, beams)
            c_items, c_scores = beam_search_from_hidden(model, hidden, cold_index, beams, cold_k)
            items, scores = reserve_cold_share(items, scores, c_items, c_scores, self._shared["is_cold"],
                                               policy.share)
        return items, scores


class CEMGRecommender(PolicyViews):
    """The token-layout generator (the paper's T5 layout): beam search only, constrained or not."""

    name = "cemg"

    def __init__(self, model: torch.nn.Module, layout: TokenLayout, codes: np.ndarray, max_items: int,
                 num_beams: int = 20, policy: Any = None, model_version: str = "cemg"):
        self.model, self.layout, self.codes = model, layout, codes
        self.max_items, self.num_beams = max_items, num_beams
        self.model_version = model_version
        self.index = build_index(codes, layout)
        self.policy = self._checked(BeamPolicy() if policy is None else policy)

    @staticmethod
    def _checked(policy: Any) -> Any:
        if policy.kind != "beam":
            raise ValueError(f"decoding policy {policy.kind!r} needs the item-level generator (train.history: items); "
                             "this run's generator uses the token layout, which decodes with the beam only "
                             "(policies 'beam' and 'unconstrained')")
        return policy

    @property
    def num_items(self) -> int:
        return len(self.codes)

    def recommend(self, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = history_matrix(histories, self.codes, self.layout, self.max_items)
        ids_t, mask_t = torch.as_tensor(ids), torch.as_tensor(mask)
        beams = max(self.num_beams, k)
        if self.constrained:
            return decode_items(self.model, ids_t, mask_t, self.index, beams, k)
        return decode_unconstrained(self.model, ids_t, mask_t, self.index, beams, k)


def load_recommender(cfg: JobConfig, store: Store, policy: Any = None) -> CEMGRecommender | ItemCEMGRecommender:
    """The trained generator of a run directory with its code table and prefix index, decoding with ``policy``
    (a policy object; None: the beam), through the family that saved it (``family.family_of_model_dir``)."""
    from cemg_ray.generate.family import family_of_model_dir

    torch.set_num_threads(max(1, torch.get_num_threads()))
    version = store.read_json(artifacts.GENERATOR_REPORT).get("model_version", "cemg") \
        if store.exists(artifacts.GENERATOR_REPORT) else "cemg"
    with tempfile.TemporaryDirectory() as tmp:
        folder = store.download_dir(artifacts.GENERATOR_MODEL, tmp)
        return family_of_model_dir(folder).recommender(folder, cfg, store, policy, version)
