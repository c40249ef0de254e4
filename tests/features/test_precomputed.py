"""Precomputed vectors (.npy, .npz, Parquet) in place of an encoder."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cemg_ray.data.catalog import DataError
from cemg_ray.features.config import FeaturesConfig
from cemg_ray.features.extract import embeddings, encode_items
from cemg_ray.features.precomputed import load_precomputed


def test_parquet_npz_and_npy(tmp_path, catalog: pa.Table) -> None:
    ids = catalog.column("item_id").to_pylist()
    pq.write_table(pa.table({"item_id": ids[:30][::-1], "embedding": [[float(i), 1.0] for i in range(30)][::-1]}),
                   tmp_path / "vec.parquet")
    table = load_precomputed(str(tmp_path / "vec.parquet"), catalog)
    emb, missing = embeddings(table)
    assert missing.sum() == 10 and emb[29].tolist() == [29.0, 1.0] and (emb[30:] == 0).all()
    assert set(table.column("reason").to_pylist()[30:]) == {"not_in_precomputed"}

    np.savez(tmp_path / "vec.npz", item_id=np.array(ids[5:8]), embedding=np.eye(3, dtype=np.float32))
    emb, missing = embeddings(load_precomputed(str(tmp_path / "vec.npz"), catalog))
    assert np.flatnonzero(~missing).tolist() == [5, 6, 7] and emb[6].tolist() == [0.0, 1.0, 0.0]

    arr = np.ones((40, 3), np.float32)
    arr[4] = np.nan
    np.save(tmp_path / "vec.npy", arr)
    emb, missing = embeddings(load_precomputed(str(tmp_path / "vec.npy"), catalog))
    assert emb.shape == (40, 3) and np.flatnonzero(missing).tolist() == [4] and (emb[4] == 0).all()


def test_files_that_do_not_fit_name_the_file_and_field(tmp_path, catalog: pa.Table) -> None:
    np.save(tmp_path / "bad.npy", np.ones((7, 3), np.float32))
    with pytest.raises(DataError, match="bad.npy"):
        load_precomputed(str(tmp_path / "bad.npy"), catalog)
    pq.write_table(pa.table({"item_id": ["a"], "vector": [[1.0]]}), tmp_path / "nocol.parquet")
    with pytest.raises(DataError, match="nocol.parquet: missing column 'embedding'"):
        load_precomputed(str(tmp_path / "nocol.parquet"), catalog)
    ids = catalog.column("item_id").to_pylist()[:2]
    pq.write_table(pa.table({"item_id": ids, "embedding": [[1.0], [1.0, 2.0]]}), tmp_path / "ragged.parquet")
    with pytest.raises(DataError, match="ragged.parquet: field 'embedding'"):
        load_precomputed(str(tmp_path / "ragged.parquet"), catalog)
    with pytest.raises(DataError, match="nowhere.parquet"):
        load_precomputed(str(tmp_path / "nowhere.parquet"), catalog)


def test_new_items_look_up_precomputed_vectors_by_id(tmp_path, catalog: pa.Table) -> None:
    ids = catalog.column("item_id").to_pylist()
    pq.write_table(pa.table({"item_id": ids[:3], "embedding": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}),
                   tmp_path / "vec.parquet")
    cfg = FeaturesConfig(use_image=False, text={"precomputed": str(tmp_path / "vec.parquet")})
    out = encode_items(pa.table({"item_id": [ids[2], "new-one"], "text": ["x", "y"]}), cfg)
    assert out["text"][0].tolist() == [[1.0, 1.0], [0.0, 0.0]] and out["text"][1].tolist() == [False, True]
