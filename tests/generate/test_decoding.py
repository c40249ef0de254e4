"""Constrained beam search: only real items, exact on a small catalog, same items as HF generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.dataset import history_matrix
from cemg_ray.generate.decoding import build_index, constrained_beam_search, hf_generate
from cemg_ray.generate.model import build_model
from cemg_ray.generate.tokens import TokenLayout


def random_codes(n: int, sizes: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = set()
    while len(out) < n:
        out.add(tuple(int(rng.integers(0, s)) for s in sizes))
    return np.array(sorted(out), dtype=np.int64)[rng.permutation(n)]


def tiny(backbone: str, layout: TokenLayout) -> torch.nn.Module:
    cfg = TrainConfig(backbone=backbone, d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64, dropout=0.0)
    model = build_model(cfg, layout)
    model.eval()
    return model


def exhaustive(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, codes: np.ndarray,
               layout: TokenLayout, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Score every item with teacher forcing (full-vocabulary log-softmax) and take the top k."""
    tokens = torch.as_tensor(layout.encode_items(codes))
    n, L = tokens.shape
    out = []
    with torch.no_grad():
        for b in range(ids.shape[0]):
            if model.config.is_encoder_decoder:
                logits = model(input_ids=ids[b:b + 1].expand(n, -1), attention_mask=mask[b:b + 1].expand(n, -1),
                               labels=tokens).logits
            else:
                full = torch.cat([ids[b:b + 1].expand(n, -1), tokens], 1)
                fmask = torch.cat([mask[b:b + 1].expand(n, -1), torch.ones_like(tokens)], 1)
                pos = (fmask.cumsum(1) - 1).clamp_min(0)
                logits = model(input_ids=full, attention_mask=fmask, position_ids=pos).logits[:, -L - 1:-1]
            logp = torch.log_softmax(logits.float(), -1).gather(2, tokens[:, :, None]).squeeze(2).sum(1)
            out.append(torch.topk(logp, k))
    return torch.stack([o.indices for o in out]), torch.stack([o.values for o in out])


# transition tables: all dense, all sparse (CSR), dense for the first levels then sparse
TABLES = {"dense": 10**9, "sparse": 0, "mixed": 40}


@pytest.mark.parametrize("tables", TABLES)
@pytest.mark.parametrize("backbone", ["t5", "decoder"])
def test_beam_search_equals_exhaustive_scoring(backbone: str, tables: str) -> None:
    layout = TokenLayout((6, 5, 4, 3))
    codes = random_codes(60, layout.level_sizes)
    index = build_index(codes, layout, TABLES[tables])
    assert [t is not None for t in index.dense] == {"dense": [True] * 4, "sparse": [False] * 4,
                                                    "mixed": [True, True, False, False]}[tables]
    model = tiny(backbone, layout)
    rng = np.random.default_rng(1)
    hist = [rng.integers(0, 60, size=int(rng.integers(1, 5))) for _ in range(4)]
    ids, mask = (torch.as_tensor(a) for a in history_matrix(hist, codes, layout, 4))
    # with as many beams as items, beam search is exact
    items, scores = constrained_beam_search(model, ids, mask, index, num_beams=60, k=10, normalize="full")
    ref_items, ref_scores = exhaustive(model, ids, mask, codes, layout, 10)
    assert torch.equal(items, ref_items)
    assert torch.allclose(scores, ref_scores, atol=1e-4)


@pytest.mark.parametrize("tables", TABLES)
@pytest.mark.parametrize("backbone", ["t5", "decoder"])
def test_same_items_as_hf_generate(backbone: str, tables: str) -> None:
    layout = TokenLayout((8, 8, 8, 3))
    codes = random_codes(200, layout.level_sizes, seed=3)
    index = build_index(codes, layout, TABLES[tables])
    model = tiny(backbone, layout)
    rng = np.random.default_rng(2)
    hist = [rng.integers(0, 200, size=int(rng.integers(1, 6))) for _ in range(5)]
    ids, mask = (torch.as_tensor(a) for a in history_matrix(hist, codes, layout, 5))
    ours, our_scores = constrained_beam_search(model, ids, mask, index, num_beams=6, k=6, normalize="full")
    hf_items, hf_scores = hf_generate(model, ids, mask, index, num_beams=6, k=6)
    assert np.array_equal(ours.numpy(), hf_items)
    assert np.allclose(our_scores.numpy(), hf_scores, atol=1e-4)


@pytest.mark.parametrize("tables", TABLES)
def test_every_output_is_a_real_item_and_fewer_children_than_beams(tables: str) -> None:
    layout = TokenLayout((3, 4, 2))
    codes = np.array([[0, 0, 0], [0, 1, 0], [2, 3, 1], [2, 3, 0]])  # fan-out below the beam width
    index = build_index(codes, layout, TABLES[tables])
    assert np.array_equal(index.full_codes()[np.argsort(index.leaf_item.numpy())], codes)
    model = tiny("t5", layout)
    ids, mask = (torch.as_tensor(a) for a in history_matrix([np.array([1]), np.array([], np.int64)], codes, layout, 3))
    items, scores = constrained_beam_search(model, ids, mask, index, num_beams=8, k=8)
    for row, srow in zip(items.tolist(), scores.tolist()):
        real = [i for i in row if i >= 0]
        assert sorted(real) == [0, 1, 2, 3]  # every item once, padding after
        assert row[4:] == [-1] * 4 and all(s == float("-inf") for s in srow[4:])
        assert srow[:4] == sorted(srow[:4], reverse=True)


def test_index_rejects_duplicate_codes() -> None:
    layout = TokenLayout((2, 2))
    with pytest.raises(ValueError, match="not unique"):
        build_index(np.array([[0, 1], [0, 1]]), layout)


def test_an_empty_batch_gives_empty_results() -> None:
    layout = TokenLayout((3, 2))
    index = build_index(np.array([[0, 0], [1, 1], [2, 0]]), layout)
    empty = torch.zeros(0, 5, dtype=torch.long)
    items, scores = constrained_beam_search(tiny("t5", layout), empty, empty, index, num_beams=3, k=2)
    assert items.shape == (0, 2) and scores.shape == (0, 2)


def test_an_unsupported_encoder_decoder_is_named() -> None:
    from transformers import BartConfig, BartForConditionalGeneration

    layout = TokenLayout((3, 2))
    index = build_index(np.array([[0, 0], [1, 1]]), layout)
    bart = BartForConditionalGeneration(BartConfig(vocab_size=layout.vocab_size, d_model=16, encoder_layers=1,
                                                   decoder_layers=1, encoder_attention_heads=2,
                                                   decoder_attention_heads=2, encoder_ffn_dim=16,
                                                   decoder_ffn_dim=16)).eval()
    ids = torch.tensor([[2, 4, 1]])
    with pytest.raises(ValueError, match="model_type is 'bart'"):
        constrained_beam_search(bart, ids, torch.ones_like(ids), index, num_beams=2, k=2)
