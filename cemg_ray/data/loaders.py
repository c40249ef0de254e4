"""Loaders, one per source format, each taking any path and returning a :class:`Catalog`.

Formats (``dataset.format``):
- ``sequences``: a text file, one ``user item item ...`` line per user, chronological (S3-Rec/ICLRec).
- ``json``: a folder with ``<Name>.inter.json`` (``{user: [item, ...]}``) and optionally
  ``<Name>.item.json`` (``{item: {title, description, brand, categories}}``) (LETTER/LC-Rec).
- ``amazon``: raw Amazon reviews (JSON lines, ``reviewerID, asin, unixReviewTime``) and metadata
  (``meta*``; JSON or Python-literal lines) in a folder, optionally gzipped, with k-core filtering.
- ``parquet``: a folder with an interaction table (user_id, item_id, timestamp) and
  an item table (item_id, title, description, image as bytes / local path / URI).

Malformed rows are skipped and counted in the report; structural problems (missing file, missing
column, wrong type, duplicate ids, empty input) raise :class:`DataError` naming file and field.
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray import artifacts
from cemg_ray.data.catalog import Catalog, DataError, LoadReport, build_items_table, compose_text
from cemg_ray.data.formats import FILE_FORMATS, FORMATS


def _natural_key(x: str) -> tuple[int, int | str]:
    return (0, int(x)) if x.lstrip("-").isdigit() else (1, x)


def _check_nonempty(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def _lines(path: Path, report: LoadReport) -> Iterator[tuple[int, str]]:
    """(line number, text) of a text or .gz file; a line that is not UTF-8 is skipped and counted, a corrupt
    or truncated gzip stream is an error that names the file and the last good line."""
    lineno = 0
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as fh:
            for lineno, raw in enumerate(fh, 1):  # noqa: B007 - lineno is read after the loop on error
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    report.skip("not_utf8", f"{path}:{lineno} (byte 0x{raw[exc.start]:02x} at column {exc.start})")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip after line {lineno} ({exc})") from None


def _text_field(m: dict, key: str, report: LoadReport, where: str) -> str | None:
    """A metadata text field, or None; a value of the wrong type (number, object) is counted, never guessed."""
    value = m.get(key)
    if value is None or isinstance(value, str):
        return value
    if key in ("description", "categories", "category") and isinstance(value, list) \
            and all(isinstance(v, str | list) for v in value):
        return value  # Amazon stores these as lists of strings (compose_text joins them)
    report.skip(f"{key}_wrong_type", f"{where}: {key} is {type(value).__name__}")
    return None


def _meta_text(m: dict, report: LoadReport, where: str) -> tuple[str | None, str]:
    """(title, composed text) of one item's metadata, every field type-checked."""
    title = _text_field(m, "title", report, where)
    cats = _text_field(m, "categories", report, where) if "categories" in m else \
        _text_field(m, "category", report, where)
    return title, compose_text(title, _text_field(m, "brand", report, where), cats,
                               _text_field(m, "description", report, where))


