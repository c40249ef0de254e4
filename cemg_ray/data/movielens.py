"""The ``movielens`` format: ML-100K, ML-1M and ML-latest layouts, as RecBole and cornac users know them.

- ML-100K: ``u.data`` (``user \\t item \\t rating \\t time``) + ``u.item`` (``id|title|date|video|url|19 genre flags``)
- ML-1M: ``ratings.dat`` (``user::item::rating::time``) + ``movies.dat`` (``id::title::Genre|Genre``)
- ML-latest: ``ratings.csv`` (``userId,movieId,rating,timestamp``) + ``movies.csv`` (``movieId,title,genres``)

The files may sit in the given folder or one level below it (``ml-100k/``). Ratings become implicit
interactions in time order, ties broken by item id (deterministic); ``min_rating`` keeps only ratings at or
above it. Item text is the title and genres, plus an overview when a CSV with a ``movie_id`` (or ``movieId``)
and an ``overview`` column is found (or given): the first row of an id wins. Item images: ``<item id>.jpg``
(or ``.png``) in a ``posters/`` or ``images/`` folder beside the files, or in ``images_dir``; an item
without one has a missing image modality. Malformed rows are counted by reason and skipped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cemg_ray.data.catalog import Catalog, DataError, LoadReport, build_items_table, compose_text
from cemg_ray.data.loaders import _Columns, _natural_order, _number, _view

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]
LAYOUTS = {"ml-100k": ("u.data", "u.item"), "ml-1m": ("ratings.dat", "movies.dat"),
           "ml-latest": ("ratings.csv", "movies.csv")}


_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines splits


def _read_lines(path: Path) -> Iterator[str]:
    """Text lines in UTF-8, or Latin-1 (the original ML-100K and ML-1M files are Latin-1), split as
    ``str.splitlines`` splits them but one at a time: the decoded text (the file's size) is held, not a list of
    lines."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    del raw
    start = 0
    for brk in _LINE_BREAK.finditer(text):
        yield text[start:brk.start()]
        start = brk.end()
    if start < len(text):
        yield text[start:]


def find_layout(path: Path) -> tuple[str, Path, Path]:
    """(layout name, ratings file, items file) in ``path`` or one of its sub-folders."""
    folders = [path] + sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    for folder in folders:
        for name, (ratings, items) in LAYOUTS.items():
            if (folder / ratings).is_file():
                return name, folder / ratings, folder / items
    raise DataError(f"{path}: no MovieLens ratings file here or one level below "
                    f"(expected u.data, ratings.dat or ratings.csv)")


def _parse_ratings(layout: str, path: Path, min_rating: float | None, report: LoadReport) -> _Columns:
    """The valid ratings, a line at a time, into :class:`_Columns` (codes and times, no object per rating)."""
    cols = _Columns(timed=True)
    lines = _read_lines(path)
    if layout == "ml-latest":
        first = next(lines, None)
        if first is not None and not first.lower().startswith("userid"):
            lines = chain([first], lines)
    sep = {"ml-100k": "\t", "ml-1m": "::", "ml-latest": ","}[layout]
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != 4:
            report.skip("wrong_field_count", f"{path}:{lineno}")
            continue
        user, item, rating, ts = (f.strip() for f in fields)
        if not (user.isdecimal() and item.isdecimal()):  # int() reads every decimal digit, not "²"
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
        cols.add(user, item, t)
    return cols


def _time_then_item(time: np.ndarray, item_rank: np.ndarray) -> np.ndarray:
    """Each row's dense rank by (time, item rank): ordering by it orders by time, equal times by item id, as
    sorting ``(time, int(item), item)`` tuples did."""
    order = np.lexsort((item_rank, time))
    t, r = time[order], item_rank[order]
    new = np.ones(len(order), bool)
    new[1:] = (t[1:] != t[:-1]) | (r[1:] != r[:-1])
    key = np.empty(len(order), np.int64)
    key[order] = np.cumsum(new) - 1
    return key


def _parse_items(layout: str, path: Path, report: LoadReport) -> dict[str, tuple[str, list[str]]]:
    """item id -> (title, genres)."""
    if not path.is_file():
        return {}
    items: dict[str, tuple[str, list[str]]] = {}
    if layout == "ml-latest":
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            rows = list(csv.reader(fh))
        body = rows[1:] if rows and rows[0] and rows[0][0].lower() == "movieid" else rows
        parsed = [(i, r[0], r[1] if len(r) > 1 else "", r[2].split("|") if len(r) > 2 else []) for i, r in
                  enumerate(body, 2) if r]
    else:
        sep = "|" if layout == "ml-100k" else "::"
        parsed = []
        for lineno, line in enumerate(_read_lines(path), 1):
            if not line.strip():
                continue
            f = line.split(sep)
            if layout == "ml-100k":
                flags = f[5:]
                genres = [g for g, flag in zip(ML100K_GENRES, flags) if flag.strip() == "1"]
                parsed.append((lineno, f[0], f[1] if len(f) > 1 else "", genres if len(flags) == 19 else None))
            else:
                parsed.append((lineno, f[0], f[1] if len(f) > 1 else "", f[2].split("|") if len(f) > 2 else []))
    for lineno, iid, title, genres in parsed:
        iid = iid.strip()
        if not iid.isdecimal():
            report.skip("item_non_integer_id", f"{path}:{lineno}")
            continue
        if genres is None:
            report.skip("item_wrong_field_count", f"{path}:{lineno}")
            continue
        if iid in items:
            raise DataError(f"{path}:{lineno}: duplicate item id {iid!r} in the item file")
        items[iid] = (title.strip(), [g for g in genres if g and g != "(no genres listed)"])
    return items


def _find_overviews(root: Path, given: str | None) -> Path | None:
    if given:
        p = Path(given)
        if not p.is_file():
            raise DataError(f"{p}: overview table not found")
        return p
    for cand in sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv")):
        with cand.open(newline="", encoding="utf-8", errors="replace") as fh:
            header = next(csv.reader(fh), [])
        cols = {c.strip().lower() for c in header}
        if "overview" in cols and ({"movie_id", "movieid"} & cols):
            return cand
    return None


def _parse_overviews(path: Path, report: LoadReport) -> dict[str, str]:
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        id_col = next((c for c in reader.fieldnames or [] if c.strip().lower() in ("movie_id", "movieid")), None)
        if id_col is None:
            raise DataError(f"{path}: the overview table needs a movie_id (or movieId) column")
        for n, row in enumerate(reader, 2):
            iid, text = (row.get(id_col) or "").strip(), (row.get("overview") or "").strip()
            if not iid.isdigit():
                report.skip("overview_non_integer_id", f"{path}:{n}")
                continue
            if iid in out:  # ambiguous matches repeat an id: the first row wins
                report.skip("overview_duplicate_id", f"{path}:{n}")
                continue
            if text:
                out[iid] = text
    return out


def _find_images_dir(root: Path, given: str | None) -> Path | None:
    if given:
        return Path(given)
    for name in ("posters", "images"):
        for cand in [root / name, *sorted(root.glob(f"*/{name}"))]:
            if cand.is_dir():
                return cand
    return None


def load_movielens(path: str | Path, images_dir: str | None = None, min_rating: float | None = None,
                   overview: str | None = None) -> Catalog:
    """Ratings into :class:`_Columns`, numbered by the loaders' shared path (:func:`_number`): users by id value,
    items (rated or listed) by id value, each user's ratings by time, equal times by item id."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: path not found")
    layout, ratings_path, items_path = find_layout(root)
    report = LoadReport(str(ratings_path))
    cols = _parse_ratings(layout, ratings_path, min_rating, report)
    if not len(cols):
        raise DataError(f"{ratings_path}: no ratings left to read")
    meta = _parse_items(layout, items_path, report)
    ov_path = _find_overviews(root, overview)
    overviews = _parse_overviews(ov_path, report) if ov_path else {}
    img_dir = _find_images_dir(root, images_dir)

    rated = len(cols.item_code)
    union = pa.array([*cols.item_code, *(i for i in meta if i not in cols.item_code)], pa.string())
    by_value = _natural_order(union, pc.rank(union, sort_keys="ascending").to_numpy())  # equal values by string
    rank = np.empty(len(union), np.int64)
    rank[by_value] = np.arange(len(union))
    item_codes = cols.codes()[1]
    time = _time_then_item(_view(cols.time, np.float64), rank[:rated][item_codes])
    del item_codes
    ordered = union.take(pa.array(by_value))
    user_ids, item_ids, flat, offsets = _number(cols.interactions(ratings_path, time=time), ordered, report)
    del cols, time
    ids = item_ids.to_pylist()
    missing_meta = [i for i in ids if i not in meta]
    if missing_meta and meta:
        report.skipped["items_without_metadata"] += len(missing_meta)
        report.examples.setdefault("items_without_metadata", missing_meta[0])
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
    items = build_items_table(item_ids, titles, texts, image_uris=uris, genres=genres)
    return Catalog.from_csr(items, user_ids, flat, offsets, report)
