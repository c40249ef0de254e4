"""The in-memory catalog every loader produces: an item table and chronological sequences."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ITEM_SCHEMA = pa.schema([
    ("item_idx", pa.int32()),
    ("item_id", pa.string()),
    ("title", pa.string()),
    ("text", pa.string()),
    ("image", pa.binary()),
    ("image_uri", pa.string()),
])

SEQUENCE_SCHEMA = pa.schema([
    ("user_idx", pa.int32()),
    ("user_id", pa.string()),
    ("items", pa.list_(pa.int32())),
])


class DataError(ValueError):
    """Input data is unusable; the message names the file and the field at fault."""


@dataclass
class LoadReport:
    """What a loader skipped and why: malformed rows are counted, never silently dropped."""

    source: str
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, where)

    def to_dict(self) -> dict:
        return {"source": self.source, "skipped_total": sum(self.skipped.values()),
                "skipped": dict(self.skipped), "first_example": self.examples}


class Catalog:
    """The item table and each user's chronological item_idx sequence.

    Two ways in: ``Catalog(items, user_ids, sequences, report)`` with one array per user (the small formats'
    loaders), or :meth:`from_csr` with the sequences as CSR arrays, every user's items in one flat ``item_idx`` array
    and ``offsets`` (user ``u``'s items are ``flat[offsets[u]:offsets[u + 1]]``) and the user ids as one Arrow
    string array (the ``parquet`` loader: no Python object per interaction or per user). The data stage reads only
    :meth:`sequences_table` and :meth:`stats`, which work on the CSR arrays; ``user_ids`` and ``sequences`` (lists)
    are built on first use for the callers that want them.
    """

    def __init__(self, items: pa.Table, user_ids: list[str], sequences: list[np.ndarray], report: LoadReport):
        self.items = items  # ITEM_SCHEMA (+ optional extra columns, e.g. synthetic `cluster`)
        self.report = report
        self._user_ids: list[str] | None = list(user_ids)
        self._user_id_array: pa.Array | None = None
        self._sequences: list[np.ndarray] | None = list(sequences)
        self._csr: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_csr(cls, items: pa.Table, user_ids: pa.Array, flat: np.ndarray, offsets: np.ndarray,
                 report: LoadReport) -> Catalog:
        """``flat``: item_idx of every interaction, user by user; ``offsets``: ``len(user_ids) + 1`` bounds."""
        if len(offsets) != len(user_ids) + 1 or offsets[0] != 0 or offsets[-1] != len(flat):
            raise ValueError(f"offsets ({len(offsets)}, last {offsets[-1] if len(offsets) else None}) do not "
                             f"bound {len(flat)} interactions of {len(user_ids)} users")
        cat = cls.__new__(cls)
        cat.items, cat.report = items, report
        cat._user_ids, cat._sequences = None, None
        cat._user_id_array = user_ids.cast(pa.string())
        cat._csr = (np.ascontiguousarray(flat, dtype=np.int32), np.ascontiguousarray(offsets, dtype=np.int64))
        return cat

    def __repr__(self) -> str:
        return f"Catalog({self.num_users} users, {self.num_items} items, {self.num_interactions} interactions)"

    @property
    def num_items(self) -> int:
        return self.items.num_rows

    @property
    def num_users(self) -> int:
        return len(self._user_ids) if self._user_ids is not None else len(self._user_id_array)

    @property
    def num_interactions(self) -> int:
        return int(self.csr[1][-1])

    @property
    def user_ids(self) -> list[str]:
        if self._user_ids is None:
            self._user_ids = self._user_id_array.to_pylist()
        return self._user_ids

    @property
    def user_id_array(self) -> pa.Array:
        if self._user_id_array is None:
            self._user_id_array = pa.array(self._user_ids, pa.string())
        return self._user_id_array

    @property
    def sequences(self) -> list[np.ndarray]:
        """item_idx (int64), chronological, one array per user (views into one array when built from CSR)."""
        if self._sequences is None:
            flat, offsets = self.csr
            self._sequences = np.split(flat.astype(np.int64), offsets[1:-1]) if len(offsets) > 1 else []
        return self._sequences

    @property
    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat item_idx as int32, offsets as int64 with one more entry than there are users)."""
        if self._csr is None:
            seqs = self._sequences
            offsets = np.zeros(len(seqs) + 1, np.int64)
            np.cumsum(np.fromiter((len(s) for s in seqs), np.int64, len(seqs)), out=offsets[1:])
            flat = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
            self._csr = (flat, offsets)
        return self._csr

    def sequences_table(self) -> pa.Table:
        flat, offsets = self.csr
        if offsets[-1] > np.iinfo(np.int32).max:
            raise DataError(f"{offsets[-1]:,} interactions: more than the sequence table's 32-bit list offsets hold")
        items = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat, pa.int32()))
        return pa.table({
            "user_idx": pa.array(np.arange(self.num_users, dtype=np.int32)),
            "user_id": self.user_id_array,
            "items": items,
        }, schema=SEQUENCE_SCHEMA)

    def stats(self) -> dict:
        lengths = np.diff(self.csr[1]) if self.num_users else np.zeros(1)
        n_inter = int(lengths.sum())
        n_users, n_items = self.num_users, self.num_items
        text = self.items.column("text").to_pylist()
        has_image = [(b is not None) or (u is not None) for b, u in
                     zip(self.items.column("image").to_pylist(), self.items.column("image_uri").to_pylist())]
        return {
            "users": n_users,
            "items": n_items,
            "interactions": n_inter,
            "avg_length": round(float(lengths.mean()), 3),
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "sparsity": round(1 - n_inter / max(1, n_users * n_items), 6),
            "items_with_text": int(sum(bool(t and t.strip()) for t in text)),
            "items_with_image": int(sum(has_image)),
            "skipped_rows": self.report.to_dict()["skipped_total"],
        }


