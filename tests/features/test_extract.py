"""Feature extraction: the Ray Data path equals the in-process path; bad inputs become missing flags."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cemg_ray.features.extract import embeddings, encode_items, extract
from tests.features.conftest import CORRUPT, EMPTY_TEXT, NO_IMAGE, NULL_TEXT, TINY


@pytest.mark.parametrize("modality", ["text", "image"])
def test_ray_data_path_equals_in_process_path(local_ray, catalog: pa.Table, modality: str) -> None:
    local, rep_local = extract(catalog, modality, TINY, use_ray=False)
    remote, rep_remote = extract(catalog, modality, TINY, use_ray=True)
    assert local.column("item_idx").to_pylist() == list(range(40))
    assert remote.column("item_idx").to_pylist() == list(range(40))
    a, miss_a = embeddings(local)
    b, miss_b = embeddings(remote)
    assert a.shape == (40, 32) and np.abs(a[~miss_a]).sum(1).min() > 0
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (miss_a == miss_b).all() and miss_a.sum() == 2
    assert rep_remote["path"] == "ray" and rep_remote["actors"] == 2 and rep_remote["items_per_s"] > 0
    assert rep_local["missing_by_reason"] == rep_remote["missing_by_reason"]


def test_bad_images_and_empty_texts_are_flagged_not_fatal(catalog: pa.Table) -> None:
    img, rep = extract(catalog, "image", TINY, use_ray=False)
    emb, missing = embeddings(img)
    assert np.flatnonzero(missing).tolist() == [CORRUPT, NO_IMAGE]
    assert rep["missing_by_reason"] == {"undecodable": 1, "no_image": 1} and rep["missing"] == 2
    assert (emb[[CORRUPT, NO_IMAGE]] == 0).all()
    txt, rep = extract(catalog, "text", TINY, use_ray=False)
    emb, missing = embeddings(txt)
    assert np.flatnonzero(missing).tolist() == [EMPTY_TEXT, NULL_TEXT]
    assert rep["missing_by_reason"] == {"empty_text": 2} and (emb[[EMPTY_TEXT, NULL_TEXT]] == 0).all()
    assert txt.schema.field("embedding").type == pa.list_(pa.float32())


def test_features_do_not_depend_on_batch_size(catalog: pa.Table) -> None:
    """Padding to the longest text in a batch must not change a text's vector."""
    a = embeddings(extract(catalog, "text", TINY.model_copy(update={"batch_size": 3}), use_ray=False)[0])[0]
    b = embeddings(extract(catalog, "text", TINY.model_copy(update={"batch_size": 40}), use_ray=False)[0])[0]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_mean_pooling_is_an_option(catalog: pa.Table) -> None:
    cls = encode_items(catalog.slice(0, 4), TINY)["text"][0]
    mean_cfg = TINY.model_copy(update={"text": TINY.text.model_copy(update={"pooling": "mean"})})
    mean = encode_items(catalog.slice(0, 4), mean_cfg)["text"][0]
    assert cls.shape == mean.shape == (4, 32) and not np.allclose(cls, mean)


def test_encode_items_matches_the_stage_vectors_in_row_order(catalog: pa.Table) -> None:
    """New items (no item_idx, shuffled order) get the vectors their catalog twins got."""
    full = {m: embeddings(extract(catalog, m, TINY, use_ray=False)[0]) for m in ("text", "image")}
    rows = [12, CORRUPT, 0, EMPTY_TEXT]
    new = catalog.take(rows).drop_columns(["item_idx"])
    out = encode_items(new, TINY)
    for m in ("text", "image"):
        np.testing.assert_allclose(out[m][0], full[m][0][rows], atol=1e-5)
        assert (out[m][1] == full[m][1][rows]).all()
    only_text = encode_items(pa.table({"item_id": ["x"], "text": ["red cotton dress"]}),
                             TINY.model_copy(update={"use_image": False}))
    assert set(only_text) == {"text"} and not only_text["text"][1][0]

