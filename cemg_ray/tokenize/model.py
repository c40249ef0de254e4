"""The trained tokenizer: fusion + RQ-VAE + input scales, saved as safetensors + JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cemg_ray import artifacts
from cemg_ray.store import Store
from cemg_ray.tokenize.config import TokenizeConfig
from cemg_ray.tokenize.fusion import CollabGuidedFusion
from cemg_ray.tokenize.rqvae import RQVAE


class Tokenizer(nn.Module):
    def __init__(self, content_dim: int, collab_dim: int, cfg: TokenizeConfig):
        super().__init__()
        self.content_dim, self.collab_dim = content_dim, collab_dim
        self.fusion = CollabGuidedFusion(content_dim, collab_dim, cfg.attn_dim, cfg.use_guide, cfg.use_collab,
                                         cfg.attn_scale)
        self.rqvae = RQVAE(self.fusion.out_dim, list(cfg.hidden_dims), cfg.latent_dim, cfg.num_levels,
                           cfg.codebook_size, cfg.dropout)

    def fuse(self, image: torch.Tensor, text: torch.Tensor, collab: torch.Tensor,
             present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fusion(image, text, collab, present)

    @torch.no_grad()
    def encode(self, image: np.ndarray, text: np.ndarray, collab: np.ndarray, present: np.ndarray,
               batch: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes [N, M], level distances [N, M, K], alpha [N, 2]) in eval mode."""
        self.eval()
        codes, dists, alphas = [], [], []
        for s in range(0, len(image), batch):
            sl = slice(s, s + batch)
            x, alpha = self.fuse(torch.as_tensor(image[sl]), torch.as_tensor(text[sl]), torch.as_tensor(collab[sl]),
                                 torch.as_tensor(present[sl]))
            c, d = self.rqvae.quantizer.encode(self.rqvae.encoder(x))
            codes.append(c.numpy())
            dists.append(d.numpy())
            alphas.append(alpha.numpy())
        return np.concatenate(codes), np.concatenate(dists), np.concatenate(alphas)


@dataclass
class SavedTokenizer:
    model: Tokenizer
    cfg: TokenizeConfig
    scales: dict[str, float]


def save_tokenizer(store: Store, tok: Tokenizer, cfg: TokenizeConfig, scales: dict[str, float]) -> None:
    state = {k: v.detach().cpu().numpy() for k, v in tok.state_dict().items()}
    store.write_tensors(artifacts.TOKENIZER_WEIGHTS, state)
    store.write_json(artifacts.TOKENIZER_CONFIG, {"content_dim": tok.content_dim, "collab_dim": tok.collab_dim,
                                             "config": cfg.model_dump(), "scales": scales})


def load_tokenizer(store: Store) -> SavedTokenizer:
    meta = store.read_json(artifacts.TOKENIZER_CONFIG)
    scheme = meta.get("scheme", "cemg")
    if scheme != "cemg":
        raise ValueError(f"{store.uri(artifacts.TOKENIZER_CONFIG)}: this run's tokenize stage used "
                         f"tokenize.scheme {scheme!r}; assigning codes to new items and the fusion analysis need "
                         "the cemg scheme's fusion + RQ-VAE")
    cfg = TokenizeConfig(**meta["config"])
    tok = Tokenizer(meta["content_dim"], meta["collab_dim"], cfg)
    state = {k: torch.as_tensor(v) for k, v in store.read_tensors(artifacts.TOKENIZER_WEIGHTS).items()}
    tok.load_state_dict(state)
    tok.eval()
    return SavedTokenizer(tok, cfg, {k: float(v) for k, v in json.loads(json.dumps(meta["scales"])).items()})
