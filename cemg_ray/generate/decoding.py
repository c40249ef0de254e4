"""The token generator's decoding: its side of the one constrained search (``search.py``), and the Hugging
Face reference paths.

Per user the encoder runs once (on the columns that are not padding in every row); the decoder
advances one level at a time with its KV cache, and for T5 one cross-attention K/V per user
serves all its beams (``t5_beams``).
At level ``l`` only the rows of the output layer for level ``l``'s token range are computed.
The trie's expansion steps (a dense table on the first levels, CSR lists on deeper ones) are
``PrefixIndex.expand``'s.

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
from cemg_ray.generate.search import constrained_search
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


class TokenScorer:
    """The token generator's side of the search (``search.LevelScorer``): per user the prompt runs once; the
    decoder then advances one level at a time with its KV cache (for T5, one cross-attention K/V per user serves
    all its beams, ``t5_beams``), and only the output rows of the live level's token range are computed."""

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 layout: TokenLayout, num_beams: int, normalize: str) -> None:
        enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
        if enc_dec and not t5_beams.supports(model):
            raise ValueError(f"constrained decoding runs T5 encoder-decoders and decoder-only models; this model's "
                             f"model_type is {getattr(model.config, 'model_type', None)!r}")
        self.model, self.layout, self.normalize, self.beams = model, layout, normalize, num_beams
        trimmed = trim_left_padding({"input_ids": input_ids, "attention_mask": attention_mask})
        input_ids, attention_mask = trimmed["input_ids"], trimmed["attention_mask"]
        B, W = input_ids.shape[0], num_beams
        self.fast = None
        if enc_dec:
            # one cross-attention K/V per user, the beams as grouped queries (t5_beams); the first step
            # runs on one row per user (all beams start from the same prefix), then rows follow beams
            enc = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            self.fast = t5_beams.T5BeamDecoder(model, enc, attention_mask, layout.num_levels, W)
            self.hidden = self.fast.step(torch.full((B,), PAD_ID, dtype=torch.long)).repeat_interleave(W, 0)
            self.fast.reorder(torch.arange(B).repeat_interleave(W))
        else:
            # decoder-only: the prompt runs once per user; its KV cache is then repeated for the beams
            self.base = model.get_decoder()
            pos = (attention_mask.cumsum(1) - 1).clamp_min(0)
            out = self.base(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=True)
            self.cache = out.past_key_values
            self.cache.batch_repeat_interleave(W)
            self.hidden = out.last_hidden_state[:, -1].repeat_interleave(W, 0)
            self.mask = attention_mask.repeat_interleave(W, 0)
            self.last_pos = pos[:, -1:].repeat_interleave(W, 0)

    def level_log_probs(self, level: int) -> torch.Tensor:
        lo = int(self.layout.offsets[level])
        return _output_rows(self.model, self.hidden, lo, lo + self.layout.level_sizes[level], self.normalize)

    def advance(self, level: int, source_rows: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> None:
        # a dead beam follows its user's first row and feeds padding: its score is -inf whatever it computes
        first_row = torch.arange(len(source_rows)) // self.beams * self.beams
        parent = torch.where(valid, source_rows, first_row)
        step_ids = torch.where(valid, codes + int(self.layout.offsets[level]), torch.full_like(codes, PAD_ID))
        if self.fast is not None:
            self.fast.reorder(parent)
            self.hidden = self.fast.step(step_ids)
            return
        self.cache.reorder_cache(parent)
        self.mask = torch.cat([self.mask[parent], torch.ones(len(parent), 1, dtype=self.mask.dtype)], 1)
        self.last_pos = self.last_pos[parent] + 1
        out = self.base(input_ids=step_ids.reshape(-1, 1), attention_mask=self.mask, position_ids=self.last_pos,
                        past_key_values=self.cache, use_cache=True)
        self.hidden = out.last_hidden_state[:, -1]


@torch.inference_mode()
def constrained_beam_search(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            index: PrefixIndex, num_beams: int, k: int, normalize: str = "level"
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` distinct real items per row: (item_idx [B, k] -1 padded, summed log-prob [B, k])."""
    if k > num_beams:
        raise ValueError(f"k={k} needs at least as many beams (num_beams={num_beams})")
    if input_ids.shape[0] == 0:
        return torch.full((0, k), -1, dtype=torch.long), torch.full((0, k), float("-inf"))
    scorer = TokenScorer(model, input_ids, attention_mask, index.layout, num_beams, normalize)
    return constrained_search(scorer, index, input_ids.shape[0], num_beams, k)


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
    lookup = index.code_lookup()
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
