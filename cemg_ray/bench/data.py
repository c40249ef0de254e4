"""``cemg-ray bench data``: a loader, vectorised (pyarrow + numpy), against the per-interaction one it replaced.

Both paths read the same synthetic ``interactions.parquet`` / ``items.parquet`` (string ids, timestamps with many
ties, a few malformed rows, items missing from the item table) and produce what the data stage writes: the item
table, the sequence table and the load report. Each path runs in its own Python process so that its peak resident
memory is its own (``VmHWM``, beside the resident size after the imports, before the load); the parent then
checks that the two produced identical tables and reports.

The reference, :func:`reference_load_parquet`, is the loader as it was before the vectorised one (one Python tuple
and strings per interaction, one list per user); it is kept here as the benchmark's baseline and as the
equivalence test's oracle (``tests/data/test_parquet_vectorised.py``), never as a production path.

``--format sequences|json|amazon`` measures a text format the same way (:func:`write_synthetic_text`): the
references :func:`reference_load_sequences`, :func:`reference_load_json`, :func:`reference_load_amazon` (and
:func:`reference_load_movielens`, for the tests) are those loaders as they were, a Python list, tuple or set entry
per interaction; ``arrow`` is then the columnar parse (``_Columns`` in ``cemg_ray/data/loaders.py``) and the
numbering the parquet loader uses. Their oracle is ``tests/data/test_text_loaders_columnar.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cemg_ray.bench import emit

PATHS = ("per_interaction", "arrow")


# -- the reference: the parquet loader as it was, one Python object per interaction ---------------------------------
def reference_load_parquet(path: str | Path, images_dir: str | None = None):  # noqa: ANN201 - a Catalog
    from cemg_ray import artifacts
    from cemg_ray.data.catalog import Catalog, LoadReport, build_items_table
    from cemg_ray.data.loaders import _check_nonempty, _meta_text, _natural_key, _parquet_image

    path = Path(path)
    inter_path = path / artifacts.PARQUET_DATASET_INTERACTIONS
    items_path = path / artifacts.PARQUET_DATASET_ITEMS
    _check_nonempty(inter_path)
    report = LoadReport(str(inter_path))
    raw = _ref_sequences(inter_path, report)
    item_meta = _ref_items(items_path, report) if items_path.exists() else {}
    item_ids = sorted(item_meta, key=_natural_key) if item_meta else None
    user_ids, seqs, item_ids = _ref_index_sequences(raw, item_ids, report)
    titles, texts, images, uris = [], [], [], []
    base = Path(images_dir) if images_dir else path
    for iid in item_ids:
        m = item_meta.get(iid, {})
        title, text = _meta_text(m, report, f"{items_path}: item {iid}")
        titles.append(title)
        texts.append(text)
        image, uri = _parquet_image(m.get("image"), base, f"{items_path}: item {iid}", report)
        images.append(image)
        uris.append(uri)
    return Catalog(build_items_table(item_ids, titles, texts, images, uris), user_ids, seqs, report)


def reference_sequences_table(catalog) -> pa.Table:  # noqa: ANN001 - a Catalog
    """The sequence table as the data stage built it: one Python list entry per user."""
    from cemg_ray.data.catalog import SEQUENCE_SCHEMA

    seqs = catalog.sequences
    return pa.table({
        "user_idx": pa.array(np.arange(len(seqs), dtype=np.int32)),
        "user_id": pa.array(catalog.user_ids, pa.string()),
        "items": pa.array([s.astype(np.int32) for s in seqs], pa.list_(pa.int32())),
    }, schema=SEQUENCE_SCHEMA)


def _ref_read(path: Path) -> pa.Table:
    from cemg_ray.data.catalog import DataError

    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _ref_require(table: pa.Table, path: Path, cols: list[str]) -> None:
    from cemg_ray.data.catalog import DataError

    for c in cols:
        if c not in table.column_names:
            raise DataError(f"{path}: missing required column {c!r} (has {', '.join(table.column_names)})")


def _ref_id_column(table: pa.Table, name: str, path: Path) -> list[str | None]:
    from cemg_ray.data.catalog import DataError

    kind = table.schema.field(name).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_dictionary(kind)):
        raise DataError(f"{path}: column {name!r} has type {kind}; ids must be strings or integers")
    return table.column(name).cast(pa.string()).to_pylist()


def _ref_sequences(inter_path: Path, report) -> dict[str, list[str]]:  # noqa: ANN001
    from cemg_ray.data.catalog import DataError

    inter = _ref_read(inter_path)
    _ref_require(inter, inter_path, ["user_id", "item_id", "timestamp"])
    ts_type = inter.schema.field("timestamp").type
    if not (pa.types.is_integer(ts_type) or pa.types.is_floating(ts_type) or pa.types.is_timestamp(ts_type)):
        raise DataError(f"{inter_path}: column 'timestamp' has type {ts_type}; expected a number or timestamp")
    if inter.num_rows == 0:
        raise DataError(f"{inter_path}: no rows")
    users = _ref_id_column(inter, "user_id", inter_path)
    items = _ref_id_column(inter, "item_id", inter_path)
    tcol = inter.column("timestamp")
    if pa.types.is_timestamp(ts_type):
        tcol = tcol.cast(pa.int64())
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for n, (u, i, t) in enumerate(zip(users, items, tcol.to_pylist())):
        if u is None or i is None:
            report.skip("null_user_or_item", f"{inter_path}: row {n}")
            continue
        if t is None:
            report.skip("null_timestamp", f"{inter_path}: row {n}")
            continue
        by_user[u].append((float(t), n, i))
    return {u: [i for _, _, i in sorted(v)] for u, v in by_user.items()}


def _ref_items(items_path: Path, report) -> dict[str, dict]:  # noqa: ANN001
    from cemg_ray.data.catalog import DataError
    from cemg_ray.data.loaders import _check_nonempty

    _check_nonempty(items_path)
    it = _ref_read(items_path)
    _ref_require(it, items_path, ["item_id"])
    ids = _ref_id_column(it, "item_id", items_path)
    dup = [i for i, c in Counter(i for i in ids if i is not None).items() if c > 1]
    if dup:
        raise DataError(f"{items_path}: duplicate item_id {dup[0]!r} ({len(dup)} duplicated ids)")
    item_meta: dict[str, dict] = {}
    for n, (iid, row) in enumerate(zip(ids, it.to_pylist())):
        if iid is None:
            report.skip("null_item_id", f"{items_path}: row {n}")
            continue
        item_meta[iid] = row
    return item_meta


# -- the references for the text formats: the loaders as they were, one Python tuple or string per interaction ---------
def _ref_index_sequences(raw: dict[str, list[str]], item_ids: list[str] | None,
                         report) -> tuple[list[str], list[np.ndarray], list[str]]:  # noqa: ANN001
    """Map string ids to dense indices; items without metadata are kept (text empty)."""
    from cemg_ray.data.loaders import _natural_key

    if item_ids is None:
        seen = {i for seq in raw.values() for i in seq}
        item_ids = sorted(seen, key=_natural_key)
    pos = {iid: k for k, iid in enumerate(item_ids)}
    extra: list[str] = []
    for seq in raw.values():
        for i in seq:
            if i not in pos:
                pos[i] = len(item_ids) + len(extra)
                extra.append(i)
    if extra:
        report.skipped["items_without_metadata"] += len(extra)
        report.examples.setdefault("items_without_metadata", extra[0])
    users = sorted(raw, key=_natural_key)
    seqs = [np.array([pos[i] for i in raw[u]], dtype=np.int64) for u in users]
    return users, seqs, item_ids + extra


def reference_load_sequences(path: str | Path):  # noqa: ANN201 - a Catalog
    """``user item item ...`` per line (chronological)."""
    from cemg_ray.data.catalog import Catalog, DataError, LoadReport, build_items_table
    from cemg_ray.data.loaders import _check_nonempty, _lines

    path = Path(path)
    if path.is_dir():
        txts = sorted(path.glob("*.txt"))
        if not txts:
            raise DataError(f"{path}: no .txt sequence file in this folder")
        path = txts[0]
    _check_nonempty(path)
    report = LoadReport(str(path))
    raw: dict[str, list[str]] = {}
    for lineno, line in _lines(path, report):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            report.skip("line_without_items", f"{path}:{lineno}")
            continue
        user, items = tokens[0], tokens[1:]
        bad = next((t for t in items if not (t.isascii() and t.isdigit())), None)
        if bad is not None:
            report.skip("non_integer_item_id", f"{path}:{lineno} item {bad[:40]!r}")
            continue
        if user in raw:
            report.skip("duplicate_user_line", f"{path}:{lineno} user {user}")
            continue
        raw[user] = items
    if not raw:
        raise DataError(f"{path}: no user sequences found")
    users, seqs, item_ids = _ref_index_sequences(raw, None, report)
    items = build_items_table(item_ids)
    return Catalog(items, users, seqs, report)


def reference_load_json(path: str | Path):  # noqa: ANN201 - a Catalog
    """LETTER-style ``*.inter.json`` + ``*.item.json``, the whole inter file parsed into Python objects."""
    from cemg_ray.data.catalog import Catalog, DataError, LoadReport, build_items_table
    from cemg_ray.data.loaders import _meta_text, _natural_key, _read_json

    path = Path(path)
    if path.is_file():
        inter_path = path
        folder = path.parent
    else:
        cands = sorted(path.glob("*.inter.json"))
        if not cands:
            raise DataError(f"{path}: no *.inter.json file in this folder")
        inter_path, folder = cands[0], path
    item_path = folder / inter_path.name.replace(".inter.json", ".item.json")
    report = LoadReport(str(inter_path))
    inter = _read_json(inter_path)
    if not isinstance(inter, dict):
        raise DataError(f"{inter_path}: expected an object {{user: [items]}}, got {type(inter).__name__}")
    for user in inter.duplicates:
        report.skip("duplicate_user", f"{inter_path}: user {user} appears again (the first sequence is kept)")
    raw: dict[str, list[str]] = {}
    for user, seq in inter.items():
        if not isinstance(seq, list) or not seq:
            report.skip("sequence_not_a_nonempty_list", f"{inter_path}: user {user}")
            continue
        if not all(isinstance(i, int | str) and not isinstance(i, bool) for i in seq):
            report.skip("item_id_wrong_type", f"{inter_path}: user {user}")
            continue
        raw[str(user)] = [str(i) for i in seq]
    if not raw:
        raise DataError(f"{inter_path}: no user sequences found")
    meta: dict[str, dict] = {}
    if item_path.exists():
        meta_raw = _read_json(item_path)
        if not isinstance(meta_raw, dict):
            raise DataError(f"{item_path}: expected an object {{item_id: {{title, ...}}}}")
        for iid in meta_raw.duplicates:
            report.skip("duplicate_item_id", f"{item_path}: item {iid} appears again (the first record is kept)")
        for iid, m in meta_raw.items():
            if not isinstance(m, dict):
                report.skip("item_metadata_not_an_object", f"{item_path}: item {iid}")
                continue
            meta[str(iid)] = m
    item_ids = sorted(meta, key=_natural_key) if meta else None
    users, seqs, item_ids = _ref_index_sequences(raw, item_ids, report)
    titles, texts = [], []
    for iid in item_ids:
        title, text = _meta_text(meta.get(iid, {}), report, f"{item_path}: item {iid}")
        titles.append(title)
        texts.append(text)
    items = build_items_table(item_ids, titles, texts)
    return Catalog(items, users, seqs, report)


def reference_kcore(interactions: list[tuple[str, str, float]], k: int) -> list[tuple[str, str, float]]:
    """Iteratively drop users and items with fewer than ``k`` interactions."""
    rows = interactions
    while True:
        uc = Counter(u for u, _, _ in rows)
        ic = Counter(i for _, i, _ in rows)
        kept = [r for r in rows if uc[r[0]] >= k and ic[r[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


def reference_load_amazon(path: str | Path, k: int = 5):  # noqa: ANN201 - a Catalog
    """Raw Amazon review + metadata files (2014 or 2018 edition), k-core filtered, a tuple per review."""
    from cemg_ray.data.catalog import Catalog, DataError, LoadReport, build_items_table
    from cemg_ray.data.loaders import _amazon_image, _meta_text

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: the amazon format expects a folder with review and meta* files")
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".gz", ".jsonl"))
    meta_files = [p for p in files if p.name.startswith("meta")]
    review_files = [p for p in files if not p.name.startswith("meta")]
    if not review_files:
        raise DataError(f"{path}: no review file (*.json, *.json.gz, *.jsonl) in this folder")
    report = LoadReport(str(review_files[0]))
    rows = _ref_amazon_reviews(review_files, report)
    before = len(rows)
    rows = reference_kcore(rows, k)
    report.skipped[f"removed_by_{k}core"] += before - len(rows)
    if not rows:
        raise DataError(f"{path}: nothing left after {k}-core filtering of {before} reviews")
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for n, (u, i, ts) in enumerate(rows):
        by_user[u].append((ts, n, i))
    raw = {u: [i for _, _, i in sorted(v)] for u, v in by_user.items()}
    meta = _ref_amazon_meta(meta_files, report)
    users, seqs, item_ids = _ref_index_sequences(raw, sorted({i for _, i, _ in rows}), report)
    titles, texts, uris = [], [], []
    for iid in item_ids:
        m = meta.get(iid, {})
        title, text = _meta_text(m, report, f"meta of item {iid}")
        titles.append(title)
        texts.append(text)
        uris.append(_amazon_image(m, iid, report))
    return Catalog(build_items_table(item_ids, titles, texts, image_uris=uris), users, seqs, report)


def _ref_amazon_reviews(review_files: list[Path], report) -> list[tuple[str, str, float]]:  # noqa: ANN001
    """(user, item, time) of every valid review, the first of duplicated (user, item) pairs kept."""
    from cemg_ray.data.catalog import DataError
    from cemg_ray.data.loaders import _check_nonempty, _json_lines

    rows: list[tuple[str, str, float]] = []
    seen: set[tuple[str, str]] = set()
    for rf in review_files:
        _check_nonempty(rf)
        for lineno, r in enumerate(_json_lines(rf, report), 1):
            missing = [f for f in ("reviewerID", "asin", "unixReviewTime") if f not in r]
            if missing:
                report.skip(f"missing_field_{missing[0]}", f"{rf}: record {lineno}")
                continue
            try:
                ts = float(r["unixReviewTime"])
            except (TypeError, ValueError):
                report.skip("unixReviewTime_not_a_number", f"{rf}: record {lineno}")
                continue
            key = (str(r["reviewerID"]), str(r["asin"]))
            if key in seen:
                report.skip("duplicate_interaction", f"{rf}: record {lineno}")
                continue
            seen.add(key)
            rows.append((key[0], key[1], ts))
    if not rows:
        raise DataError(f"{review_files[0]}: no valid reviews")
    return rows


def _ref_amazon_meta(meta_files: list[Path], report) -> dict[str, dict]:  # noqa: ANN001
    """Metadata records by asin (records without one are counted and skipped)."""
    from cemg_ray.data.loaders import _json_lines

    meta: dict[str, dict] = {}
    for mf in meta_files:
        for lineno, m in enumerate(_json_lines(mf, report), 1):
            if "asin" not in m:
                report.skip("meta_missing_field_asin", f"{mf}: record {lineno}")
                continue
            meta[str(m["asin"])] = m
    return meta


def _ref_read_lines(path: Path) -> list[str]:
    """Text lines in UTF-8, or Latin-1 (the original ML-100K and ML-1M files are Latin-1)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def _ref_parse_ratings(layout: str, path: Path, min_rating: float | None,
                       report) -> dict[str, list[tuple[float, int, str]]]:  # noqa: ANN001
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    lines = _ref_read_lines(path)
    if layout == "ml-latest" and lines and lines[0].lower().startswith("userid"):
        lines = lines[1:]
    sep = {"ml-100k": "\t", "ml-1m": "::", "ml-latest": ","}[layout]
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != 4:
            report.skip("wrong_field_count", f"{path}:{lineno}")
            continue
        user, item, rating, ts = (f.strip() for f in fields)
        if not (user.isdigit() and item.isdigit()):
            report.skip("non_integer_id", f"{path}:{lineno}")
            continue
        try:
            r, t = float(rating), float(ts)
        except ValueError:
            report.skip("non_numeric_rating_or_time", f"{path}:{lineno}")
            continue
        if min_rating is not None and r < min_rating:
            report.skip("below_min_rating", f"{path}:{lineno}")
            continue
        by_user[user].append((t, int(item), item))
    return by_user


