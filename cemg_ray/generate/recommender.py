"""CEMG as a Recommender: histories of item_idx in, top-K real items out (constrained or not)."""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from cemg_ray.generate.dataset import history_matrix
from cemg_ray.generate.decoding import build_index, decode_items, decode_unconstrained
from cemg_ray.generate.model import load_model
from cemg_ray.store import Store


class CEMGRecommender:
    name = "cemg"

    def __init__(self, model: torch.nn.Module, layout, codes: np.ndarray, max_items: int,  # noqa: ANN001
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


def load_recommender(cfg, store: Store, constrained: bool = True) -> CEMGRecommender:  # noqa: ANN001 - JobConfig
    """The trained generator of a run directory with its code table and prefix index."""
    from cemg_ray.generate.stage import load_codes

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = store.download_dir("generate/model", tmp)
        model, layout = load_model(folder)
    version = store.read_json("generate/report.json").get("model_version", "cemg") \
        if store.exists("generate/report.json") else "cemg"
    return CEMGRecommender(model, layout, load_codes(store), cfg.dataset.max_len, cfg.decode.num_beams,
                           constrained, version)
