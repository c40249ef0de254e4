"""Item-level generator: one input vector per history item, the next item's codes at every position.

The paper's layout feeds every code of every history item as a token and supervises one target per
prefix; on a small CPU that spends most of the compute re-encoding the same histories
(``../docs/RESULTS.md``). Here, as in RPG and SASRec, each history item enters a causal transformer
(transformers' ``GPT2Model`` over ``inputs_embeds``) as one vector: the mean of its code embeddings
(all levels, the disambiguation level included), optionally plus a learned projection of its fused
content vector (``tokenize/fused.safetensors``), which lets items with few interactions share what
their content says. The state at position ``t`` predicts item ``t+1``'s codes level by level: level
``l`` reads ``h_t`` plus the embeddings of the codes chosen at levels ``< l`` through a small
residual MLP, and scores the level's code embeddings (tied to the input ones). An item's score is the
sum of its levels' log-softmaxes, so trie-constrained beam search over the levels is exact, and it
needs one backbone pass per user: the levels run only the head.

Optional dense head (LIGER: Yang et al., 2024, "Unifying generative and dense retrieval for sequential
recommendation"): a projection of ``h_t`` scores every catalog item's input vector by cosine similarity over a
temperature, trained with a softmax over the catalog beside the code loss. The code head can only reach an
item through codes that training made likely, so items with few interactions rarely survive the beam; their
input vectors, built from shared codes and content, still place them near similar items, which the dense head
can read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from cemg_ray.generate.tokens import TokenLayout

if TYPE_CHECKING:
    from cemg_ray.generate.config import TrainConfig

CONFIG_FILE = "cemg_itemseq.json"
WEIGHTS_FILE = "model.safetensors"
PAD_ITEM = -1


@dataclass
class ItemSeqOutput:
    """What ``forward`` returns: the training loss and the per-position hidden states."""

    loss: torch.Tensor | None
    hidden: torch.Tensor


class LevelHead(nn.Module):
    """Residual MLP that turns a position state plus its chosen code prefix into a level query."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.up = nn.Linear(d_model, 2 * d_model)
        self.down = nn.Linear(2 * d_model, d_model)
        self.out_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.out_norm(q + self.dropout(self.down(F.gelu(self.up(self.norm(q))))))