ArrowOrList = list | pa.Array | pa.ChunkedArray


def _column(values: ArrowOrList | None, kind: pa.DataType, n: int) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(kind)
    return pa.array(values or [None] * n, kind)


def build_items_table(ids: ArrowOrList, titles: ArrowOrList | None = None, texts: ArrowOrList | None = None,
                      images: ArrowOrList | None = None, image_uris: ArrowOrList | None = None,
                      **extra: list) -> pa.Table:
    """Assemble the item table with dense ``item_idx`` in the order of ``ids`` (lists, or Arrow arrays for a
    catalog too large for a Python object per item)."""
    n = len(ids)
    if isinstance(ids, pa.Array | pa.ChunkedArray):
        if pc.count_distinct(ids).as_py() != n:
            counts = pc.value_counts(ids)
            dup = counts.field("values")[int(np.argmax(counts.field("counts").to_numpy() > 1))].as_py()
            raise DataError(f"duplicate item id {dup!r} in the item table")
    elif len(set(ids)) != n:
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise DataError(f"duplicate item id {dup!r} in the item table")
    text = pc.fill_null(_column(texts, pa.string(), n), "") if texts is not None else pa.array([""] * n, pa.string())
    cols = {
        "item_idx": pa.array(np.arange(n, dtype=np.int32)),
        "item_id": _column(ids, pa.string(), n),
        "title": _column(titles, pa.string(), n),
        "text": text,
        "image": _column(images, pa.binary(), n),
        "image_uri": _column(image_uris, pa.string(), n),
    }
    for k, v in extra.items():
        cols[k] = pa.array(v)
    return pa.table(cols)


def compose_text(title: str | None, brand: str | None = None, categories: object = None,
                 description: str | None = None) -> str:
    """TIGER-style item text: title, brand, categories, description (whichever exist)."""
    parts = []
    if title:
        parts.append(f"Title: {title.strip()}")
    if brand:
        parts.append(f"Brand: {str(brand).strip()}")
    if categories:
        if isinstance(categories, list | tuple):
            flat = []
            for c in categories:
                flat.extend(c if isinstance(c, list | tuple) else [c])
            cats = ", ".join(dict.fromkeys(str(c) for c in flat if c))
        else:
            cats = str(categories)
        if cats:
            parts.append(f"Categories: {cats}")
    if description:
        desc = description if isinstance(description, str) else " ".join(map(str, description))
        parts.append(f"Description: {desc.strip()}")
    return ". ".join(parts)
