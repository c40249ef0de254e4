"""The features + pca stages on a small catalog: training-only fit, sklearn equivalence, new items."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cemg_ray.features.extract import embeddings
from cemg_ray.features.pca import content_vectors, fit_pca, project, project_new_items, transform_new_items

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store

HELD_OUT = ["z1", "z2"]  # only ever a user's last item: test targets, never in the training split
TINY = ["features.text.model=tiny-random-bert", "features.image.model=tiny-random-vit",
        "features.image.image_size=32", "features.use_ray=false", "features.batch_size=16", "pca.dim=8"]


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    """Parquet catalog: 24 items; odd items have an image; z1/z2 appear only as test targets."""
    root = tmp_path_factory.mktemp("cat")
    rng = np.random.default_rng(0)
    words = ["red", "silk", "dress", "steel", "bolt", "lipstick", "matte", "cotton", "shirt", "serum", "lamp"]
    ids = [f"i{k}" for k in range(22)] + HELD_OUT
    pq.write_table(pa.table({
        "item_id": ids,
        "title": [" ".join(rng.choice(words, 4)) + (" " * 30 + "very long unusual" * 20 if i in HELD_OUT else "")
                  for i in ids],
        "image": [_png(k) if k % 2 else None for k in range(len(ids))],
    }), root / "items.parquet")
    users, items, ts = [], [], []
    for u in range(30):
        seq = [f"i{(u * 3 + j) % 22}" for j in range(5)] + ([HELD_OUT[u % 2]] if u < 6 else [])
        users += [f"u{u}"] * len(seq)
        items += seq
        ts += list(range(len(seq)))
    pq.write_table(pa.table({"user_id": users, "item_id": items, "timestamp": ts}), root / "interactions.parquet")
    return str(root)


def _run(dataset: str, run_dir: Path, extra: Sequence[str] = ()) -> tuple[JobConfig, Store]:
    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    cfg = load_config(None, [f"run_dir={run_dir}", "dataset.format=parquet", f"dataset.path={dataset}", *TINY,
                             *extra])
    manifest = run_pipeline(cfg, ["data", "features", "pca"])
    assert all(s["status"] == "ok" for s in manifest["stages"].values()), manifest["stages"]
    return cfg, Store(str(run_dir))


@pytest.fixture(scope="module")
def run(dataset: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[JobConfig, Store]:
    return _run(dataset, tmp_path_factory.mktemp("run") / "run")


def test_pca_is_fitted_on_training_items_only(run) -> None:
    from cemg_ray.data.split import load_split

    cfg, store = run
    items = store.read_parquet("data/items.parquet")
    held = [items.column("item_id").to_pylist().index(i) for i in HELD_OUT]
    split = load_split(store, cfg.dataset.max_len)
    assert (split.train_counts[held] == 0).all()
    text, missing = embeddings(store.read_parquet("features/text.parquet"))
    train = (split.train_counts > 0) & ~missing
    model = store.read_tensors("pca/model.safetensors")
    report = store.read_json("pca/report.json")
    assert report["text"]["fit_rows"] == int(train.sum()) == 22
    np.testing.assert_allclose(model["text.mean"], text[train].mean(0), atol=1e-5)
    red = store.read_tensors("pca/reduced.safetensors")
    assert red["text"].shape == (24, 8) and red["text"].dtype == np.float32
    assert not red["text_missing"][held].any() and np.abs(red["text"][held]).sum() > 0  # projected, not fitted


def test_reduced_vectors_match_sklearn_and_missing_rows_are_zero(run) -> None:
    from sklearn.decomposition import PCA

    _, store = run
    red = store.read_tensors("pca/reduced.safetensors")
    model = store.read_tensors("pca/model.safetensors")
    report = store.read_json("pca/report.json")
    items = store.read_parquet("data/items.parquet")
    image, missing = embeddings(store.read_parquet("features/image.parquet"))
    assert missing.tolist() == items.column("image").is_null().to_pylist() and missing.sum() == 12
    assert red["image_missing"].tolist() == missing.astype(np.uint8).tolist()
    assert (red["image"][missing] == 0).all() and report["image"]["fit_rows"] == 11
    fit_rows = np.flatnonzero(~missing & ~np.isin(items.column("item_id").to_numpy(zero_copy_only=False), HELD_OUT))
    ref = PCA(n_components=report["dim"]).fit(image[fit_rows])
    a, b = red["image"][~missing], ref.transform(image[~missing])
    np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-4)  # components are defined up to sign
    np.testing.assert_allclose(model["image.components"] @ model["image.components"].T, np.eye(report["dim"]),
                               atol=1e-4)


def test_transform_new_items_reuses_the_fitted_pca(run) -> None:
    from cemg_ray.features.extract import encode_items

    cfg, store = run
    items = store.read_parquet("data/items.parquet")
    red = store.read_tensors("pca/reduced.safetensors")
    rows = [1, 2, 23]
    raw = encode_items(items.take(rows).drop_columns(["item_idx"]), cfg.features)
    out = project_new_items(store, raw)
    np.testing.assert_allclose(out["text"], red["text"][rows], atol=1e-4)
    np.testing.assert_allclose(out["image"], red["image"][rows], atol=1e-4)
    assert out["image_missing"].tolist() == red["image_missing"][rows].tolist() == [0, 1, 0]
    only_text = transform_new_items(store, text_emb=raw["text"][0])
    assert only_text["image_missing"].tolist() == [1, 1, 1] and (only_text["image"] == 0).all()
    with pytest.raises(ValueError, match="features.text.model"):
        transform_new_items(store, text_emb=np.ones((2, 7), np.float32))


def test_disabled_image_modality_is_written_all_missing(dataset: str, tmp_path) -> None:
    _, store = _run(dataset, tmp_path / "run", ["features.use_image=false", "pca.dim=1000"])
    feats = store.read_parquet("features/image.parquet")
    assert feats.num_rows == 24 and all(feats.column("missing").to_pylist())
    assert set(feats.column("reason").to_pylist()) == {"disabled"}
    red = store.read_tensors("pca/reduced.safetensors")
    report = store.read_json("pca/report.json")
    assert report["image"]["available"] is False and report["dim"] == 22  # capped by the 22 fitting rows
    assert red["image_missing"].all() and red["image"].shape == (24, 22) and (red["image"] == 0).all()
    assert "image.mean" not in store.read_tensors("pca/model.safetensors")


def test_whitened_projection_equals_sklearn() -> None:
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32) * np.arange(1, 13, dtype=np.float32)
    mean, comps, _ = fit_pca(x, 5, whiten=True)
    ref = PCA(n_components=5, whiten=True).fit(x).transform(x)
    np.testing.assert_allclose(np.abs(project(x, mean, comps, np.zeros(50, bool))), np.abs(ref), atol=1e-3)


def test_pca_runs_in_a_ray_task_not_in_the_driver(run) -> None:
    import os

    _, store = run
    worker = store.read_json("manifest.json")["stages"]["pca"]["report"]["worker"]
    assert worker["pid"] != os.getpid() and worker["node_id"]
    assert "sampled_from" not in store.read_json("pca/report.json")["text"]  # 22 rows: the exact fit


def test_a_sampled_fit_reports_what_it_captures_of_every_row(dataset: str, tmp_path) -> None:
    from sklearn.decomposition import PCA

    cfg, store = _run(dataset, tmp_path / "run", ["pca.sample_size=12", "pca.dim=4"])
    report = store.read_json("pca/report.json")["text"]
    assert report["fit_rows"] == 12 and report["sampled_from"] == 22
    text, missing = embeddings(store.read_parquet("features/text.parquet"))
    from cemg_ray.data.split import load_split

    train = (load_split(store, cfg.dataset.max_len).train_counts > 0) & ~missing
    exact = float(PCA(n_components=4).fit(text[train]).explained_variance_ratio_.sum())
    # a basis fitted on a sample captures at most what the exact fit does, on the same rows
    assert 0 < report["explained_variance_all_rows"] <= exact + 1e-4


def test_sampled_fit_capture_of_the_exact_basis_is_sklearns_explained_variance() -> None:
    from sklearn.decomposition import PCA

    from cemg_ray.features.stage import sampled_fit_capture

    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32) * np.linspace(3, 0.1, 16)
    for whiten in (False, True):
        _, comps, evr = fit_pca(x, 5, whiten=whiten)
        assert sampled_fit_capture(x, comps) == pytest.approx(float(evr.sum()), rel=1e-4)
    assert PCA(n_components=5).fit(x).explained_variance_ratio_.sum() == pytest.approx(float(evr.sum()), rel=1e-5)



def test_content_vectors_give_each_present_modality_an_equal_say_and_missing_ones_none(run) -> None:
    _, store = run
    red = store.read_tensors("pca/reduced.safetensors")
    content = content_vectors(store)
    d = red["text"].shape[1]
    assert content.shape == (len(red["text"]), 2 * d) and content.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(content, axis=1), 1.0, atol=1e-5)  # every item here has text
    image_missing = red["image_missing"].astype(bool)
    assert (content[image_missing, d:] == 0).all()  # a missing image adds nothing
    unit = red["text"] / np.linalg.norm(red["text"], axis=1, keepdims=True)
    np.testing.assert_allclose(content[image_missing, :d], unit[image_missing], atol=1e-5)  # text alone: its cosine
    both = ~image_missing
    np.testing.assert_allclose(np.linalg.norm(content[both, :d], axis=1), 2 ** -0.5, atol=1e-5)  # halves
