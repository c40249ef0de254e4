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

Memory follows the data's size on disk, not a Python object per interaction: the text formats are parsed a line (a
JSON user) at a time into int32 codes and float64 times (:class:`_Columns`), ``parquet`` column by column into
numpy; all of them then number users and items and order each user's rows in one shared, vectorised path
(:func:`_number`) and hand on CSR arrays (:meth:`Catalog.from_csr`). Only item metadata is held per item.
"""

from __future__ import annotations

import ast
import bisect
import gzip
import json
import re
import zlib
from array import array
from collections.abc import Iterable, Iterator
from json.decoder import scanstring
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

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


# -- the text formats: parsed line by line into columnar buffers, numbered as the parquet loader numbers ---------------
class _Columns:
    """Interactions as a text loader parses them, never a Python object per interaction: int32 codes in ``array``
    buffers, into two dicts of the distinct user and item ids (their size grows with users + items, not with
    interactions), and for a format with times a float64 time. :meth:`interactions` hands them to the numbering
    and ordering the parquet loader uses (:func:`_number`)."""

    def __init__(self, timed: bool = False) -> None:
        self.user_code: dict[str, int] = {}
        self.item_code: dict[str, int] = {}
        self.users = array("i")
        self.items = array("i")
        self.time = array("d") if timed else None

    def __len__(self) -> int:
        return len(self.items)

    def add_sequence(self, user: str, items: list[str]) -> None:
        """One user's items in time order (a format without times: file order is time order)."""
        item_code = self.item_code
        self.items.extend([item_code.setdefault(i, len(item_code)) for i in items])
        self.users.extend(array("i", [self.user_code.setdefault(user, len(self.user_code))]) * len(items))

    def add(self, user: str, item: str, time: float) -> None:
        self.users.append(self.user_code.setdefault(user, len(self.user_code)))
        self.items.append(self.item_code.setdefault(item, len(self.item_code)))
        self.time.append(time)

    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(user codes, item codes) as int32 numpy views of the buffers."""
        return _view(self.users, np.int32), _view(self.items, np.int32)

    def interactions(self, path: Path, rows: np.ndarray | None = None,
                     time: np.ndarray | None = None) -> _Interactions:
        """The rows (all, or ``rows``) as :class:`_Interactions`, ``time`` in place of the parsed one if given; the
        id dicts become Arrow string arrays (in code order) and are let go."""
        users, items = self.codes()
        if time is None and self.time is not None:
            time = _view(self.time, np.float64)
        if rows is not None:
            users, items = users[rows], items[rows]
            time = time[rows] if time is not None else None
        if time is not None and time.dtype.kind == "f" and len(time) and np.isfinite(time).all() \
                and np.abs(time).max() < 2**53 and (time == np.trunc(time)).all():
            time = time.astype(np.int64)  # whole seconds: the same order, and no float ranking in _order_rows
        user_dict, item_dict = _id_array(self.user_code, path, "user"), _id_array(self.item_code, path, "item")
        self.user_code, self.item_code = {}, {}
        return _Interactions(users, user_dict, items, item_dict, time)


def _view(buf: array, dtype: type) -> np.ndarray:
    """A numpy view of an ``array`` buffer (no copy)."""
    return np.frombuffer(buf, np.dtype(buf.typecode)).astype(dtype, copy=False) if len(buf) else np.zeros(0, dtype)


def _id_array(ids: Iterable[str], path: Path, what: str) -> pa.Array:
    """The ids as an Arrow string array; an id that is not valid Unicode (a lone surrogate from a JSON escape) is a
    named error, not a traceback from Arrow."""
    try:
        return pa.array(list(ids), pa.string())
    except (UnicodeEncodeError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: a {what} id is not valid Unicode ({exc})") from None


def _natural_sorted(ids: pa.Array) -> pa.Array:
    """The distinct ids as ``sorted(ids, key=_natural_key)`` orders them (equal values in the order given)."""
    return ids.take(pa.array(_natural_order(ids, np.arange(len(ids)))))


def _number(inter: _Interactions, meta_ids: pa.Array | None,
            report: LoadReport) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
    """(user ids, item ids in item_idx order, flat item_idx, CSR offsets): the numbering every loader shares. Users in
    natural order (equal values by first row), each user's rows by time (equal times, or no time, in row order),
    items as :func:`_dense_items` says (``meta_ids`` first, given in the order wanted)."""
    user_ids, offsets = _order_rows(inter)
    item_ids, idx_of_code = _dense_items(inter, offsets, meta_ids, report)
    flat = idx_of_code[inter.items]
    inter.items = None
    return user_ids, item_ids, flat, offsets


def _merge(report: LoadReport, part: LoadReport) -> None:
    """Add ``part``'s counts and first examples to ``report``, its reasons after those already there."""
    for reason, count in part.skipped.items():
        report.skipped[reason] += count
        if reason in part.examples:
            report.examples.setdefault(reason, part.examples[reason])


