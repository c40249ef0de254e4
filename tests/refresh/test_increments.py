"""Reading an increment (bad rows skipped and counted, structural problems named) and appending it with stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cemg_ray.data.catalog import SEQUENCE_SCHEMA, DataError, build_items_table
from cemg_ray.refresh.increments import append, read_increment, touched_users

CATALOG = {"i0", "i1", "i2"}


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_malformed_rows_are_skipped_counted_and_named_by_file_and_field(tmp_path: Path) -> None:
    _jsonl(tmp_path / "interactions.jsonl", [
        {"user_id": "u0", "item_id": "i1", "timestamp": 2},
        {"user_id": "u0", "item_id": "new-a", "timestamp": 1},
        {"user_id": None, "item_id": "i1", "timestamp": 3},  # a null user
        {"user_id": "u1", "item_id": [1], "timestamp": 3},  # an id of the wrong type
        {"user_id": "u1", "item_id": "i2", "timestamp": "yesterday"},  # not a number
        {"user_id": "u1", "item_id": "nowhere", "timestamp": 4},  # in neither the catalog nor the items file
        "{not json",
    ])
    _jsonl(tmp_path / "items.jsonl", [{"item_id": "new-a", "title": "a red lipstick", "image": "a.png"},
                                      {"item_id": "i0", "title": "already there"}, {"title": "no id"}])
    inc = read_increment(tmp_path, CATALOG)
    assert [(u, i) for u, i, _, _ in inc.events] == [("u0", "i1"), ("u0", "new-a")]
    assert [r["item_id"] for r in inc.items] == ["new-a"] and inc.already_in_catalog == ["i0"]
    assert inc.items[0]["image_uri"] == str(tmp_path / "a.png") and "a red lipstick" in inc.items[0]["text"]
    assert dict(inc.report.skipped) == {"missing_user_id": 1, "item_id_wrong_type": 1, "bad_timestamp": 1,
                                        "unknown_item": 1, "not_json": 1, "missing_item_id": 1}
    assert inc.rows == 10 and inc.bad_rows == 6
    assert inc.report.examples["missing_user_id"] == f"{tmp_path / 'interactions.jsonl'}:3: field 'user_id'"
    assert "'nowhere' is in neither the catalog nor the items file" in inc.report.examples["unknown_item"]


def test_structural_problems_name_the_file_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no interactions.parquet\|jsonl and no items.parquet\|jsonl: nothing to add"):
        read_increment(tmp_path, CATALOG)
    pq.write_table(pa.table({"user_id": ["u0"], "item_id": ["i1"]}), tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match=r"interactions.parquet: missing required column 'timestamp'"):
        read_increment(tmp_path, CATALOG)
    pq.write_table(pa.table({"user_id": ["u0"], "item_id": [1.5], "timestamp": [1]}), tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match=r"interactions.parquet: column 'item_id' has type double"):
        read_increment(tmp_path, CATALOG)
    (tmp_path / "interactions.parquet").unlink()
    _jsonl(tmp_path / "items.jsonl", [{"item_id": "n1"}, {"item_id": "n1"}])
    with pytest.raises(DataError, match=r"items.jsonl: duplicate item_id 'n1'"):
        read_increment(tmp_path, CATALOG)


def test_append_keeps_every_id_and_orders_new_interactions_by_time(tmp_path: Path) -> None:
    items = build_items_table(["i0", "i1", "i2"], ["a", "b", "c"], cluster=[0, 1, 1])
    seqs = pa.table({"user_idx": pa.array([0, 1], pa.int32()), "user_id": ["u0", "u1"],
                     "items": pa.array([[0, 1], [2]], pa.list_(pa.int32()))}, schema=SEQUENCE_SCHEMA)
    pq.write_table(pa.table({"user_id": ["u1", "new-u", "u1", "u0"], "item_id": ["n0", "i0", "i1", "n1"],
                             "timestamp": [5, 1, 2, 9]}), tmp_path / "interactions.parquet")
    pq.write_table(pa.table({"item_id": ["n1", "n0"], "title": ["x", "y"]}), tmp_path / "items.parquet")
    inc = read_increment(tmp_path, {"i0", "i1", "i2"})
    grown, table, summary = append(items, seqs, inc)
    assert grown.column("item_id").to_pylist() == ["i0", "i1", "i2", "n1", "n0"]  # new items in file order
    assert grown.column("item_idx").to_pylist() == [0, 1, 2, 3, 4]
    assert grown.column("cluster").to_pylist() == [0, 1, 1, None, None]
    assert table.column("user_id").to_pylist() == ["u0", "u1", "new-u"]
    assert table.column("user_idx").to_pylist() == [0, 1, 2]
    assert table.column("items").to_pylist() == [[0, 1, 3], [2, 1, 4], [0]]  # u1: i1 at t=2 before n0 at t=5
    assert summary["new_users"] == 1 and summary["users_touched"] == 3 and summary["interactions_added"] == 4
    assert sorted(touched_users(table, inc).tolist()) == [0, 1, 2]
    assert np.array_equal(touched_users(seqs, inc), [0, 1])
