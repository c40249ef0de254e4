"""A real catalog cut by interaction time into a base dataset and increments, for the refresh-against-retrain
measurement on real data (docs/OPERATIONS.md, "Refreshing a model"; the synthetic catalog's cut is
:mod:`cemg_ray.refresh.synthetic`).

Every interaction has a time; two cut points T1 < T2 split them into ``base/`` (before T1), ``day1/`` (T1 up to T2),
``day2/`` (T2 on) and ``all/`` (everything, what a retrain from scratch reads). The base and ``all/`` are
``parquet``-format datasets (``interactions.parquet``: user_id, item_id, timestamp; ``items.parquet``: item_id,
title, brand, categories, description, text, image); each day is an increment folder that ``cemg-ray refresh``
reads, whose ``items.parquet`` holds the items released or first seen in it (an item no interaction names and no
release dates stays in the base).
``cut.json`` says which clock was used, where the cuts are and what each part holds.

The clock:
- ``file``: a ``parquet`` dataset's own ``timestamp`` column (a real time cut).
- ``position``: for a catalog that has only each user's order (LETTER's ``json``, S3-Rec's ``sequences``: Amazon
  Beauty carries no timestamps), a pseudo-time: every user is active over the same period at their own rate, their
  ``n`` interactions at ``end - period * (1 - (j + u) / n)`` for ``j = 0..n-1``, with one uniform phase ``u`` per
  user (seeded). A window of the period's last fraction ``w`` then holds about ``w`` of every user's interactions in
  expectation, their order kept; it is not the real calendar, and items are first seen late only when all their
  interactions happen to fall late. So the position clock can also make some of them new, as the synthetic cut
  does: ``--new-item-share`` of the items are released at a uniform time within the two windows (an interaction
  with an item before its release is dropped from every part, ``all/`` included), and ``--new-user-share`` of the
  users arrive in one of the two windows (their whole sequence, in order, within it).

    python -m cemg_ray.refresh.timecut OUT --format json --path ../shared/data/beauty --window-days 14 \
        --new-item-share 0.02 --new-user-share 0.01
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray import artifacts
from cemg_ray.data.catalog import Catalog, compose_text
from cemg_ray.data.loaders import load_catalog

DAY_S = 86_400
END = 1_798_761_600  # 2027-01-01T00:00:00Z: where the position clock's period ends
_FIELD = re.compile(r"\. (?=(?:Brand|Categories|Description): )")


def _fields(title: str | None, text: str | None) -> dict[str, Any]:
    """The item's text split back into the fields ``compose_text`` joined, so that the parquet loader composes the
    same text again; the composed text itself rides along (``text``, what an increment reads first)."""
    out: dict[str, Any] = {"title": title, "brand": None, "categories": None, "description": None, "text": text or ""}
    rest = text or ""
    head = f"Title: {title.strip()}" if title else ""
    if head and rest.startswith(head):
        rest = rest[len(head):].removeprefix(". ")
    for part in _FIELD.split(rest) if rest else []:
        for key in ("Brand", "Categories", "Description"):
            if part.startswith(f"{key}: "):
                out[key.lower()] = part[len(key) + 2:]
    return out


def item_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """One row per catalog item (item_id, title, brand, categories, description, text, image)."""
    ids = catalog.items.column("item_id").to_pylist()
    titles = catalog.items.column("title").to_pylist()
    texts = catalog.items.column("text").to_pylist()
    images = catalog.items.column("image").to_pylist()
    uris = catalog.items.column("image_uri").to_pylist()
    rows = []
    for iid, title, text, image, uri in zip(ids, titles, texts, images, uris):
        row = {"item_id": str(iid), **_fields(title, text)}
        row["image"] = image if image is not None else uri
        rows.append(row)
    return rows


def _items_table(rows: list[dict[str, Any]]) -> pa.Table:
    images = [r["image"] for r in rows]
    kind = pa.binary() if any(isinstance(i, bytes | bytearray) for i in images) else pa.string()
    cols = {k: pa.array([r[k] for r in rows], pa.string())
            for k in ("item_id", "title", "brand", "categories", "description", "text")}
    if any(i is not None for i in images):
        cols["image"] = pa.array([i if kind == pa.binary() or isinstance(i, str) else None for i in images], kind)
    return pa.table(cols)


def position_clock(catalog: Catalog, period_s: float, end: int = END, seed: int = 0, window_s: float | None = None,
                   new_item_share: float = 0.0, new_user_share: float = 0.0
                   ) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    """((user_id, item_id, timestamp) of every kept interaction on the ``position`` clock, counts of what the
    simulated releases and arrivals did); see the module docstring."""
    rng = np.random.default_rng(seed)
    ids = catalog.items.column("item_id").to_pylist()
    n_users, n_items = len(catalog.sequences), catalog.num_items
    phase = rng.random(n_users)
    release = np.full(n_items, -np.inf)
    arrival = np.zeros(n_users, dtype=np.int64)  # 0: active over the whole period; 1 or 2: arrives in that window
    if new_item_share or new_user_share:
        if window_s is None:
            raise ValueError("releases and arrivals need the windows (window_s)")
        released = rng.choice(n_items, size=int(round(new_item_share * n_items)), replace=False)
        release[released] = end - 2 * window_s + rng.random(len(released)) * 2 * window_s
        arriving = rng.choice(n_users, size=int(round(new_user_share * n_users)), replace=False)
        arrival[arriving] = rng.integers(1, 3, size=len(arriving))
    events, dropped = [], 0
    for u, (user, seq) in enumerate(zip(catalog.user_ids, catalog.sequences)):
        n = len(seq)
        if arrival[u]:
            start, span = end - (3 - arrival[u]) * window_s, window_s
        else:
            start, span = end - period_s, period_s
        for j, item in enumerate(seq):
            t = int(start + span * (j + phase[u]) / n)
            if t < release[int(item)]:
                dropped += 1
                continue
            events.append((str(user), str(ids[int(item)]), t))
    released_at = {str(ids[i]): int(np.ceil(release[i])) for i in np.flatnonzero(np.isfinite(release))}
    return events, {"released_items": len(released_at), "arriving_users": int((arrival > 0).sum()),
                    "dropped_before_release": dropped, "release": released_at}


def file_clock(path: str | Path) -> list[tuple[str, str, int]]:
    """(user_id, item_id, timestamp) of a ``parquet`` dataset's interactions, rows with a null field dropped."""
    table = pq.read_table(Path(path) / artifacts.PARQUET_DATASET_INTERACTIONS)
    ts = table.column("timestamp")
    if pa.types.is_timestamp(ts.type):
        ts = ts.cast(pa.int64())
    return [(str(u), str(i), int(t)) for u, i, t in zip(table.column("user_id").cast(pa.string()).to_pylist(),
                                                        table.column("item_id").cast(pa.string()).to_pylist(),
                                                        ts.to_pylist()) if u is not None and i is not None
            and t is not None]