class ItemSeqGenerator(nn.Module):
    """Causal transformer over item vectors with an autoregressive code head (see the module docstring).

    ``item_tokens`` [N, L] are the catalog's code token ids (``TokenLayout.encode_items``) and
    ``content`` [N, c] the optional fused content vectors; both are buffers saved with the weights,
    so a saved model carries the catalog it was trained on.
    """

    def __init__(self, layout: TokenLayout, item_tokens: torch.Tensor, backbone: nn.Module, d_model: int,
                 dropout: float = 0.1, content: torch.Tensor | None = None,
                 dense_temperature: float | None = None, dense_weight: float = 0.0,
                 dense_negatives: int = 0, id_mask: torch.Tensor | None = None,
                 constrained: bool = False, dense_score: str = "cosine", code_weight: float = 1.0,
                 input_dropout: float | None = None) -> None:
        super().__init__()
        self.layout = layout
        self.d_model = d_model
        self.backbone = backbone
        self.code_emb = nn.Embedding(layout.vocab_size, d_model)
        self.prefix_emb = nn.Embedding(layout.vocab_size, d_model)
        nn.init.normal_(self.code_emb.weight, std=d_model ** -0.5)
        nn.init.normal_(self.prefix_emb.weight, std=d_model ** -0.5)
        self.register_buffer("item_tokens", torch.as_tensor(item_tokens, dtype=torch.long))
        if content is not None:
            self.register_buffer("content", torch.as_tensor(content, dtype=torch.float32))
            self.content_proj = nn.Linear(self.content.shape[1], d_model)
            self.content_norm = nn.LayerNorm(self.content.shape[1], elementwise_affine=False)
        else:
            self.content, self.content_proj, self.content_norm = None, None, None
        if id_mask is not None:  # ID vectors for the items the mask marks (enough training interactions)
            self.register_buffer("id_mask", torch.as_tensor(id_mask, dtype=torch.bool))
            self.id_emb = nn.Embedding(self.num_items, d_model)
            nn.init.normal_(self.id_emb.weight, std=d_model ** -0.5)
        else:
            self.id_mask, self.id_emb = None, None
        self.input_dropout = nn.Dropout(dropout if input_dropout is None else input_dropout)
        self.heads = nn.ModuleList(LevelHead(d_model, dropout) for _ in range(layout.num_levels))
        self.dense_temperature, self.dense_weight = dense_temperature, dense_weight
        self.dense_negatives, self.dense_score, self.code_weight = dense_negatives, dense_score, code_weight
        self.dense_proj = nn.Linear(d_model, d_model) if dense_temperature is not None else None
        offsets = layout.offsets.tolist()
        self.ranges = [(offsets[lvl], offsets[lvl] + size) for lvl, size in enumerate(layout.level_sizes)]
        # constrained sequence learning: the catalog's trie, rebuilt from item_tokens (never saved twice)
        self.trie = None
        if constrained:
            from cemg_ray.generate.prefix_index import PrefixIndex

            self.trie = PrefixIndex.build((self.item_tokens - self.item_tokens.new_tensor(offsets)).numpy(), layout)

    # --- inputs -------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return int(self.item_tokens.shape[0])

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """One input vector per item_idx (``-1`` = padding, a zero vector): pooled codes (+ content)."""
        safe = items.clamp_min(0)
        vec = self.code_emb(self.item_tokens[safe]).mean(-2)
        if self.id_emb is not None:
            vec = vec + self.id_emb(safe) * self.id_mask[safe].unsqueeze(-1).to(vec.dtype)
        if self.content_proj is not None:
            vec = vec + self.content_proj(self.content_norm(self.content[safe]))
        return vec * (items >= 0).unsqueeze(-1).to(vec.dtype)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden state per position for right-padded histories [B, T] (causal: t sees items <= t)."""
        x = self.input_dropout(self.item_vectors(items))
        return self.backbone(inputs_embeds=x).last_hidden_state

    # --- the code head --------------------------------------------------------------------------
    def level_logits(self, hidden: torch.Tensor, prefix_tokens: torch.Tensor | None, lvl: int) -> torch.Tensor:
        """Logits over level ``lvl``'s codes for states [R, d] and chosen token ids [R, lvl] (or None)."""
        q = hidden
        if lvl and prefix_tokens is not None:
            q = q + self.prefix_emb(prefix_tokens[..., :lvl]).sum(-2)
        lo, hi = self.ranges[lvl]
        logits = self.heads[lvl](q) @ self.code_emb.weight[lo:hi].T
        if self.trie is not None:  # only the codes that continue the prefix to a real item compete
            logits = logits.masked_fill(~self.valid_codes(prefix_tokens, lvl, logits.shape[:-1]), float("-inf"))
        return logits

    def valid_codes(self, prefix_tokens: torch.Tensor | None, lvl: int, rows: torch.Size) -> torch.Tensor:
        """[*rows, K_lvl] bool: level ``lvl``'s codes that continue each row's chosen prefix in the catalog's
        trie (every code where the prefix is no item's: an unconstrained search may reach one)."""
        flat = rows.numel()
        if lvl == 0 or prefix_tokens is None:
            parents = torch.zeros(flat, dtype=torch.long)
        else:
            prefix = prefix_tokens[..., :lvl].reshape(flat, lvl).cpu()
            parents = self.trie.prefix_ids(prefix - prefix.new_tensor(self.layout.offsets[:lvl]))
        return self.trie.child_mask(lvl, parents).view(*rows, -1).to(self.item_tokens.device)

    def level_log_probs(self, hidden: torch.Tensor, prefix_tokens: torch.Tensor | None, lvl: int) -> torch.Tensor:
        return torch.log_softmax(self.level_logits(hidden, prefix_tokens, lvl).float(), dim=-1)

    def code_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed-over-levels cross-entropy of target items [R] (teacher forcing), mean over rows."""
        tokens = self.item_tokens[targets]  # [R, L]
        total = hidden.new_zeros(())
        for lvl, (lo, _) in enumerate(self.ranges):
            total = total + F.cross_entropy(self.level_logits(hidden, tokens, lvl).float(), tokens[:, lvl] - lo)
        return total

    # --- the dense head -------------------------------------------------------------------------
    @property
    def has_dense_head(self) -> bool:
        return self.dense_proj is not None

    def dense_keys(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """The item vectors the dense head scores against (unit length for the cosine head): [N, d] (or the given
        items)."""
        if self.dense_proj is None:
            raise ValueError("this generator was trained without a dense head (train.dense_weight: 0)")
        ids = torch.arange(self.num_items, device=self.item_tokens.device) if items is None else items
        vectors = self.item_vectors(ids)
        return vectors if self.dense_score == "dot" else F.normalize(vectors, dim=-1)

    def dense_logits(self, hidden: torch.Tensor, items: torch.Tensor | None = None,
                     keys: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine(projected state, item input vector) / temperature, or their dot product (``dense_score``), for
        states [R, d]: [R, N] (or given items).

        ``keys``: precomputed ``dense_keys()`` (inference computes them once, not per call)."""
        keys = self.dense_keys(items) if keys is None else keys
        if self.dense_score == "dot":
            return (self.dense_proj(hidden) @ keys.T).float()
        query = F.normalize(self.dense_proj(hidden), dim=-1)
        return (query @ keys.T).float() / self.dense_temperature

    def dense_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy of target items [R], mean over rows: over the whole catalog, or (with
        ``dense_negatives``) over the batch's targets plus that many uniformly drawn items (sampled softmax)."""
        if not self.dense_negatives or self.dense_negatives >= self.num_items:
            return F.cross_entropy(self.dense_logits(hidden), targets)
        drawn = torch.randint(0, self.num_items, (self.dense_negatives,), device=targets.device)
        pool = torch.unique(torch.cat([targets, drawn]))  # sorted: each target's column by searchsorted
        return F.cross_entropy(self.dense_logits(hidden, pool), torch.searchsorted(pool, targets))

    def forward(self, items: torch.Tensor, labels: torch.Tensor | None = None) -> ItemSeqOutput:
        """``labels`` [B, T]: the next item at each position (``-1``: no loss there)."""
        hidden = self.encode(items)
        loss = None
        if labels is not None:
            keep = labels >= 0
            loss = hidden.new_zeros(())
            if self.code_weight:
                loss = loss + self.code_weight * self.code_loss(hidden[keep], labels[keep])
            if self.dense_proj is not None and self.dense_weight:
                loss = loss + self.dense_weight * self.dense_loss(hidden[keep], labels[keep])
        return ItemSeqOutput(loss=loss, hidden=hidden)

    @torch.no_grad()
    def last_hidden(self, items: torch.Tensor) -> torch.Tensor:
        """The state after each row's last real item [B, d] (rows are right-padded, at least one item)."""
        hidden = self.encode(items)
        last = ((items >= 0).sum(1) - 1).clamp_min(0)
        return hidden[torch.arange(len(items)), last]

    @torch.no_grad()
    def score_items(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-probability of every (or the given) catalog item for states [B, d]: [B, N].

        The reference that beam search is tested against; it runs the head once per item and level.
        """
        tokens = self.item_tokens if items is None else self.item_tokens[items]
        B, N = hidden.shape[0], tokens.shape[0]
        h = hidden[:, None, :].expand(B, N, -1)
        prefix = tokens[None].expand(B, N, -1)
        total = torch.zeros(B, N)
        for lvl, (lo, _) in enumerate(self.ranges):
            logp = self.level_log_probs(h, prefix, lvl)
            total = total + logp.gather(-1, (prefix[..., lvl] - lo).unsqueeze(-1)).squeeze(-1)
        return total

    def param_count(self) -> dict:
        params = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"parameters": int(params), "trainable": int(trainable)}


def right_padded(histories: list[np.ndarray], max_items: int) -> np.ndarray:
    """Histories of item_idx -> [B, T] int64, oldest first, ``-1`` after the last item (T = longest)."""
    hists = [np.asarray(h, dtype=np.int64)[-max_items:] for h in histories]
    width = max([len(h) for h in hists] + [1])
    out = np.full((len(hists), width), PAD_ITEM, dtype=np.int64)
    for r, h in enumerate(hists):
        out[r, :len(h)] = h
    return out


def trim_right_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop trailing columns that are padding in every row (exact: positions are causal)."""
    items = batch["items"]
    width = int((items >= 0).sum(1).max()) if len(items) else items.shape[1]
    width = max(width, 1)
    if width >= items.shape[1]:
        return batch
    return {k: (v[:, :width] if v.dim() == 2 and v.shape[1] == items.shape[1] else v) for k, v in batch.items()}


def build_backbone(cfg: TrainConfig, d_model: int, max_positions: int) -> nn.Module:
    """transformers' GPT-2 decoder over ``inputs_embeds`` (or a pretrained decoder), LoRA if asked."""
    from transformers import AutoModel, GPT2Config, GPT2Model

    if cfg.pretrained:
        backbone = AutoModel.from_pretrained(cfg.pretrained)
    else:
        backbone = GPT2Model(GPT2Config(
            vocab_size=1, n_positions=max_positions, n_embd=d_model, n_layer=cfg.num_layers,
            n_head=cfg.num_heads, n_inner=cfg.d_ff, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout, activation_function="gelu_new", bos_token_id=0, eos_token_id=0))
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        backbone = get_peft_model(backbone, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                       lora_dropout=cfg.lora_dropout,
                                                       target_modules=cfg.lora_target_modules or ["c_attn"]))
    # history items enter as inputs_embeds, so the token table is never read: frozen, it is not a parameter
    # without a gradient, which DDP with more than one worker refuses
    backbone.get_input_embeddings().requires_grad_(False)
    return backbone