def _index_sequences(raw: dict[str, list[str]], item_ids: list[str] | None,
                     report: LoadReport) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Map string ids to dense indices; items without metadata are kept (text empty)."""
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


def load_sequences(path: str | Path) -> Catalog:
    """``user item item ...`` per line (chronological)."""
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
        if bad is not None:  # the format's item ids are integers (S3-Rec, ICLRec): anything else is damage
            report.skip("non_integer_item_id", f"{path}:{lineno} item {bad[:40]!r}")
            continue
        if user in raw:
            report.skip("duplicate_user_line", f"{path}:{lineno} user {user}")
            continue
        raw[user] = items
    if not raw:
        raise DataError(f"{path}: no user sequences found")
    users, seqs, item_ids = _index_sequences(raw, None, report)
    items = build_items_table(item_ids)
    return Catalog(items, users, seqs, report)


class _FirstWins(dict):
    """A JSON object whose repeated keys keep their first value, the repeats listed in ``duplicates`` (json's
    default keeps the last silently, so a second record of an item would replace the first unreported)."""

    duplicates: list[str]


def _first_wins(pairs: list[tuple[str, Any]]) -> _FirstWins:
    obj = _FirstWins()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        else:
            obj[key] = value
    return obj


def _read_json(path: Path) -> Any:
    _check_nonempty(path)
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_first_wins)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be item data") from None


def load_json(path: str | Path) -> Catalog:
    """LETTER-style ``*.inter.json`` + ``*.item.json``."""
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
    users, seqs, item_ids = _index_sequences(raw, item_ids, report)
    titles, texts = [], []
    for iid in item_ids:
        title, text = _meta_text(meta.get(iid, {}), report, f"{item_path}: item {iid}")
        titles.append(title)
        texts.append(text)
    items = build_items_table(item_ids, titles, texts)
    return Catalog(items, users, seqs, report)


MAX_LITERAL_LINE = 1_000_000  # a Python-literal line longer than this is not item metadata


def _json_lines(path: Path, report: LoadReport) -> Iterator[dict]:
    for lineno, line in _lines(path, report):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            report.skip("nested_too_deeply", f"{path}:{lineno}")
            continue
        except json.JSONDecodeError:
            if len(line) > MAX_LITERAL_LINE:
                report.skip("unparseable_line", f"{path}:{lineno}")
                continue
            try:  # the 2014 metadata files are Python literals, not JSON
                row = ast.literal_eval(line)
            except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
                report.skip("unparseable_line", f"{path}:{lineno}")
                continue
        if not isinstance(row, dict):
            report.skip("line_not_an_object", f"{path}:{lineno}")
            continue
        yield row


def kcore(interactions: list[tuple[str, str, float]], k: int) -> list[tuple[str, str, float]]:
    """Iteratively drop users and items with fewer than ``k`` interactions."""
    rows = interactions
    while True:
        uc = Counter(u for u, _, _ in rows)
        ic = Counter(i for _, i, _ in rows)
        kept = [r for r in rows if uc[r[0]] >= k and ic[r[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


def load_amazon(path: str | Path, k: int = 5) -> Catalog:
    """Raw Amazon review + metadata files (2014 or 2018 edition), k-core filtered."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: the amazon format expects a folder with review and meta* files")
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".gz", ".jsonl"))
    meta_files = [p for p in files if p.name.startswith("meta")]
    review_files = [p for p in files if not p.name.startswith("meta")]
    if not review_files:
        raise DataError(f"{path}: no review file (*.json, *.json.gz, *.jsonl) in this folder")
    report = LoadReport(str(review_files[0]))
    rows = _amazon_reviews(review_files, report)
    before = len(rows)
    rows = kcore(rows, k)
    report.skipped[f"removed_by_{k}core"] += before - len(rows)
    if not rows:
        raise DataError(f"{path}: nothing left after {k}-core filtering of {before} reviews")
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for n, (u, i, ts) in enumerate(rows):
        by_user[u].append((ts, n, i))
    raw = {u: [i for _, _, i in sorted(v)] for u, v in by_user.items()}
    meta = _amazon_meta(meta_files, report)
    users, seqs, item_ids = _index_sequences(raw, sorted({i for _, i, _ in rows}), report)
    titles, texts, uris = [], [], []
    for iid in item_ids:
        m = meta.get(iid, {})
        title, text = _meta_text(m, report, f"meta of item {iid}")
        titles.append(title)
        texts.append(text)
        uris.append(_amazon_image(m, iid, report))
    return Catalog(build_items_table(item_ids, titles, texts, image_uris=uris), users, seqs, report)


def _amazon_reviews(review_files: list[Path], report: LoadReport) -> list[tuple[str, str, float]]:
    """(user, item, time) of every valid review, the first of duplicated (user, item) pairs kept."""
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


def _amazon_meta(meta_files: list[Path], report: LoadReport) -> dict[str, dict]:
    """Metadata records by asin (records without one are counted and skipped)."""
    meta: dict[str, dict] = {}
    for mf in meta_files:
        for lineno, m in enumerate(_json_lines(mf, report), 1):
            if "asin" not in m:
                report.skip("meta_missing_field_asin", f"{mf}: record {lineno}")
                continue
            meta[str(m["asin"])] = m
    return meta


def _amazon_image(meta: dict, item_id: str, report: LoadReport) -> str | None:
    """The item's image URL from whichever field the edition uses (a list: its first entry)."""
    image = meta.get("imUrl") or meta.get("imageURLHighRes") or meta.get("imageURL") or meta.get("image")
    if isinstance(image, list):
        image = image[0] if image else None
    if image is not None and not isinstance(image, str):
        report.skip("image_wrong_type", f"meta of item {item_id}: image is {type(image).__name__}")
        image = None
    return image or None


def _require_columns(table: pa.Table, path: Path, cols: list[str]) -> None:
    for c in cols:
        if c not in table.column_names:
            raise DataError(f"{path}: missing required column {c!r} (has {', '.join(table.column_names)})")


