"""Collaborative-guided fusion (paper Eq. 2-3).

``alpha_m = softmax_m((W_q e_c)^T (W_k e_m))`` over m in {visual, text}, then
``x = [alpha_v e_v + alpha_t e_t ; e_c]``. A missing modality gets ``alpha = 0`` (its logit is
masked) instead of attending to a zero vector. The ablations are switches: without guide the
weights are equal over the present modalities; without collab there is no ``e_c`` block and
the query is a learned vector (content-only attention).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CollabGuidedFusion(nn.Module):
    def __init__(self, content_dim: int, collab_dim: int, attn_dim: int | None = None,
                 use_guide: bool = True, use_collab: bool = True, attn_scale: bool = False):
        super().__init__()
        attn_dim = attn_dim or content_dim
        self.use_guide, self.use_collab = use_guide, use_collab
        self.scale = 1.0 / math.sqrt(attn_dim) if attn_scale else 1.0
        self.W_k = nn.Linear(content_dim, attn_dim, bias=False)
        if use_collab:
            self.W_q = nn.Linear(collab_dim, attn_dim, bias=False)
        else:
            self.query = nn.Parameter(torch.randn(attn_dim) / math.sqrt(attn_dim))
        # small init keeps Eq. 2 logits O(1) at the start, so alpha is not saturated before training
        nn.init.normal_(self.W_k.weight, std=1.0 / math.sqrt(content_dim * attn_dim) ** 0.5)
        if use_collab:
            nn.init.normal_(self.W_q.weight, std=1.0 / math.sqrt(collab_dim * attn_dim) ** 0.5)
        self.out_dim = content_dim + (collab_dim if use_collab else 0)

    def weights(self, e_v: torch.Tensor, e_t: torch.Tensor, e_c: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        """alpha [B, 2] over (visual, text); ``present`` [B, 2] is False for a missing modality."""
        if self.use_guide:
            q = self.W_q(e_c) if self.use_collab else self.query.expand(e_v.shape[0], -1)
            keys = torch.stack([self.W_k(e_v), self.W_k(e_t)], dim=1)  # [B, 2, A]
            logits = torch.einsum("ba,bma->bm", q, keys) * self.scale
        else:
            logits = torch.zeros(e_v.shape[0], 2, dtype=e_v.dtype, device=e_v.device)
        logits = logits.masked_fill(~present, float("-inf"))
        alpha = torch.softmax(logits, dim=1)
        return torch.nan_to_num(alpha, nan=0.0)  # both missing: no content, alpha = 0

    def forward(self, e_v: torch.Tensor, e_t: torch.Tensor, e_c: torch.Tensor,
                present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.weights(e_v, e_t, e_c, present)
        content = alpha[:, :1] * e_v + alpha[:, 1:] * e_t
        x = torch.cat([content, e_c], dim=1) if self.use_collab else content
        return x, alpha


def alpha_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Per-item entropy of the fusion weights in bits (1.0 = plain averaging of two modalities)."""
    p = alpha.clamp_min(1e-12)
    return -(alpha * torch.log2(p)).sum(1)
