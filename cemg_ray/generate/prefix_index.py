"""Prefix index (the Trie) over all valid item code sequences, as flat tensors.

Level ``l`` keeps the sorted unique prefixes of length ``l+1``. A prefix of length ``l`` (id
``p``) has its children at ``child_code[l][start[l][p]:start[l][p+1]]`` with ids
``start[l][p] + j`` among the length ``l+1`` prefixes: a CSR layout built with one
``np.unique`` per level, so memory is proportional to the number of distinct prefixes whatever
the fan-out, and a beam's allowed tokens are a slice, never a Python dict walk. Levels with few
parents (the first ones) also get a dense ``[parents, codes]`` table of child ids, which the
search masks and ranks in one top-k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from cemg_ray.generate.tokens import TokenLayout

# one beam-search step's result, [B, W] each: score, flat source beam row, child prefix id, code, and whether the
# pick is a real child (False where a user has fewer valid children than beams)
Expansion = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

# a level whose (parents x codes) table has at most this many entries also gets a dense table:
# the first levels (few parents) are masked and ranked in one top-k, deeper ones stay CSR
DENSE_MAX_ENTRIES = 1 << 22


def _dense_table(child_start: torch.Tensor, child_code: torch.Tensor, size: int) -> torch.Tensor:
    """[parents, size] child prefix id of every (parent, code), -1 where the code is not a child."""
    parents = len(child_start) - 1
    owner = torch.repeat_interleave(torch.arange(parents), child_start[1:] - child_start[:-1])
    table = torch.full((parents, size), -1, dtype=torch.int32)
    table[owner, child_code] = torch.arange(len(child_code), dtype=torch.int32)
    return table


@dataclass
class PrefixIndex:
    layout: TokenLayout
    child_start: list[torch.Tensor]  # per level l: [P_{l-1} + 1] int64 (P_{-1} = 1: the root)
    child_code: list[torch.Tensor]  # per level l: [P_l] int64, the code of each length-(l+1) prefix
    leaf_item: torch.Tensor  # [P_{L-1}] item_idx of each full code sequence
    max_children: list[int]
    dense: list[torch.Tensor | None]  # per level: [P_{l-1}, K_l] child prefix id (-1: invalid), or None
    build_s: float = 0.0

    @classmethod
    def build(cls, codes: np.ndarray, layout: TokenLayout, dense_max_entries: int = DENSE_MAX_ENTRIES
              ) -> PrefixIndex:
        t0 = time.perf_counter()
        codes = np.asarray(codes, dtype=np.int64)
        n, L = codes.shape
        if L != layout.num_levels:
            raise ValueError(f"codes have {L} levels, the token layout {layout.num_levels}")
        order = np.lexsort(codes.T[::-1])  # sort rows lexicographically
        sorted_codes = codes[order]
        if n > 1 and (np.diff(sorted_codes, axis=0) == 0).all(1).any():
            raise ValueError("item codes are not unique: two items share a full code sequence")
        starts, child_codes, fanout = [], [], []
        parent_ids = np.zeros(n, dtype=np.int64)  # prefix id of each row at the previous level
        num_parents = 1
        for lvl in range(L):
            # a new length-(lvl+1) prefix starts where the parent or this level's code changes
            new = np.ones(n, dtype=bool)
            if n > 1:
                new[1:] = (parent_ids[1:] != parent_ids[:-1]) | (sorted_codes[1:, lvl] != sorted_codes[:-1, lvl])
            prefix_ids = np.cumsum(new) - 1
            first_rows = np.flatnonzero(new)
            counts = np.bincount(parent_ids[first_rows], minlength=num_parents)
            starts.append(torch.as_tensor(np.concatenate([[0], np.cumsum(counts)])))
            child_codes.append(torch.as_tensor(sorted_codes[first_rows, lvl]))
            fanout.append(int(counts.max()) if len(counts) else 0)
            parent_ids, num_parents = prefix_ids, len(first_rows)
        leaf_item = torch.as_tensor(order)  # at the last level every row is its own prefix
        dense = [_dense_table(s, c, size) if (len(s) - 1) * size <= dense_max_entries else None
                 for s, c, size in zip(starts, child_codes, layout.level_sizes)]
        return cls(layout, starts, child_codes, leaf_item, fanout, dense, time.perf_counter() - t0)

    @property
    def num_items(self) -> int:
        return len(self.leaf_item)

    def nbytes(self) -> int:
        tensors = [*self.child_start, *self.child_code, self.leaf_item, *(t for t in self.dense if t is not None)]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def children(self, level: int, prefix_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ragged children of ``prefix_ids`` (flat): (owner position, child prefix id, child code)."""
        start = self.child_start[level][prefix_ids]
        count = self.child_start[level][prefix_ids + 1] - start
        owner = torch.repeat_interleave(torch.arange(len(prefix_ids)), count)
        offset = torch.arange(int(count.sum())) - torch.repeat_interleave(count.cumsum(0) - count, count)
        child = start[owner] + offset
        return owner, child, self.child_code[level][child]

    # --- the search's steps (cemg_ray/generate/search.py) -------------------------------------------------
    def expand(self, level: int, beam_score: torch.Tensor, prefix: torch.Tensor, logp: torch.Tensor) -> Expansion:
        """The best ``W`` children per user of the live beams [B, W] (their prefix ids at the previous level) given
        each beam's log-probabilities over ``level``'s codes [B*W, K]: through the level's dense table where it has
        one, else its CSR lists."""
        expand = self.expand_dense if self.dense[level] is not None else self.expand_sparse
        return expand(level, beam_score, prefix, logp)

    def expand_dense(self, level: int, beam_score: torch.Tensor, prefix: torch.Tensor,
                     logp: torch.Tensor) -> Expansion:
        """Mask every beam's row of the level's dense table and take one top-k over the user's rows."""
        B, W = beam_score.shape
        K = logp.shape[1]
        table = self.dense[level][prefix.reshape(-1)].long()  # [B*W, K] child prefix id, -1: not a valid code
        scores = (beam_score.reshape(-1, 1) + logp).masked_fill(table < 0, float("-inf"))
        top_score, top = scores.view(B, W * K).topk(W, dim=1)
        src = torch.arange(B)[:, None] * W + top // K
        child = table.view(B, W * K).gather(1, top)
        return top_score, src, child.clamp_min(0), top % K, torch.isfinite(top_score) & (child >= 0)

    def expand_sparse(self, level: int, beam_score: torch.Tensor, prefix: torch.Tensor,
                      logp: torch.Tensor) -> Expansion:
        """Score only the live beams' real children (the CSR lists, one ragged gather) and keep the best ``W``."""
        B, W = beam_score.shape
        rows = torch.arange(B)
        live_rows = torch.isfinite(beam_score).reshape(-1).nonzero().flatten()
        owner, child, code = self.children(level, prefix.reshape(-1)[live_rows])
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

    def full_codes(self) -> np.ndarray:
        """Codes [N, L] of the leaves in index order (rebuilt from the CSR arrays)."""
        leaf = np.arange(self.num_items)
        cols = []
        ids = leaf
        for lvl in range(self.layout.num_levels - 1, -1, -1):
            cols.append(self.child_code[lvl].numpy()[ids])
            starts = self.child_start[lvl].numpy()
            ids = np.searchsorted(starts, ids, side="right") - 1
        return np.stack(cols[::-1], axis=1)

    def code_lookup(self) -> dict[tuple[int, ...], int]:
        """item_idx of each full code sequence (built once): maps an unconstrained search's sequences to items."""
        cache = self.__dict__.setdefault("_lookup", {})
        if not cache:
            cache.update({tuple(c): int(i) for c, i in zip(self.full_codes().tolist(), self.leaf_item.tolist())})
        return cache

    def allowed_codes(self, prefix: list[int]) -> list[int]:
        """Codes allowed after a code prefix (slow path, for HF's prefix_allowed_tokens_fn and tests)."""
        pid = 0
        for lvl, code in enumerate(prefix):
            s, e = int(self.child_start[lvl][pid]), int(self.child_start[lvl][pid + 1])
            codes = self.child_code[lvl][s:e]
            pos = int(torch.searchsorted(codes, code))
            if pos >= len(codes) or int(codes[pos]) != code:
                return []
            pid = s + pos
        lvl = len(prefix)
        if lvl >= self.layout.num_levels:
            return []
        s, e = int(self.child_start[lvl][pid]), int(self.child_start[lvl][pid + 1])
        return self.child_code[lvl][s:e].tolist()

    def prefix_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Prefix id of each row of level codes [R, l] (0-based per level; l = 0 gives the root, 0), ``-1``
        where the row is not a prefix of any item. Vectorised: a level's (parent id, code) keys are sorted,
        since prefixes are numbered in lexicographic order."""
        pid = torch.zeros(codes.shape[0], dtype=torch.long)
        for lvl in range(codes.shape[1]):
            keys = self._level_keys(lvl)
            size = self.layout.level_sizes[lvl]
            want = pid.clamp_min(0) * size + codes[:, lvl].long()
            pos = torch.searchsorted(keys, want).clamp_max(max(len(keys) - 1, 0))
            found = (pid >= 0) & (keys[pos] == want) if len(keys) else torch.zeros_like(pid, dtype=torch.bool)
            pid = torch.where(found, pos, torch.full_like(pos, -1))
        return pid

    def child_mask(self, level: int, parent_ids: torch.Tensor) -> torch.Tensor:
        """[R, K_level] bool: which codes of ``level`` continue each parent prefix to a real item (all True for
        a parent id of ``-1``, which is no prefix: nothing to constrain against)."""
        size = self.layout.level_sizes[level]
        known = parent_ids >= 0
        mask = torch.ones(len(parent_ids), size, dtype=torch.bool)
        rows = known.nonzero().flatten()
        mask[rows] = False
        owner, _, code = self.children(level, parent_ids[rows])
        mask[rows[owner], code] = True
        return mask

    def _level_keys(self, level: int) -> torch.Tensor:
        """Sorted ``parent id * K_level + code`` of every length-(level+1) prefix (cached)."""
        cache = self.__dict__.setdefault("_keys", {})
        if level not in cache:
            start = self.child_start[level]
            parents = torch.repeat_interleave(torch.arange(len(start) - 1), start[1:] - start[:-1])
            cache[level] = parents * self.layout.level_sizes[level] + self.child_code[level]
        return cache[level]
