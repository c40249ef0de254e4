"""Length-grouped batches and left-padding trimming: nothing lost, padding cut, outputs unchanged."""

from __future__ import annotations

import numpy as np
import torch

from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.dataset import history_matrix, length_grouped_order, trim_left_padding
from cemg_ray.generate.decoding import build_index, constrained_beam_search
from cemg_ray.generate.model import build_model
from cemg_ray.generate.token_family import lm_batch
from cemg_ray.generate.tokens import TokenLayout


def test_length_grouped_order_is_a_permutation_with_less_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 102, (5000,), generator=gen)
    order = length_grouped_order(lengths, 64, gen)
    assert sorted(order.tolist()) == list(range(5000))  # every example exactly once

    def padded_slots(o: torch.Tensor) -> int:
        return sum(int(lengths[o[s:s + 64]].max()) * len(o[s:s + 64]) for s in range(0, len(o), 64))

    assert padded_slots(order) < 0.6 * padded_slots(torch.randperm(5000, generator=gen))


def test_trimming_left_padding_changes_neither_loss_nor_decoding() -> None:
    layout = TokenLayout((6, 6, 3))
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, [6, 6, 3], size=(80, 3)), axis=0)
    hist = [rng.integers(0, len(codes), size=int(rng.integers(1, 4))) for _ in range(6)]
    ids, mask = (torch.as_tensor(a) for a in history_matrix(hist, codes, layout, 8))  # width 25, longest 13
    labels = torch.as_tensor(layout.encode_items(codes[rng.integers(0, len(codes), size=6)]))
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    trimmed = trim_left_padding(batch)
    assert trimmed["input_ids"].shape[1] == int(mask.sum(1).max()) < ids.shape[1]
    assert torch.equal(trimmed["labels"], labels)
    index = build_index(codes, layout)
    pad = torch.zeros(6, 10, dtype=ids.dtype)
    for backbone in ("t5", "decoder"):
        cfg = TrainConfig(backbone=backbone, d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64, dropout=0.0)
        model = build_model(cfg, layout).eval()
        with torch.no_grad():
            full = model(**lm_batch(batch, backbone == "t5")).loss
            cut = model(**lm_batch(trimmed, backbone == "t5")).loss
        assert torch.allclose(full, cut, atol=1e-5), backbone
        # the decoder trims by itself: the same items and scores with any amount of extra padding
        items, scores = constrained_beam_search(model, ids, mask, index, 8, 5)
        wide_items, wide_scores = constrained_beam_search(model, torch.cat([pad, ids], 1), torch.cat([pad, mask], 1),
                                                          index, 8, 5)
        assert torch.equal(items, wide_items) and torch.allclose(scores, wide_scores, atol=1e-5), backbone
