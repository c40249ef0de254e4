"""Reordering tables whose binary/string columns exceed one array's 32-bit offsets (cemg_ray/arrow_rows.py).

The limit is a parameter, so a few hundred bytes stand for 2 GiB here; the 1M-item run that found the overflow is in
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cemg_ray.arrow_rows import sorted_by, take_rows


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    images = [None if i % 7 == 3 else bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8))
              for i in range(n)]
    return pa.table({
        "item_idx": pa.array(order, pa.int32()),
        "item_id": pa.array([f"item{i:04d}" for i in order], pa.string()),
        "image": pa.chunked_array([pa.array(images[: n // 2], pa.binary()), pa.array(images[n // 2:], pa.binary())]),
        "cluster": pa.array(order % 5, pa.int32()),
    })


@pytest.mark.parametrize("limit", [64, 200, 2**31 - 1])
def test_sorted_by_equals_pyarrows_sort_and_keeps_every_chunk_under_the_limit(limit: int) -> None:
    table = _table(300)
    out = sorted_by(table, "item_idx", limit=limit)
    assert out.schema == table.schema  # binary stays binary: readers see the type they always saw
    assert out.equals(table.sort_by("item_idx"))
    for name in ("item_id", "image"):
        for chunk in out.column(name).chunks:
            assert (pc.sum(pc.binary_length(chunk)).as_py() or 0) <= limit
    if limit == 64:
        assert out.column("image").num_chunks > 10  # split where the bytes reach the limit


def test_a_table_in_order_is_returned_as_it_is() -> None:
    table = _table(50).sort_by("item_idx")
    assert sorted_by(table, "item_idx", limit=8) is table


def test_take_rows_with_repeats_and_an_empty_selection() -> None:
    table = _table(40)
    idx = np.array([5, 5, 0, 39, 12])
    assert take_rows(table, idx, limit=16).equals(table.take(pa.array(idx)))
    empty = take_rows(table, np.array([], dtype=np.int64), limit=16)
    assert empty.num_rows == 0 and empty.schema == table.schema


def test_a_value_longer_than_the_limit_gets_a_chunk_of_its_own() -> None:
    table = pa.table({"k": pa.array([1, 0]), "b": pa.array([b"x" * 50, b"y" * 3], pa.binary())})
    out = sorted_by(table, "k", limit=10)
    assert out.column("b").to_pylist() == [b"y" * 3, b"x" * 50] and out.column("b").num_chunks == 2
