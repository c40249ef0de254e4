"""T5 decoder steps for beam search: one cross-attention K/V per user, its beams as grouped queries.

Hugging Face's decoder step treats every beam as a sequence of its own: the encoder keys/values
are repeated per beam (``B * W`` copies of ``[S, H, d_kv]`` per layer) and beam search moves them
every step, which on a CPU costs more than the arithmetic. Here each layer projects the encoder
states to keys/values once per user (``[B, H, S, d_kv]``), a user's ``W`` beams attend to them as
``W`` queries of one batched product, and only the self-attention cache (at most one position
per level) follows the beams. The weights and the arithmetic are those of ``T5Stack.forward``
(no query scaling, the first layer's relative position bias shared by all layers, the encoder
mask as an additive bias), so the scores equal HF's (tested against ``generate``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a T5 encoder-decoder this decoder can run (LoRA-wrapped layers included)."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) == "t5" and bool(getattr(config, "is_encoder_decoder", False))


class T5BeamDecoder:
    """Incremental decoder state for ``B`` users: start with one row per user, then ``W`` per user."""

    def __init__(self, model: torch.nn.Module, encoder_states: torch.Tensor, encoder_mask: torch.Tensor,
                 max_steps: int) -> None:
        decoder = model.get_decoder()
        self.blocks = list(decoder.block)
        self.embed = decoder.embed_tokens
        self.final_norm = decoder.final_layer_norm
        attention = self.blocks[0].layer[0].SelfAttention
        self.heads, self.head_dim = attention.n_heads, attention.key_value_proj_dim
        # causal relative position bias of every (query step, key step) pair: [H, T, T]
        self.self_bias = attention.compute_bias(max_steps, max_steps, device=encoder_states.device)[0]
        users, length, _ = encoder_states.shape
        self.users = users
        dtype = encoder_states.dtype
        self.cross_mask = torch.zeros(users, 1, 1, length, dtype=dtype, device=encoder_states.device)
        self.cross_mask.masked_fill_(encoder_mask[:, None, None, :] == 0, torch.finfo(dtype).min)
        self.cross_kv = []
        for block in self.blocks:
            cross = block.layer[1].EncDecAttention
            self.cross_kv.append((self._split_heads(cross.k(encoder_states)),
                                  self._split_heads(cross.v(encoder_states))))
        self.self_k: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.self_v: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.steps = 0

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, H * d_kv] -> [B, H, S, d_kv]."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (``B`` or ``B * W`` rows, grouped by user); the final hidden states."""
        rows, t = token_ids.shape[0], self.steps
        group = rows // self.users
        heads, dim = self.heads, self.head_dim
        bias = self.self_bias[:, t:t + 1, :t + 1]  # [H, 1, t+1]
        hidden = self.embed(token_ids)  # [R, d]
        for i, block in enumerate(self.blocks):
            self_layer, cross_layer, ff_layer = block.layer
            att = self_layer.SelfAttention
            x = self_layer.layer_norm(hidden)
            q = att.q(x).view(rows, heads, 1, dim)
            k = att.k(x).view(rows, heads, 1, dim)
            v = att.v(x).view(rows, heads, 1, dim)
            if t:
                k = torch.cat([self.self_k[i], k], dim=2)
                v = torch.cat([self.self_v[i], v], dim=2)
            self.self_k[i], self.self_v[i] = k, v
            weights = torch.softmax((q @ k.transpose(-1, -2) + bias).float(), dim=-1).to(v.dtype)
            hidden = hidden + att.o((weights @ v).reshape(rows, heads * dim))
            cross = cross_layer.EncDecAttention
            x = cross_layer.layer_norm(hidden)
            q = cross.q(x).view(self.users, group, heads, dim).transpose(1, 2)  # [B, H, G, d_kv]
            keys, values = self.cross_kv[i]
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=self.cross_mask, scale=1.0)
            hidden = hidden + cross.o(out.transpose(1, 2).reshape(rows, heads * dim))
            hidden = ff_layer(hidden)
        self.steps += 1
        return self.final_norm(hidden)

    def reorder(self, parent: torch.Tensor) -> None:
        """Row ``r`` of the next step continues row ``parent[r]`` of the last one (user order kept)."""
        self.self_k = [k.index_select(0, parent) for k in self.self_k]
        self.self_v = [v.index_select(0, parent) for v in self.self_v]
