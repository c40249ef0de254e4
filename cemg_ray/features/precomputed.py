"""Precomputed item vectors in place of an encoder (many catalogs already have embeddings).

Accepted: Parquet with ``item_id`` and ``embedding`` (list of floats) columns; ``.npz`` with
arrays ``item_id`` and ``embedding``; or ``.npy`` [N, D] in the catalog's ``item_idx`` order.
Items without a vector (absent, null, or non-finite) are flagged missing, never an error; a file
that does not fit (wrong shape, missing column, ragged vectors) is an error naming file and field.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray.data.catalog import DataError
from cemg_ray.features.extract import features_table

NOT_FOUND = "not_in_precomputed"


def _by_id(path: str, ids: list, vecs: list, items: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    dims = {len(v) for v in vecs if v is not None}
    if len(dims) > 1:
        raise DataError(f"{path}: field 'embedding' has vectors of different lengths {sorted(dims)[:5]}")
    if not dims:
        raise DataError(f"{path}: field 'embedding' holds no vectors")
    dim = dims.pop()
    n = items.num_rows
    pos = {item_id: i for i, item_id in enumerate(items.column("item_id").cast(pa.string()).to_pylist())}
    emb = np.zeros((n, dim), dtype=np.float32)
    missing = np.ones(n, dtype=bool)
    for item_id, vec in zip(ids, vecs):
        i = pos.get(str(item_id))
        if i is not None and vec is not None:
            emb[i] = vec
            missing[i] = False
    return emb, missing


def load_precomputed(path: str, items: pa.Table, shown: str | None = None) -> pa.Table:
    """A features table (the ``features/<m>.parquet`` layout) for ``items`` from a precomputed file.

    ``shown`` is the name errors give the file (default ``path``): the stage reads a relative path made absolute
    in a Ray task, and its errors still name the file as the job wrote it."""
    n = items.num_rows
    name = shown or path
    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or len(arr) != n:
                raise DataError(f"{name}: expected an array [{n}, D] in item_idx order, got shape {arr.shape}")
            emb, missing = arr.astype(np.float32), np.zeros(n, dtype=bool)
        elif path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                for key in ("item_id", "embedding"):
                    if key not in z:
                        raise DataError(f"{name}: missing array {key!r} (expected item_id, embedding)")
                if z["embedding"].ndim != 2 or len(z["embedding"]) != len(z["item_id"]):
                    raise DataError(f"{name}: 'embedding' must be [len(item_id), D], got {z['embedding'].shape}")
                emb, missing = _by_id(name, z["item_id"].tolist(), list(z["embedding"]), items)
        else:
            table = pq.read_table(path)
            for col in ("item_id", "embedding"):
                if col not in table.column_names:
                    raise DataError(f"{name}: missing column {col!r} (expected item_id, embedding)")
            emb, missing = _by_id(name, table.column("item_id").to_pylist(), table.column("embedding").to_pylist(),
                                  items)
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{name}: cannot read precomputed features ({exc})") from exc
    missing |= ~np.isfinite(emb).all(1)
    reasons = [NOT_FOUND if m else "" for m in missing]
    return features_table(items.column("item_idx").to_numpy(), emb, missing, reasons)
