"""Leave-one-out split: last item = test, second to last = validation, the rest = train.

Only ``Split.train`` may reach anything that is trained (features' PCA, LightGCN, RQ-VAE, the
generator). Validation and test histories are inputs at evaluation time, never training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cemg_ray import artifacts
from cemg_ray.store import Store


@dataclass
class Split:
    num_items: int
    user_idx: np.ndarray  # users with a test target (>= 3 interactions), aligned with the lists below
    train: list[np.ndarray]  # per user: items[:-2] (full, untruncated, chronological)
    valid_history: list[np.ndarray]  # items[:-2][-max_len:]
    valid_target: np.ndarray
    test_history: list[np.ndarray]  # items[:-1][-max_len:]  (the validation item is an input)
    test_target: np.ndarray
    train_counts: np.ndarray  # interactions per item in the training split
    max_len: int
    cold_start_max: int = 5

    def cold_items(self) -> np.ndarray:
        """Boolean mask over items with at most ``cold_start_max`` training interactions."""
        return self.train_counts <= self.cold_start_max

    def histories(self, which: str) -> tuple[list[np.ndarray], np.ndarray]:
        if which == "test":
            return self.test_history, self.test_target
        if which == "valid":
            return self.valid_history, self.valid_target
        raise ValueError(f"unknown split {which!r}: expected 'test' or 'valid'")

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) edges of the training split, for graph models."""
        users = np.concatenate([np.full(len(s), u, dtype=np.int64) for u, s in zip(self.user_idx, self.train)])
        items = np.concatenate(self.train).astype(np.int64)
        return users, items


def leave_one_out(sequences: list[np.ndarray], num_items: int, max_len: int = 20,
                  cold_start_max: int = 5, user_idx: np.ndarray | None = None) -> Split:
    """Split chronological sequences; users with fewer than 3 interactions are left out of it."""
    if user_idx is None:
        user_idx = np.arange(len(sequences))
    keep = [i for i, s in enumerate(sequences) if len(s) >= 3]
    seqs = [np.asarray(sequences[i], dtype=np.int64) for i in keep]
    train = [s[:-2] for s in seqs]
    counts = np.bincount(np.concatenate(train) if train else np.zeros(0, np.int64), minlength=num_items)
    return Split(
        num_items=num_items,
        user_idx=np.asarray(user_idx)[keep],
        train=train,
        valid_history=[s[:-2][-max_len:] for s in seqs],
        valid_target=np.array([s[-2] for s in seqs], dtype=np.int64),
        test_history=[s[:-1][-max_len:] for s in seqs],
        test_target=np.array([s[-1] for s in seqs], dtype=np.int64),
        train_counts=counts,
        max_len=max_len,
        cold_start_max=cold_start_max,
    )


def sequences_from_table(table: pa.Table) -> tuple[np.ndarray, list[np.ndarray]]:
    users = table.column("user_idx").to_numpy()
    col = table.column("items").combine_chunks()
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy()
    return users, [values[offsets[i]:offsets[i + 1]] for i in range(len(col))]


def load_split(store: Store, max_len: int = 20, cold_start_max: int = 5) -> Split:
    """The split of the run directory's ``data/`` artifacts (written by the data stage)."""
    users, seqs = sequences_from_table(artifacts.read_sequences(store))
    num_items = artifacts.num_items(store)
    return leave_one_out(seqs, num_items, max_len=max_len, cold_start_max=cold_start_max, user_idx=users)
