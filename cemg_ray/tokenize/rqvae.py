"""RQ-VAE (paper section 3.3): MLP encoder, M residual codebooks of size K, MLP decoder.

Loss = reconstruction + lambda_q * L_quant + lambda_d * L_div, where L_quant is the VQ-VAE
codebook + beta * commitment loss summed over levels (straight-through gradients), and L_div
pushes the batch-average soft assignment of every codebook towards uniform (log K minus its
entropy), the usual guard against collapse. Codebooks are k-means initialised on the first
residuals, and codes unused for a whole epoch are re-seeded from live residuals.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def mlp(dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [nn.SiLU(), nn.Dropout(dropout)] if dropout else [nn.SiLU()]
    return nn.Sequential(*layers)


def kmeans_centroids(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """scikit-learn k-means; with fewer distinct points than ``k`` the rest are jittered copies."""
    from sklearn.cluster import KMeans

    n_clusters = min(k, len(np.unique(x, axis=0)))
    km = KMeans(n_clusters=n_clusters, n_init=1, max_iter=50, random_state=seed).fit(x)
    cents = km.cluster_centers_.astype(np.float32)
    if n_clusters < k:
        rng = np.random.default_rng(seed)
        extra = cents[rng.integers(0, n_clusters, k - n_clusters)]
        cents = np.concatenate([cents, extra + rng.normal(0, 1e-3, extra.shape).astype(np.float32)])
    return cents


class ResidualQuantizer(nn.Module):
    def __init__(self, num_levels: int, codebook_size: int, dim: int):
        super().__init__()
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(codebook_size, dim) * 0.1) for _ in range(num_levels)])
        self.codebook_size = codebook_size

    @property
    def num_levels(self) -> int:
        return len(self.codebooks)

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, seed: int = 0) -> None:
        residual = z.detach().clone()
        for lvl, book in enumerate(self.codebooks):
            book.data.copy_(torch.as_tensor(kmeans_centroids(residual.numpy(), self.codebook_size, seed + lvl)))
            idx = torch.cdist(residual, book.data).argmin(1)
            residual = residual - book.data[idx]

    def forward(self, z: torch.Tensor, beta: float, tau: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Quantise ``z``: (z_q with straight-through grads, codes [B,M], L_quant, L_div, residuals)."""
        residual = z
        z_q = torch.zeros_like(z)
        codes, quant, div, residuals = [], z.new_zeros(()), z.new_zeros(()), []
        for book in self.codebooks:
            residuals.append(residual.detach())
            dist = torch.cdist(residual, book) ** 2  # [B, K]
            idx = dist.argmin(1)
            chosen = book[idx]
            quant = quant + F.mse_loss(chosen, residual.detach()) + beta * F.mse_loss(residual, chosen.detach())
            p_mean = torch.softmax(-dist / tau, dim=1).mean(0)
            div = div + (math.log(book.shape[0]) + (p_mean * torch.log(p_mean.clamp_min(1e-12))).sum())
            z_q = z_q + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        z_st = z + (z_q - z).detach()
        return z_st, torch.stack(codes, 1), quant, div, residuals

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes [B, M] and the squared distance of every level's residual to every code [B, M, K]."""
        residual, codes, dists = z, [], []
        for book in self.codebooks:
            dist = torch.cdist(residual, book) ** 2
            idx = dist.argmin(1)
            residual = residual - book[idx]
            codes.append(idx)
            dists.append(dist)
        return torch.stack(codes, 1), torch.stack(dists, 1)

    @torch.no_grad()
    def reset_dead(self, usage: torch.Tensor, residuals: list[torch.Tensor], generator: torch.Generator) -> int:
        """Re-seed codes with zero usage from random live residuals; returns how many were reset."""
        reset = 0
        for lvl, book in enumerate(self.codebooks):
            dead = (usage[lvl] == 0).nonzero().flatten()
            if len(dead) == 0 or len(residuals[lvl]) == 0:
                continue
            pick = torch.randint(0, len(residuals[lvl]), (len(dead),), generator=generator)
            book.data[dead] = residuals[lvl][pick] + 1e-3 * torch.randn(len(dead), book.shape[1],
                                                                         generator=generator)
            reset += len(dead)
        return reset


class RQVAE(nn.Module):
    def __init__(self, in_dim: int, hidden_dims: list[int], latent_dim: int, num_levels: int,
                 codebook_size: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = mlp([in_dim, *hidden_dims, latent_dim], dropout)
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), in_dim], dropout)
        self.quantizer = ResidualQuantizer(num_levels, codebook_size, latent_dim)

    def forward(self, x: torch.Tensor, beta: float = 0.25, tau: float = 1.0) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        z_q, codes, quant, div, residuals = self.quantizer(z, beta, tau)
        x_hat = self.decoder(z_q)
        recon = ((x_hat - x) ** 2).sum(1).mean()
        return {"x_hat": x_hat, "codes": codes, "recon": recon, "quant": quant, "div": div,
                "residuals": residuals}
