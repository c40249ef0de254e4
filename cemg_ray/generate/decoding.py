"""Batched Trie-constrained beam search over semantic IDs, and the Hugging Face reference paths.

Per user the encoder runs once (on the columns that are not padding in every row); the decoder
advances one level at a time with its KV cache, and for T5 one cross-attention K/V per user
serves all its beams (``t5_beams``).
At level ``l`` only the rows of the output layer for level ``l``'s token range are computed.
On the first levels (few parents) each beam's row of the level's dense transition table masks
the invalid codes; on deeper levels each live beam's children come from the CSR lists as one
ragged gather. Either way the top ``num_beams`` (prefix, score) pairs per user are kept with one
``topk``. A user whose prefixes
have fewer children than beams keeps the rest as dead beams (score -inf), so fewer than ``k``
items can come back (padded with -1) but never an invalid one.

``normalize="level"`` takes the log-softmax over the live level's tokens (the other tokens can
never be chosen); ``"full"`` over the whole vocabulary, which is what HF ``generate`` scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from cemg_ray.generate import t5_beams
from cemg_ray.generate.dataset import trim_left_padding
from cemg_ray.generate.prefix_index import DENSE_MAX_ENTRIES, PrefixIndex
from cemg_ray.generate.tokens import PAD_ID, TokenLayout

if TYPE_CHECKING:
    from collections.abc import Callable


def build_index(codes: np.ndarray, layout: TokenLayout, dense_max_entries: int = DENSE_MAX_ENTRIES) -> PrefixIndex:
    return PrefixIndex.build(codes, layout, dense_max_entries)


def _output_rows(model: torch.nn.Module, hidden: torch.Tensor, lo: int, hi: int, normalize: str) -> torch.Tensor:
    """Log-probs of tokens ``lo..hi-1`` from the last hidden state (only those rows of the head)."""
    head = model.get_output_embeddings()
    if getattr(model.config, "is_encoder_decoder", False) and getattr(model.config, "tie_word_embeddings", False):
        hidden = hidden * (model.config.d_model ** -0.5)  # T5 rescales before a tied head
    if normalize == "full":
        return torch.log_softmax(head(hidden).float(), dim=-1)[:, lo:hi]
    bias = head.bias[lo:hi] if getattr(head, "bias", None) is not None else None
    return torch.log_softmax(torch.nn.functional.linear(hidden, head.weight[lo:hi], bias).float(), dim=-1)


@torch.inference_mode()
def constrained_beam_search(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            index: PrefixIndex, num_beams: int, k: int, normalize: str = "level"
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` distinct real items per row: (item_idx [B, k] -1 padded, summed log-prob [B, k])."""
    if k > num_beams:
        raise ValueError(f"k={k} needs at least as many beams (num_beams={num_beams})")
    layout = index.layout
    offsets = layout.offsets.tolist()
    B, W = input_ids.shape[0], num_beams
    if B == 0:
        return torch.full((0, k), -1, dtype=torch.long), torch.full((0, k), float("-inf"))
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    if enc_dec and not t5_beams.supports(model):
        raise ValueError(f"constrained decoding runs T5 encoder-decoders and decoder-only models; this model's "
                         f"model_type is {getattr(model.config, 'model_type', None)!r}")
    trimmed = trim_left_padding({"input_ids": input_ids, "attention_mask": attention_mask})
    input_ids, attention_mask = trimmed["input_ids"], trimmed["attention_mask"]
    fast = None
    if enc_dec:
        # one cross-attention K/V per user, the beams as grouped queries (t5_beams); the first step
        # runs on one row per user (all beams start from the same prefix), then rows follow beams
        enc = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        fast = t5_beams.T5BeamDecoder(model, enc, attention_mask, layout.num_levels, W)
        hidden = fast.step(torch.full((B,), PAD_ID, dtype=torch.long)).repeat_interleave(W, 0)
        fast.reorder(torch.arange(B).repeat_interleave(W))
    else:
        # decoder-only: the prompt runs once per user; its KV cache is then repeated for the beams
        base = model.get_decoder()
        pos = (attention_mask.cumsum(1) - 1).clamp_min(0)
        out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=True)
        cache = out.past_key_values
        cache.batch_repeat_interleave(W)
        hidden = out.last_hidden_state[:, -1].repeat_interleave(W, 0)
        mask = attention_mask.repeat_interleave(W, 0)
        last_pos = pos[:, -1:].repeat_interleave(W, 0)
    beam_score = torch.full((B, W), float("-inf"))
    beam_score[:, 0] = 0.0
    prefix = torch.zeros(B, W, dtype=torch.long)  # prefix id at the previous level (root = 0)
    rows = torch.arange(B)
    for lvl in range(layout.num_levels):
        lo, hi = offsets[lvl], offsets[lvl] + layout.level_sizes[lvl]
        logp = _output_rows(model, hidden, lo, hi, normalize)  # [B*W, K_l]
        expand = _expand_dense if index.dense[lvl] is not None else _expand_sparse
        top_score, src, child, code, valid = expand(index, lvl, beam_score, prefix, logp)
        beam_score = torch.where(valid, top_score, torch.full_like(top_score, float("-inf")))
        prefix = torch.where(valid, child, torch.zeros_like(child))
        if lvl + 1 == layout.num_levels:
            break
        parent = torch.where(valid, src, (rows[:, None] * W).expand(B, W)).reshape(-1)
        step_ids = torch.where(valid, code + lo, torch.full_like(code, PAD_ID)).reshape(-1, 1)
        if fast is not None:
            fast.reorder(parent)
            hidden = fast.step(step_ids.reshape(-1))
            continue
        cache.reorder_cache(parent)
        mask = torch.cat([mask[parent], torch.ones(B * W, 1, dtype=mask.dtype)], 1)
        last_pos = last_pos[parent] + 1
        out = base(input_ids=step_ids, attention_mask=mask, position_ids=last_pos, past_key_values=cache,
                   use_cache=True)
        hidden = out.last_hidden_state[:, -1]
    items = torch.where(torch.isfinite(beam_score), index.leaf_item[prefix], torch.full_like(prefix, -1))
    return items[:, :k], beam_score[:, :k]