def _write_interactions(events: list[tuple[str, str, int]], folder: Path) -> None:
    users, items, stamps = zip(*events) if events else ((), (), ())
    pq.write_table(pa.table({"user_id": pa.array(users, pa.string()), "item_id": pa.array(items, pa.string()),
                             "timestamp": pa.array(stamps, pa.int64())}), folder / "interactions.parquet")


def cut(events: list[tuple[str, str, int]], items: list[dict[str, Any]], out: str | Path, t1: int, t2: int,
        whole: bool = True, release: dict[str, int] | None = None) -> dict[str, Any]:
    """Write ``out/base``, ``out/day1``, ``out/day2`` (and with ``whole``, ``out/all``) from ``events`` cut at
    ``t1`` < ``t2``; each item's row goes with the part of its ``release`` time when it has one, else of its first
    interaction (the base when it has none). Returns the counts of each part (also written to ``out/cut.json``)."""
    if not t1 < t2:
        raise ValueError(f"the cut points must rise: t1={t1}, t2={t2}")
    events = sorted(events, key=lambda e: (e[2], e[0]))
    first: dict[str, int] = dict(release or {})
    for _, item, t in events:
        first.setdefault(item, t)

    def part_of(t: int) -> str:
        return "base" if t < t1 else "day1" if t < t2 else "day2"

    parts: dict[str, list[tuple[str, str, int]]] = {"base": [], "day1": [], "day2": []}
    for e in events:
        parts[part_of(e[2])].append(e)
    item_part = {r["item_id"]: part_of(first[r["item_id"]]) if r["item_id"] in first else "base" for r in items}
    out = Path(out)
    summary: dict[str, Any] = {"t1": t1, "t2": t2, "parts": {}}
    users_before: set[str] = set()
    for name in ("base", "day1", "day2"):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        _write_interactions(parts[name], folder)
        rows = [r for r in items if item_part[r["item_id"]] == name]
        pq.write_table(_items_table(rows), folder / "items.parquet")
        users = {u for u, _, _ in parts[name]}
        summary["parts"][name] = {
            "interactions": len(parts[name]), "users": len(users), "new_users": len(users - users_before),
            "items": len(rows), "new_items_interactions": sum(1 for _, i, _ in parts[name] if item_part[i] == name),
            "from": min((t for _, _, t in parts[name]), default=None),
            "to": max((t for _, _, t in parts[name]), default=None)}
        users_before |= users
    if whole:
        folder = out / "all"
        folder.mkdir(parents=True, exist_ok=True)
        _write_interactions(events, folder)
        pq.write_table(_items_table(items), folder / "items.parquet")
        summary["parts"]["all"] = {"interactions": len(events), "users": len({u for u, _, _ in events}),
                                   "items": len(items)}
    for name in ("day1", "day2"):  # known users the day continues, for the holdout's reading
        s = summary["parts"][name]
        s["known_users"] = s["users"] - s["new_users"]
    (out / "cut.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def cut_catalog(fmt: str, path: str, out: str | Path, window_days: float = 14.0, clock: str | None = None,
                period_days: float = 365.0, seed: int = 0, whole: bool = True, new_item_share: float = 0.0,
                new_user_share: float = 0.0) -> dict[str, Any]:
    """Load ``path`` (``dataset.format`` ``fmt``), put every interaction on a clock and cut the last two windows of
    ``window_days`` off as day1 and day2 (see the module docstring)."""
    clock = clock or ("file" if fmt == "parquet" else "position")
    if clock == "file" and fmt != "parquet":
        raise ValueError(f"--clock file reads a parquet dataset's timestamps; format {fmt!r} has none here "
                         "(use --clock position)")
    catalog = load_catalog(fmt, path)
    items = item_rows(catalog)
    mismatched = sum(1 for r in items if compose_text(r["title"], r["brand"], r["categories"], r["description"])
                     != r["text"])
    window = int(window_days * DAY_S)
    simulated: dict[str, Any] = {}
    if clock == "file":
        if new_item_share or new_user_share:
            raise ValueError("--new-item-share and --new-user-share are for the position clock")
        events = file_clock(path)
        end = max(t for _, _, t in events) + 1
    else:
        events, simulated = position_clock(catalog, period_days * DAY_S, END, seed, window, new_item_share,
                                           new_user_share)
        end = END
    release = simulated.pop("release", None)
    summary = cut(events, items, out, end - 2 * window, end - window, whole, release)
    summary.update({"source": {"format": fmt, "path": str(path)}, "clock": clock, "window_days": window_days,
                    "period_days": period_days if clock == "position" else None, "seed": seed,
                    "new_item_share": new_item_share, "new_user_share": new_user_share, **simulated,
                    "items_whose_text_recomposes_differently": mismatched})
    (Path(out) / "cut.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder for base/, day1/, day2/, all/ and cut.json")
    p.add_argument("--format", required=True, help="dataset.format of the source (json, sequences, parquet, ...)")
    p.add_argument("--path", required=True, help="dataset.path of the source")
    p.add_argument("--window-days", type=float, default=14.0, help="each increment's window (day1, then day2, last)")
    p.add_argument("--clock", choices=["file", "position"], default=None,
                   help="file: the parquet dataset's timestamps; position: a pseudo-time from each user's order "
                        "(default: file for parquet, position otherwise)")
    p.add_argument("--period-days", type=float, default=365.0, help="the position clock's period")
    p.add_argument("--seed", type=int, default=0, help="the position clock's phases, releases and arrivals")
    p.add_argument("--new-item-share", type=float, default=0.0, help="position clock: items released in the windows")
    p.add_argument("--new-user-share", type=float, default=0.0, help="position clock: users arriving in the windows")
    a = p.parse_args(argv)
    summary = cut_catalog(a.format, a.path, a.out, a.window_days, a.clock, a.period_days, a.seed, True,
                          a.new_item_share, a.new_user_share)
    for name, s in summary["parts"].items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("from", "to")))
    print(f"clock: {summary['clock']}; cuts at {summary['t1']} and {summary['t2']}; {Path(a.out) / 'cut.json'}")


if __name__ == "__main__":
    main()
