import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cemg_ray.data.catalog import DataError
from cemg_ray.data.loaders import (
    detect_format,
    kcore,
    load_amazon,
    load_catalog,
    load_json,
    load_parquet,
    load_sequences,
)
from tests.conftest import BEAUTY

needs_beauty = pytest.mark.skipif(not BEAUTY.exists(), reason="real Beauty data not present")


@needs_beauty
@pytest.mark.beauty
def test_real_beauty_json_and_txt_agree_with_sources_md():
    js = load_json(BEAUTY)
    txt = load_sequences(BEAUTY / "Beauty.txt")
    for cat in (js, txt):
        s = cat.stats()
        assert (s["users"], s["items"], s["interactions"]) == (22363, 12101, 198502)
    # json ids are txt ids - 1 (SOURCES.md): same sequences after the offset
    js_ids = js.items.column("item_id").to_pylist()
    txt_ids = txt.items.column("item_id").to_pylist()
    for u in (0, 1, 500, 22362):
        a = [int(js_ids[i]) for i in js.sequences[u]]
        b = [int(txt_ids[i]) - 1 for i in txt.sequences[u]]
        assert a == b
    assert js.stats()["items_with_text"] == 12101
    assert "Title: OPI Nail Lacquer" in js.items.column("text")[0].as_py()


def test_sequences_format_skips_and_counts_malformed_lines(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("1 10 11 12\n2\n\n3 11 12 13 14\n1 9 9\n")
    cat = load_sequences(p)
    assert len(cat.sequences) == 2
    assert cat.report.skipped == {"line_without_items": 1, "duplicate_user_line": 1}
    assert cat.report.examples["line_without_items"].endswith("s.txt:2")


def test_json_format_bad_rows_and_structure(tmp_path):
    (tmp_path / "X.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": "oops", "2": [1, 2, 3, 4]}))
    (tmp_path / "X.item.json").write_text(json.dumps({"0": {"title": "a"}, "1": {"title": "b"},
                                                      "2": 5, "3": {"title": "d"}}))
    cat = load_json(tmp_path)
    assert len(cat.sequences) == 2
    assert cat.report.skipped["sequence_not_a_nonempty_list"] == 1
    assert cat.report.skipped["item_metadata_not_an_object"] == 1
    assert cat.report.skipped["items_without_metadata"] == 2  # items 2 and 4 are used without metadata
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Y.inter.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"Y.inter.json: expected an object"):
        load_json(bad)
    (bad / "Y.inter.json").write_text("{not json")
    with pytest.raises(DataError, match=r"Y.inter.json: not valid JSON"):
        load_json(bad)
    (bad / "Y.inter.json").write_text("")
    with pytest.raises(DataError, match=r"Y.inter.json: file is empty"):
        load_json(bad)


def test_json_format_repeated_ids_keep_the_first_record_and_are_counted(tmp_path):
    (tmp_path / "X.inter.json").write_text('{"0": [0, 1, 2], "1": [1, 2, 3], "0": [3, 2]}')
    (tmp_path / "X.item.json").write_text('{"0": {"title": "first"}, "1": {"title": "b"}, "2": {"title": "c"}, '
                                          '"3": {"title": "d"}, "0": {"title": "second"}}')
    cat = load_json(tmp_path)
    assert cat.report.skipped["duplicate_user"] == 1 and cat.report.skipped["duplicate_item_id"] == 1
    assert len(cat.sequences) == 2 and len(cat.sequences[0]) == 3  # user 0's first sequence
    titles = dict(zip(cat.items.column("item_id").to_pylist(), cat.items.column("title").to_pylist()))
    assert titles["0"] == "first"
    assert "item 0 appears again" in cat.report.examples["duplicate_item_id"]


