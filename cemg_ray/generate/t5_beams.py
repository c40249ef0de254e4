"""T5 decoder steps for beam search: one cross-attention K/V per user, its beams as grouped queries.

Hugging Face's decoder step treats every beam as a sequence of its own: the encoder keys/values
are repeated per beam (``B * W`` copies of ``[S, H, d_kv]`` per layer) and beam search reorders
its caches every step, which on a CPU costs more than the arithmetic. Here each layer projects the
encoder states to keys/values once per user (``[B, H, S, d_kv]``) and a user's ``W`` beams attend
to them as ``W`` queries of one batched product. Self-attention appends every fed token to a
per-user buffer and attends to a beam's ancestors through a mask, so following the beams moves
only a ``[B, W, steps]`` table of ancestry indices, never a cache. The weights and the arithmetic
are those of ``T5Stack.forward`` (no query scaling, the first layer's relative position bias shared
by all layers, the encoder mask as an additive bias), so the scores equal HF's (tested against the
HF decoder and ``generate``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812


def supports(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a T5 encoder-decoder this decoder can run (LoRA-wrapped layers included)."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) == "t5" and bool(getattr(config, "is_encoder_decoder", False))


class T5BeamDecoder:
    """Incremental decoder state for ``B`` users: one row per user at the first step, then ``W``.

    Self-attention keeps, per user and layer, every token the beams have fed so far (1 at the
    first step, then ``W`` per step) in one append-only buffer, plus each beam's ancestry (which
    slot of each step it descends from). A step attends to its ancestors through a mask that also
    carries T5's relative position bias, so following the beams never copies the cache.
    """

    def __init__(self, model: torch.nn.Module, encoder_states: torch.Tensor, encoder_mask: torch.Tensor,
                 max_steps: int, beams: int) -> None:
        decoder = model.get_decoder()
        self.blocks = list(decoder.block)
        self.embed = decoder.embed_tokens
        self.final_norm = decoder.final_layer_norm
        attention = self.blocks[0].layer[0].SelfAttention
        self.heads, self.head_dim = attention.n_heads, attention.key_value_proj_dim
        # causal relative position bias of every (query step, key step) pair: [H, T, T]
        self.self_bias = attention.compute_bias(max_steps, max_steps, device=encoder_states.device)[0]
        users, length, _ = encoder_states.shape
        self.users, self.beams = users, beams
        device, dtype = encoder_states.device, encoder_states.dtype
        self.cross_mask = torch.zeros(users, 1, 1, length, dtype=dtype, device=device)
        self.cross_mask.masked_fill_(encoder_mask[:, None, None, :] == 0, torch.finfo(dtype).min)
        self.cross_kv = []
        for block in self.blocks:
            cross = block.layer[1].EncDecAttention
            self.cross_kv.append((self._split_heads(cross.k(encoder_states)),
                                  self._split_heads(cross.v(encoder_states))))
        # slot of step j's first token in the buffers: step 0 has one token per user, later steps W
        self.offsets = [0] + [1 + beams * j for j in range(max_steps - 1)]
        slots = 1 + beams * (max_steps - 1)
        shape = (users, self.heads, slots, self.head_dim)
        # every slot a step attends to has been written by then (steps fill the slots in order)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in self.blocks]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in self.blocks]
        # ancestry[b, g, j]: which of step j's tokens (within user b) current row g descends from
        self.ancestry = torch.zeros(users, 1, 0, dtype=torch.long, device=device)
        self.steps = 0

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, H * d_kv] -> [B, H, S, d_kv]."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def _self_mask(self, group: int) -> torch.Tensor:
        """[B, H, G, slots so far]: position bias on each row's ancestors and itself, -inf-like elsewhere."""
        t, used = self.steps, self.offsets[self.steps] + group
        own = torch.arange(group, device=self.ancestry.device).expand(self.users, group)[..., None]
        steps = torch.as_tensor(self.offsets[:t + 1], device=own.device)
        slots = torch.cat([self.ancestry, own], dim=2) + steps  # [B, G, t+1]
        dtype = self.cross_mask.dtype
        mask = torch.full((self.users, self.heads, group, used), torch.finfo(dtype).min, dtype=dtype,
                          device=own.device)
        bias = self.self_bias[:, t, :t + 1].to(dtype)[None, :, None, :]  # [1, H, 1, t+1]
        index = slots[:, None].expand(-1, self.heads, -1, -1)
        return mask.scatter_(3, index, bias.expand(self.users, -1, group, -1))

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (``B`` or ``B * W`` rows, grouped by user); the final hidden states."""
        rows, t = token_ids.shape[0], self.steps
        group = rows // self.users
        if t >= len(self.offsets) or group != (1 if t == 0 else self.beams) or group != self.ancestry.shape[1]:
            raise ValueError(f"step {t}: got {rows} rows for {self.users} users; expected one per user at the "
                             f"first step, then {self.beams} (reorder first), for at most {len(self.offsets)} steps")
        heads, dim = self.heads, self.head_dim
        lo = self.offsets[t]
        self_mask = self._self_mask(group)  # shared by every layer, as T5 shares its position bias
        hidden = self.embed(token_ids)  # [R, d]
        for i, block in enumerate(self.blocks):
            self_layer, cross_layer, ff_layer = block.layer
            att = self_layer.SelfAttention
            x = self_layer.layer_norm(hidden)
            q = att.q(x).view(self.users, group, heads, dim).transpose(1, 2)  # [B, H, G, d_kv]
            self.keys[i][:, :, lo:lo + group] = att.k(x).view(self.users, group, heads, dim).transpose(1, 2)
            self.values[i][:, :, lo:lo + group] = att.v(x).view(self.users, group, heads, dim).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, self.keys[i][:, :, :lo + group],
                                                 self.values[i][:, :, :lo + group], attn_mask=self_mask, scale=1.0)
            hidden = hidden + att.o(out.transpose(1, 2).reshape(rows, heads * dim))
            cross = cross_layer.EncDecAttention
            x = cross_layer.layer_norm(hidden)
            q = cross.q(x).view(self.users, group, heads, dim).transpose(1, 2)
            keys, values = self.cross_kv[i]
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=self.cross_mask, scale=1.0)
            hidden = hidden + cross.o(out.transpose(1, 2).reshape(rows, heads * dim))
            hidden = ff_layer(hidden)
        own = torch.arange(group, device=token_ids.device).expand(self.users, group)[..., None]
        self.ancestry = torch.cat([self.ancestry, own], dim=2)  # the rows fed now are their own step-t slot
        self.steps += 1
        return self.final_norm(hidden)

    def reorder(self, parent: torch.Tensor) -> None:
        """Row ``r`` of the next step continues current row ``parent[r]`` (same user; composable)."""
        group = self.ancestry.shape[1]
        per_user = parent.shape[0] // self.users
        first = torch.arange(self.users, device=parent.device).repeat_interleave(per_user) * group
        slot = (parent - first).view(self.users, per_user)  # position within the user's current rows
        if bool((slot < 0).any()) or bool((slot >= group).any()):
            raise ValueError("reorder: a row continues a beam of another user")
        self.ancestry = self.ancestry.gather(1, slot[..., None].expand(-1, -1, self.ancestry.shape[2]))
