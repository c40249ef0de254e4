"""Turning an item's image field into pixels, or into a missing-modality flag with a reason.

An image comes as encoded bytes, a local path (relative paths resolve against
``dataset.images_dir``) or an ``s3://`` URI (endpoint/region from the job's storage section or the
AWS environment). Anything that cannot be read or decoded returns ``None`` with a reason: a bad
image costs the item its visual modality, never the job.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# Reasons an item's image is flagged missing (they are counted in the stage report).
NO_IMAGE, UNDECODABLE = "no_image", "undecodable"


def read_image_bytes(image: bytes | None, uri: str | None, images_dir: str | None = None,
                     endpoint_url: str | None = None, region: str | None = None) -> tuple[bytes | None, str]:
    """The encoded bytes of an item's image and '', or None and why (no_image, unreadable:<error>)."""
    if image is not None and len(image):
        return bytes(image), ""
    if not isinstance(uri, str) or not uri.strip():
        return None, NO_IMAGE
    try:
        if uri.startswith("s3://"):
            from cemg_ray.store import resolve_filesystem

            fs, path = resolve_filesystem(uri, endpoint_url, region)
            with fs.open_input_stream(path) as f:
                return f.read(), ""
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if images_dir and not os.path.isabs(path):
            path = os.path.join(images_dir, path)
        with open(path, "rb") as f:
            return f.read(), ""
    except (OSError, ValueError) as exc:
        return None, f"unreadable:{type(exc).__name__}"


def decode_image(data: bytes, size: int, mean: np.ndarray = IMAGENET_MEAN,
                 std: np.ndarray = IMAGENET_STD) -> np.ndarray | None:
    """RGB, shorter side resized to ``size`` then centre-cropped to ``size`` x ``size``, normalised with
    the encoder's mean/std, CHW float32; None if the bytes are not a decodable image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale that is still >= size
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return ((arr - mean) / std).transpose(2, 0, 1).astype(np.float32)
