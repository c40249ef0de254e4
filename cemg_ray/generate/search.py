"""The one trie-constrained beam search, for every generator family.

A family supplies a :class:`LevelScorer`: the log-probabilities of a level's codes for each live beam, and a way
to follow the beams the search kept (the token generator re-orders its KV cache and feeds the chosen code; the
item-level generator only records it, since its code head reads the chosen prefix directly). The search itself
(keep the best ``num_beams`` real prefixes per user at each level, then map the full sequences to items) lives
here once, with the trie's expansion steps in :class:`~cemg_ray.generate.prefix_index.PrefixIndex`.

A user whose prefixes have fewer children than beams keeps the rest as dead beams (score -inf), so fewer than
``k`` items can come back (padded with -1) but never an invalid one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from cemg_ray.generate.prefix_index import PrefixIndex


class LevelScorer(Protocol):
    """A generator's side of the search, for ``B`` users with ``W`` beams each (rows ``b * W + w``)."""

    def level_log_probs(self, level: int) -> torch.Tensor:
        """[B*W, K_level] log-probabilities of ``level``'s codes after each beam's chosen prefix."""

    def advance(self, level: int, source_rows: torch.Tensor, codes: torch.Tensor, valid: torch.Tensor) -> None:
        """Follow the kept beams: row ``r`` now continues beam ``source_rows[r]`` with code ``codes[r]`` of
        ``level`` (flat [B*W] each; ``valid`` False where the user had no child left for that beam)."""


def constrained_search(scorer: LevelScorer, index: PrefixIndex, users: int, num_beams: int,
                       k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` distinct items of ``index`` per user: (item_idx [B, k], -1 padded; summed log-prob [B, k])."""
    if k > num_beams:
        raise ValueError(f"k={k} needs at least as many beams (num_beams={num_beams})")
    B, W, L = users, num_beams, index.layout.num_levels
    if B == 0:
        return torch.full((0, k), -1, dtype=torch.long), torch.full((0, k), float("-inf"))
    beam_score = torch.full((B, W), float("-inf"))
    beam_score[:, 0] = 0.0  # every beam starts at the root; only one of them is live
    prefix = torch.zeros(B, W, dtype=torch.long)  # prefix id at the previous level (root = 0)
    for lvl in range(L):
        top_score, src, child, code, valid = index.expand(lvl, beam_score, prefix, scorer.level_log_probs(lvl))
        beam_score = torch.where(valid, top_score, torch.full_like(top_score, float("-inf")))
        prefix = torch.where(valid, child, torch.zeros_like(child))
        if lvl + 1 < L:
            scorer.advance(lvl, src.reshape(-1), code.reshape(-1), valid.reshape(-1))
    items = torch.where(torch.isfinite(beam_score), index.leaf_item[prefix], torch.full_like(prefix, -1))
    return items[:, :k], beam_score[:, :k]