def load_sequences(path: str | Path) -> Catalog:
    """``user item item ...`` per line (chronological), read a line at a time into :class:`_Columns`."""
    path = Path(path)
    if path.is_dir():
        txts = sorted(path.glob("*.txt"))
        if not txts:
            raise DataError(f"{path}: no .txt sequence file in this folder")
        path = txts[0]
    _check_nonempty(path)
    report = LoadReport(str(path))
    cols = _Columns()
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
        if user in cols.user_code:
            report.skip("duplicate_user_line", f"{path}:{lineno} user {user}")
            continue
        cols.add_sequence(user, items)
    if not len(cols):
        raise DataError(f"{path}: no user sequences found")
    user_ids, item_ids, flat, offsets = _number(cols.interactions(path), None, report)
    return Catalog.from_csr(build_items_table(item_ids), user_ids, flat, offsets, report)


class _FirstWins(dict):
    """A JSON object whose repeated keys keep their first value, the repeats listed in ``duplicates`` (json's
    default keeps the last silently, so a second record of an item would replace the first unreported). A slot, not
    an instance ``__dict__``: every item record of an item file is one of these."""

    __slots__ = ("duplicates",)
    duplicates: tuple[str, ...] | list[str]


def _first_wins(pairs: list[tuple[str, Any]]) -> _FirstWins:
    obj = _FirstWins(pairs)
    if len(obj) == len(pairs):  # no repeated key (the common case: one C-level build)
        obj.duplicates = ()
        return obj
    obj = _FirstWins()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        else:
            obj[key] = value
    return obj


def _read_text(path: Path) -> str:
    """A whole UTF-8 file as one string (its size on disk); not UTF-8 is an error naming the byte."""
    _check_nonempty(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})") from None


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_first_wins)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be item data") from None


def _read_json(path: Path) -> Any:
    return _parse_json(_read_text(path), path)


class _NotAnObject(Exception):
    """The streaming walk met something it does not expect; ``json.loads`` then says what (or reads it)."""


_JSON_SPACE = re.compile(r"[ \t\n\r]*")  # json's own whitespace


def _json_object_pairs(text: str) -> Iterator[tuple[str, Any]]:
    """The (key, value) pairs of the JSON object ``text``, in file order with repeats, each value decoded alone: the
    Python objects alive are one value's (a user's sequence), not the document's. Raises :class:`_NotAnObject` at
    anything unexpected, having checked nothing the caller relies on."""
    decoder = json.JSONDecoder(object_pairs_hook=_first_wins)
    space = _JSON_SPACE.match
    try:
        pos = space(text, 0).end()
        if text[pos:pos + 1] != "{":
            raise _NotAnObject
        pos = space(text, pos + 1).end()
        if text[pos:pos + 1] == "}":
            pos += 1
        else:
            while True:
                if text[pos:pos + 1] != '"':
                    raise _NotAnObject
                key, pos = scanstring(text, pos + 1)
                pos = space(text, pos).end()
                if text[pos:pos + 1] != ":":
                    raise _NotAnObject
                value, pos = decoder.raw_decode(text, space(text, pos + 1).end())
                yield key, value
                pos = space(text, pos).end()
                sep = text[pos:pos + 1]
                pos = space(text, pos + 1).end()
                if sep == "}":
                    break
                if sep != ",":
                    raise _NotAnObject
    except (ValueError, RecursionError):
        raise _NotAnObject from None
    if space(text, pos).end() != len(text):
        raise _NotAnObject