def reference_load_movielens(path: str | Path, images_dir: str | None = None, min_rating: float | None = None,
                             overview: str | None = None):  # noqa: ANN201 - a Catalog
    """The ``movielens`` loader as it was: a tuple per rating, a list per user."""
    from cemg_ray.data.catalog import Catalog, DataError, LoadReport, build_items_table, compose_text
    from cemg_ray.data.movielens import (
        _find_images_dir,
        _find_overviews,
        _parse_items,
        _parse_overviews,
        find_layout,
    )

    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: path not found")
    layout, ratings_path, items_path = find_layout(root)
    report = LoadReport(str(ratings_path))
    by_user = _ref_parse_ratings(layout, ratings_path, min_rating, report)
    if not by_user:
        raise DataError(f"{ratings_path}: no ratings left to read")
    meta = _parse_items(layout, items_path, report)
    ov_path = _find_overviews(root, overview)
    overviews = _parse_overviews(ov_path, report) if ov_path else {}
    img_dir = _find_images_dir(root, images_dir)

    ids = sorted(set(meta) | {i for rows in by_user.values() for _, _, i in rows}, key=int)
    pos = {iid: k for k, iid in enumerate(ids)}
    missing_meta = [i for i in ids if i not in meta]
    if missing_meta and meta:
        report.skipped["items_without_metadata"] += len(missing_meta)
        report.examples.setdefault("items_without_metadata", missing_meta[0])
    users = sorted(by_user, key=int)
    seqs = [np.array([pos[i] for _, _, i in sorted(by_user[u])], dtype=np.int64) for u in users]
    titles, texts, uris, genres = [], [], [], []
    for iid in ids:
        title, gen = meta.get(iid, ("", []))
        titles.append(title or None)
        genres.append(gen)
        texts.append(compose_text(title or None, None, gen, overviews.get(iid)))
        img = None
        if img_dir is not None:
            for ext in (".jpg", ".jpeg", ".png"):
                if (img_dir / f"{iid}{ext}").is_file():
                    img = str(img_dir / f"{iid}{ext}")
                    break
        uris.append(img)
    items = build_items_table(ids, titles, texts, image_uris=uris, genres=genres)
    return Catalog(items, users, seqs, report)


