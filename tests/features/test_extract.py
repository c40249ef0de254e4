"""Feature extraction: Ray Data and in-process agree, bad images become missing, real photos cluster."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cemg_ray.data.catalog import DataError
from cemg_ray.data.synthetic import make_catalog
from cemg_ray.features.config import FeaturesConfig
from cemg_ray.features.extract import extract
from cemg_ray.features.precomputed import load_precomputed
from cemg_ray.features.stage import embeddings
from tests.conftest import SHARED_DATA

TINY = FeaturesConfig(text={"model": "tiny-random-bert"}, image={"model": "tiny-random-vit", "image_size": 32},
                      batch_size=16, num_actors=2, cpus_per_actor=0.5)


@pytest.fixture(scope="module")
def items() -> pa.Table:
    from cemg_ray.config import SyntheticConfig

    table = make_catalog(SyntheticConfig(num_users=20, num_items=40, num_clusters=4)).items
    images = table.column("image").to_pylist()
    texts = table.column("text").to_pylist()
    images[3] = b"not an image at all"  # corrupt
    images[5] = None  # missing
    texts[7] = "   "  # empty
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    return table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))


@pytest.mark.parametrize("modality", ["text", "image"])
def test_ray_data_path_equals_in_process_path(items: pa.Table, modality: str) -> None:
    import ray

    ray.init(num_cpus=2, ignore_reinit_error=True, include_dashboard=False)
    local, rep_local = extract(items, modality, TINY, use_ray=False)
    remote, rep_remote = extract(items, modality, TINY, use_ray=True)
    a, miss_a = embeddings(local)
    b, miss_b = embeddings(remote)
    assert local.column("item_idx").to_pylist() == list(range(40))
    assert remote.column("item_idx").to_pylist() == list(range(40))
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (miss_a == miss_b).all()
    assert rep_remote["path"] == "ray" and rep_remote["items_per_s"] > 0


def test_bad_images_and_empty_text_become_missing(items: pa.Table) -> None:
    img, rep = extract(items, "image", TINY, use_ray=False)
    _, missing = embeddings(img)
    assert missing.tolist().count(True) == 2 and missing[3] and missing[5]
    assert rep["missing_by_reason"] == {"undecodable": 1, "no_image": 1}
    txt, rep = extract(items, "text", TINY, use_ray=False)
    assert embeddings(txt)[1][7] and rep["missing_by_reason"] == {"empty_text": 1}
    assert (embeddings(txt)[0][7] == 0).all()


def test_precomputed_vectors_parquet_and_npy(tmp_path, items: pa.Table) -> None:
    ids = items.column("item_id").to_pylist()
    pa.parquet.write_table(pa.table({"item_id": ids[:30], "embedding": [[float(i), 1.0] for i in range(30)]}),
                           tmp_path / "vec.parquet")
    table = load_precomputed(str(tmp_path / "vec.parquet"), items)
    emb, missing = embeddings(table)
    assert missing.sum() == 10 and emb[29].tolist() == [29.0, 1.0]
    np.save(tmp_path / "vec.npy", np.ones((40, 3), np.float32))
    assert embeddings(load_precomputed(str(tmp_path / "vec.npy"), items))[0].shape == (40, 3)
    np.save(tmp_path / "bad.npy", np.ones((7, 3), np.float32))
    with pytest.raises(DataError, match="bad.npy"):
        load_precomputed(str(tmp_path / "bad.npy"), items)


PHOTOS = SHARED_DATA / "images" / "clothing_small" / "test"


@pytest.mark.skipif(not PHOTOS.exists(), reason="real photos not present (set CEMG_DATA_DIR)")
def test_pretrained_image_encoder_groups_real_photos_by_class() -> None:
    from cemg_ray.features.extract import BatchEncoder

    classes = ["shoes", "hat", "pants", "dress"]
    files = {c: sorted((PHOTOS / c).glob("*.jpg"))[:6] for c in classes}
    data = [p.read_bytes() for c in classes for p in files[c]]
    labels = np.repeat(np.arange(len(classes)), [len(files[c]) for c in classes])
    enc = BatchEncoder("image", FeaturesConfig().model_dump())
    out = enc({"item_idx": np.arange(len(data)), "image": np.array(data, dtype=object),
               "image_uri": np.array([None] * len(data), dtype=object)})
    v = out["embedding"] / np.linalg.norm(out["embedding"], axis=1, keepdims=True)
    sims = v @ v.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(v), dtype=bool)
    assert sims[same & off].mean() > sims[~same].mean() + 0.05


def test_pca_is_fitted_on_training_items_only(demo_run) -> None:
    cfg, store = demo_run
    from cemg_ray.data.split import load_split

    report = store.read_json("pca/report.json")
    split = load_split(store, cfg.dataset.max_len)
    assert report["text"]["fit_rows"] == int((split.train_counts > 0).sum())
    red = store.read_tensors("pca/reduced.safetensors")
    assert red["text"].shape == (300, report["dim"]) and red["image"].shape == (300, report["dim"])
