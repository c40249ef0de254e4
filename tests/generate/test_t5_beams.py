"""The grouped-beam T5 decoder step equals Hugging Face's decoder forward on the same sequences."""

from __future__ import annotations

import pytest
import torch

from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.model import build_model
from cemg_ray.generate.t5_beams import T5BeamDecoder, supports
from cemg_ray.generate.tokens import PAD_ID, TokenLayout


def tiny_t5(feed_forward: str = "relu", lora: bool = False) -> torch.nn.Module:
    cfg = TrainConfig(d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64, dropout=0.0, lora=lora)
    model = build_model(cfg, TokenLayout((8, 8, 8)))
    if feed_forward != "relu":  # the gated MLP of T5 v1.1 / Flan-T5 checkpoints
        from transformers import T5Config, T5ForConditionalGeneration

        conf = T5Config(**{**model.config.to_dict(), "feed_forward_proj": feed_forward})
        torch.manual_seed(0)
        model = T5ForConditionalGeneration(conf)
    if lora:  # LoRA's B matrices start at zero; move them so the adapters change the outputs
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
    return model.eval()


def hf_last_hidden(model: torch.nn.Module, sequences: torch.Tensor, enc: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    out = model.get_decoder()(input_ids=sequences, encoder_hidden_states=enc, encoder_attention_mask=mask)
    return out.last_hidden_state[:, -1]


@pytest.mark.parametrize("variant", ["relu", "gated-gelu", "lora"])
@torch.inference_mode()
def test_steps_with_reordered_beams_equal_hf_decoder(variant: str) -> None:
    model = tiny_t5("relu" if variant == "lora" else variant, lora=variant == "lora")
    assert supports(model)
    users, beams, steps = 3, 4, 4
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 26, (users, 7), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # a left-padded history
    ids[0, :3] = PAD_ID
    enc = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    dec = T5BeamDecoder(model, enc, mask, steps, beams)

    seqs = torch.full((users, 1), PAD_ID)
    assert torch.allclose(dec.step(seqs[:, 0]), hf_last_hidden(model, seqs, enc, mask), atol=1e-5)
    dec.reorder(torch.arange(users).repeat_interleave(beams))
    seqs = seqs.repeat_interleave(beams, 0)
    enc_rows, mask_rows = enc.repeat_interleave(beams, 0), mask.repeat_interleave(beams, 0)
    for _ in range(1, steps):
        # every row continues a random beam of its own user, as beam search does
        parent = (torch.arange(users).repeat_interleave(beams) * beams
                  + torch.randint(0, beams, (users * beams,), generator=gen))
        dec.reorder(parent)
        token = torch.randint(2, 26, (users * beams,), generator=gen)
        seqs = torch.cat([seqs[parent], token[:, None]], 1)
        ours = dec.step(token)
        assert torch.allclose(ours, hf_last_hidden(model, seqs, enc_rows, mask_rows), atol=1e-5)


def test_only_t5_encoder_decoders_are_supported() -> None:
    cfg = TrainConfig(backbone="decoder", d_model=32, num_layers=1, num_heads=2, d_kv=16, d_ff=64)
    assert not supports(build_model(cfg, TokenLayout((4, 4))))


@torch.inference_mode()
def test_misuse_is_refused_with_a_clear_error() -> None:
    model = tiny_t5()
    ids = torch.randint(2, 26, (2, 5))
    enc = model.get_encoder()(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    dec = T5BeamDecoder(model, enc, torch.ones_like(ids), 3, 2)
    dec.step(torch.full((2,), PAD_ID))
    with pytest.raises(ValueError, match="another user"):
        dec.reorder(torch.tensor([0, 1, 1, 1]))  # user 0's second beam would continue user 1's row
    with pytest.raises(ValueError, match="reorder first"):
        dec.step(torch.full((4,), PAD_ID))  # two beams per user fed before the rows were expanded
