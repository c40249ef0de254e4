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


def _job(run_dir: str, *overrides: str):  # noqa: ANN202 - a JobConfig
    from cemg_ray.config import load_config

    return load_config(None, [f"run_dir={run_dir}", "dataset.synthetic.num_users=120", "dataset.synthetic.num_items=60",
                              "dataset.synthetic.num_clusters=4", *overrides])


def test_the_stage_reads_precomputed_vectors_in_a_ray_task_not_the_driver(tmp_path, monkeypatch) -> None:
    """Real local Ray: the vectors are read, aligned and written by a task (another process), relative paths are the
    driver's working directory's, and the output is what reading them here gives."""
    import os

    from cemg_ray import artifacts
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    monkeypatch.chdir(tmp_path)
    run_pipeline(_job(str(tmp_path / "run")), ["data"])
    store = Store(str(tmp_path / "run"))
    items = artifacts.read_items(store)
    n = items.num_rows
    (tmp_path / "vec").mkdir()
    text = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)
    text[3] = np.nan
    np.save(tmp_path / "vec" / "text.npy", text)
    ids = items.column("item_id").to_pylist()
    pq.write_table(pa.table({"item_id": ids[:-5], "embedding": [[float(i), 1.0, 2.0] for i in range(n - 5)]}),
                   tmp_path / "vec" / "image.parquet")
    cfg = _job(str(tmp_path / "run"), "features.text.precomputed=vec/text.npy",
               "features.image.precomputed=vec/image.parquet")
    manifest = run_pipeline(cfg, ["features"])
    stage = manifest["stages"]["features"]["report"]
    assert stage["worker"]["pid"] != os.getpid() and stage["worker"]["node_id"]
    report = store.read_json(artifacts.FEATURES_REPORT)
    assert set(report) == {"text", "image"}  # features/report.json stays per modality; the worker is the manifest's
    assert report["text"] == {"enabled": True, "precomputed": "vec/text.npy", "items": n, "missing": 1, "dim": 6}
    assert report["image"] == {"enabled": True, "precomputed": "vec/image.parquet", "items": n, "missing": 5, "dim": 3}
    written = {m: store.read_parquet(artifacts.features_file(m)) for m in ("text", "image")}
    for modality, path in (("text", "vec/text.npy"), ("image", "vec/image.parquet")):
        assert written[modality].equals(load_precomputed(path, items)), modality  # what the driver wrote before
    # features.use_ray: false keeps the in-process path (no task), with the same outputs
    in_process = run_pipeline(cfg.model_copy(update={"features": cfg.features.model_copy(update={"use_ray": False})}),
                              ["features"])["stages"]["features"]
    assert in_process["status"] == "ok" and "worker" not in in_process["report"]
    assert store.read_json(artifacts.FEATURES_REPORT) == report
    assert all(store.read_parquet(artifacts.features_file(m)).equals(written[m]) for m in written)


def test_a_precomputed_file_that_does_not_fit_fails_with_its_own_message_through_the_task(tmp_path, monkeypatch,
                                                                                          capsys) -> None:
    """The task's error reaches the pipeline and the CLI as the driver raised it: type, file as written, field."""
    from cemg_ray.cli import main
    from cemg_ray.pipeline import run_pipeline

    monkeypatch.chdir(tmp_path)
    run_pipeline(_job(str(tmp_path / "run")), ["data"])
    np.save(tmp_path / "bad.npy", np.ones((7, 3), np.float32))
    message = "bad.npy: expected an array [60, D] in item_idx order, got shape (7, 3)"
    with pytest.raises(DataError) as caught:
        run_pipeline(_job(str(tmp_path / "run"), "features.text.precomputed=bad.npy"), ["features"])
    assert str(caught.value) == message
    rc = main(["run", "--stages", "features", "--set", f"run_dir={tmp_path / 'run'}",
               "--set", "dataset.synthetic.num_users=120", "--set", "dataset.synthetic.num_items=60",
               "--set", "dataset.synthetic.num_clusters=4", "--set", "features.image.precomputed=bad.npy"])
    assert rc == 2 and f"error: {message}" in capsys.readouterr().err.splitlines()

