"""Reordering Arrow tables whose binary or string columns hold more than 2 GiB.

``Table.sort_by`` and ``take`` join a column's chunks into one array first, and a ``binary`` or ``string`` array has
32-bit offsets: a million catalog images (2.8 KB each in the synthetic catalog) fail with "offset overflow while
concatenating arrays".
These helpers take such columns through their 64-bit (``large_``) types and hand them back as chunks of the
original type, each under the limit, so the schema every reader expects does not change; and they skip the
reordering altogether when the rows are in order already (every loader builds its item table that way).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

OFFSET_LIMIT = 2**31 - 1  # bytes one binary/string array can address
_LARGE = {pa.binary(): pa.large_binary(), pa.string(): pa.large_string()}


def _take_column(col: pa.ChunkedArray, indices: pa.Array, limit: int) -> pa.ChunkedArray:
    large = _LARGE.get(col.type)
    if large is None:
        return col.take(indices)
    whole = col.cast(large).take(indices).combine_chunks()  # 64-bit offsets: no overflow
    sizes = pc.fill_null(pc.binary_length(whole), 0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    pieces, start = [], 0
    while start < len(whole):
        # the longest run of rows from ``start`` whose bytes fit one array of the original type
        end = max(int(np.searchsorted(offsets, offsets[start] + limit, side="right")) - 1, start + 1)
        pieces.append(whole.slice(start, end - start).cast(col.type))
        start = end
    return pa.chunked_array(pieces, col.type)


def take_rows(table: pa.Table, indices: np.ndarray, limit: int = OFFSET_LIMIT) -> pa.Table:
    """``table.take(indices)`` that also works when a binary/string column holds more than ``limit`` bytes."""
    idx = pa.array(np.asarray(indices, dtype=np.int64))
    return pa.table({name: _take_column(table.column(name), idx, limit) for name in table.column_names},
                    schema=table.schema)


def sorted_by(table: pa.Table, key: str, limit: int = OFFSET_LIMIT) -> pa.Table:
    """``table.sort_by(key)`` (ascending, stable), without copying a table that is in order already."""
    values = table.column(key).to_numpy()
    if len(values) < 2 or bool(np.all(values[1:] >= values[:-1])):
        return table
    return take_rows(table, np.argsort(values, kind="stable"), limit)
