"""Turning an item's image field into pixels, or into a missing-modality flag.

An image comes as encoded bytes, a local path (relative paths resolve against
``dataset.images_dir``) or an ``s3://`` URI. Anything that cannot be read or decoded returns
``None`` with a reason: a bad image costs the item its visual modality, never the job.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def read_image_bytes(image: bytes | None, uri: str | None, images_dir: str | None) -> tuple[bytes | None, str]:
    """The encoded bytes of an item's image and '' , or None and why."""
    if image:
        return image, ""
    if not uri:
        return None, "no_image"
    try:
        if uri.startswith("s3://"):
            from cemg_ray.store import resolve_filesystem

            fs, path = resolve_filesystem(uri)
            with fs.open_input_stream(path) as f:
                return f.read(), ""
        path = uri if os.path.isabs(uri) or not images_dir else os.path.join(images_dir, uri)
        with open(path, "rb") as f:
            return f.read(), ""
    except (OSError, ValueError) as exc:
        return None, f"unreadable:{type(exc).__name__}"


def decode_image(data: bytes, size: int) -> np.ndarray | None:
    """RGB, resized to ``size`` x ``size``, ImageNet-normalised, CHW float32; None if undecodable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB").resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return ((arr - MEAN) / STD).transpose(2, 0, 1)
