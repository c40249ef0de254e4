"""Bad data files, by category: each becomes a named error or a counted, reported skip, never a traceback."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cemg_ray.data.catalog import DataError
from cemg_ray.data.loaders import load_amazon, load_json, load_parquet, load_sequences


def _reviews(n: int) -> list[str]:
    return [json.dumps({"reviewerID": f"u{u}", "asin": f"a{i}", "unixReviewTime": i})
            for u in range(n) for i in range(n)]


def _inter(tmp_path, name: str = "X") -> None:
    (tmp_path / f"{name}.inter.json").write_text(json.dumps({"u1": ["a", "b", "c"], "u2": ["a", "c", "b"]}))


# -- encodings ---------------------------------------------------------------------------------------------------
def test_a_line_that_is_not_utf8_is_skipped_and_counted(tmp_path) -> None:
    (tmp_path / "s.txt").write_bytes(b"u1 1 2 3\nu2 \xff\xfe 4 5\nu3 1 2 4\n")
    cat = load_sequences(tmp_path / "s.txt")
    assert len(cat.sequences) == 2 and cat.report.skipped["not_utf8"] == 1
    assert "s.txt:2" in cat.report.examples["not_utf8"]


def test_a_json_file_that_is_not_utf8_names_the_byte(tmp_path) -> None:
    (tmp_path / "X.inter.json").write_bytes(b'{"u1": ["a", "\xff"]}')
    with pytest.raises(DataError, match=r"X.inter.json: not UTF-8 \(byte 0xff at position 14\)"):
        load_json(tmp_path)


def test_an_amazon_line_that_is_not_utf8_is_counted(tmp_path) -> None:
    rows = [json.dumps({"reviewerID": f"u{u}", "asin": f"a{i}", "unixReviewTime": i}).encode()
            for u in range(3) for i in range(3)]
    (tmp_path / "reviews.json").write_bytes(b"\n".join(rows + [b'{"reviewerID": "\xff"}']) + b"\n")
    cat = load_amazon(tmp_path, k=1)
    assert cat.report.skipped["not_utf8"] == 1 and len(cat.sequences) == 3


# -- wrong field types ---------------------------------------------------------------------------------------------
def test_metadata_fields_of_the_wrong_type_are_counted_and_left_out(tmp_path) -> None:
    _inter(tmp_path)
    (tmp_path / "X.item.json").write_text(json.dumps({
        "a": {"title": 5}, "b": {"title": ["x", "y"], "brand": "B"}, "c": {"title": "ok", "description": {"k": 1}}}))
    cat = load_json(tmp_path)
    assert cat.report.skipped["title_wrong_type"] == 2 and cat.report.skipped["description_wrong_type"] == 1
    texts = dict(zip(cat.items.column("item_id").to_pylist(), cat.items.column("text").to_pylist()))
    assert texts == {"a": "", "b": "Brand: B", "c": "Title: ok"}  # nothing guessed from the bad values


def test_non_integer_ids_in_a_sequence_file_are_counted_not_accepted(tmp_path) -> None:
    (tmp_path / "s.txt").write_text("u1 1 2 3\nu2 4 x5 6\nu3 1 ² 2\n")
    cat = load_sequences(tmp_path / "s.txt")
    assert len(cat.sequences) == 1 and cat.report.skipped["non_integer_item_id"] == 2


# -- nesting and compression ---------------------------------------------------------------------------------------
def test_deeply_nested_json_is_a_named_error_or_a_counted_line(tmp_path) -> None:
    _inter(tmp_path)
    (tmp_path / "X.item.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DataError, match="X.item.json: JSON nested too deeply"):
        load_json(tmp_path)
    amazon = tmp_path / "amazon"
    amazon.mkdir()
    rows = _reviews(2)
    (amazon / "reviews.json").write_text("\n".join(rows + ["[" * 100_000 + "]" * 100_000]) + "\n")
    assert load_amazon(amazon, k=1).report.skipped["nested_too_deeply"] == 1


def test_a_truncated_gzip_names_the_file_and_the_last_good_line(tmp_path) -> None:
    lines = b"".join(json.dumps({"reviewerID": f"u{n}", "asin": "a", "unixReviewTime": n}).encode() + b"\n"
                     for n in range(2000))
    (tmp_path / "reviews.json.gz").write_bytes(gzip.compress(lines)[:-200])
    with pytest.raises(DataError, match=r"reviews.json.gz: corrupt or truncated gzip after line \d+"):
        load_amazon(tmp_path, k=1)


def test_an_unparsable_metadata_literal_is_counted(tmp_path) -> None:
    rows = _reviews(2)
    (tmp_path / "reviews.json").write_text("\n".join(rows) + "\n")
    (tmp_path / "meta.json").write_text("{'asin': 'a0', 'title': 'ok'}\n{'asin': 'a1', 'title': __import__('os')}\n")
    cat = load_amazon(tmp_path, k=1)
    assert cat.report.skipped["unparseable_line"] == 1
    assert cat.items.column("title").to_pylist()[cat.items.column("item_id").to_pylist().index("a0")] == "ok"


# -- id columns and duplicates -------------------------------------------------------------------------------------
def _parquet(tmp_path, items: pa.Table, inter: pa.Table | None = None) -> None:
    inter = inter or pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"], "timestamp": [1, 2, 3]})
    pq.write_table(inter, tmp_path / "interactions.parquet")
    pq.write_table(items, tmp_path / "items.parquet")


def test_a_list_typed_id_column_is_an_error_naming_column_and_type(tmp_path) -> None:
    inter = pa.table({"user_id": [["u1"], ["u2"]], "item_id": ["a", "b"], "timestamp": [1, 2]})
    _parquet(tmp_path, pa.table({"item_id": ["a", "b"]}), inter)
    with pytest.raises(DataError, match=r"interactions.parquet: column 'user_id' has type list<element: string>"):
        load_parquet(tmp_path)


def test_duplicate_and_null_item_ids_in_the_item_table(tmp_path) -> None:
    _parquet(tmp_path, pa.table({"item_id": ["a", "b", "a"], "title": ["x", "y", "z"]}))
    with pytest.raises(DataError, match="items.parquet: duplicate item_id 'a'"):
        load_parquet(tmp_path)
    _parquet(tmp_path, pa.table({"item_id": ["a", None, "b"], "title": ["x", "y", "z"]}))
    cat = load_parquet(tmp_path)
    assert cat.report.skipped["null_item_id"] == 1 and "None" not in cat.items.column("item_id").to_pylist()


def test_an_image_column_of_the_wrong_type_is_counted(tmp_path) -> None:
    _parquet(tmp_path, pa.table({"item_id": ["a", "b"], "image": [3, 4]}))
    cat = load_parquet(tmp_path)
    assert cat.report.skipped["image_wrong_type"] == 2


def test_a_corrupt_item_table_is_a_named_error(tmp_path) -> None:
    _parquet(tmp_path, pa.table({"item_id": ["a", "b"]}))
    (tmp_path / "items.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(DataError, match="items.parquet: not a readable Parquet file"):
        load_parquet(tmp_path)
