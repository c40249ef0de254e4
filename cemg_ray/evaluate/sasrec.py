"""SASRec baseline (Kang & McAuley, 2018) with full-softmax cross-entropy, the ID-based reference row.

Public reproductions (RecBole, cornac; figures in docs/RESULTS.md) show a well-trained SASRec is the
number a generative recommender has to beat on Beauty, so it runs through the same harness as the rest. It
trains on the training split only (every prefix of each training sequence predicts its next item).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from cemg_ray import artifacts
from cemg_ray.data.split import Split
from cemg_ray.evaluate.config import SASRecConfig
from cemg_ray.store import Store

if TYPE_CHECKING:
    from cemg_ray.config import JobConfig

log = logging.getLogger("cemg_ray")


class SASRec(nn.Module):
    """Causal self-attention over item embeddings; item 0 is padding, items are shifted by one."""

    def __init__(self, num_items: int, cfg: SASRecConfig):
        super().__init__()
        self.item_emb = nn.Embedding(num_items + 1, cfg.dim, padding_idx=0)
        # small init: logits are dot products with unit-scale hidden states, N(0, 1) would saturate them
        nn.init.normal_(self.item_emb.weight, std=cfg.dim ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.num_heads, cfg.dim * 4, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.max_len = cfg.max_len

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden state per position, [B, L, dim]; ``seq`` is left-padded with 0."""
        length = seq.shape[1]
        pos = torch.arange(length, device=seq.device)
        x = self.drop(self.item_emb(seq) * self.item_emb.embedding_dim ** 0.5 + self.pos_emb(pos))
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seq.device), 1)
        # one mask per sequence: causal + padded keys, with the diagonal open so that a padding row
        # is never fully masked (a fully masked row is NaN, and PyTorch's eval fast path spreads it)
        blocked = causal[None] | (seq == 0)[:, None, :]
        blocked &= ~torch.eye(length, dtype=torch.bool, device=seq.device)[None]
        heads = self.encoder.layers[0].self_attn.num_heads
        h = self.encoder(x, mask=blocked.repeat_interleave(heads, dim=0))
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item_emb.weight[1:].T


def _left_pad(seqs: list[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[i, length - len(s):] = s + 1
    return out


def train_sasrec(split: Split, cfg: SASRecConfig) -> tuple[SASRec, list[float]]:
    torch.manual_seed(cfg.seed)
    model = SASRec(split.num_items, cfg)
    seqs = [s for s in split.train if len(s) >= 2]
    # inputs = s[:-1], targets = s[1:], both left-padded to max_len
    inputs = torch.from_numpy(_left_pad([s[:-1] for s in seqs], cfg.max_len))
    targets = torch.from_numpy(_left_pad([s[1:] for s in seqs], cfg.max_len))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(inputs), generator=gen)
        total, n = 0.0, 0
        t0 = time.perf_counter()
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            x, y = inputs[idx], targets[idx]
            mask = y > 0
            h = model(x)[mask]
            loss = nn.functional.cross_entropy(model.logits(h), y[mask] - 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * int(mask.sum())
            n += int(mask.sum())
        losses.append(total / max(n, 1))
        log.info("sasrec epoch %d/%d loss %.4f (%.1fs)", epoch + 1, cfg.epochs, losses[-1], time.perf_counter() - t0)
    return model, losses


class SASRecRecommender:
    name = "sasrec"

    def __init__(self, model: SASRec, model_version: str = "sasrec"):
        self.model = model.eval()
        self.model_version = model_version

    @classmethod
    def load(cls, cfg: JobConfig, store: Store) -> SASRecRecommender:
        from safetensors.torch import load

        num_items = artifacts.num_items(store)
        model = SASRec(num_items, cfg.sasrec)
        model.load_state_dict(load(store.read_bytes(artifacts.SASREC)))
        return cls(model)

    @torch.no_grad()
    def recommend(self, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(_left_pad(list(histories), self.model.max_len))
        scores = self.model.logits(self.model(x)[:, -1])
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return top.indices.numpy().astype(np.int64), top.values.numpy().astype(np.float32)
