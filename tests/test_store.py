import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pyarrow as pa
import pytest

from cemg_ray.store import Store, StoreError


def _roundtrip(store: Store):
    store.write_json("a/b.json", {"x": 1})
    assert store.read_json("a/b.json") == {"x": 1}
    t = pa.table({"i": [1, 2, 3]})
    store.write_parquet("t/t.parquet", t)
    assert store.read_parquet("t/t.parquet").equals(t)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.write_tensors("m/w.safetensors", {"w": arr})
    np.testing.assert_array_equal(store.read_tensors("m/w.safetensors")["w"], arr)
    assert store.exists("a/b.json") and not store.exists("a/none.json")
    assert store.list("a") == ["a/b.json"]
    with pytest.raises(StoreError, match="does not exist"):
        store.read_bytes("nope/x.bin")
    store.delete("a")
    assert not store.exists("a/b.json")


def test_local_roundtrip(tmp_path):
    _roundtrip(Store(str(tmp_path / "run")))


def test_s3_roundtrip_on_local_server(s3_bucket):
    store = Store(f"{s3_bucket}/runs/x")
    assert not store.is_local and store.uri("k").startswith("s3://")
    _roundtrip(store)


def test_upload_and_download_dir_s3(s3_bucket, tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "w.bin").write_bytes(b"\x00\x01")
    store = Store(f"{s3_bucket}/r")
    store.upload_dir(src, "generate/model")
    with store.local_copy("generate/model") as local:
        assert (local / "sub" / "w.bin").read_bytes() == b"\x00\x01"


def _slow_writer(root: str, payload_mb: int) -> None:
    store = Store(root)
    data = b"x" * (payload_mb << 20)
    while True:  # keep rewriting until killed
        store.write_bytes("big.bin", data)


def test_killed_writer_leaves_old_or_whole_file(tmp_path):
    root = str(tmp_path / "run")
    Store(root).write_bytes("big.bin", b"old")
    proc = mp.get_context("spawn").Process(target=_slow_writer, args=(root, 64))
    proc.start()
    time.sleep(2.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    data = Store(root).read_bytes("big.bin")
    assert data == b"old" or data == b"x" * (64 << 20)
    # no temporary file is visible as an artifact name
    assert Store(root).list() == ["big.bin"] or all(p.startswith(".tmp-") or p == "big.bin"
                                                    for p in Store(root).list())


def test_unsupported_scheme():
    with pytest.raises(StoreError, match="unsupported run_dir scheme"):
        Store("gs://bucket/x")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_reading_some_columns_leaves_the_others_where_they_are(where, tmp_path, request) -> None:
    """The item table's ids without its pictures: a 1M-item run's driver read the whole 2.5 GB file to get them."""
    import tracemalloc

    root = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket") + "/run"
    store = Store(root)
    rng = np.random.default_rng(0)
    pictures = [rng.bytes(20_000) for _ in range(1_000)]  # 20 MB in their own column
    store.write_parquet("items.parquet", pa.table({"item_idx": np.arange(1_000, dtype=np.int32),
                                                   "image": pa.array(pictures, pa.binary())}))
    tracemalloc.start()
    before = pa.total_allocated_bytes()
    ids = store.read_parquet("items.parquet", columns=["item_idx"])
    arrow_bytes = pa.total_allocated_bytes() - before
    python_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ids.column_names == ["item_idx"] and ids.column("item_idx").to_pylist() == list(range(1_000))
    assert arrow_bytes < 2_000_000, arrow_bytes
    if where == "local":  # on S3 the local server (moto, in this process) reads the object whole to answer a range
        assert python_peak < 2_000_000, python_peak
    assert store.read_parquet("items.parquet").column("image").to_pylist() == pictures  # the whole table still
    with pytest.raises(StoreError, match="does not exist"):
        store.read_parquet("nothing.parquet", columns=["item_idx"])


def test_an_asked_column_the_file_lacks_is_named_by_the_typed_reader(tmp_path) -> None:
    from cemg_ray import artifacts

    store = Store(str(tmp_path))
    store.write_parquet(artifacts.ITEMS, pa.table({"item_idx": [0, 1]}))
    assert store.read_parquet(artifacts.ITEMS, columns=["item_idx", "item_id"]).column_names == ["item_idx"]
    with pytest.raises(artifacts.ArtifactError, match="no column.*item_id.*re-run the 'data' stage"):
        artifacts.read_items(store, ["item_idx", "item_id"])