def test_amazon_raw_kcore_python_literal_meta_and_bad_lines(tmp_path):
    rows = []
    for u in range(6):
        for i in range(5):
            rows.append({"reviewerID": f"U{u}", "asin": f"A{(u + i) % 6}", "unixReviewTime": 100 * i + u})
    rows.append({"reviewerID": "U9", "asin": "A0", "unixReviewTime": 1})  # removed by 5-core
    rows.append({"reviewerID": "U1", "asin": "A1"})  # missing time
    with gzip.open(tmp_path / "reviews_X_5.json.gz", "wt") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
        fh.write("{broken\n")
    with open(tmp_path / "meta_X.json", "w") as fh:
        for a in range(6):
            fh.write(repr({"asin": f"A{a}", "title": f"T{a}", "categories": [["Beauty", "Nails"]]}) + "\n")
    cat = load_amazon(tmp_path, k=5)
    s = cat.stats()
    assert (s["users"], s["items"], s["interactions"]) == (6, 6, 30)
    assert cat.report.skipped["missing_field_unixReviewTime"] == 1
    assert cat.report.skipped["unparseable_line"] == 1
    assert cat.report.skipped["removed_by_5core"] == 1
    assert "Nails" in cat.items.column("text")[0].as_py()
    # chronological: user U0 reviewed A0..A4 at times 0,100,..,400
    ids = cat.items.column("item_id").to_pylist()
    assert [ids[i] for i in cat.sequences[0]] == ["A0", "A1", "A2", "A3", "A4"]


def test_kcore_is_iterative():
    # (u1, a) (u1, b) (u2, a) (u2, b) (u3, a): u3 has one row, then nothing else falls below 2
    users, items = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 0])
    assert kcore(users, items, 2).tolist() == [0, 1, 2, 3]
    # a cascade: u3's single row goes, leaving item c with one row, then u2 with one, then item b with one ...
    users, items = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 2])
    assert kcore(users, items, 2).tolist() == []


def _write_parquet_dataset(folder, inter: dict, items: dict | None):
    folder.mkdir(exist_ok=True)
    pq.write_table(pa.table(inter), folder / "interactions.parquet")
    if items is not None:
        pq.write_table(pa.table(items), folder / "items.parquet")


def test_parquet_format_orders_by_time_and_keeps_images(tmp_path):
    d = tmp_path / "ds"
    _write_parquet_dataset(d, {"user_id": ["u", "u", "u", "v", "v", "v"], "item_id": ["b", "a", "c", "a", "b", None],
                               "timestamp": [3, 1, 2, 1, 2, 3]},
                           {"item_id": ["a", "b", "c"], "title": ["A", "B", "C"],
                            "image": [b"\x89PNG", None, None]})
    cat = load_parquet(d)
    ids = cat.items.column("item_id").to_pylist()
    assert [ids[i] for i in cat.sequences[0]] == ["a", "c", "b"]
    assert cat.report.skipped["null_user_or_item"] == 1
    assert cat.stats()["items_with_image"] == 1


def test_parquet_format_structural_errors_name_file_and_field(tmp_path):
    d = tmp_path / "missing_col"
    _write_parquet_dataset(d, {"user_id": ["u"], "item_id": ["a"]}, None)
    with pytest.raises(DataError, match=r"interactions.parquet: missing required column 'timestamp'"):
        load_parquet(d)
    d = tmp_path / "bad_type"
    _write_parquet_dataset(d, {"user_id": ["u"], "item_id": ["a"], "timestamp": ["yesterday"]}, None)
    with pytest.raises(DataError, match=r"column 'timestamp' has type string"):
        load_parquet(d)
    d = tmp_path / "dup"
    _write_parquet_dataset(d, {"user_id": ["u"], "item_id": ["a"], "timestamp": [1]},
                           {"item_id": ["a", "a"], "title": ["x", "y"]})
    with pytest.raises(DataError, match=r"items.parquet: duplicate item_id 'a'"):
        load_parquet(d)


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="unknown dataset format 'csv'"):
        load_catalog("csv", str(tmp_path))
    with pytest.raises(DataError, match="dataset.path is required"):
        load_catalog("json", None)
    with pytest.raises(DataError, match="no known dataset layout"):
        detect_format(tmp_path)
    with pytest.raises(DataError, match="file not found"):
        load_sequences(tmp_path / "absent.txt")
