"""Item pictures for the page: bytes embedded in the item table, remote URLs, or files in the catalog's image folder.

A local file is served only when its resolved path (symlinks followed) lies inside the catalog's own image
folder (``dataset.images_dir``, else the dataset's folder): the item table is data, and a path in it must not
turn the page into a reader of arbitrary files. Only bytes that look like an image are ever sent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

# magic numbers of the formats a browser shows; anything else is not served
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))
MAX_FILE_BYTES = 20 * 1024 * 1024  # a poster is a few hundred KB; a larger "image" is not one the page needs


def sniff(data: bytes) -> str | None:
    """The image media type of ``data`` from its first bytes, or None when it is not a known image format."""
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_root(images_dir: str | None, dataset_path: str | None) -> Path | None:
    """The catalog's own image folder: ``dataset.images_dir``, else the dataset's folder (a file's parent)."""
    if images_dir:
        return None if "://" in images_dir else Path(images_dir).expanduser().resolve()
    if not dataset_path or "://" in dataset_path:
        return None
    root = Path(dataset_path).expanduser().resolve()
    return root.parent if root.is_file() else root


def image_api_url(item_id: str) -> str:
    """The page's URL of an item's picture, relative so the app also works mounted under a prefix."""
    return f"api/items/image?item_id={quote(item_id, safe='')}"


class ImageSource:
    """Where each item's picture comes from (by ``item_idx``); see the module docstring for what is served."""

    def __init__(self, embedded: Sequence[bytes | None], uris: Sequence[str | None], root: Path | None):
        self._embedded = embedded
        self._uris = uris
        self.root = root.resolve() if root is not None else None

    def _local_path(self, idx: int) -> Path | None:
        uri = self._uris[idx]
        if not uri or self.root is None:
            return None
        if uri.startswith("file://"):
            uri = uri[len("file://"):]
        elif "://" in uri:
            return None
        path = Path(uri)
        path = (path if path.is_absolute() else self.root / path).resolve()
        return path if path.is_relative_to(self.root) else None

    def url(self, idx: int, item_id: str) -> str | None:
        """What the page puts in ``<img src>``: the API's URL, a remote http(s) URL, or None (no picture)."""
        if self._embedded[idx] is not None or self._local_path(idx) is not None:
            return image_api_url(item_id)
        uri = self._uris[idx]
        if uri and uri.startswith(("http://", "https://")):
            return uri
        return None

    def read(self, idx: int) -> tuple[bytes, str] | None:
        """(bytes, media type) of an item's picture served by the app, or None when there is none to serve."""
        data = self._embedded[idx]
        if data is None:
            path = self._local_path(idx)
            if path is None or not path.is_file() or os.path.getsize(path) > MAX_FILE_BYTES:
                return None
            data = path.read_bytes()
        media = sniff(data)
        return (data, media) if media else None
