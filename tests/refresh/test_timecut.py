"""A real catalog cut by interaction time: base/day1/day2/all partition the interactions at the cut points, each item
row goes with the part it is first seen in (or released in), users keep their order, and the parts load as the data
stage and ``cemg-ray refresh`` read them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray.data.loaders import load_catalog
from cemg_ray.refresh.increments import read_increment
from cemg_ray.refresh.timecut import DAY_S, END, cut_catalog, main

ITEMS = [{"item_id": f"i{k}", "title": f"Item {k}. Shiny", "brand": "Acme" if k % 2 else None,
          "categories": "Makeup, Nails" if k % 3 else None, "description": None} for k in range(8)]


def _parquet_source(folder: Path) -> Path:
    """Timestamps in days: i4 and i6 first seen on days 15 and 21 (the day1 window), i7 on day 29 (day2), i5
    never."""
    folder.mkdir()
    rows = [("u0", "i0", 1), ("u0", "i1", 2), ("u0", "i6", 21), ("u0", "i2", 29),
            ("u1", "i1", 3), ("u1", "i3", 5), ("u1", "i7", 29), ("u1", "i6", 30),
            ("u2", "i4", 23), ("u2", "i0", 24),  # a user first seen in day2
            ("u3", "i2", 4), ("u3", "i3", 6), ("u3", "i4", 15)]
    users, items, days = zip(*rows)
    pq.write_table(pa.table({"user_id": list(users), "item_id": list(items),
                             "timestamp": pa.array([d * DAY_S for d in days], pa.int64())}),
                   folder / "interactions.parquet")
    pq.write_table(pa.Table.from_pylist(ITEMS), folder / "items.parquet")
    return folder


def _read(folder: Path) -> tuple[list[tuple[str, str, int]], set[str]]:
    inter = pq.read_table(folder / "interactions.parquet").to_pylist()
    items = set(pq.read_table(folder / "items.parquet").column("item_id").to_pylist())
    return [(r["user_id"], r["item_id"], r["timestamp"]) for r in inter], items


def test_a_timestamped_catalog_is_cut_at_the_last_two_windows(tmp_path: Path) -> None:
    src = _parquet_source(tmp_path / "src")
    out = tmp_path / "cut"
    summary = cut_catalog("parquet", str(src), out, window_days=8)
    assert summary["clock"] == "file" and summary["items_whose_text_recomposes_differently"] == 0
    end = 30 * DAY_S + 1
    assert (summary["t1"], summary["t2"]) == (end - 16 * DAY_S, end - 8 * DAY_S)  # day 14+, day 22+
    parts = {name: _read(out / name) for name in ("base", "day1", "day2", "all")}
    assert {(u, i) for u, i, _ in parts["day1"][0]} == {("u0", "i6"), ("u3", "i4")}
    assert {(u, i) for u, i, _ in parts["day2"][0]} == {("u0", "i2"), ("u1", "i7"), ("u1", "i6"), ("u2", "i4"),
                                                        ("u2", "i0")}
    assert parts["day1"][1] == {"i4", "i6"} and parts["day2"][1] == {"i7"}  # first seen there
    assert parts["base"][1] == {"i0", "i1", "i2", "i3", "i5"}  # i5, never seen, stays in the base
    assert len(parts["all"][0]) == 13 and parts["all"][1] == {f"i{k}" for k in range(8)}
    assert sorted(e for n in ("base", "day1", "day2") for e in parts[n][0]) == sorted(parts["all"][0])
    for name, (events, _) in parts.items():
        if name != "all":
            lo, hi = {"base": (0, summary["t1"]), "day1": (summary["t1"], summary["t2"]),
                      "day2": (summary["t2"], end)}[name]
            assert all(lo <= t < hi for _, _, t in events)
    assert summary["parts"]["day2"]["new_users"] == 1  # u2
    assert json.loads((out / "cut.json").read_text())["parts"]["day1"]["interactions"] == 2
    # the base loads as the data stage reads it, with the source's text; the days read as increments of it
    source, base = load_catalog("parquet", str(src)), load_catalog("parquet", str(out / "base"))
    text = dict(zip(source.items.column("item_id").to_pylist(), source.items.column("text").to_pylist()))
    assert all(text[i] == t for i, t in zip(base.items.column("item_id").to_pylist(),
                                            base.items.column("text").to_pylist()))
    day1 = read_increment(out / "day1", set(base.items.column("item_id").to_pylist()))
    assert day1.bad_rows == 0 and sorted(r["item_id"] for r in day1.items) == ["i4", "i6"]
    assert all(r["text"] == text[r["item_id"]] for r in day1.items)


def test_the_position_clock_keeps_each_users_order_and_releases_items_in_the_windows(tmp_path: Path) -> None:
    src = tmp_path / "Tiny.inter.json"
    seqs = {str(u): [str((u * 3 + j) % 40) for j in range(5 + u % 7)] for u in range(200)}
    src.write_text(json.dumps(seqs))
    (tmp_path / "Tiny.item.json").write_text(json.dumps(
        {str(i): {"title": f"Thing {i}", "brand": "B", "categories": ["Skin", "Face"]} for i in range(40)}))
    out = tmp_path / "cut"
    main([str(out), "--format", "json", "--path", str(tmp_path), "--window-days", "14", "--new-item-share", "0.1",
          "--new-user-share", "0.1", "--seed", "3"])
    summary = json.loads((out / "cut.json").read_text())
    assert summary["clock"] == "position" and summary["released_items"] == 4 and summary["arriving_users"] == 20
    assert summary["items_whose_text_recomposes_differently"] == 0
    parts = {name: _read(out / name) for name in ("base", "day1", "day2", "all")}
    assert summary["parts"]["day1"]["new_users"] + summary["parts"]["day2"]["new_users"] == 20
    released = (parts["day1"][1] | parts["day2"][1])
    assert len(released) >= 4 and not released & parts["base"][1]
    assert not {i for _, i, _ in parts["base"][0]} & released  # nothing with an item before its release
    day1_items = parts["base"][1] | parts["day1"][1]
    assert {i for _, i, _ in parts["day1"][0]} <= day1_items
    assert all(END - 14 * DAY_S <= t < END for _, _, t in parts["day2"][0])
    kept = sorted(parts["all"][0], key=lambda e: (e[0], e[2]))
    assert len(kept) == summary["parts"]["all"]["interactions"] == sum(map(len, seqs.values())) \
        - summary["dropped_before_release"]
    by_user: dict[str, list[str]] = {}
    for u, i, _ in kept:
        by_user.setdefault(u, []).append(i)
    for u, items in by_user.items():  # a subsequence of the user's own order
        it = iter(seqs[u])
        assert all(i in it for i in items)
    base = load_catalog("parquet", str(out / "base"))
    for day in ("day1", "day2"):
        inc = read_increment(out / day, set(base.items.column("item_id").to_pylist()) | parts["day1"][1])
        assert inc.bad_rows == 0