def load_parquet(path: str | Path, images_dir: str | None = None) -> Catalog:
    """An interaction table (user_id, item_id, timestamp) and an item table, named as ``artifacts`` says."""
    path = Path(path)
    inter_path = path / artifacts.PARQUET_DATASET_INTERACTIONS
    items_path = path / artifacts.PARQUET_DATASET_ITEMS
    _check_nonempty(inter_path)
    report = LoadReport(str(inter_path))
    raw = _parquet_sequences(inter_path, report)
    item_meta = _parquet_items(items_path, report) if items_path.exists() else {}
    item_ids = sorted(item_meta, key=_natural_key) if item_meta else None
    user_ids, seqs, item_ids = _index_sequences(raw, item_ids, report)
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


def _read_parquet_table(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _parquet_sequences(inter_path: Path, report: LoadReport) -> dict[str, list[str]]:
    """Each user's items in time order (ties by row order); rows with a null id or time counted and skipped."""
    inter = _read_parquet_table(inter_path)
    _require_columns(inter, inter_path, ["user_id", "item_id", "timestamp"])
    ts_type = inter.schema.field("timestamp").type
    if not (pa.types.is_integer(ts_type) or pa.types.is_floating(ts_type) or pa.types.is_timestamp(ts_type)):
        raise DataError(f"{inter_path}: column 'timestamp' has type {ts_type}; expected a number or timestamp")
    if inter.num_rows == 0:
        raise DataError(f"{inter_path}: no rows")
    users = _id_column(inter, "user_id", inter_path)
    items = _id_column(inter, "item_id", inter_path)
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


def _parquet_items(items_path: Path, report: LoadReport) -> dict[str, dict]:
    """Item rows by id; a duplicated id is an error (which row would win is a guess), a null id a skip."""
    _check_nonempty(items_path)
    it = _read_parquet_table(items_path)
    _require_columns(it, items_path, ["item_id"])
    ids = _id_column(it, "item_id", items_path)
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


def _parquet_image(value: object, base: Path, where: str, report: LoadReport) -> tuple[bytes | None, str | None]:
    """(image bytes, image URI) from an ``image`` cell: bytes, a path (relative to ``base``) or a URI."""
    if isinstance(value, bytes | bytearray):
        return bytes(value), None
    if isinstance(value, str) and value:
        return None, value if "://" in value or value.startswith("/") else str(base / value)
    if value is not None and value != "":
        report.skip("image_wrong_type", f"{where}: image is {type(value).__name__}")
    return None, None


def _id_column(table: pa.Table, name: str, path: Path) -> list[str | None]:
    """An id column as strings (None for nulls); ids must be strings or integers, never lists or floats."""
    kind = table.schema.field(name).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_dictionary(kind)):
        raise DataError(f"{path}: column {name!r} has type {kind}; ids must be strings or integers")
    return table.column(name).cast(pa.string()).to_pylist()


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path`` for ``cemg-ray data stats`` when none is given."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: path not found")
    if p.is_file():
        if p.name.endswith(".inter.json"):
            return "json"
        if p.suffix == ".txt":
            return "sequences"
        raise DataError(f"{p}: cannot tell the format from this file; pass --format ({', '.join(FILE_FORMATS)})")
    if (p / artifacts.PARQUET_DATASET_INTERACTIONS).exists():
        return "parquet"
    if any((q / name).is_file() for q in [p, *(d for d in p.iterdir() if d.is_dir())]
           for name in ("u.data", "ratings.dat", "ratings.csv")):
        return "movielens"
    if list(p.glob("*.inter.json")):
        return "json"
    if list(p.glob("meta*")):
        return "amazon"
    if list(p.glob("*.txt")):
        return "sequences"
    raise DataError(f"{p}: no known dataset layout here; pass --format ({', '.join(FILE_FORMATS)})")


def load_catalog(fmt: str, path: str | None, *, kcore_k: int = 5, images_dir: str | None = None,
                 synthetic: Any = None, min_rating: float | None = None, overview: str | None = None) -> Catalog:
    """Dispatch on ``fmt``; ``synthetic`` is a SyntheticConfig for the embedded catalog."""
    if fmt == "synthetic":
        from cemg_ray.data.synthetic import make_catalog

        return make_catalog(synthetic)
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path:
        raise DataError(f"dataset.path is required for format {fmt!r}")
    if fmt == "sequences":
        return load_sequences(path)
    if fmt == "json":
        return load_json(path)
    if fmt == "amazon":
        return load_amazon(path, k=kcore_k)
    if fmt == "movielens":
        from cemg_ray.data.movielens import load_movielens

        return load_movielens(path, images_dir, min_rating, overview)
    return load_parquet(path, images_dir)
