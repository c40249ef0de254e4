"""Turning an item's image field into pixels, or into a missing-modality flag with a reason.

An image comes as encoded bytes, a local path (relative paths resolve against
``dataset.images_dir``) or an ``s3://`` URI (endpoint/region from the job's storage section or the
AWS environment). Anything that cannot be read or decoded returns ``None`` with a reason: a bad
image costs the item its visual modality, never the job.
"""

from __future__ import annotations

import io
import os
import stat
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from typing import BinaryIO

    from pyarrow import NativeFile

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# Reasons an item's image is flagged missing (they are counted in the stage report).
NO_IMAGE, UNDECODABLE = "no_image", "undecodable"
NOT_A_FILE, TOO_LARGE, TOO_MANY_PIXELS, EXTREME_ASPECT = ("not_a_regular_file", "too_large", "too_many_pixels",
                                                          "extreme_aspect_ratio")
# Limits checked before anything is decoded, so one item can never take the stage's memory: a product
# photo or poster is well under all three.
MAX_IMAGE_BYTES = 32 << 20
MAX_PIXELS = 50_000_000
MAX_ASPECT_RATIO = 50.0


def _read_limited(f: BinaryIO | NativeFile, limit: int) -> tuple[bytes | None, str]:
    data = f.read(limit + 1)
    return (None, TOO_LARGE) if len(data) > limit else (data, "")


def read_image_bytes(image: bytes | None, uri: str | None, images_dir: str | None = None,
                     endpoint_url: str | None = None, region: str | None = None) -> tuple[bytes | None, str]:
    """The encoded bytes of an item's image and '', or None and why (no_image, unreadable:<error>)."""
    if image is not None and len(image):
        return (bytes(image), "") if len(image) <= MAX_IMAGE_BYTES else (None, TOO_LARGE)
    if not isinstance(uri, str) or not uri.strip():
        return None, NO_IMAGE
    try:
        if uri.startswith("s3://"):
            from cemg_ray.store import resolve_filesystem

            fs, path = resolve_filesystem(uri, endpoint_url, region)
            with fs.open_input_stream(path) as f:
                return _read_limited(f, MAX_IMAGE_BYTES)
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if images_dir and not os.path.isabs(path):
            path = os.path.join(images_dir, path)
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a device or a pipe would be read until memory runs out
            return None, NOT_A_FILE
        if info.st_size > MAX_IMAGE_BYTES:
            return None, TOO_LARGE
        with open(path, "rb") as f:
            return _read_limited(f, MAX_IMAGE_BYTES)
    except (OSError, ValueError) as exc:
        return None, f"unreadable:{type(exc).__name__}"


def check_image(data: bytes) -> str:
    """'' if the header's size is safe to decode, else the reason (read from the header only)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return UNDECODABLE
    if w <= 0 or h <= 0:
        return UNDECODABLE
    if w * h > MAX_PIXELS:
        return TOO_MANY_PIXELS
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        return EXTREME_ASPECT
    return ""


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