def build_item_model(cfg: TrainConfig, layout: TokenLayout, codes: np.ndarray, max_items: int,
                     content: np.ndarray | None = None, train_counts: np.ndarray | None = None) -> ItemSeqGenerator:
    """The configured generator; ``train_counts`` (interactions per item in the training split) decide which
    items get an ID vector when ``cfg.item_ids``."""
    if cfg.item_ids and train_counts is None:
        raise ValueError("train.item_ids: the model needs each item's training interaction count")
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg, cfg.d_model, max_items + 1)
    d_model = int(getattr(backbone.config, "hidden_size", cfg.d_model))
    tokens = torch.as_tensor(layout.encode_items(codes))
    return ItemSeqGenerator(layout, tokens, backbone, d_model, cfg.dropout,
                            None if content is None else torch.as_tensor(content),
                            cfg.dense_temperature if cfg.dense_weight else None, cfg.dense_weight,
                            cfg.dense_negatives,
                            torch.as_tensor(train_counts >= cfg.item_id_min_count) if cfg.item_ids else None,
                            cfg.constrained_loss, cfg.dense_score, cfg.code_weight, cfg.input_dropout)


def save_item_model(model: ItemSeqGenerator, folder: str | Path) -> None:
    """Weights as safetensors (LoRA merged) beside a JSON that rebuilds the architecture."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    if hasattr(backbone, "merge_and_unload"):
        backbone = backbone.merge_and_unload()
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state.update({k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")})
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(folder / WEIGHTS_FILE))
    meta = {"layout": json.loads(model.layout.to_json()), "d_model": model.d_model,
            "dropout": model.input_dropout.p, "backbone_config": backbone.config.to_dict(),
            "content_dim": None if model.content is None else int(model.content.shape[1]),
            "dense_temperature": model.dense_temperature, "dense_weight": model.dense_weight,
            "item_ids": model.id_emb is not None, "constrained": model.trie is not None,
            "dense_score": model.dense_score}
    (folder / CONFIG_FILE).write_text(json.dumps(meta))


def load_item_model(folder: str | Path) -> ItemSeqGenerator:
    """Rebuild from ``cemg_itemseq.json`` and load the safetensors weights (no pickle)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    bconf = dict(meta["backbone_config"])
    backbone = AutoModel.from_config(AutoConfig.for_model(bconf.pop("model_type"), **bconf))
    state = load_file(str(folder / WEIGHTS_FILE))
    layout = TokenLayout.from_json(json.dumps(meta["layout"]))
    content = state.get("content")
    model = ItemSeqGenerator(layout, state["item_tokens"], backbone, meta["d_model"], meta["dropout"], content,
                             meta.get("dense_temperature"), meta.get("dense_weight", 0.0),
                             id_mask=state.get("id_mask") if meta.get("item_ids") else None,
                             constrained=bool(meta.get("constrained")),
                             dense_score=meta.get("dense_score", "cosine"))
    model.load_state_dict(state)
    return model.eval()
