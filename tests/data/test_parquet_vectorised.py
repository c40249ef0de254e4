"""The vectorised ``parquet`` loader gives exactly what the per-interaction loader it replaced gave: the same item
table, sequence table, load report (counts, first examples, order of the reasons) and stats, or the same error, on
the loader tests' fixtures, on bad inputs, and on a 200,000-interaction catalog with ties in time.

The per-interaction loader is kept in ``cemg_ray.bench.data`` as the benchmark's baseline; it is the oracle here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cemg_ray.bench.data import reference_load_parquet, reference_sequences_table, write_synthetic
from cemg_ray.data.catalog import DataError
from cemg_ray.data.loaders import _natural_key, _natural_order, load_catalog, load_parquet


def _write(folder, inter: pa.Table | dict, items: pa.Table | dict | None = None, **kw) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(inter if isinstance(inter, pa.Table) else pa.table(inter), folder / "interactions.parquet", **kw)
    if items is not None:
        pq.write_table(items if isinstance(items, pa.Table) else pa.table(items), folder / "items.parquet")


def assert_same(folder, images_dir: str | None = None) -> None:
    """Both loaders give identical outputs, or both fail with the same message."""
    try:
        old = reference_load_parquet(folder, images_dir)
    except DataError as exc:
        with pytest.raises(DataError) as new_exc:
            load_parquet(folder, images_dir)
        # the reader's own words after "(" differ (pq.read_table vs a dataset scan); the file and the fault do not
        assert re.sub(r" \(.*", "", str(new_exc.value)) == re.sub(r" \(.*", "", str(exc))
        return
    new = load_parquet(folder, images_dir)
    assert new.items.equals(old.items), (new.items.to_pydict(), old.items.to_pydict())
    assert new.sequences_table().equals(reference_sequences_table(old))
    assert new.report.to_dict() == old.report.to_dict()
    assert list(new.report.skipped) == list(old.report.skipped)  # the reasons in the order they were met
    assert new.stats() == old.stats()
    assert new.user_ids == old.user_ids
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(new.sequences, old.sequences))


# -- the loader tests' fixtures (tests/data/test_loaders.py, test_loaders_bad_input.py) --------------------------------
def _loaders_fixture(d):
    _write(d, {"user_id": ["u", "u", "u", "v", "v", "v"], "item_id": ["b", "a", "c", "a", "b", None],
               "timestamp": [3, 1, 2, 1, 2, 3]},
           {"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "image": [b"\x89PNG", None, None]})


_BAD_INTER = {"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"], "timestamp": [1, 2, 3]}
FIXTURES = {
    "orders_by_time_and_keeps_images": _loaders_fixture,
    "missing_column": lambda d: _write(d, {"user_id": ["u"], "item_id": ["a"]}),
    "timestamp_of_type_string": lambda d: _write(d, {"user_id": ["u"], "item_id": ["a"], "timestamp": ["yesterday"]}),
    "duplicate_item_id": lambda d: _write(d, {"user_id": ["u"], "item_id": ["a"], "timestamp": [1]},
                                          {"item_id": ["a", "a"], "title": ["x", "y"]}),
    "list_typed_user_id": lambda d: _write(d, {"user_id": [["u1"], ["u2"]], "item_id": ["a", "b"],
                                               "timestamp": [1, 2]}, {"item_id": ["a", "b"]}),
    "duplicates_in_item_table": lambda d: _write(d, _BAD_INTER, {"item_id": ["a", "b", "a", "b", "c"],
                                                                "title": ["x", "y", "z", "w", "v"]}),
    "null_item_id_in_item_table": lambda d: _write(d, _BAD_INTER, {"item_id": ["a", None, "b"],
                                                                  "title": ["x", "y", "z"]}),
    "image_of_the_wrong_type": lambda d: _write(d, _BAD_INTER, {"item_id": ["a", "b"], "image": [3, 4]}),
    "item_table_with_only_ids": lambda d: _write(d, _BAD_INTER, {"item_id": ["b", "a"]}),
    "item_table_of_null_ids_only": lambda d: _write(d, _BAD_INTER, pa.table({"item_id": pa.array([None, None],
                                                                                               pa.string())})),
    "no_rows": lambda d: _write(d, pa.table({"user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string()),
                                             "timestamp": pa.array([], pa.int64())})),
    "every_row_malformed": lambda d: _write(d, {"user_id": [None, "u"], "item_id": ["a", None], "timestamp": [1, 2]}),
    "float_time_with_ties": lambda d: _write(d, {"user_id": ["u", "u", "u", "v"], "item_id": ["c", "a", "b", "a"],
                                                 "timestamp": [2.5, 1.0, 2.5, -0.0]}),
    "null_times_and_ids_interleaved": lambda d: _write(
        d, pa.table({"user_id": pa.array(["u", "v", None, "u", "v", "w"]),
                     "item_id": pa.array(["a", "b", "c", None, "a", "b"]),
                     "timestamp": pa.array([None, 1, 2, 3, None, 5], pa.int64())})),
}


def _corrupt_item_table(d):
    _write(d, _BAD_INTER, {"item_id": ["a", "b"]})
    (d / "items.parquet").write_bytes(b"PAR1 this is not parquet PAR1")


def _corrupt_interactions(d):
    _write(d, _BAD_INTER)
    (d / "interactions.parquet").write_bytes(b"PAR1 this is not parquet either PAR1")


FIXTURES["corrupt_item_table"] = _corrupt_item_table
FIXTURES["corrupt_interactions"] = _corrupt_interactions


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_same_outputs_as_the_per_interaction_loader_on_the_fixtures(tmp_path, name) -> None:
    FIXTURES[name](tmp_path / "ds")
    assert_same(tmp_path / "ds")


def test_same_outputs_with_metadata_types_images_and_items_missing_from_the_item_table(tmp_path) -> None:
    """Items without metadata come after the item table's, in the order users (by their first interaction) and
    their time-ordered items first meet them; every metadata field is type-checked per item as before."""
    inter = {"user_id": ["z9", "a1", "z9", "10", "a1", "9", "10", "-3"],
             "item_id": ["m2", "x7", "x3", "b", "x3", "x9", "x1", "b"],
             "timestamp": [5, 1, 4, 2, 9, 3, 1, 7]}
    items = pa.table({"item_id": ["b", "m2", "007", "7", "-1"],
                      "title": ["B", None, "Seven", "seven", "minus one"],
                      "description": ["d", "dd", None, "x", "y"],
                      "brand": ["br", None, None, None, None],
                      "categories": [["c1", "c2"], None, ["c3"], None, []],
                      "image": ["img/b.png", "https://x/m2.jpg", None, "/abs/7.png", ""]})
    _write(tmp_path / "a", inter, items)
    assert_same(tmp_path / "a")
    assert_same(tmp_path / "a", images_dir=str(tmp_path / "posters"))
    bad = pa.table({"item_id": ["b", "m2"], "title": [1, 2], "description": [3.5, None], "image": [b"\x89PNG", None]})
    _write(tmp_path / "b", inter, bad)
    assert_same(tmp_path / "b")


def test_same_outputs_for_integer_dictionary_and_timestamp_columns(tmp_path) -> None:
    t = [datetime(2024, 1, d % 5 + 1, tzinfo=UTC) for d in range(12)]
    _write(tmp_path / "a", pa.table({"user_id": pa.array([3, 1, 3, 20, 1, 3, 20, 2, 1, 3, 20, 2], pa.int32()),
                                     "item_id": pa.array([5, 50, 6, 5, 7, -2, 6, 5, 5, 7, 50, 6], pa.int64()),
                                     "timestamp": pa.array(t, pa.timestamp("us", tz="UTC"))}),
           pa.table({"item_id": pa.array([50, 5, 6, -2], pa.int16()), "title": ["a", "b", "c", "d"]}))
    assert_same(tmp_path / "a")
    ids = pa.array(["u2", "u1", "u2", "u10", "u1"]).dictionary_encode()
    _write(tmp_path / "b", pa.table({"user_id": ids, "item_id": pa.array(["a", "b", "c", "a", "a"], pa.large_string()),
                                     "timestamp": pa.array([1, 1, 1, 0, 1], pa.uint32())}), row_group_size=2)
    assert_same(tmp_path / "b")


def _mixed_ids(rng: np.random.Generator, n: int, pool: list[str]) -> pa.Array:
    return pa.array(np.array(pool, dtype=object)[rng.integers(0, len(pool), n)].tolist(), pa.string())


def test_same_outputs_on_200k_interactions_with_ties_in_time(tmp_path) -> None:
    """String ids, 30 distinct days (nearly every user has ties), 0.1 % malformed rows, 2 % of the items missing
    from the item table, many row groups; then ids that test the natural order (integers of every length and sign,
    leading zeros, non-numeric ids, integers of equal value)."""
    folder = tmp_path / "synthetic"
    info = write_synthetic(folder, 200_000, 20_000, 8_000, seed=3, days=30, row_group_size=30_000)
    assert info["malformed_rows"] > 100
    assert_same(folder)

    rng = np.random.default_rng(4)
    n = 200_000
    users = [str(u) for u in range(-200, 3000)] + [f"u{u}" for u in range(2000)] + ["007", "07", "0", "-0", "00", "٣"] \
        + ["123456789012345678901234567890", "99999999999999999999", "-99999999999999999999", "Zed", "é", "a b", ""]
    items = [str(i) for i in range(1, 4000)] + [f"sku-{i:05d}" for i in range(1000)] + ["10" * 12, "-5", "٣٠٠٠٠"]
    inter = pa.table({"user_id": _mixed_ids(rng, n, users), "item_id": _mixed_ids(rng, n, items),
                      "timestamp": pa.array(rng.integers(0, 20, n))})
    _write(tmp_path / "natural", inter, row_group_size=50_000)  # no item table: the items' own natural order
    assert_same(tmp_path / "natural")
    listed = rng.permutation(items)[:4500].tolist() + ["0012", "012"]  # equal values in the item table: row order
    _write(tmp_path / "natural_meta", inter, {"item_id": listed, "title": [f"T{i}" for i in listed]},
           row_group_size=50_000)
    assert_same(tmp_path / "natural_meta")


def test_natural_order_matches_the_natural_key() -> None:
    ids = ["10", "9", "-3", "-12", "0", "-0", "abc", "Abc", "", "-", "1e5", "+4", " 4", "٣", "٢٠", "12a",
           "123456789012345678901234567890", "-123456789012345678901234567891", "00000000000000000000000001", "é"]
    order = _natural_order(pa.array(ids), np.arange(len(ids)))
    assert [ids[k] for k in order] == sorted(ids, key=_natural_key)


def test_nanosecond_times_are_ordered_exactly(tmp_path) -> None:
    """The per-interaction loader compared times as floats, so two events less than 256 ns apart around 2023 were
    a tie (file order); the vectorised loader compares the integers: this is the one place the two differ."""
    t0 = 1_700_000_000_000_000_000
    _write(tmp_path / "ds", pa.table({"user_id": ["u", "u"], "item_id": ["late", "early"],
                                      "timestamp": pa.array([t0 + 1, t0], pa.timestamp("ns"))}))
    cat = load_parquet(tmp_path / "ds")
    ids = cat.items.column("item_id").to_pylist()
    assert [ids[i] for i in cat.sequences[0]] == ["early", "late"]
    old = reference_load_parquet(tmp_path / "ds")
    assert [ids[i] for i in old.sequences[0]] == ["late", "early"]


def test_the_catalog_holds_csr_arrays_and_no_python_object_per_user(tmp_path) -> None:
    write_synthetic(tmp_path / "ds", 20_000, 2_000, 500, seed=1)
    cat = load_catalog("parquet", str(tmp_path / "ds"))
    flat, offsets = cat.csr
    assert flat.dtype == np.int32 and offsets.dtype == np.int64 and offsets[-1] == len(flat)
    assert cat._user_ids is None and cat._sequences is None  # noqa: SLF001 - nothing built per user yet
    table = cat.sequences_table()
    assert table.column("items").combine_chunks().values.to_numpy().tolist() == flat.tolist()
    assert cat._user_ids is None and cat._sequences is None  # noqa: SLF001 - and the table built none either
    assert cat.stats()["interactions"] == len(flat) and len(cat.sequences) == cat.num_users
