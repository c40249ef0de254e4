"""Encoders: HF vision models by local path, the offline defaults, and real photos grouped by class."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cemg_ray.features.config import FeaturesConfig, ImageEncoderConfig, TextEncoderConfig
from cemg_ray.features.encoders import EncoderError, ImageEncoder, TextEncoder
from cemg_ray.features.extract import embeddings, extract
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def vision_models(tmp_path_factory) -> dict:
    """Tiny random ResNet, ConvNeXt, CLIP and ViT saved with save_pretrained, loaded back by path."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        ConvNextConfig,
        ConvNextModel,
        ResNetConfig,
        ResNetModel,
        ViTConfig,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1], layer_type="basic")
                ).save_pretrained(root / "resnet")
    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 12], depths=[1, 1], num_stages=2)).save_pretrained(root / "convnext")
    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    CLIPModel(CLIPConfig(text_config={**small, "vocab_size": 64}, projection_dim=8,
                         vision_config={**small, "image_size": 32, "patch_size": 8})).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    ViTModel(ViTConfig(image_size=32, patch_size=8, **small)).save_pretrained(root / "vit")
    return {"resnet": (root / "resnet", 12), "convnext": (root / "convnext", 12), "clip": (root / "clip", 16),
            "vit": (root / "vit", 16)}


@pytest.mark.parametrize("name", ["resnet", "convnext", "clip", "vit"])
def test_hf_vision_backbones_by_path(vision_models: dict, catalog: pa.Table, name: str) -> None:
    path, width = vision_models[name]
    cfg = FeaturesConfig(use_text=False, image={"model": str(path), "image_size": 32 if name != "vit" else 48},
                         batch_size=16)
    table, rep = extract(catalog.slice(0, 12), "image", cfg, use_ray=False)
    emb, missing = embeddings(table)
    assert emb.shape == (12, width) and rep["dim"] == width
    assert np.isfinite(emb).all() and np.linalg.norm(emb[~missing], axis=1).min() > 0
    assert len({tuple(np.round(r, 4)) for r in emb[~missing]}) > 1  # not a constant output


def test_clip_uses_its_own_normalisation_and_vision_tower(vision_models: dict) -> None:
    enc = ImageEncoder(ImageEncoderConfig(model=str(vision_models["clip"][0])))
    assert enc.image_size == 32 and np.allclose(enc.mean, [0.48145466, 0.4578275, 0.40821073], atol=1e-6)
    assert "Vision" in type(enc.model).__name__


def test_offline_defaults_load_real_weights() -> None:
    text = TextEncoder(TextEncoderConfig())
    assert text.dim == 384
    v = text.encode(["red lipstick, matte finish", "matte red lipstick", "stainless steel bolt cutter"])
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert v[0] @ v[1] > v[0] @ v[2]  # a real language model, not random weights
    image = ImageEncoder(ImageEncoderConfig(image_size=64))
    assert image.dim == 1280 and image.image_size == 64


def test_unknown_models_fail_with_the_config_key(tmp_path) -> None:
    with pytest.raises(EncoderError, match="features.text.model"):
        TextEncoder(TextEncoderConfig(model=str(tmp_path / "nowhere")))
    with pytest.raises(EncoderError, match="features.image.model"):
        ImageEncoder(ImageEncoderConfig(model=str(tmp_path / "nowhere")))


PHOTOS = SHARED_DATA / "images" / "clothing_small" / "test"


@pytest.mark.skipif(not PHOTOS.is_dir(), reason="real photos not present (set CEMG_DATA_DIR)")
def test_pretrained_image_encoder_puts_same_class_photos_closer() -> None:
    """EfficientNet-Lite0 (ImageNet) on real clothing photos, read by relative path under images_dir."""
    classes = sorted(p.name for p in PHOTOS.iterdir() if p.is_dir())
    files = [f"{c}/{p.name}" for c in classes for p in sorted((PHOTOS / c).glob("*.jpg"))[:4]]
    labels = np.array([f.split("/")[0] for f in files])
    items = pa.table({"item_idx": pa.array(np.arange(len(files), dtype=np.int32)),
                      "image": pa.nulls(len(files), pa.binary()), "image_uri": pa.array(files)})
    table, rep = extract(items, "image", FeaturesConfig(batch_size=20), images_dir=str(PHOTOS), use_ray=False)
    assert rep["missing"] == 0 and len(classes) >= 4
    v, _ = embeddings(table)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v.T
    same, off = labels[:, None] == labels[None, :], ~np.eye(len(v), dtype=bool)
    assert sims[same & off].mean() > sims[~same].mean() + 0.08
    nearest = np.where(off, sims, -np.inf).argmax(1)
    assert (labels[nearest] == labels).mean() > 3 / len(classes)  # 1-NN well above chance
