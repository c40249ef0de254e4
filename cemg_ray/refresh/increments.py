"""An increment (new interactions of known and new users, new items with their text and images), read and appended
to a run's data with ids that stay stable across refreshes.

An increment is a folder: ``interactions.parquet`` or ``interactions.jsonl`` (``user_id``, ``item_id``,
``timestamp``) and, when it brings items, ``items.parquet`` or ``items.jsonl`` (``item_id`` and any of ``title``,
``text``, ``description``, ``brand``, ``categories``, ``image``: bytes, a path relative to the folder or a URI,
``image_uri``). Structural problems (no file, a missing column, an id column of the wrong type, a duplicated item)
are a :class:`DataError` naming the file and the field; a malformed row (a null or wrongly typed field, an item id
that is in neither the catalog nor the increment's items) is skipped and counted with its first example, so the
caller can refuse an increment that is mostly broken.

Old items keep their ``item_idx`` and old users their ``user_idx``; new items take the next indices in the order of
the items file, new users in the order of their first interaction. A user's new interactions (by timestamp, then
file order) follow everything the run already had for them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray.data.catalog import SEQUENCE_SCHEMA, DataError, LoadReport, compose_text

INTERACTIONS = "interactions"
ITEMS = "items"
ID_TYPES = (str, int)


@dataclass
class Increment:
    """What an increment adds, rows validated; ``report`` holds what was skipped and why."""

    path: str
    events: list[tuple[str, str, float, int]]  # (user_id, item_id, timestamp, row) of the valid rows
    items: list[dict[str, Any]]  # new items' rows (item_id, title, text, image, image_uri), file order
    rows: int  # interaction and item rows read
    report: LoadReport
    already_in_catalog: list[str] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        return int(sum(self.report.skipped.values()))

    @property
    def bad_share(self) -> float:
        return self.bad_rows / max(self.rows, 1)

    def summary(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "interactions": len(self.events), "new_items": len(self.items),
                "already_in_catalog": len(self.already_in_catalog), "bad_rows": self.bad_rows,
                "bad_share": round(self.bad_share, 4), **{k: v for k, v in self.report.to_dict().items()
                                                          if k in ("skipped", "first_example")}}


def _find(folder: Path, stem: str, required: bool) -> Path | None:
    found = [folder / f"{stem}{ext}" for ext in (".parquet", ".jsonl") if (folder / f"{stem}{ext}").is_file()]
    if len(found) > 1:
        raise DataError(f"{folder}: both {found[0].name} and {found[1].name}; keep one")
    if not found and required:
        raise DataError(f"{folder}: no {stem}.parquet or {stem}.jsonl")
    return found[0] if found else None


def _rows(path: Path, required: list[str], report: LoadReport) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """((row number, row) of a Parquet or JSON-lines file, rows read); a line that is not a JSON object is skipped
    and counted."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        for col in required:
            if col not in table.column_names:
                raise DataError(f"{path}: missing required column {col!r} (has {', '.join(table.column_names)})")
        for col in ("user_id", "item_id"):
            if col in table.column_names:
                kind = table.schema.field(col).type
                if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
                    raise DataError(f"{path}: column {col!r} has type {kind}; ids must be strings or integers")
        return list(enumerate(table.to_pylist())), table.num_rows
    out, lines = [], 0
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            lines += 1
            try:
                row = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                report.skip("not_json", f"{path}:{n} ({type(exc).__name__})")
                continue
            if not isinstance(row, dict):
                report.skip("not_an_object", f"{path}:{n}")
                continue
            out.append((n, row))
    return out, lines


