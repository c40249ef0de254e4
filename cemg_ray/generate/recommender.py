"""CEMG as a Recommender: histories of item_idx in, top-K real items out (constrained or not)."""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

import numpy as np
import torch

from cemg_ray import artifacts
from cemg_ray.generate.dataset import history_matrix
from cemg_ray.generate.decoding import build_index, decode_items, decode_unconstrained
from cemg_ray.generate.model import load_model
from cemg_ray.store import Store

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig
    from cemg_ray.generate.itemseq import ItemSeqGenerator
    from cemg_ray.generate.tokens import TokenLayout


class ItemCEMGRecommender:
    """The item-level generator (``train.history: items``) behind the same ``recommend`` contract.

    ``cold_share > 0`` reserves that share of each list for cold-start items (``cold_items``), found by
    a second beam search over their own prefix index (``item_decoding.reserve_cold_share``).
    ``rerank="cold"`` ranks the beam's candidates plus the cold-start items by the dense head instead;
    ``rerank="all"`` ranks the whole catalog by it (``item_decoding.dense_rerank``); ``rerank="merge"`` keeps
    the beam's order and merges cold items in (``dense_merge``); ``rerank="hybrid"`` ranks the beam's candidates
    plus the cold items by the mixture of both heads' probabilities (``dense_hybrid``).
    """

    name = "cemg"

    def __init__(self, model: ItemSeqGenerator, codes: np.ndarray, max_items: int, num_beams: int = 20,
                 constrained: bool = True, model_version: str = "cemg", cold_items: np.ndarray | None = None,
                 cold_share: float = 0.0, rerank: str | None = None, cold_bias: float = 0.0,
                 hybrid_weight: float = 0.8, hybrid_cold_bias: float = 0.0):
        from cemg_ray.generate.item_decoding import subset_index

        self.model, self.layout, self.codes = model, model.layout, codes
        self.max_items, self.num_beams, self.constrained = max_items, num_beams, constrained
        self.model_version = model_version
        self.index = build_index(codes, model.layout)
        self.cold_share = cold_share if cold_items is not None else 0.0
        self.is_cold = torch.zeros(len(codes), dtype=torch.bool)
        self.cold_index = None
        if rerank not in (None, "cold", "all", "merge", "hybrid"):
            raise ValueError(f"rerank: expected None, 'cold', 'merge', 'hybrid' or 'all', got {rerank!r}")
        if rerank and not model.has_dense_head:
            raise ValueError("the dense re-ranking needs a generator trained with a dense head "
                             "(train.dense_weight > 0); this run's has none")
        if rerank in ("cold", "merge", "hybrid") and cold_items is None:
            raise ValueError(f"rerank={rerank!r} needs the cold-start items")
        self.rerank, self.cold_bias = rerank, cold_bias
        self.hybrid_weight, self.hybrid_cold_bias = hybrid_weight, hybrid_cold_bias
        self.dense_keys = None
        if rerank:
            with torch.inference_mode():
                self.dense_keys = model.dense_keys()  # the catalog's vectors, once per loaded model
        self.cold_ids = None if cold_items is None else torch.as_tensor(np.flatnonzero(cold_items))
        if self.cold_share > 0:
            self.is_cold[torch.as_tensor(np.flatnonzero(cold_items))] = True
            self.cold_index = subset_index(codes, np.flatnonzero(cold_items), self.index)

    @property
    def num_items(self) -> int:
        return len(self.codes)

    def recommend(self, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        from cemg_ray.generate.itemseq import right_padded

        if not len(histories):
            return np.full((0, k), -1, dtype=np.int64), np.full((0, k), -np.inf, dtype=np.float32)
        with torch.inference_mode():
            hidden = self.model.last_hidden(torch.as_tensor(right_padded(histories, self.max_items)))
            items, scores = self._decode(hidden, k, max(self.num_beams, k))
        return items.numpy(), scores.numpy().astype(np.float32)

    def _decode(self, hidden: torch.Tensor, k: int, beams: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The configured decoding from the backbone's last states [B, d]: (item_idx [B, k], scores [B, k])."""
        from cemg_ray.generate.item_decoding import (
            beam_search_from_hidden,
            dense_hybrid,
            dense_merge,
            dense_rerank,
            reserve_cold_share,
            unconstrained_from_hidden,
        )

        model, keys = self.model, self.dense_keys
        search = beam_search_from_hidden if self.constrained else unconstrained_from_hidden
        if self.rerank == "all":
            return dense_rerank(model, hidden, None, None, k, keys=keys)
        if self.rerank == "merge":
            candidates, _ = search(model, hidden, self.index, beams, k)
            return dense_merge(model, hidden, candidates, self.cold_ids, k, self.cold_bias, keys)
        if self.rerank in ("hybrid", "cold"):
            candidates, log_probs = search(model, hidden, self.index, beams, beams)
            if self.rerank == "hybrid":
                return dense_hybrid(model, hidden, candidates, log_probs, self.cold_ids, k, self.hybrid_weight,
                                    self.hybrid_cold_bias, keys)
            return dense_rerank(model, hidden, candidates, self.cold_ids, k, self.cold_bias, keys)
        items, scores = search(model, hidden, self.index, beams, k)
        if self.cold_index is not None:
            cold_k = min(k, self.cold_index.num_items, beams)
            c_items, c_scores = beam_search_from_hidden(model, hidden, self.cold_index, beams, cold_k)
            items, scores = reserve_cold_share(items, scores, c_items, c_scores, self.is_cold, self.cold_share)
        return items, scores


class CEMGRecommender:
    name = "cemg"

    def __init__(self, model: torch.nn.Module, layout: TokenLayout, codes: np.ndarray, max_items: int,
                 num_beams: int = 20, constrained: bool = True, model_version: str = "cemg"):
        self.model, self.layout, self.codes = model, layout, codes
        self.max_items, self.num_beams, self.constrained = max_items, num_beams, constrained
        self.model_version = model_version
        self.index = build_index(codes, layout)

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


def load_recommender(cfg: JobConfig, store: Store, constrained: bool = True,
                     cold_share: float | None = None,
                     rerank: str | None = None) -> CEMGRecommender | ItemCEMGRecommender:
    """The trained generator of a run directory with its code table and prefix index.

    ``cold_share`` (the ``cemg_cold`` model; None = 0) reserves a share of the list for cold-start items;
    ``rerank`` (``cemg_dense``: "cold", ``cemg_dense_all``: "all") ranks by the dense head. Both need the
    item-level generator.
    """
    from cemg_ray.generate.itemseq import is_item_model_dir, load_item_model
    from cemg_ray.tokenize.codes import load_codes

    torch.set_num_threads(max(1, torch.get_num_threads()))
    version = store.read_json(artifacts.GENERATOR_REPORT).get("model_version", "cemg") \
        if store.exists(artifacts.GENERATOR_REPORT) else "cemg"
    with tempfile.TemporaryDirectory() as tmp:
        folder = store.download_dir(artifacts.GENERATOR_MODEL, tmp)
        if is_item_model_dir(folder):
            share = cfg.decode.cold_share if cold_share is None else cold_share
            cold = None
            if share or rerank in ("cold", "merge", "hybrid"):
                from cemg_ray.data.split import load_split

                cold = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max).cold_items()
            return ItemCEMGRecommender(load_item_model(folder), load_codes(store), cfg.dataset.max_len,
                                       cfg.decode.num_beams, constrained, version, cold, share if share else 0.0,
                                       rerank, cfg.decode.cold_bias, cfg.decode.hybrid_weight,
                                       cfg.decode.hybrid_cold_bias)
        if cold_share or rerank:
            raise ValueError("cemg_cold / cemg_dense: the cold-start share and the dense head need the item-level "
                             "generator (train.history: items); this run's generator uses the token layout")
        model, layout = load_model(folder)
    return CEMGRecommender(model, layout, load_codes(store), cfg.dataset.max_len, cfg.decode.num_beams,
                           constrained, version)
