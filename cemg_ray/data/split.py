"""Leave-one-out split: last item = test, second to last = validation, the rest = train.

Only ``Split.train`` may reach anything that is trained (features' PCA, LightGCN, RQ-VAE, the
generator). Validation and test histories are inputs at evaluation time, never training data.

The four per-user histories are :class:`Ragged` views into the one flat array of the data stage's sequence
table (Arrow's list offsets), so a split costs the interactions' bytes plus 16 bytes a user and row kind, not a
numpy object per user and kind (about 100 bytes each: 40 GB of headers alone at 100M users).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cemg_ray import artifacts
from cemg_ray.store import Store


class Ragged(Sequence[np.ndarray]):
    """Rows of different lengths, each a view ``values[starts[i]:ends[i]]`` made when it is read.

    It reads like the list of arrays it replaces (``len``, indexing, iteration, ``np.concatenate``); a slice or an
    index array selects rows without copying the values."""

    __slots__ = ("values", "starts", "ends")

    def __init__(self, values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.values = values
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - an int gives a row, a slice or index array a Ragged
        if isinstance(index, slice | np.ndarray | list):
            return Ragged(self.values, self.starts[index], self.ends[index])
        return self.values[self.starts[index]:self.ends[index]]

    def __iter__(self) -> Iterator[np.ndarray]:
        values = self.values
        for start, end in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
            yield values[start:end]

    def __repr__(self) -> str:
        return f"Ragged({len(self)} rows, {int(self.lengths().sum())} values)"

    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def flat(self) -> np.ndarray:
        """Every row's values, row after row (what ``np.concatenate`` of the rows gives, without a view per row)."""
        lengths = self.lengths()
        if not len(lengths):
            return self.values[:0]
        row_offset = np.repeat(self.starts - (np.cumsum(lengths) - lengths), lengths)
        return self.values[row_offset + np.arange(int(lengths.sum()))]


@dataclass
class Split:
    num_items: int
    user_idx: np.ndarray  # users with a test target (>= 3 interactions), aligned with the rows below
    train: Sequence[np.ndarray]  # per user: items[:-2] (full, untruncated, chronological)
    valid_history: Sequence[np.ndarray]  # items[:-2][-max_len:]
    valid_target: np.ndarray
    test_history: Sequence[np.ndarray]  # items[:-1][-max_len:]  (the validation item is an input)
    test_target: np.ndarray
    train_counts: np.ndarray  # interactions per item in the training split
    max_len: int
    cold_start_max: int = 5

    def cold_items(self) -> np.ndarray:
        """Boolean mask over items with at most ``cold_start_max`` training interactions."""
        return self.train_counts <= self.cold_start_max

    def histories(self, which: str) -> tuple[Sequence[np.ndarray], np.ndarray]:
        if which == "test":
            return self.test_history, self.test_target
        if which == "valid":
            return self.valid_history, self.valid_target
        raise ValueError(f"unknown split {which!r}: expected 'test' or 'valid'")

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) edges of the training split, for graph models."""
        train = self.train if isinstance(self.train, Ragged) else _ragged(list(self.train))
        return np.repeat(np.asarray(self.user_idx, dtype=np.int64), train.lengths()), train.flat().astype(np.int64)


def _ragged(sequences: Sequence[np.ndarray]) -> Ragged:
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else \
        np.zeros(0, np.int64)
    return Ragged(flat, offsets[:-1], offsets[1:])


def leave_one_out(sequences: Sequence[np.ndarray], num_items: int, max_len: int = 20,
                  cold_start_max: int = 5, user_idx: np.ndarray | None = None) -> Split:
    """Split chronological sequences; users with fewer than 3 interactions are left out of it."""
    rows = sequences if isinstance(sequences, Ragged) else _ragged(sequences)
    return split_rows(rows.values, rows.starts, rows.ends, num_items, max_len, cold_start_max, user_idx)


def split_rows(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, num_items: int, max_len: int = 20,
               cold_start_max: int = 5, user_idx: np.ndarray | None = None) -> Split:
    """:func:`leave_one_out` on sequences given as ``values[starts[u]:ends[u]]`` (no array per user is made)."""
    if max_len < 1:
        raise ValueError(f"leave_one_out: max_len must be >= 1, got {max_len}")
    values = np.asarray(values, dtype=np.int64)
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    if user_idx is None:
        user_idx = np.arange(len(starts))
    keep = (ends - starts) >= 3
    starts, ends = starts[keep], ends[keep]
    train = Ragged(values, starts, ends - 2)
    counts = np.bincount(train.flat(), minlength=num_items)
    return Split(
        num_items=num_items,
        user_idx=np.asarray(user_idx)[keep],
        train=train,
        valid_history=Ragged(values, np.maximum(starts, ends - 2 - max_len), ends - 2),
        valid_target=values[ends - 2],
        test_history=Ragged(values, np.maximum(starts, ends - 1 - max_len), ends - 1),
        test_target=values[ends - 1],
        train_counts=counts,
        max_len=max_len,
        cold_start_max=cold_start_max,
    )


def sequences_from_table(table: pa.Table) -> tuple[np.ndarray, Ragged]:
    """(``user_idx``, each user's items) of a sequence table, the items as views into the table's one flat array."""
    users = table.column("user_idx").to_numpy()
    col = table.column("items").combine_chunks()
    offsets = col.offsets.to_numpy().astype(np.int64)
    values = col.values.to_numpy()
    return users, Ragged(values, offsets[:-1], offsets[1:])


def load_split(store: Store, max_len: int = 20, cold_start_max: int = 5) -> Split:
    """The split of the run directory's ``data/`` artifacts (written by the data stage)."""
    users, seqs = sequences_from_table(artifacts.read_sequences(store))
    num_items = artifacts.num_items(store)
    return leave_one_out(seqs, num_items, max_len=max_len, cold_start_max=cold_start_max, user_idx=users)