def _id(row: dict[str, Any], key: str, where: str, report: LoadReport) -> str | None:
    value = row.get(key)
    if value is None or value == "":
        report.skip(f"missing_{key}", f"{where}: field {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, ID_TYPES):
        report.skip(f"{key}_wrong_type", f"{where}: field {key!r} is {type(value).__name__}")
        return None
    return str(value)


def _item_row(row: dict[str, Any], iid: str, base: Path, where: str, report: LoadReport) -> dict[str, Any]:
    def text(key: str) -> Any:
        value = row.get(key)
        listed = key in ("categories", "description") and isinstance(value, list)
        if value is None or isinstance(value, str) or listed:
            return value
        report.skip(f"{key}_wrong_type", f"{where}: field {key!r} is {type(value).__name__}")
        return None

    title = text("title")
    body = text("text") or compose_text(title, text("brand"), text("categories"), text("description"))
    image, uri = row.get("image"), row.get("image_uri")
    if isinstance(image, str) and image:  # a path next to the increment, or a URI
        image, uri = None, image if "://" in image or image.startswith("/") else str(base / image)
    elif image is not None and not isinstance(image, bytes | bytearray):
        report.skip("image_wrong_type", f"{where}: field 'image' is {type(image).__name__}")
        image = None
    return {"item_id": iid, "title": title, "text": body or "", "image": bytes(image) if image else None,
            "image_uri": uri if isinstance(uri, str) and uri else None}


def read_increment(path: str | Path, catalog_ids: set[str]) -> Increment:
    """Read and validate an increment against the catalog's item ids (see the module docstring)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: an increment is a folder with interactions.parquet|jsonl and items.parquet|jsonl")
    inter_path, items_path = _find(folder, INTERACTIONS, False), _find(folder, ITEMS, False)
    if inter_path is None and items_path is None:
        raise DataError(f"{folder}: no interactions.parquet|jsonl and no items.parquet|jsonl: nothing to add")
    report = LoadReport(str(folder))
    rows = 0
    new_items: list[dict[str, Any]] = []
    known: list[str] = []
    if items_path is not None:
        seen: set[str] = set()
        item_rows, read = _rows(items_path, ["item_id"], report)
        rows += read
        for n, row in item_rows:
            where = f"{items_path}:{n}" if items_path.suffix == ".jsonl" else f"{items_path}: row {n}"
            iid = _id(row, "item_id", where, report)
            if iid is None:
                continue
            if iid in seen:
                raise DataError(f"{items_path}: duplicate item_id {iid!r} ({where})")
            seen.add(iid)
            if iid in catalog_ids:  # an item the run already has keeps its row, index and code
                known.append(iid)
                continue
            new_items.append(_item_row(row, iid, folder, where, report))
    valid_items = catalog_ids | {r["item_id"] for r in new_items}
    events: list[tuple[str, str, float, int]] = []
    if inter_path is not None:
        inter_rows, read = _rows(inter_path, ["user_id", "item_id", "timestamp"], report)
        rows += read
        for n, row in inter_rows:
            where = f"{inter_path}:{n}" if inter_path.suffix == ".jsonl" else f"{inter_path}: row {n}"
            user, item = _id(row, "user_id", where, report), _id(row, "item_id", where, report)
            ts = row.get("timestamp")
            if user is None or item is None:
                continue
            if isinstance(ts, bool) or not isinstance(ts, int | float) or not np.isfinite(ts):
                report.skip("bad_timestamp", f"{where}: field 'timestamp' is {ts!r}")
                continue
            if item not in valid_items:
                report.skip("unknown_item", f"{where}: item_id {item!r} is in neither the catalog nor the items file")
                continue
            events.append((user, item, float(ts), n))
    return Increment(str(folder), events, new_items, rows, report, known)


def append(items: pa.Table, sequences: pa.Table, inc: Increment) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """The item table and the sequences with ``inc`` appended (stable ids: see the module docstring)."""
    n_items = items.num_rows
    new_rows = [{**row, "item_idx": n_items + k} for k, row in enumerate(inc.items)]
    grown = pa.concat_tables([items, pa.Table.from_pylist(new_rows, schema=items.schema)]) if new_rows else items
    index = {iid: i for i, iid in enumerate(grown.column("item_id").to_pylist())}
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for user, item, ts, row in inc.events:
        by_user[user].append((ts, row, item))
    user_ids = [str(u) for u in sequences.column("user_id").to_pylist()]
    seqs = [list(s) for s in sequences.column("items").to_pylist()]
    user_idx = [int(u) for u in sequences.column("user_idx").to_pylist()]
    where = {u: k for k, u in enumerate(user_ids)}
    new_users = sorted((u for u in by_user if u not in where), key=lambda u: (min(by_user[u])[:2], u))
    for u in new_users:
        where[u] = len(user_ids)
        user_ids.append(u)
        seqs.append([])
        user_idx.append(max(user_idx, default=-1) + 1)
    for u, events in by_user.items():
        seqs[where[u]].extend(index[item] for _, _, item in sorted(events))
    table = pa.table({"user_idx": pa.array(user_idx, pa.int32()), "user_id": pa.array(user_ids, pa.string()),
                      "items": pa.array(seqs, pa.list_(pa.int32()))}, schema=SEQUENCE_SCHEMA)
    summary = {"items_before": n_items, "items_after": grown.num_rows, "new_item_idx": [n_items, grown.num_rows],
               "users_before": sequences.num_rows, "new_users": len(new_users), "users_touched": len(by_user),
               "interactions_added": len(inc.events)}
    return grown, table, summary


def touched_users(sequences: pa.Table, inc: Increment) -> np.ndarray:
    """``user_idx`` of the users the increment gave interactions to."""
    users = {u for u, _, _, _ in inc.events}
    ids = sequences.column("user_id").to_pylist()
    idx = sequences.column("user_idx").to_numpy()
    return np.asarray([i for i, u in zip(idx, ids) if u in users], dtype=np.int64)