Expansion = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _expand_dense(index: PrefixIndex, lvl: int, beam_score: torch.Tensor, prefix: torch.Tensor,
                  logp: torch.Tensor) -> Expansion:
    """Best ``W`` children per user from the level's dense table: mask every beam's row, one top-k.

    Returns [B, W] tensors: score, flat source beam row, child prefix id, code, and whether the pick
    is a real child (False where a user has fewer valid children than beams).
    """
    B, W = beam_score.shape
    K = logp.shape[1]
    table = index.dense[lvl][prefix.reshape(-1)].long()  # [B*W, K] child prefix id, -1: not a valid code
    scores = (beam_score.reshape(-1, 1) + logp).masked_fill(table < 0, float("-inf"))
    top_score, top = scores.view(B, W * K).topk(W, dim=1)
    src = torch.arange(B)[:, None] * W + top // K
    child = table.view(B, W * K).gather(1, top)
    return top_score, src, child.clamp_min(0), top % K, torch.isfinite(top_score) & (child >= 0)


def _expand_sparse(index: PrefixIndex, lvl: int, beam_score: torch.Tensor, prefix: torch.Tensor,
                   logp: torch.Tensor) -> Expansion:
    """Best ``W`` children per user from the CSR lists: only the live beams' real children are scored."""
    B, W = beam_score.shape
    rows = torch.arange(B)
    live_rows = torch.isfinite(beam_score).reshape(-1).nonzero().flatten()
    owner, child, code = index.children(lvl, prefix.reshape(-1)[live_rows])
    src = live_rows[owner]  # flat beam row of each candidate
    cand = beam_score.reshape(-1)[src] + logp[src, code]
    # scatter the ragged candidates into a padded [B, C] grid and keep the best W per user
    user = src // W
    counts = torch.bincount(user, minlength=B)
    width = max(int(counts.max()) if len(counts) else 0, W)
    slot = torch.arange(len(user)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    grid = torch.full((B, width), float("-inf"))
    grid[user, slot] = cand
    cand_index = torch.full((B, width), -1, dtype=torch.long)
    cand_index[user, slot] = torch.arange(len(user))
    top_score, top_slot = grid.topk(W, dim=1)
    picked = cand_index[rows[:, None], top_slot]  # -1 where a user has fewer candidates than beams
    valid = picked >= 0
    picked = picked.clamp_min(0)
    return top_score, src[picked], child[picked], code[picked], valid


def decode_items(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 index: PrefixIndex, num_beams: int, k: int, normalize: str = "level") -> tuple[np.ndarray, np.ndarray]:
    items, scores = constrained_beam_search(model, input_ids, attention_mask, index, num_beams, k, normalize)
    return items.numpy(), scores.numpy().astype(np.float32)


def hf_prefix_allowed_fn(index: PrefixIndex, prompt_len: int,
                         encoder_decoder: bool) -> Callable[[int, torch.Tensor], list[int]]:
    """``prefix_allowed_tokens_fn`` for HF ``generate``: the reference (slow) constrained path."""
    offsets = index.layout.offsets

    def allowed(_batch_id: int, sent: torch.Tensor) -> list[int]:
        gen = sent.tolist()[1:] if encoder_decoder else sent.tolist()[prompt_len:]
        lvl = len(gen)
        if lvl >= index.layout.num_levels:
            return [PAD_ID]
        codes = [t - int(offsets[i]) for i, t in enumerate(gen)]
        return [c + int(offsets[lvl]) for c in index.allowed_codes(codes)]

    return allowed


@torch.inference_mode()
def hf_generate(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, index: PrefixIndex,
                num_beams: int, k: int, constrained: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Hugging Face beam search (constrained with ``prefix_allowed_tokens_fn`` or not), mapped to items."""
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    trimmed = trim_left_padding({"input_ids": input_ids, "attention_mask": attention_mask})
    input_ids, attention_mask = trimmed["input_ids"], trimmed["attention_mask"]
    L = index.layout.num_levels
    kwargs = {}
    if constrained:
        kwargs["prefix_allowed_tokens_fn"] = hf_prefix_allowed_fn(index, input_ids.shape[1], enc_dec)
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=num_beams,
                         num_return_sequences=num_beams, max_new_tokens=L, min_new_tokens=L, do_sample=False,
                         early_stopping=True, output_scores=True, return_dict_in_generate=True,
                         length_penalty=0.0, pad_token_id=PAD_ID, eos_token_id=None,
                         decoder_start_token_id=PAD_ID if enc_dec else None, **kwargs)
    seqs = out.sequences[:, 1:] if enc_dec else out.sequences[:, input_ids.shape[1]:]
    scores = out.sequences_scores.float()
    B = input_ids.shape[0]
    lookup = _code_lookup(index)
    codes = (seqs[:, :L] - torch.as_tensor(index.layout.offsets)).numpy()
    items = np.full((B, k), -1, dtype=np.int64)
    item_scores = np.full((B, k), -np.inf, dtype=np.float32)
    for b in range(B):
        seen: list[int] = []
        for j in range(num_beams):
            item = lookup.get(tuple(codes[b * num_beams + j].tolist()), -1)
            if item >= 0 and item not in seen and len(seen) < k:
                items[b, len(seen)] = item
                item_scores[b, len(seen)] = float(scores[b * num_beams + j])
                seen.append(item)
    return items, item_scores


def decode_unconstrained(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         index: PrefixIndex, num_beams: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain beam search; sequences that are not items are dropped (the 'w/o Trie' ablation)."""
    return hf_generate(model, input_ids, attention_mask, index, num_beams, k, constrained=False)


def _code_lookup(index: PrefixIndex) -> dict[tuple[int, ...], int]:
    cached = getattr(index, "_lookup", None)
    if cached is None:
        codes = full_codes(index)
        cached = {tuple(c): int(i) for c, i in zip(codes.tolist(), index.leaf_item.tolist())}
        index._lookup = cached
    return cached


def full_codes(index: PrefixIndex) -> np.ndarray:
    """Codes [N, L] of the leaves in index order (rebuilt from the CSR arrays)."""
    L = index.layout.num_levels
    leaf = np.arange(index.num_items)
    cols = []
    ids = leaf
    for lvl in range(L - 1, -1, -1):
        cols.append(index.child_code[lvl].numpy()[ids])
        starts = index.child_start[lvl].numpy()
        ids = np.searchsorted(starts, ids, side="right") - 1
    return np.stack(cols[::-1], axis=1)
