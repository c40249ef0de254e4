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
from cemg_ray.evaluate.metrics import hr_ndcg
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
        """Hidden state per position, [B, L, dim]; ``seq`` is left-padded with 0, L <= max_len."""
        length = seq.shape[1]
        # positions count back from the last item, so a batch trimmed of its all-padding columns is exact
        pos = torch.arange(self.max_len - length, self.max_len, device=seq.device)
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


def _trim_left(*batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop leading columns that are padding in every row of ``batch[0]``.

    Exact: positions count from the right (the last item always sits at ``max_len - 1``), padded keys are
    masked, and Beauty's histories average 9 items, so a batch costs its longest row, not ``max_len``."""
    width = max(int((batch[0] > 0).sum(1).max()), 1)
    return tuple(t[:, -width:] for t in batch)


@torch.no_grad()
def valid_ndcg(model: SASRec, histories: list[np.ndarray], targets: np.ndarray, k: int = 10,
               batch_size: int = 1024) -> tuple[float, float]:
    """Full-ranking (HR@k, NDCG@k) with each user's history items removed, as the evaluation harness ranks
    (a target the user had already seen is a miss there too).

    A target's rank is the number of unseen items scored strictly above it (vectorised, no top-K), then
    :func:`metrics.hr_ndcg` as for every figure: cheap enough to run after every epoch for early stopping."""
    model.eval()
    device = model.item_emb.weight.device
    ranks = []
    for start in range(0, len(targets), batch_size):
        hist = histories[start:start + batch_size]
        x, = _trim_left(torch.from_numpy(_left_pad(hist, model.max_len)))
        scores = model.logits(model(x.to(device))[:, -1]).cpu()
        rows = np.concatenate([np.full(len(h), r) for r, h in enumerate(hist)]).astype(np.int64)
        cols = np.concatenate(hist).astype(np.int64) if len(rows) else rows
        scores[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
        own = scores.gather(1, torch.from_numpy(targets[start:start + batch_size])[:, None])
        rank = (scores > own).sum(1)
        ranks.append(torch.where(torch.isfinite(own[:, 0]), rank, torch.full_like(rank, -1)).numpy())
    figures = hr_ndcg(np.concatenate(ranks) if ranks else np.zeros(0, np.int64), [k])
    return figures[f"HR@{k}"], figures[f"NDCG@{k}"]


def train_sasrec(split: Split, cfg: SASRecConfig,
                 device: torch.device | None = None) -> tuple[SASRec, list[dict]]:
    """Cross-entropy over the catalog at every position of every training sequence (the field's recipe,
    ``../docs/EXPERIMENTS.md``), early-stopped on validation NDCG@10: the best epoch's weights are returned
    with one history row per epoch (loss, validation figures, seconds)."""
    torch.manual_seed(cfg.seed)
    device = device or torch.device("cpu")
    model = SASRec(split.num_items, cfg).to(device)
    seqs = [s for s in split.train if len(s) >= 2]
    # inputs = s[:-1], targets = s[1:], both left-padded to max_len
    inputs = torch.from_numpy(_left_pad([s[:-1] for s in seqs], cfg.max_len))
    targets = torch.from_numpy(_left_pad([s[1:] for s in seqs], cfg.max_len))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    valid_users = np.arange(len(split.valid_target))
    if cfg.valid_users is not None and cfg.valid_users < len(valid_users):
        valid_users = np.random.default_rng(cfg.seed).choice(valid_users, cfg.valid_users, replace=False)
    valid_hist = [split.valid_history[u] for u in valid_users]
    valid_target = split.valid_target[valid_users]
    history: list[dict] = []
    best, best_state, waited = -1.0, None, 0
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(inputs), generator=gen)
        total, n = 0.0, 0
        t0 = time.perf_counter()
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            x, y = (t.to(device) for t in _trim_left(inputs[idx], targets[idx]))
            mask = y > 0
            h = model(x)[mask]
            loss = nn.functional.cross_entropy(model.logits(h), y[mask] - 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * int(mask.sum())
            n += int(mask.sum())
        row = {"epoch": epoch + 1, "loss": total / max(n, 1), "train_s": round(time.perf_counter() - t0, 2)}
        hr, ndcg = valid_ndcg(model, valid_hist, valid_target)
        row.update({"valid_HR@10": hr, "valid_NDCG@10": ndcg})
        history.append(row)
        log.info("sasrec epoch %d/%d loss %.4f valid NDCG@10 %.4f HR@10 %.4f (%.1fs)", epoch + 1, cfg.epochs,
                 row["loss"], ndcg, hr, row["train_s"])
        if ndcg > best:
            best, waited = ndcg, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= cfg.patience:
                log.info("sasrec: no better validation NDCG@10 for %d epochs, stopping at epoch %d (best %.4f)",
                         cfg.patience, epoch + 1, best)
                break
    model = model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


def train_from_store(cfg: dict, store: dict, dataset: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """SASRec trained on a run's training split read from its store: (best weights, {"history": epoch log}); the
    sasrec stage runs it in a Ray Train worker (``raytrain.train_in_worker``)."""
    from cemg_ray.data.split import load_split

    sasrec = SASRecConfig(**cfg)
    run = Store(**store)
    device = None
    if sasrec.use_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
    split = load_split(run, dataset["max_len"], dataset["cold_start_max"])
    model, history = train_sasrec(split, sasrec, device)
    return model.state_dict(), {"history": history}


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
    def logits(self, histories: list[np.ndarray]) -> torch.Tensor:
        """Every catalog item's score after each history, [B, N] (what the generator's ``blend`` policy mixes in)."""
        x, = _trim_left(torch.from_numpy(_left_pad(list(histories), self.model.max_len)))
        return self.model.logits(self.model(x)[:, -1])

    def recommend(self, histories: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.logits(histories)
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return top.indices.numpy().astype(np.int64), top.values.numpy().astype(np.float32)