def _json_sequences(pairs: Iterable[tuple[str, Any]], inter_path: Path, report: LoadReport) -> _Columns:
    """Each user's sequence into :class:`_Columns`, the first of a repeated user kept; the repeats are reported
    before the bad sequences, as when the whole object was read first."""
    cols = _Columns()
    invalid: set[str] = set()  # users whose (first) sequence was skipped
    repeats, bad = LoadReport(""), LoadReport("")
    for user, seq in pairs:
        if user in cols.user_code or user in invalid:
            repeats.skip("duplicate_user", f"{inter_path}: user {user} appears again (the first sequence is kept)")
            continue
        if not isinstance(seq, list) or not seq:
            invalid.add(user)
            bad.skip("sequence_not_a_nonempty_list", f"{inter_path}: user {user}")
            continue
        if not all(isinstance(i, int | str) and not isinstance(i, bool) for i in seq):
            invalid.add(user)
            bad.skip("item_id_wrong_type", f"{inter_path}: user {user}")
            continue
        cols.add_sequence(user, [str(i) for i in seq])
    _merge(report, repeats)
    _merge(report, bad)
    return cols


def _json_interactions(inter_path: Path, report: LoadReport) -> _Columns:
    """The ``{user: [items]}`` file's sequences, walked one user at a time (:func:`_json_object_pairs`); a file the
    walk does not follow is read whole by ``json.loads``, which names its fault or, if it has none, is read as is."""
    text = _read_text(inter_path)
    try:
        return _json_sequences(_json_object_pairs(text), inter_path, report)
    except _NotAnObject:
        pass
    inter = _parse_json(text, inter_path)
    if not isinstance(inter, dict):
        raise DataError(f"{inter_path}: expected an object {{user: [items]}}, got {type(inter).__name__}")
    return _json_sequences([*inter.items(), *((user, None) for user in inter.duplicates)], inter_path, report)


def load_json(path: str | Path) -> Catalog:
    """LETTER-style ``*.inter.json`` + ``*.item.json``: the sequences into :class:`_Columns` one user at a time, the
    item metadata (per item) as before."""
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
    cols = _json_interactions(inter_path, report)
    if not len(cols):
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
    meta_ids = _natural_sorted(_id_array(meta, item_path, "item")) if meta else None
    user_ids, item_ids, flat, offsets = _number(cols.interactions(inter_path), meta_ids, report)
    titles, texts = [], []
    for iid in item_ids.to_pylist():
        title, text = _meta_text(meta.get(iid, {}), report, f"{item_path}: item {iid}")
        titles.append(title)
        texts.append(text)
    items = build_items_table(item_ids, titles, texts)
    return Catalog.from_csr(items, user_ids, flat, offsets, report)


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


