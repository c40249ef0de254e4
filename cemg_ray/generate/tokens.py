"""Semantic-ID token layout shared by training, constrained decoding, serving and export.

An item is ``L`` codes (``M`` RQ-VAE levels + one disambiguation level). Level ``l`` owns a
contiguous token range, so ``<a_12>`` (level 0, code 12) and ``<b_12>`` (level 1, code 12) are
different tokens, as in TIGER. Id 0 is padding (and T5's decoder start), id 1 is end-of-sequence
(it ends a history, and separates prompt from answer for decoder-only models).
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass

import numpy as np

PAD_ID = 0
EOS_ID = 1
NUM_SPECIAL = 2


@dataclass(frozen=True)
class TokenLayout:
    level_sizes: tuple[int, ...]
    base: int = NUM_SPECIAL  # first code token id; a pretrained vocabulary puts the codes after its own

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def offsets(self) -> np.ndarray:
        """First token id of every level."""
        return self.base + np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]]).astype(np.int64)

    @property
    def vocab_size(self) -> int:
        return self.base + int(sum(self.level_sizes))

    def encode_items(self, codes: np.ndarray) -> np.ndarray:
        """Codes [..., L] -> token ids [..., L]."""
        return np.asarray(codes, dtype=np.int64) + self.offsets

    def token_names(self) -> list[str]:
        """``<pad>``, ``</s>``, then ``<a_0>``..``<a_{K-1}>``, ``<b_0>``..: one name per id."""
        names = ["<pad>", "</s>"]
        for lvl, size in enumerate(self.level_sizes):
            letter = string.ascii_lowercase[lvl]
            names += [f"<{letter}_{c}>" for c in range(size)]
        return names

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TokenLayout:
        data = json.loads(text)
        return cls(tuple(data["level_sizes"]), data.get("base", NUM_SPECIAL))
