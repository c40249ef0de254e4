"""Precomputed item vectors in place of an encoder (many catalogs already have embeddings).

Accepted: Parquet with ``item_id`` and ``embedding`` (list of floats) columns, or ``.npy``
[N, D] in the catalog's item order (``item_idx``). Items without a vector are flagged missing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray.data.catalog import DataError


def load_precomputed(path: str, items: pa.Table) -> pa.Table:
    n = items.num_rows
    if path.endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or len(arr) != n:
            raise DataError(f"{path}: expected an array [{n}, D] in item_idx order, got shape {arr.shape}")
        emb = arr.astype(np.float32)
        missing = ~np.isfinite(emb).all(1)
    else:
        table = pq.read_table(path)
        for col in ("item_id", "embedding"):
            if col not in table.column_names:
                raise DataError(f"{path}: missing column {col!r} (expected item_id, embedding)")
        vecs = table.column("embedding").to_pylist()
        dims = {len(v) for v in vecs if v is not None}
        if len(dims) != 1:
            raise DataError(f"{path}: field 'embedding' has vectors of different lengths {sorted(dims)[:5]}")
        dim = dims.pop()
        pos = {item_id: i for i, item_id in enumerate(items.column("item_id").to_pylist())}
        emb = np.zeros((n, dim), dtype=np.float32)
        missing = np.ones(n, dtype=bool)
        for item_id, vec in zip(table.column("item_id").to_pylist(), vecs):
            i = pos.get(str(item_id))
            if i is not None and vec is not None:
                emb[i] = vec
                missing[i] = False
    emb[missing] = 0.0
    return pa.table({
        "item_idx": items.column("item_idx"),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
        "missing": pa.array(missing),
        "reason": pa.array(["not_in_precomputed" if m else "" for m in missing], pa.string()),
    })
