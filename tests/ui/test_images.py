"""Item pictures: only image bytes, and a local file only from inside the catalog's own image folder."""

from __future__ import annotations

import http.client
import json
import shutil
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cemg_ray.ui.images import ImageSource, image_root, sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


@pytest.fixture()
def folders(tmp_path):
    """An image folder with two pictures and a text file, and a secret picture beside it (outside)."""
    images = tmp_path / "catalog" / "images"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(PNG)
    (images / "b.jpg").write_bytes(JPEG)
    (images / "notes.txt").write_bytes(b"not an image")
    (tmp_path / "secret.png").write_bytes(PNG)
    (images / "link.png").symlink_to(tmp_path / "secret.png")
    return images, tmp_path


def test_sniff_knows_images_only():
    assert sniff(PNG) == "image/png" and sniff(JPEG) == "image/jpeg"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"root:x:0:0") is None and sniff(b"") is None


def test_image_root_is_images_dir_else_the_dataset_folder(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    assert image_root(str(tmp_path / "imgs"), str(tmp_path)) == (tmp_path / "imgs").resolve()
    assert image_root(None, str(tmp_path)) == tmp_path.resolve()
    assert image_root(None, str(tmp_path / "data.txt")) == tmp_path.resolve()
    assert image_root(None, None) is None and image_root(None, "s3://bucket/data") is None


def test_only_files_inside_the_image_folder_are_served(folders):
    images, outside = folders
    uris = [str(images / "a.png"), "b.jpg", "../../secret.png", str(outside / "secret.png"), "link.png",
            "notes.txt", f"{images}/../../secret.png", "https://example.org/p.jpg", "s3://bucket/p.jpg", None,
            f"file://{images / 'a.png'}", "missing.png"]
    source = ImageSource([None] * len(uris), uris, images)
    served = [source.read(i) for i in range(len(uris))]
    assert served[0] == (PNG, "image/png") and served[1] == (JPEG, "image/jpeg") and served[10] == (PNG, "image/png")
    assert served[2:10] == [None] * 8 and served[11] is None  # outside, a link out, not an image, remote, none
    urls = [source.url(i, f"id{i}") for i in range(len(uris))]
    assert urls[0] == "api/items/image?item_id=id0" and urls[7] == "https://example.org/p.jpg"
    assert urls[2] is None and urls[3] is None and urls[4] is None and urls[8] is None and urls[9] is None


def test_embedded_bytes_are_served_only_when_they_are_an_image():
    source = ImageSource([PNG, b"#!/bin/sh\n", None], [None, None, None], None)
    assert source.read(0) == (PNG, "image/png") and source.read(1) is None and source.read(2) is None
    assert source.url(2, "x") is None


@pytest.mark.slow
def test_the_app_serves_a_catalogs_image_folder_and_nothing_beside_it(demo_run, folders, tmp_path):
    """A copy of the demo run whose items point at files (as the MovieLens posters catalog does)."""
    from cemg_ray.ui.app import create_app
    from cemg_ray.ui.data import RunView
    from tests.ui.server import serve

    images, outside = folders
    _, store = demo_run
    run = tmp_path / "run"
    shutil.copytree(store.root_uri, run, ignore=shutil.ignore_patterns("checkpoints"))
    items = pq.read_table(run / "data/items.parquet")
    n = items.num_rows
    uris = [str(images / "a.png"), "../../secret.png", str(outside / "secret.png"), "link.png", "notes.txt"]
    uris += [None] * (n - len(uris))
    items = items.set_column(items.column_names.index("image"), "image", pa.nulls(n, pa.binary()))
    items = items.set_column(items.column_names.index("image_uri"), "image_uri", pa.array(uris, pa.string()))
    pq.write_table(items, run / "data/items.parquet")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["dataset"]["images_dir"] = str(images)
    (run / "manifest.json").write_text(json.dumps(manifest))

    view = RunView(run)
    url, stop = serve(create_app(view))
    try:
        parts = urlsplit(url)
        statuses = []
        for item_id in view.item_ids[:5]:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            conn.request("GET", f"/api/items/image?item_id={quote(item_id)}")
            resp = conn.getresponse()
            statuses.append((resp.status, resp.read()))
            conn.close()
    finally:
        stop()
    assert statuses[0] == (200, PNG)
    assert [s for s, _ in statuses[1:]] == [404] * 4 and all(b"PNG" not in body for _, body in statuses[1:])
    shown = view.item(view.item_ids[0])
    assert shown["image_url"] == f"api/items/image?item_id={quote(view.item_ids[0], safe='')}"
    assert view.item(view.item_ids[1])["image_url"] is None
