"""The paper's layout as a generator family (``family.GeneratorFamily``): every code of every history item is a
token into T5 or a decoder-only LLM, one training example per prefix of a user's sequence, the next item's codes
generated token by token (``model.py`` builds and saves it, ``decoding.py`` searches it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cemg_ray.generate.dataset import build_tensors, prefix_examples, trim_left_padding
from cemg_ray.generate.model import LAYOUT_FILE, build_model, describe, is_encoder_decoder, load_model, save_model

if TYPE_CHECKING:
    from pathlib import Path

    from cemg_ray.config import JobConfig
    from cemg_ray.data.split import Split
    from cemg_ray.generate.config import TrainConfig
    from cemg_ray.generate.decoding import TokenScorer
    from cemg_ray.generate.prefix_index import PrefixIndex
    from cemg_ray.generate.tokens import TokenLayout
    from cemg_ray.store import Store


def lm_batch(batch: dict[str, torch.Tensor], encoder_decoder: bool) -> dict[str, torch.Tensor]:
    """Model kwargs for a pre-tokenised batch: seq2seq labels, or prompt+answer with masked prompt."""
    ids = batch["input_ids"].long()
    mask = batch["attention_mask"].long()
    labels = batch["labels"].long()
    if encoder_decoder:
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    full = torch.cat([ids, labels], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(labels)], dim=1)
    lm_labels = torch.cat([torch.full_like(ids, -100), labels], dim=1)
    position_ids = (full_mask.cumsum(1) - 1).clamp_min(0)
    return {"input_ids": full, "attention_mask": full_mask, "labels": lm_labels, "position_ids": position_ids}


class TokenFamily:
    history = "tokens"
    batch_keys = ("input_ids", "attention_mask", "labels")
    config_file = LAYOUT_FILE

    def check_inputs(self, cfg: TrainConfig, store: Store) -> None:
        return None  # codes only, which the stage has loaded

    def training_tensors(self, cfg: TrainConfig, split: Split, codes: np.ndarray, layout: TokenLayout,
                         valid: tuple[list[np.ndarray], np.ndarray], max_items: int
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        hists, targets = prefix_examples(split.train, max_items)
        train = build_tensors(hists, targets, codes, layout, max_items)
        return train, build_tensors(*valid, codes, layout, max_items), int(len(targets))

    def build(self, cfg: TrainConfig, layout: TokenLayout, codes: np.ndarray, store: Store,
              max_items: int) -> torch.nn.Module:
        return build_model(cfg, layout)

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors["attention_mask"].sum(1)

    def model_batch(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return lm_batch(trim_left_padding(batch), is_encoder_decoder(model))

    def scorer(self, model: torch.nn.Module, rows: dict[str, np.ndarray], layout: TokenLayout,
               num_beams: int) -> TokenScorer:
        from cemg_ray.generate.decoding import TokenScorer

        return TokenScorer(model, torch.as_tensor(rows["input_ids"]).long(),
                           torch.as_tensor(rows["attention_mask"]).long(), layout, num_beams, "level")

    def top_k(self, model: torch.nn.Module, rows: dict[str, np.ndarray], index: PrefixIndex, num_beams: int,
              k: int, valid_list: str) -> np.ndarray:
        from cemg_ray.generate.search import constrained_search

        if valid_list != "beam":
            raise ValueError(f"train.valid_list: {valid_list!r} needs the item-level generator (train.history: items)")
        with torch.inference_mode():
            scorer = self.scorer(model, rows, index.layout, num_beams)
            return constrained_search(scorer, index, len(rows["input_ids"]), num_beams, k)[0].numpy()

    def save(self, model: torch.nn.Module, layout: TokenLayout, folder: str | Path) -> None:
        save_model(model, layout, folder)

    def describe(self, model: torch.nn.Module) -> dict[str, Any]:
        return describe(model)

    def recommender(self, folder: str | Path, cfg: JobConfig, store: Store, policy: Any, version: str) -> Any:
        from cemg_ray.generate.recommender import CEMGRecommender
        from cemg_ray.tokenize.codes import load_codes

        model, layout = load_model(folder)
        return CEMGRecommender(model, layout, load_codes(store), cfg.dataset.max_len, cfg.decode.num_beams, policy,
                               version)
