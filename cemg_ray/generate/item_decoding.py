"""Beam search for the item-level generator: one backbone pass per user, then the code head per level.

The trie-constrained search is the token generator's (``search.constrained_search``), fed with the code head's
level log-softmax,
so an item's beam score is exactly its log-probability under the model (tested against
``ItemSeqGenerator.score_items``). The unconstrained search (the "w/o Trie" ablation) keeps the
best ``W`` code prefixes per level over all codes and drops the sequences that are not items.

Cold-start share: a reserved part of the top-K for items with few training interactions, as TIGER
reserves a share for unseen items. A second search runs over the cold items' own prefix index from
the same hidden state (cheap: no backbone pass) and its best items take every ``round(1/share)``-th
slot of the list, so the share holds at every cutoff.

Dense re-ranking (LIGER's hybrid inference): the beam's candidates plus the cold-start items are ranked by
the generator's dense head (``ItemSeqGenerator.dense_logits``), so a cold item enters the list on its own
score instead of a reserved slot; with every item a candidate it is plain dense retrieval.

Hybrid (``dense_hybrid``): both heads estimate the probability of the next item — the code head through the
beam's log-probabilities, the dense head through its softmax over the catalog — so the pool (beam candidates
plus cold items) is ranked by their mixture ``w * p_beam + (1 - w) * p_dense``, the cold items' dense term
raised by a bias (they were rarely a training target, so the dense head under-scores them).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cemg_ray.generate.itemseq import ItemSeqGenerator
from cemg_ray.generate.prefix_index import PrefixIndex
from cemg_ray.generate.search import constrained_search


def subset_index(codes: np.ndarray, item_ids: np.ndarray, index: PrefixIndex) -> PrefixIndex | None:
    """A prefix index over ``item_ids`` only whose leaves name catalog item_idx (None if empty)."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if not len(item_ids):
        return None
    sub = PrefixIndex.build(np.asarray(codes)[item_ids], index.layout)
    sub.leaf_item = torch.as_tensor(item_ids)[sub.leaf_item]
    return sub