def kcore(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """The rows (ascending) of the ``k``-core of the (user code, item code) pairs: users and items with fewer than
    ``k`` rows are dropped, again until none is; one ``bincount`` per side and round, on arrays."""
    rows = np.arange(len(users))
    if k <= 1 or not len(rows):  # every user and item left has a row
        return rows
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    while True:
        u, i = users[rows], items[rows]
        ok = (np.bincount(u, minlength=n_users)[u] >= k) & (np.bincount(i, minlength=n_items)[i] >= k)
        if ok.all():
            return rows
        rows = rows[ok]


def load_amazon(path: str | Path, k: int = 5) -> Catalog:
    """Raw Amazon review + metadata files (2014 or 2018 edition), k-core filtered: the reviews into
    :class:`_Columns` a line at a time, duplicates and the k-core found on arrays, items in code-point order."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: the amazon format expects a folder with review and meta* files")
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".gz", ".jsonl"))
    meta_files = [p for p in files if p.name.startswith("meta")]
    review_files = [p for p in files if not p.name.startswith("meta")]
    if not review_files:
        raise DataError(f"{path}: no review file (*.json, *.json.gz, *.jsonl) in this folder")
    report = LoadReport(str(review_files[0]))
    cols, rows = _amazon_reviews(review_files, report)
    before = len(rows)
    users, items = cols.codes()
    rows = rows[kcore(users[rows], items[rows], k)]
    del users, items
    report.skipped[f"removed_by_{k}core"] += before - len(rows)
    if not len(rows):
        raise DataError(f"{path}: nothing left after {k}-core filtering of {before} reviews")
    inter = cols.interactions(review_files[0], rows)
    del cols
    present = inter.item_dict.take(pa.array(np.flatnonzero(inter.item_first < len(inter.items))))
    sorted_ids = present.take(pc.sort_indices(present))  # UTF-8 byte order: Python's code-point order
    meta = _amazon_meta(meta_files, report, set(sorted_ids.to_pylist()))
    user_ids, item_ids, flat, offsets = _number(inter, sorted_ids, report)
    titles, texts, uris = [], [], []
    for iid in item_ids.to_pylist():
        m = meta.get(iid, {})
        title, text = _meta_text(m, report, f"meta of item {iid}")
        titles.append(title)
        texts.append(text)
        uris.append(_amazon_image(m, iid, report))
    return Catalog.from_csr(build_items_table(item_ids, titles, texts, image_uris=uris), user_ids, flat, offsets,
                            report)


def _amazon_reviews(review_files: list[Path], report: LoadReport) -> tuple[_Columns, np.ndarray]:
    """Every valid review as codes and a time, and the rows to keep: the first of each duplicated (user, item) pair.
    The duplicates are found after the parse, by one ``np.unique`` of the pair codes instead of a set of tuples,
    and counted where the rows met them (:func:`_count_late`)."""
    cols = _Columns(timed=True)
    records = array("i")  # each row's record number in its file, for the first duplicate's example
    starts: list[int] = []  # each file's first row
    met = dict.fromkeys(report.skipped, 0)  # each skip reason: the rows read when it was first met
    for rf in review_files:
        _check_nonempty(rf)
        starts.append(len(cols))
        for lineno, r in enumerate(_json_lines(rf, report), 1):
            if len(report.skipped) != len(met):
                _note_reasons(report, met, len(cols))
            missing = [f for f in ("reviewerID", "asin", "unixReviewTime") if f not in r]
            if missing:
                report.skip(f"missing_field_{missing[0]}", f"{rf}: record {lineno}")
                continue
            try:
                ts = float(r["unixReviewTime"])
            except (TypeError, ValueError):
                report.skip("unixReviewTime_not_a_number", f"{rf}: record {lineno}")
                continue
            cols.add(str(r["reviewerID"]), str(r["asin"]), ts)
            records.append(lineno)
    _note_reasons(report, met, len(cols))
    if not len(cols):
        raise DataError(f"{review_files[0]}: no valid reviews")
    users, items = cols.codes()
    _, first = np.unique(users.astype(np.int64) * len(cols.item_code) + items, return_index=True)
    keep = np.sort(first)
    if len(keep) < len(cols):
        dup = np.ones(len(cols), bool)
        dup[keep] = False
        at = int(np.argmax(dup))
        rf = review_files[bisect.bisect_right(starts, at) - 1]
        _count_late(report, "duplicate_interaction", len(cols) - len(keep), f"{rf}: record {records[at]}", met, at)
    return cols, keep


def _note_reasons(report: LoadReport, met: dict[str, int], rows: int) -> None:
    """Note the reasons first met since the last call: after ``rows`` rows were read."""
    for reason in report.skipped:
        met.setdefault(reason, rows)


def _count_late(report: LoadReport, reason: str, count: int, example: str, met: dict[str, int], at: int) -> None:
    """Count ``reason``, found after the parse, as if met at row ``at``: ahead of the reasons first met after that
    row, so that the report lists its reasons in the order the rows meet them (as a per-row check would)."""
    if reason not in report.skipped:
        later = [r for r in report.skipped if met.get(r, 0) > at]
        report.skip(reason, example)
        report.skipped[reason] += count - 1
        for r in later:  # moved to the end, behind ``reason``, in their own order
            report.skipped[r] = report.skipped.pop(r)
            if r in report.examples:
                report.examples[r] = report.examples.pop(r)
    else:
        report.skipped[reason] += count


def _amazon_meta(meta_files: list[Path], report: LoadReport, wanted: set[str]) -> dict[str, dict]:
    """Metadata records by asin, only those of ``wanted`` items kept (the last record of an asin wins); records
    without an asin are counted and skipped."""
    meta: dict[str, dict] = {}
    for mf in meta_files:
        for lineno, m in enumerate(_json_lines(mf, report), 1):
            if "asin" not in m:
                report.skip("meta_missing_field_asin", f"{mf}: record {lineno}")
                continue
            asin = str(m["asin"])
            if asin in wanted:
                meta[asin] = m
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


# -- parquet: vectorised over the interactions (pyarrow + numpy), per item only where the metadata is read ----------
ITEM_BATCH = 65_536  # item metadata rows held as Python objects at a time


def _require_columns(names: list[str], path: Path, cols: list[str]) -> None:
    for c in cols:
        if c not in names:
            raise DataError(f"{path}: missing required column {c!r} (has {', '.join(names)})")


def load_parquet(path: str | Path, images_dir: str | None = None) -> Catalog:
    """An interaction table (user_id, item_id, timestamp) and an item table, named as ``artifacts`` says.

    Memory grows with the interactions as numpy arrays, not Python objects: the interaction table is read one column
    at a time (an id column's strings are let go once Arrow has coded them against one dictionary), users and items
    become dense indices in :func:`_natural_order`, one stable argsort orders the rows by user then time (equal times
    in file order), and the sequences leave as CSR arrays (:meth:`Catalog.from_csr`). The item table's metadata is
    read per item, ``ITEM_BATCH`` items at a time. ``cemg-ray bench data`` measures it against the per-interaction
    loader it replaced (``docs/BENCHMARKS.md``).
    """
    path = Path(path)
    inter_path = path / artifacts.PARQUET_DATASET_INTERACTIONS
    items_path = path / artifacts.PARQUET_DATASET_ITEMS
    _check_nonempty(inter_path)
    report = LoadReport(str(inter_path))
    inter = _parquet_interactions(inter_path, report)
    meta_ids, meta_rows = _parquet_items(items_path, report) if items_path.exists() else (None, None)
    if meta_ids is not None and len(meta_ids) == 0:
        meta_ids = meta_rows = None  # an item table without one usable id: the items come from the interactions
    user_ids, item_ids, flat, offsets = _number(inter, meta_ids, report)
    n_meta = len(meta_ids) if meta_ids is not None else 0
    items = _parquet_item_table(item_ids, meta_rows, n_meta, Path(images_dir) if images_dir else path, items_path,
                                report)
    return Catalog.from_csr(items, user_ids, flat, offsets, report)


class _Interactions:
    """The valid rows of an interaction table, as codes into ``user_dict`` / ``item_dict`` (the distinct ids as
    strings, in order of first appearance) and the time to order by (None: row order); ``*_first``: each code's
    first valid row."""

    def __init__(self, users: np.ndarray, user_dict: pa.Array, items: np.ndarray, item_dict: pa.Array,
                 time: np.ndarray | None):
        self.users, self.user_dict, self.items, self.item_dict, self.time = users, user_dict, items, item_dict, time
        self.item_first = _first_row(items, len(item_dict))
        self.user_first: np.ndarray | None = None  # by user index, once the users are ordered


def _first_row(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Per code, the first position that has it (``len(codes)`` where none does)."""
    first = np.full(n_codes, len(codes), np.int64)
    np.minimum.at(first, codes, np.arange(len(codes), dtype=np.int64))
    return first


def _parquet_dataset(path: Path) -> tuple[pa.Schema, int, Any]:
    """(schema, rows, dataset) of a Parquet file (or folder of files); unreadable is a named error."""
    try:
        dataset = pads.dataset(str(path), format="parquet", partitioning="hive")
        return dataset.schema, dataset.count_rows(), dataset
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _read_columns(path: Path, dataset: Any, columns: list[str]) -> pa.Table:
    """Only ``columns`` (Parquet reads a column's pages alone)."""
    try:
        return dataset.to_table(columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _check_id_type(schema: pa.Schema, name: str, path: Path) -> None:
    """Ids must be strings or integers (or dictionaries of them), never lists or floats."""
    kind = schema.field(name).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_dictionary(kind)):
        raise DataError(f"{path}: column {name!r} has type {kind}; ids must be strings or integers")


def _encode_ids(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(int32 codes, -1 for null; the distinct ids as strings, in order of first appearance) of an id column: one
    hash pass over all its chunks (Arrow's ``dictionary_encode`` gives every chunk the same dictionary)."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)  # a dictionary column in the file: its chunks' dictionaries differ
    encoded = pc.dictionary_encode(col)
    if len({len(c.dictionary) for c in encoded.chunks}) > 1:
        encoded = encoded.unify_dictionaries()
    codes = np.empty(len(encoded), np.int32)
    at = 0
    for chunk in encoded.chunks:
        codes[at:at + len(chunk)] = pc.fill_null(chunk.indices.cast(pa.int32()), -1).to_numpy()
        at += len(chunk)
    dictionary = encoded.chunks[-1].dictionary if encoded.num_chunks else pa.array([], col.type)
    return codes, dictionary.cast(pa.string())


def _parquet_interactions(inter_path: Path, report: LoadReport) -> _Interactions:
    """The valid rows; rows with a null id or time are counted and skipped (the first one's row number kept)."""
    schema, rows, dataset = _parquet_dataset(inter_path)
    _require_columns(schema.names, inter_path, ["user_id", "item_id", "timestamp"])
    ts_type = schema.field("timestamp").type
    if not (pa.types.is_integer(ts_type) or pa.types.is_floating(ts_type) or pa.types.is_timestamp(ts_type)):
        raise DataError(f"{inter_path}: column 'timestamp' has type {ts_type}; expected a number or timestamp")
    if rows == 0:
        raise DataError(f"{inter_path}: no rows")
    _check_id_type(schema, "user_id", inter_path)
    _check_id_type(schema, "item_id", inter_path)
    pool = pa.default_memory_pool()  # each column's pages go back to the system once coded, for numpy to reuse
    users, user_dict = _encode_ids(_read_columns(inter_path, dataset, ["user_id"]).column(0))
    pool.release_unused()
    items, item_dict = _encode_ids(_read_columns(inter_path, dataset, ["item_id"]).column(0))
    pool.release_unused()
    tcol = _read_columns(inter_path, dataset, ["timestamp"]).column(0)
    if pa.types.is_timestamp(ts_type):
        tcol = tcol.cast(pa.int64())
    ok_time = pc.is_valid(tcol).to_numpy(zero_copy_only=False)
    time = pc.fill_null(tcol, 0).to_numpy()
    del tcol
    pool.release_unused()
    ok_ids = (users >= 0) & (items >= 0)
    bad = {"null_user_or_item": ~ok_ids, "null_timestamp": ok_ids & ~ok_time}
    firsts = {reason: int(np.argmax(mask)) for reason, mask in bad.items() if mask.any()}
    for reason in sorted(firsts, key=firsts.get):  # the reasons in the order the rows meet them
        report.skipped[reason] += int(bad[reason].sum())
        report.examples.setdefault(reason, f"{inter_path}: row {firsts[reason]}")
    keep = ok_ids & ok_time
    del ok_ids, ok_time, bad
    if not keep.all():
        users, items, time = users[keep], items[keep], time[keep]
    return _Interactions(users, user_dict, items, item_dict, time)


def _order_rows(inter: _Interactions) -> tuple[pa.Array, np.ndarray]:
    """(the user ids in natural order, CSR offsets); leaves ``inter.items`` ordered by user, then time, equal times
    in file order, as ``np.lexsort((time, user))`` would, by one stable argsort of a single int64 key."""
    first = _first_row(inter.users, len(inter.user_dict))
    present = np.flatnonzero(first < len(inter.users))
    order = present[_natural_order(inter.user_dict.take(pa.array(present)), first[present])]
    inter.user_first = first[order]
    index = np.full(len(inter.user_dict), -1, np.int32)
    index[order] = np.arange(len(order), dtype=np.int32)
    uidx = index[inter.users]
    inter.users = None
    n_users = len(order)
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(uidx, minlength=n_users), out=offsets[1:])
    time, inter.time = inter.time, None
    if time is None:  # a format without times: each user's rows in row order
        span, key = 1, np.zeros(len(uidx), np.int64)
    elif len(time) and np.issubdtype(time.dtype, np.integer) \
            and n_users * (int(time.max()) - int(time.min()) + 1) < 2**62:
        span = int(time.max()) - int(time.min()) + 1
        key = (time - time.min()).astype(np.int64)
    else:  # floats, or times too far apart: their dense ranks (NaN last, all NaNs equal, as lexsort has them)
        _, key = np.unique(time, return_inverse=True)
        span = int(key.max()) + 1 if len(key) else 1
        key = key.astype(np.int64, copy=False)
    del time
    key += uidx.astype(np.int64) * span
    del uidx
    rows = np.argsort(key, kind="stable")
    del key
    inter.items = inter.items[rows]
    return inter.user_dict.take(pa.array(order)), offsets


def _natural_order(ids: pa.Array, tiebreak: np.ndarray) -> np.ndarray:
    """The permutation that sorts distinct string ids as ``sorted(ids, key=_natural_key)`` does, vectorised:
    integer-looking ids (``-?`` and decimal digits) by value, then every other id by code point; ids of equal value
    (``7`` and ``007``) by ``tiebreak``. An integer of any length compares by sign, digit count (leading zeros
    dropped), then digits; ids in non-ASCII decimal digits (``٣``) are rewritten to ASCII first (in Python, for
    those ids only)."""
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    numeric = pc.fill_null(pc.match_substring_regex(ids, r"^-?\p{Nd}+$"), False)
    digits = pc.replace_substring_regex(ids, r"^-?0*", "")
    unicode_digits = pc.and_(numeric, pc.invert(pc.string_is_ascii(ids)))
    if pc.any(unicode_digits).as_py():
        where = np.flatnonzero(unicode_digits.to_numpy(zero_copy_only=False))
        ascii_digits = [str(abs(int(s))).lstrip("0") for s in ids.take(pa.array(where)).to_pylist()]
        digits = pc.replace_with_mask(digits, unicode_digits, pa.array(ascii_digits, pa.string()))
    is_num = numeric.to_numpy(zero_copy_only=False)
    key = pc.if_else(numeric, digits, ids)
    negative = is_num & pc.starts_with(ids, "-").to_numpy(zero_copy_only=False) \
        & (pc.utf8_length(digits).to_numpy(zero_copy_only=False) > 0)
    sign = np.where(negative, -1, 1)
    length = np.where(is_num, pc.utf8_length(key).to_numpy(zero_copy_only=False).astype(np.int64), 0) * sign
    rank = pc.rank(key, sort_keys="ascending", tiebreaker="dense").to_numpy().astype(np.int64) * sign
    return np.lexsort((tiebreak, rank, length, ~is_num))


def _dense_items(inter: _Interactions, offsets: np.ndarray, meta_ids: pa.Array | None,
                 report: LoadReport) -> tuple[pa.Array, np.ndarray]:
    """(the item ids in item_idx order, item_idx by item code). With an item table its ids come first (natural
    order), then the interactions' items it lacks, counted as ``items_without_metadata``, in the order they first
    appear reading users in order of their first interaction and each user's items in time order; without one, the
    interactions' items in natural order. ``inter.items`` is in user-then-time order here."""
    n_codes = len(inter.item_dict)
    present = inter.item_first < len(inter.items)
    if meta_ids is None:
        codes = np.flatnonzero(present)
        order = codes[_natural_order(inter.item_dict.take(pa.array(codes)), inter.item_first[codes])]
        idx_of_code = np.full(n_codes, -1, np.int32)
        idx_of_code[order] = np.arange(len(order), dtype=np.int32)
        return inter.item_dict.take(pa.array(order)), idx_of_code
    idx_of_code = pc.fill_null(pc.index_in(inter.item_dict, value_set=meta_ids), -1).to_numpy().astype(np.int32)
    extra_codes = np.flatnonzero(present & (idx_of_code < 0))
    if not len(extra_codes):
        return meta_ids, idx_of_code
    is_extra = np.zeros(n_codes, bool)
    is_extra[extra_codes] = True
    rows = np.flatnonzero(is_extra[inter.items])  # the rows of those items, in user-then-time order
    user = np.searchsorted(offsets, rows, side="right") - 1
    by_first = np.argsort(np.argsort(inter.user_first))  # each user's rank by its first row
    walk = rows[np.lexsort((rows - offsets[user], by_first[user]))]
    seen, at = np.unique(inter.items[walk], return_index=True)
    extra = seen[np.argsort(at)]
    idx_of_code[extra] = len(meta_ids) + np.arange(len(extra), dtype=np.int32)
    extra_ids = inter.item_dict.take(pa.array(extra))
    report.skipped["items_without_metadata"] += len(extra_ids)
    report.examples.setdefault("items_without_metadata", extra_ids[0].as_py())
    return pa.concat_arrays([meta_ids, extra_ids]), idx_of_code


META_COLUMNS = ("title", "description", "brand", "categories", "category", "image")  # what the item table gives


def _parquet_items(items_path: Path, report: LoadReport) -> tuple[pa.Array, pa.Table | None]:
    """(item ids in natural order, their metadata columns in that order, None if it has none); a duplicated id is
    an error (which row would win is a guess), a null id a counted skip."""
    _check_nonempty(items_path)
    schema, _, dataset = _parquet_dataset(items_path)
    _require_columns(schema.names, items_path, ["item_id"])
    _check_id_type(schema, "item_id", items_path)
    table = _read_columns(items_path, dataset, ["item_id", *(c for c in META_COLUMNS if c in schema.names)])
    codes, distinct = _encode_ids(table.column("item_id"))
    counts = np.bincount(codes[codes >= 0], minlength=len(distinct))
    dup = np.flatnonzero(counts > 1)  # the dictionary is in order of first appearance
    if len(dup):
        first = distinct[int(dup[0])].as_py()
        raise DataError(f"{items_path}: duplicate item_id {first!r} ({len(dup)} duplicated ids)")
    null = codes < 0
    if null.any():
        report.skipped["null_item_id"] += int(null.sum())
        report.examples.setdefault("null_item_id", f"{items_path}: row {int(np.argmax(null))}")
        table, codes = table.filter(pa.array(~null)), codes[~null]
    ids = distinct.take(pa.array(codes))
    order = pa.array(_natural_order(ids, np.arange(len(ids))))
    rows = table.drop_columns(["item_id"]).take(order) if table.num_columns > 1 else None
    return ids.take(order), rows


def _parquet_item_table(item_ids: pa.Array, meta_rows: pa.Table | None, n_meta: int, base: Path, items_path: Path,
                        report: LoadReport) -> pa.Table:
    """The item table: the first ``n_meta`` items' title, text and image from ``meta_rows`` (type-checked per item,
    ``ITEM_BATCH`` at a time); the rest (or all, without metadata columns) have none."""
    titles, texts, images, uris = [], [], [], []
    for start in range(0, n_meta if meta_rows is not None else 0, ITEM_BATCH):
        rows = meta_rows.slice(start, ITEM_BATCH).to_pylist()
        title_b, text_b, image_b, uri_b = [], [], [], []
        for iid, m in zip(item_ids.slice(start, len(rows)).to_pylist(), rows):
            title, text = _meta_text(m, report, f"{items_path}: item {iid}")
            image, uri = _parquet_image(m.get("image"), base, f"{items_path}: item {iid}", report)
            title_b.append(title)
            text_b.append(text)
            image_b.append(image)
            uri_b.append(uri)
        titles.append(pa.array(title_b, pa.string()))
        texts.append(pa.array(text_b, pa.string()))
        images.append(pa.array(image_b, pa.binary()))
        uris.append(pa.array(uri_b, pa.string()))
    rest = len(item_ids) - (n_meta if meta_rows is not None else 0)
    if rest:
        titles.append(pa.nulls(rest, pa.string()))
        texts.append(pa.nulls(rest, pa.string()))
        images.append(pa.nulls(rest, pa.binary()))
        uris.append(pa.nulls(rest, pa.string()))
    return build_items_table(item_ids, pa.chunked_array(titles, pa.string()), pa.chunked_array(texts, pa.string()),
                             pa.chunked_array(images, pa.binary()), pa.chunked_array(uris, pa.string()))


def _parquet_image(value: object, base: Path, where: str, report: LoadReport) -> tuple[bytes | None, str | None]:
    """(image bytes, image URI) from an ``image`` cell: bytes, a path (relative to ``base``) or a URI."""
    if isinstance(value, bytes | bytearray):
        return bytes(value), None
    if isinstance(value, str) and value:
        return None, value if "://" in value or value.startswith("/") else str(base / value)
    if value is not None and value != "":
        report.skip("image_wrong_type", f"{where}: image is {type(value).__name__}")
    return None, None


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
