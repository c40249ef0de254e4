"""Beam search for the item-level generator: one backbone pass per user, then the code head per level.

The trie-constrained search uses the same prefix index and the same expansion steps as the token
generator (``decoding._expand_dense`` / ``_expand_sparse``), fed with the head's level log-softmax,
so an item's beam score is exactly its log-probability under the model (tested against
``ItemSeqGenerator.score_items``). The unconstrained search (the "w/o Trie" ablation) keeps the
best ``W`` code prefixes per level over all codes and drops the sequences that are not items.

Cold-start share: a reserved part of the top-K for items with few training interactions, as TIGER
reserves a share for unseen items. A second search runs over the cold items' own prefix index from
the same hidden state (cheap: no backbone pass) and its best items replace the bottom of the list
when the list holds fewer cold items than the share; the list is then re-sorted by model score.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cemg_ray.generate.decoding import _code_lookup, _expand_dense, _expand_sparse
from cemg_ray.generate.itemseq import ItemSeqGenerator
from cemg_ray.generate.prefix_index import PrefixIndex


def subset_index(codes: np.ndarray, item_ids: np.ndarray, index: PrefixIndex) -> PrefixIndex | None:
    """A prefix index over ``item_ids`` only whose leaves name catalog item_idx (None if empty)."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if not len(item_ids):
        return None
    sub = PrefixIndex.build(np.asarray(codes)[item_ids], index.layout)
    sub.leaf_item = torch.as_tensor(item_ids)[sub.leaf_item]
    return sub


@torch.inference_mode()
def beam_search_from_hidden(model: ItemSeqGenerator, hidden: torch.Tensor, index: PrefixIndex, num_beams: int,
                            k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` distinct items of ``index`` per state [B, d]: (item_idx [B, k] -1 padded, log-prob)."""
    if k > num_beams:
        raise ValueError(f"k={k} needs at least as many beams (num_beams={num_beams})")
    B, W, L = hidden.shape[0], num_beams, index.layout.num_levels
    if B == 0:
        return torch.full((0, k), -1, dtype=torch.long), torch.full((0, k), float("-inf"))
    beam_score = torch.full((B, W), float("-inf"))
    beam_score[:, 0] = 0.0
    prefix = torch.zeros(B, W, dtype=torch.long)
    chosen = torch.zeros(B * W, L, dtype=torch.long)  # token ids chosen so far per beam
    h = hidden.repeat_interleave(W, 0)
    for lvl in range(L):
        lo = model.ranges[lvl][0]
        logp = model.level_log_probs(h, chosen, lvl)  # [B*W, K_l]
        expand = _expand_dense if index.dense[lvl] is not None else _expand_sparse
        top_score, src, child, code, valid = expand(index, lvl, beam_score, prefix, logp)
        beam_score = torch.where(valid, top_score, torch.full_like(top_score, float("-inf")))
        prefix = torch.where(valid, child, torch.zeros_like(child))
        chosen = chosen[src.reshape(-1)]
        chosen[:, lvl] = (code + lo).reshape(-1)
    items = torch.where(torch.isfinite(beam_score), index.leaf_item[prefix], torch.full_like(prefix, -1))
    return items[:, :k], beam_score[:, :k]


@torch.inference_mode()
def unconstrained_from_hidden(model: ItemSeqGenerator, hidden: torch.Tensor, index: PrefixIndex, num_beams: int,
                              k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain beam search over every code of every level; sequences that are not items are dropped."""
    B, W, L = hidden.shape[0], num_beams, index.layout.num_levels
    beam_score = torch.full((B, W), float("-inf"))
    beam_score[:, 0] = 0.0
    chosen = torch.zeros(B * W, L, dtype=torch.long)
    h = hidden.repeat_interleave(W, 0)
    for lvl in range(L):
        lo = model.ranges[lvl][0]
        logp = model.level_log_probs(h, chosen, lvl)
        K = logp.shape[1]
        scores = (beam_score.reshape(-1, 1) + logp).view(B, W * K)
        beam_score, top = scores.topk(W, dim=1)
        src = (torch.arange(B)[:, None] * W + top // K).reshape(-1)
        chosen = chosen[src]
        chosen[:, lvl] = (top % K).reshape(-1) + lo
    lookup = _code_lookup(index)
    codes = (chosen - torch.as_tensor(index.layout.offsets)).view(B, W, L).tolist()
    items = torch.full((B, k), -1, dtype=torch.long)
    scores = torch.full((B, k), float("-inf"))
    for b in range(B):
        n = 0
        for w in range(W):
            item = lookup.get(tuple(codes[b][w]), -1)
            if item >= 0 and math.isfinite(float(beam_score[b, w])) and n < k:
                items[b, n], scores[b, n] = item, beam_score[b, w]
                n += 1
    return items, scores


def reserve_cold_share(items: torch.Tensor, scores: torch.Tensor, cold_items: torch.Tensor, cold_scores: torch.Tensor,
                       is_cold: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Guarantee ``ceil(share * k)`` cold items per list: the best cold candidates replace the lowest-scored
    warm items, then each list is re-sorted by score. Rows are [B, k]; -1 items are empty slots."""
    B, k = items.shape
    want = math.ceil(share * k)
    if want == 0:
        return items, scores
    out_items, out_scores = items.clone(), scores.clone()
    for b in range(B):
        row = [(float(s), int(i)) for i, s in zip(items[b].tolist(), scores[b].tolist()) if i >= 0]
        have = {i for _, i in row}
        n_cold = sum(1 for _, i in row if is_cold[i])
        extra = [(float(s), int(i)) for i, s in zip(cold_items[b].tolist(), cold_scores[b].tolist())
                 if i >= 0 and i not in have][:max(0, want - n_cold)]
        if not extra:
            continue
        warm_slots = sorted((p for p, (_, i) in enumerate(row) if not is_cold[i]), key=lambda p: row[p][0])
        free = k - len(row)
        for cand in extra:
            if free > 0:
                row.append(cand)
                free -= 1
            elif warm_slots:
                row[warm_slots.pop(0)] = cand
        row.sort(key=lambda t: -t[0])
        out_items[b] = -1
        out_scores[b] = float("-inf")
        for p, (s, i) in enumerate(row):
            out_items[b, p], out_scores[b, p] = i, s
    return out_items, out_scores
