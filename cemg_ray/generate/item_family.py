"""The item-level generator as a generator family (``family.GeneratorFamily``): one pooled vector per history
item into a causal decoder, the next item's codes at every position (``itemseq.py`` holds the model,
``item_decoding.py`` its search and decoding policies)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cemg_ray import artifacts
from cemg_ray.generate.dataset import item_eval_tensors, item_tensors
from cemg_ray.generate.itemseq import (
    CONFIG_FILE,
    build_item_model,
    load_item_model,
    save_item_model,
    trim_right_padding,
)

if TYPE_CHECKING:
    from pathlib import Path

    from cemg_ray.config import JobConfig
    from cemg_ray.data.split import Split
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.item_decoding import ItemScorer
    from cemg_ray.generate.itemseq import ItemSeqGenerator
    from cemg_ray.generate.prefix_index import PrefixIndex
    from cemg_ray.generate.tokens import TokenLayout
    from cemg_ray.store import Store


def dense_top_k(model: ItemSeqGenerator, histories: torch.Tensor, k: int) -> np.ndarray:
    """The dense head's top-k over the whole catalog for right-padded histories [B, T], their items removed."""
    scores = model.dense_logits(model.last_hidden(histories))
    rows = torch.arange(len(histories)).unsqueeze(1).expand_as(histories)
    seen = histories >= 0
    scores[rows[seen], histories[seen]] = float("-inf")
    return scores.topk(min(k, scores.shape[1]), dim=-1).indices.numpy()


class ItemFamily:
    history = "items"
    batch_keys = ("items", "labels")
    config_file = CONFIG_FILE

    def check_inputs(self, cfg: TrainConfig, store: Store) -> None:
        if cfg.content_input and not store.exists(artifacts.FUSED):
            raise FileNotFoundError(f"train.content_input needs {store.uri(artifacts.FUSED)}, which this run's "
                                    "tokenize stage did not write; re-run it: "
                                    "cemg-ray run JOB --stages tokenize --force")

    def training_tensors(self, cfg: TrainConfig, split: Split, codes: np.ndarray, layout: TokenLayout,
                         valid: tuple[list[np.ndarray], np.ndarray], max_items: int
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        train = item_tensors(split.train, max_items, cfg.objective)
        return train, item_eval_tensors(*valid, max_items), int((train["labels"] >= 0).sum())

    def build(self, cfg: TrainConfig, layout: TokenLayout, codes: np.ndarray, store: Store,
              max_items: int) -> ItemSeqGenerator:
        content = store.read_tensors(artifacts.FUSED)["fused"] if cfg.content_input else None
        counts = store.read_tensors(artifacts.GENERATOR_ITEM_COUNTS)["train_counts"] if cfg.item_ids else None
        return build_item_model(cfg, layout, codes, max_items, content, counts)

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return (tensors["items"] >= 0).sum(1)

    def model_batch(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.long() for k, v in trim_right_padding(batch).items()}

    def scorer(self, model: ItemSeqGenerator, rows: dict[str, np.ndarray], layout: TokenLayout,
               num_beams: int) -> ItemScorer:
        from cemg_ray.generate.item_decoding import ItemScorer

        return ItemScorer(model, model.last_hidden(torch.as_tensor(rows["items"]).long()), num_beams)

    def top_k(self, model: ItemSeqGenerator, rows: dict[str, np.ndarray], index: PrefixIndex, num_beams: int,
              k: int, valid_list: str) -> np.ndarray:
        from cemg_ray.generate.search import constrained_search

        with torch.inference_mode():
            if valid_list == "dense":
                return dense_top_k(model, torch.as_tensor(rows["items"]).long(), k)
            scorer = self.scorer(model, rows, index.layout, num_beams)
            return constrained_search(scorer, index, len(rows["items"]), num_beams, k)[0].numpy()

    def save(self, model: ItemSeqGenerator, layout: TokenLayout, folder: str | Path) -> None:
        save_item_model(model, folder)

    def describe(self, model: ItemSeqGenerator) -> dict[str, Any]:
        return model.param_count()

    def recommender(self, folder: str | Path, cfg: JobConfig, store: Store, policy: Any, version: str) -> Any:
        from cemg_ray.data.split import load_split
        from cemg_ray.generate.recommender import ItemCEMGRecommender
        from cemg_ray.tokenize.codes import load_codes

        cold = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max).cold_items()
        sasrec = None
        if store.exists(artifacts.SASREC):  # the blend policy mixes it in: loaded on first use only
            from cemg_ray.evaluate.sasrec import SASRecRecommender

            def sasrec() -> SASRecRecommender:
                return SASRecRecommender.load(cfg, store)

        content = None
        if store.exists(artifacts.PCA_REDUCED):  # the blend's content term: read on first use only
            from cemg_ray.features.pca import content_vectors

            def content() -> np.ndarray:
                return content_vectors(store)

        return ItemCEMGRecommender(load_item_model(folder), load_codes(store), cfg.dataset.max_len,
                                   cfg.decode.num_beams, policy, version, cold, sasrec, content)