class ItemScorer:
    """The item-level generator's side of the search (``search.LevelScorer``): the backbone already ran once per
    user; each level runs the code head on the user's state and the codes its beam chose so far."""

    def __init__(self, model: ItemSeqGenerator, hidden: torch.Tensor, num_beams: int) -> None:
        self.model = model
        self.hidden = hidden.repeat_interleave(num_beams, 0)
        self.chosen = torch.zeros(len(self.hidden), model.layout.num_levels, dtype=torch.long)  # token ids

    def level_log_probs(self, level: int) -> torch.Tensor:
        return self.model.level_log_probs(self.hidden, self.chosen, level)

    def advance(self, level: int, source_rows: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> None:
        self.chosen = self.chosen[source_rows]  # a dead beam's row is never read: its score is -inf
        self.chosen[:, level] = codes + self.model.ranges[level][0]


@torch.inference_mode()
def beam_search_from_hidden(model: ItemSeqGenerator, hidden: torch.Tensor, index: PrefixIndex, num_beams: int,
                            k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` distinct items of ``index`` per state [B, d]: (item_idx [B, k] -1 padded, log-prob)."""
    return constrained_search(ItemScorer(model, hidden, num_beams), index, hidden.shape[0], num_beams, k)


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
    lookup = index.code_lookup()
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
    """Reserve ``share`` of every prefix of the list for cold-start items: every ``round(1 / share)``-th slot
    (1-based) takes the best cold candidate not listed yet, the other slots the model's ranking in order.

    Slots rather than scores place the reserved items, so the share holds at every cutoff (HR@5, @10 and
    @20 of one list): cold items rank below warm ones by score, so sorting by score would push them all
    to the bottom of the longest list. Rows are [B, k]; ``-1`` items are empty slots.
    """
    B, k = items.shape
    if share <= 0:
        return items, scores
    every = max(1, round(1.0 / share))
    out_items = torch.full_like(items, -1)
    out_scores = torch.full_like(scores, float("-inf"))
    for b in range(B):
        warm = [(int(i), float(s)) for i, s in zip(items[b].tolist(), scores[b].tolist()) if i >= 0]
        cold = [(int(i), float(s)) for i, s in zip(cold_items[b].tolist(), cold_scores[b].tolist()) if i >= 0]
        listed: set[int] = set()
        wi = ci = 0
        for p in range(k):
            pick = None
            if (p + 1) % every == 0:
                while ci < len(cold) and cold[ci][0] in listed:
                    ci += 1
                if ci < len(cold):
                    pick, ci = cold[ci], ci + 1
            if pick is None:
                while wi < len(warm) and warm[wi][0] in listed:
                    wi += 1
                if wi < len(warm):
                    pick, wi = warm[wi], wi + 1
            if pick is None:
                break
            listed.add(pick[0])
            out_items[b, p], out_scores[b, p] = pick
    return out_items, out_scores


@torch.inference_mode()
def dense_merge(model: ItemSeqGenerator, hidden: torch.Tensor, beam_items: torch.Tensor, cold_items: torch.Tensor,
                k: int, cold_bias: float = 0.0, keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The beam's list in its own order, with cold-start items merged in on the dense head's say.

    Each slot takes the best remaining cold item (by dense logit + ``cold_bias``) when it outscores the next
    beam item's dense logit, else that beam item: warm items keep the beam's order (the stronger ranking for
    them), a cold item enters where the dense head puts it above what the beam offers next. Returns
    (item_idx [B, k], the dense logit of each listed item [B, k]), ``-1`` / ``-inf`` padded.
    """
    logits = model.dense_logits(hidden, keys=keys)  # [B, N]
    B = logits.shape[0]
    cold_logits = logits[:, cold_items] + cold_bias
    top_c, top_i = cold_logits.topk(min(k + beam_items.shape[1], len(cold_items)), dim=1)
    cold_ranked = cold_items[top_i]
    out_items = torch.full((B, k), -1, dtype=torch.long)
    out_scores = torch.full((B, k), float("-inf"))
    beams, beam_logits = beam_items.tolist(), logits.gather(1, beam_items.clamp_min(0)).tolist()
    colds, cold_scores = cold_ranked.tolist(), top_c.tolist()
    for b in range(B):
        warm = [(i, s) for i, s in zip(beams[b], beam_logits[b]) if i >= 0]
        listed = {i for i, _ in warm}
        cold = [(i, s) for i, s in zip(colds[b], cold_scores[b]) if i not in listed]
        wi = ci = 0
        for p in range(k):
            if ci < len(cold) and (wi >= len(warm) or cold[ci][1] > warm[wi][1]):
                pick, ci = cold[ci], ci + 1
            elif wi < len(warm):
                pick, wi = warm[wi], wi + 1
            else:
                break
            out_items[b, p], out_scores[b, p] = pick
    return out_items, out_scores


def _top_k_items(score: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best-scored items of each row of ``score`` [B, N]; ``-1`` / ``-inf`` where fewer are finite."""
    B, N = score.shape
    top, idx = score.topk(min(k, N), dim=1)
    items = torch.where(torch.isfinite(top), idx, torch.full_like(idx, -1))
    if k > N:
        items = torch.cat([items, torch.full((B, k - N), -1, dtype=torch.long)], 1)
        top = torch.cat([top, torch.full((B, k - N), float("-inf"))], 1)
    return items, top


@torch.inference_mode()
def dense_hybrid(model: ItemSeqGenerator, hidden: torch.Tensor, beam_items: torch.Tensor, beam_log_probs: torch.Tensor,
                 cold_items: torch.Tensor | None, k: int, beam_weight: float, cold_bias: float = 0.0,
                 keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of the beam's items [B, W] and ``cold_items`` [C] by ``log(w p_beam + (1 - w) p_dense e^bias)``.

    ``p_beam`` is the item's probability under the code head (``exp`` of the beam score; 0 for an item outside
    the beam), ``p_dense`` its dense-head softmax over the whole catalog, ``bias`` = ``cold_bias`` for cold items
    and 0 otherwise. With ``beam_weight`` near 1 the list is the beam's; lower weights and higher biases let
    the dense head's view in, cold items first. Returns (item_idx [B, k], log mixture [B, k]), padded with
    ``-1`` / ``-inf``.
    """
    if not 0.0 < beam_weight < 1.0:
        raise ValueError(f"beam_weight must be in (0, 1), got {beam_weight}")
    dense_lp = torch.log_softmax(model.dense_logits(hidden, keys=keys), dim=1) + math.log1p(-beam_weight)
    B, N = dense_lp.shape
    if cold_items is not None and len(cold_items):
        dense_lp[:, cold_items] += cold_bias
    score = torch.full_like(dense_lp, float("-inf"))
    if cold_items is not None and len(cold_items):
        score[:, cold_items] = dense_lp[:, cold_items]
    real = beam_items >= 0
    rows = torch.arange(B)[:, None].expand_as(beam_items)[real]
    cols = beam_items[real]
    score[rows, cols] = torch.logaddexp(beam_log_probs[real] + math.log(beam_weight), dense_lp[rows, cols])
    return _top_k_items(score, k)


@torch.inference_mode()
def dense_rerank(model: ItemSeqGenerator, hidden: torch.Tensor, candidates: torch.Tensor | None,
                 extra_items: torch.Tensor | None, k: int,
                 extra_bias: float = 0.0, keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` by the dense head among each row's ``candidates`` [B, W] (``-1`` ignored) plus ``extra_items``
    [C] (shared by every row, their logits raised by ``extra_bias``); ``candidates=None`` and
    ``extra_items=None`` rank the whole catalog.

    Returns (item_idx [B, k], dense logits [B, k]), ``-1`` / ``-inf`` where a row has fewer than ``k`` candidates.
    """
    logits = model.dense_logits(hidden, keys=keys)  # [B, N]
    B, N = logits.shape
    if candidates is not None or extra_items is not None:
        allowed = torch.zeros(B, N, dtype=torch.bool)
        if candidates is not None:
            rows = torch.arange(B)[:, None].expand_as(candidates)
            real = candidates >= 0
            allowed[rows[real], candidates[real]] = True
        if extra_items is not None:
            allowed[:, extra_items] = True
            if extra_bias:
                logits[:, extra_items] += extra_bias
        logits = logits.masked_fill(~allowed, float("-inf"))
    return _top_k_items(logits, k)


@torch.inference_mode()
def blend_scores(dense_logits: torch.Tensor, sasrec_logits: torch.Tensor, weight: float,
                 cold_items: torch.Tensor | None, cold_bias: float, content_sim: torch.Tensor | None = None,
                 content_weight: float = 0.0) -> torch.Tensor:
    """Every item's blend score [B, N]: ``(1 - weight) log_softmax(dense) + weight log_softmax(sasrec) +
    content_weight * content_sim``, cold items raised by ``cold_bias`` (all [B, N] over the same items). A
    log-linear blend, not a mixture of probabilities: an item must convince both models, which is what lifted
    validation NDCG above either alone."""
    if dense_logits.shape != sasrec_logits.shape:
        raise ValueError(f"blend: the dense head scores {tuple(dense_logits.shape)} items but SASRec "
                         f"{tuple(sasrec_logits.shape)}: they were trained on different catalogs")
    score = (1.0 - weight) * torch.log_softmax(dense_logits.float(), 1) + weight * torch.log_softmax(
        sasrec_logits.float(), 1)
    if content_weight and content_sim is not None:
        score += content_weight * content_sim
    if cold_bias and cold_items is not None and len(cold_items):
        score[:, cold_items] += cold_bias
    return score


def blend_top_k(dense_logits: torch.Tensor, sasrec_logits: torch.Tensor, weight: float,
                cold_items: torch.Tensor | None, cold_bias: float, k: int, content_sim: torch.Tensor | None = None,
                content_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of the whole catalog by :func:`blend_scores`: (item_idx [B, k], blended log scores [B, k])."""
    return _top_k_items(blend_scores(dense_logits, sasrec_logits, weight, cold_items, cold_bias, content_sim,
                                     content_weight), k)


def history_content_sim(content: torch.Tensor, histories: list[np.ndarray], window: int) -> torch.Tensor:
    """Cosine between every item's unit content vector (``content`` [N, d]) and the mean of each history's last
    ``window`` items' [B, N]; an empty history, or one whose items have no content, is 0 everywhere."""
    query = torch.zeros(len(histories), content.shape[1])
    for row, history in enumerate(histories):
        if len(history):
            query[row] = content[torch.as_tensor(np.asarray(history[-window:], dtype=np.int64))].mean(0)
    return torch.nn.functional.normalize(query, dim=1) @ content.T
