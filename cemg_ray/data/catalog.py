"""The in-memory catalog every loader produces: an item table and chronological sequences."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

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


@dataclass
class Catalog:
    items: pa.Table  # ITEM_SCHEMA (+ optional extra columns, e.g. synthetic `cluster`)
    user_ids: list[str]
    sequences: list[np.ndarray]  # item_idx, chronological, one per user
    report: LoadReport

    @property
    def num_items(self) -> int:
        return self.items.num_rows

    def sequences_table(self) -> pa.Table:
        return pa.table({
            "user_idx": pa.array(np.arange(len(self.sequences), dtype=np.int32)),
            "user_id": pa.array(self.user_ids, pa.string()),
            "items": pa.array([s.astype(np.int32) for s in self.sequences], pa.list_(pa.int32())),
        }, schema=SEQUENCE_SCHEMA)

    def stats(self) -> dict:
        lengths = np.array([len(s) for s in self.sequences]) if self.sequences else np.zeros(1)
        n_inter = int(lengths.sum())
        n_users, n_items = len(self.sequences), self.num_items
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


def build_items_table(ids: list[str], titles: list[str | None] | None = None,
                      texts: list[str | None] | None = None, images: list[bytes | None] | None = None,
                      image_uris: list[str | None] | None = None, **extra: list) -> pa.Table:
    """Assemble the item table with dense ``item_idx`` in the order of ``ids``."""
    n = len(ids)
    if len(set(ids)) != n:
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise DataError(f"duplicate item id {dup!r} in the item table")
    cols = {
        "item_idx": pa.array(np.arange(n, dtype=np.int32)),
        "item_id": pa.array(ids, pa.string()),
        "title": pa.array(titles or [None] * n, pa.string()),
        "text": pa.array([t or "" for t in (texts or [None] * n)], pa.string()),
        "image": pa.array(images or [None] * n, pa.binary()),
        "image_uri": pa.array(image_uris or [None] * n, pa.string()),
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
