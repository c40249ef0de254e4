"""Image inputs: bytes, local paths, s3:// URIs on a local S3 server; unreadable ones become flags."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from cemg_ray.features.extract import embeddings, extract
from cemg_ray.features.images import decode_image, read_image_bytes
from tests.features.conftest import TINY


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_resizes_crops_and_normalises() -> None:
    arr = decode_image(_png((255, 0, 0), (80, 40)), 16)
    assert arr.shape == (3, 16, 16) and arr.dtype == np.float32
    assert np.allclose(arr[0], (1 - 0.485) / 0.229, atol=1e-3) and np.allclose(arr[1], -0.456 / 0.224, atol=1e-3)
    grey = io.BytesIO()
    Image.new("L", (20, 20), 128).save(grey, format="JPEG")
    assert decode_image(grey.getvalue(), 8).shape == (3, 8, 8)  # greyscale becomes RGB
    assert decode_image(b"", 8) is None and decode_image(b"GIF89a\x00garbage", 8) is None
    assert decode_image(_png((1, 2, 3))[:40], 8) is None  # truncated


def test_paths_and_s3_uris(tmp_path, s3_bucket: str) -> None:
    import boto3

    (tmp_path / "a.png").write_bytes(_png((200, 10, 10)))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    bucket = s3_bucket[len("s3://"):]
    boto3.client("s3").put_object(Bucket=bucket, Key="img/b.png", Body=_png((10, 200, 10)))
    assert read_image_bytes(None, "a.png", str(tmp_path))[0] == (tmp_path / "a.png").read_bytes()
    assert read_image_bytes(None, f"{s3_bucket}/img/b.png")[0] == _png((10, 200, 10))
    assert read_image_bytes(None, f"{s3_bucket}/img/none.png")[1].startswith("unreadable:")
    uris = ["a.png", str(tmp_path / "a.png"), f"file://{tmp_path / 'a.png'}", f"{s3_bucket}/img/b.png",
            "missing.png", "broken.jpg", f"{s3_bucket}/img/none.png", None]
    items = pa.table({"item_idx": pa.array(np.arange(len(uris), dtype=np.int32)),
                      "image": pa.nulls(len(uris), pa.binary()), "image_uri": pa.array(uris, pa.string())})
    table, rep = extract(items, "image", TINY, images_dir=str(tmp_path), use_ray=False)
    emb, missing = embeddings(table)
    assert missing.tolist() == [False] * 4 + [True] * 4
    assert rep["missing_by_reason"] == {"unreadable:FileNotFoundError": 2, "undecodable": 1, "no_image": 1}
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)
    np.testing.assert_allclose(emb[0], emb[2], atol=1e-6)
    assert not np.allclose(emb[0], emb[3])


def test_special_files_huge_and_extreme_images_are_refused_before_decoding(tmp_path, monkeypatch) -> None:
    import os

    from cemg_ray.features import images

    # a FIFO stands in for a device that never ends: it must not be opened for reading
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert read_image_bytes(None, str(fifo)) == (None, images.NOT_A_FILE)
    assert read_image_bytes(None, "/dev/zero") == (None, images.NOT_A_FILE)
    big = tmp_path / "big.png"
    big.write_bytes(_png((1, 2, 3)))
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 10)
    assert read_image_bytes(None, str(big)) == (None, images.TOO_LARGE)
    assert read_image_bytes(b"x" * 11, None) == (None, images.TOO_LARGE)
    monkeypatch.undo()
    # the header decides: a 20,000,000 x 1 PNG is refused without decoding its pixels
    long_strip = _png((0, 0, 0), (20_000_000, 1))
    assert images.check_image(long_strip) == images.EXTREME_ASPECT
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    assert images.check_image(_png((0, 0, 0), (20, 20))) == images.TOO_MANY_PIXELS
    monkeypatch.undo()
    assert images.check_image(_png((0, 0, 0), (40, 24))) == ""
    assert images.check_image(b"not an image") == images.UNDECODABLE


def test_refusals_are_counted_missing_modalities_with_their_reason(tmp_path) -> None:
    import os

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    items = pa.table({"item_idx": pa.array([0, 1, 2], pa.int32()),
                      "image": pa.array([_png((255, 0, 0)), _png((0, 0, 0), (20_000_000, 1)), None], pa.binary()),
                      "image_uri": pa.array([None, None, str(fifo)], pa.string())})
    table, rep = extract(items, "image", TINY, use_ray=False)
    assert embeddings(table)[1].tolist() == [False, True, True]
    assert rep["missing_by_reason"] == {"extreme_aspect_ratio": 1, "not_a_regular_file": 1}