def reference_load(fmt: str, path: str | Path, **kw: object):  # noqa: ANN201 - a Catalog
    """The per-interaction loader of ``fmt`` (``kcore_k`` for amazon, ``min_rating`` etc. for movielens)."""
    if fmt == "sequences":
        return reference_load_sequences(path)
    if fmt == "json":
        return reference_load_json(path)
    if fmt == "amazon":
        return reference_load_amazon(path, k=kw.get("kcore_k", 5))
    if fmt == "movielens":
        return reference_load_movielens(path, kw.get("images_dir"), kw.get("min_rating"), kw.get("overview"))
    if fmt == "parquet":
        return reference_load_parquet(path, kw.get("images_dir"))
    raise ValueError(f"no reference loader for {fmt!r}")


# -- the synthetic input ----------------------------------------------------------------------------------------------
def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def write_synthetic(folder: str | Path, interactions: int, users: int, items: int, seed: int = 0,
                    bad_share: float = 0.001, without_metadata: float = 0.02, days: int = 60,
                    row_group_size: int = 250_000) -> dict:
    """A parquet dataset: every user draws items from a skewed popularity; timestamps are days (``days`` of them, so
    most users have ties); ``bad_share`` of the rows lose their user, item or time; ``without_metadata`` of the items
    are missing from ``items.parquet``. Rows are in random order, written in row groups of ``row_group_size``."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    user, item, ts = _draw_rows(rng, interactions, users, items, days)
    user_ids, item_ids, times = _ids("u", user), _ids("i", item), pa.array(ts)
    bad = rng.random(interactions) < bad_share
    which = rng.integers(0, 3, interactions)
    null_s, null_t = pa.scalar(None, pa.string()), pa.scalar(None, pa.int64())
    user_ids = pc.if_else(pa.array(bad & (which == 0)), null_s, user_ids)
    item_ids = pc.if_else(pa.array(bad & (which == 1)), null_s, item_ids)
    times = pc.if_else(pa.array(bad & (which == 2)), null_t, times)
    pq.write_table(pa.table({"user_id": user_ids, "item_id": item_ids, "timestamp": times}),
                   folder / "interactions.parquet", row_group_size=row_group_size)
    listed = rng.permutation(items)[:items - int(items * without_metadata)]
    pq.write_table(pa.table({"item_id": _ids("i", listed), "title": _ids("Item ", listed),
                             "description": _ids("A synthetic item, number ", listed)}),
                   folder / "items.parquet")
    return {"interactions": interactions, "users": users, "items": items, "malformed_rows": int(bad.sum()),
            "items_without_metadata_share": without_metadata, "timestamp_days": days,
            "bytes_on_disk": sum(p.stat().st_size for p in folder.glob("*.parquet"))}


def _draw_rows(rng: np.random.Generator, interactions: int, users: int, items: int,
               days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, unix time) per row: users uniform, items skewed to the popular end, times on ``days`` days; the
    draws both synthetic writers share, in the same order, so a seed gives the same rows in every format."""
    user = rng.integers(0, users, interactions)
    item = np.minimum((rng.random(interactions) ** 2.5 * items).astype(np.int64), items - 1)
    ts = rng.integers(1_700_000_000 // 86400, 1_700_000_000 // 86400 + days, interactions) * 86400
    return user, item, ts


TEXT_FORMATS = ("sequences", "json", "amazon")
FORMATS = ("parquet", *TEXT_FORMATS)


def write_synthetic_text(folder: str | Path, fmt: str, interactions: int, users: int, items: int, seed: int = 0,
                         bad_share: float = 0.001, without_metadata: float = 0.02, days: int = 60) -> dict:
    """A text-format dataset drawn as :func:`write_synthetic` draws its rows (skewed item popularity, ``days``
    distinct days). ``sequences``: one ``user item ...`` line per user (S3-Rec), plus ``bad_share`` of the users
    again on a line with a non-integer item; ``json``: ``Synthetic.inter.json`` ``{user: [items]}`` (LETTER, ints)
    with ``bad_share`` of the users' sequences not a list, and ``Synthetic.item.json`` for all but
    ``without_metadata`` of the items; ``amazon``: review lines (``bad_share`` of them without a time, repeated
    pairs as drawn) and a metadata line per listed item (5-core by default)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    user, item, ts = _draw_rows(rng, interactions, users, items, days)
    listed = np.sort(rng.permutation(items)[:items - int(items * without_metadata)])
    bad = 0
    if fmt in ("sequences", "json"):
        order = np.lexsort((ts, user))
        bounds = np.flatnonzero(np.diff(user[order])) + 1
        groups = np.split(item[order], bounds)
        who = user[order][np.r_[0, bounds]] if len(order) else []
        broken = rng.random(len(groups)) < bad_share
        bad = int(broken.sum())
        if fmt == "sequences":
            with open(folder / "Synthetic.txt", "w") as fh:
                for u, seq, b in zip(who, groups, broken):
                    fh.write(f"{u + 1} {' '.join(map(str, (seq + 1).tolist()))}\n")
                    if b:
                        fh.write(f"{u + 1} 1 x2 3\n")
        else:
            with open(folder / "Synthetic.inter.json", "w") as fh:
                fh.write("{" + ", ".join(f'"{u}": ' + ('"oops"' if b else json.dumps(seq.tolist()))
                                         for u, seq, b in zip(who, groups, broken)) + "}")
            (folder / "Synthetic.item.json").write_text(json.dumps(
                {str(i): {"title": f"Item {i}", "description": f"A synthetic item, number {i}"}
                 for i in listed.tolist()}))
    elif fmt == "amazon":
        no_time = rng.random(interactions) < bad_share
        bad = int(no_time.sum())
        with open(folder / "reviews_Synthetic.json", "w") as fh:
            for u, i, t, b in zip(user.tolist(), item.tolist(), ts.tolist(), no_time.tolist()):
                time_field = "" if b else f', "unixReviewTime": {t}'
                fh.write(f'{{"reviewerID": "A{u}", "asin": "B{i:08d}", "overall": 5.0{time_field}}}\n')
        with open(folder / "meta_Synthetic.json", "w") as fh:
            for i in listed.tolist():
                fh.write(json.dumps({"asin": f"B{i:08d}", "title": f"Item {i}",
                                     "categories": [["Synthetic", f"Shelf {i % 50}"]]}) + "\n")
    else:
        raise ValueError(f"no synthetic writer for {fmt!r}; expected one of {', '.join(TEXT_FORMATS)}")
    return {"format": fmt, "interactions": interactions, "users": users, "items": items, "malformed_rows": bad,
            "items_without_metadata_share": without_metadata, "timestamp_days": days,
            "bytes_on_disk": sum(p.stat().st_size for p in folder.iterdir() if p.is_file())}


# -- one path in its own process ----------------------------------------------------------------------------------
def _proc_status(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in bytes. The peak is the process's own
    since its ``exec``: ``ru_maxrss`` would not do, Linux carries the parent's peak into it across fork and exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(folder: str, which: str, out_dir: str, fmt: str = "parquet") -> None:
    """Load ``folder`` (format ``fmt``) by ``which`` path, print its time and memory as JSON, write its outputs
    under ``out_dir``."""
    from cemg_ray.data.loaders import load_catalog

    start_rss = _proc_status("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    if which == "arrow":
        catalog = load_catalog(fmt, folder)
        sequences = catalog.sequences_table()
    else:
        catalog = reference_load(fmt, folder)
        sequences = reference_sequences_table(catalog)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _proc_status("VmHWM")
    out = Path(out_dir)
    pq.write_table(catalog.items, out / f"{which}-items.parquet")
    pq.write_table(sequences, out / f"{which}-sequences.parquet")
    print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_bytes": peak,
                      "start_rss_bytes": start_rss, "users": sequences.num_rows, "items": catalog.items.num_rows,
                      "report": catalog.report.to_dict(), "report_order": list(catalog.report.skipped)}))


def measure(folder: str | Path, which: str, out_dir: str | Path, fmt: str = "parquet") -> dict:
    code = "import sys; from cemg_ray.bench.data import _child; _child(*sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, str(folder), which, str(out_dir), fmt],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench data: the {which} path failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: list[int], workdir: str | Path, users_per: int = 10, items_per: int = 20, seed: int = 0,
        paths: tuple[str, ...] = PATHS, fmt: str = "parquet") -> dict:
    """For each number of interactions: write the dataset in format ``fmt`` (``n / users_per`` users,
    ``n / items_per`` items), run each path in its own process, and compare their outputs."""
    workdir = Path(workdir)
    rows = []
    for n in sizes:
        folder = workdir / f"{fmt}-{n}"
        n_users, n_items = max(1, n // users_per), max(1, n // items_per)
        data = write_synthetic(folder, n, n_users, n_items, seed=seed) if fmt == "parquet" else \
            write_synthetic_text(folder, fmt, n, n_users, n_items, seed=seed)
        with tempfile.TemporaryDirectory(dir=workdir) as out:
            res = {p: measure(folder, p, out, fmt) for p in paths}
            same = None
            if len(paths) == 2:
                a, b = paths
                same = all(pq.read_table(Path(out) / f"{a}-{t}.parquet").equals(
                    pq.read_table(Path(out) / f"{b}-{t}.parquet")) for t in ("items", "sequences")) \
                    and res[a]["report"] == res[b]["report"] and res[a]["report_order"] == res[b]["report_order"]
        for r in res.values():
            r["peak_above_start_bytes"] = r["peak_rss_bytes"] - r["start_rss_bytes"]
            r["bytes_per_interaction"] = round(r["peak_above_start_bytes"] / n, 1)
        row = {"dataset": data, "paths": res, "identical_outputs": same}
        if len(paths) == 2:
            a, b = paths
            row["ratios"] = {"wall": round(res[a]["wall_s"] / max(res[b]["wall_s"], 1e-9), 2),
                             "peak_above_start": round(res[a]["peak_above_start_bytes"]
                                                       / max(res[b]["peak_above_start_bytes"], 1), 2)}
        rows.append(row)
    return {"format": fmt, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(),
            "pyarrow": pa.__version__, "numpy": np.__version__, "date": datetime.now(UTC).date().isoformat(),
            "load_average_1m": round(os.getloadavg()[0], 2), "workdir": str(workdir), "sizes": rows}


def _print(res: dict) -> None:
    print(f"{res.get('format', 'parquet')} loader, per-interaction vs Arrow/numpy, each in its own process "
          f"({res['machine']}, "
          f"Python {res['python']}, pyarrow {res['pyarrow']}; 1-min load {res['load_average_1m']}, {res['date']})")
    print(f"  {'interactions':>12} {'users':>9} {'items':>9} {'on disk':>9}  {'path':<16} {'wall s':>8} "
          f"{'peak RSS':>10} {'above start':>12} {'B/inter':>8}")
    for row in res["sizes"]:
        d = row["dataset"]
        for name, r in row["paths"].items():
            print(f"  {d['interactions']:>12,} {d['users']:>9,} {d['items']:>9,} {d['bytes_on_disk'] / 2**20:>7.1f}MB"
                  f"  {name:<16} {r['wall_s']:>8.2f} {r['peak_rss_bytes'] / 2**20:>8.0f}MB "
                  f"{r['peak_above_start_bytes'] / 2**20:>10.0f}MB {r['bytes_per_interaction']:>8.1f}")
        if "ratios" in row:
            print(f"  {'':>12} identical outputs: {row['identical_outputs']}; per-interaction / arrow: wall "
                  f"{row['ratios']['wall']:.1f}x, memory above start {row['ratios']['peak_above_start']:.1f}x")


def _cmd(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.interactions.split(",")]
    paths = PATHS if args.path == "both" else (args.path,)
    emit(run(sizes, args.dir, args.users_per, args.items_per, paths=paths, fmt=args.format), args.json, _print)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="a loader (parquet, or a text format): Arrow/numpy vs per-interaction Python, "
                                    "time and peak memory")
    p.add_argument("--format", choices=FORMATS, default="parquet",
                   help="the synthetic dataset's format (text formats: sequences, json, amazon)")
    p.add_argument("--interactions", default="1000000,5000000", help="comma-separated dataset sizes")
    p.add_argument("--users-per", type=int, default=10, help="interactions per user (users = n / this)")
    p.add_argument("--items-per", type=int, default=20, help="interactions per item (items = n / this)")
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "cemg-bench-data"),
                   help="where the synthetic datasets are written")
    p.add_argument("--path", choices=("both", *PATHS), default="both")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
