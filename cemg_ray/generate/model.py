"""Generator backbones: T5 from a config or a checkpoint, decoder-only LMs, LoRA as a switch.

From scratch, the vocabulary is exactly the code tokens (+ pad/EOS). From a pretrained
checkpoint the code tokens are appended after the checkpoint's vocabulary (``layout.base``) and
the embeddings are resized; with LoRA the embedding and output layers stay trainable, since
the new code tokens have nothing to adapt from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.tokens import EOS_ID, NUM_SPECIAL, PAD_ID, TokenLayout

LAYOUT_FILE = "cemg_tokens.json"


def pretrained_vocab_size(path: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).vocab_size)


def layout_for(cfg: TrainConfig, level_sizes: list[int]) -> TokenLayout:
    base = pretrained_vocab_size(cfg.pretrained) if cfg.pretrained else NUM_SPECIAL
    return TokenLayout(tuple(level_sizes), base)


def build_model(cfg: TrainConfig, layout: TokenLayout) -> torch.nn.Module:
    """A fresh or pretrained backbone sized for ``layout``'s vocabulary (LoRA-wrapped if asked)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, T5Config, T5ForConditionalGeneration

    torch.manual_seed(cfg.seed)
    if cfg.pretrained:
        cls = T5ForConditionalGeneration if cfg.backbone == "t5" else AutoModelForCausalLM
        model = cls.from_pretrained(cfg.pretrained)
        model.resize_token_embeddings(layout.vocab_size)
    elif cfg.backbone == "t5":
        model = T5ForConditionalGeneration(T5Config(
            vocab_size=layout.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
            num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers or cfg.num_layers,
            num_heads=cfg.num_heads, dropout_rate=cfg.dropout, feed_forward_proj="relu",
            pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID, tie_word_embeddings=True))
    else:
        model = AutoModelForCausalLM.from_config(LlamaConfig(
            vocab_size=layout.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads, head_dim=cfg.d_kv, max_position_embeddings=512,
            attention_dropout=cfg.dropout, pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=EOS_ID,
            tie_word_embeddings=True))
    if cfg.lora:
        model = wrap_lora(model, cfg)
    return model


def wrap_lora(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    task = TaskType.SEQ_2_SEQ_LM if cfg.backbone == "t5" else TaskType.CAUSAL_LM
    emb_names = {n.split(".")[-1] for n, m in model.named_modules()
                 if m is model.get_input_embeddings() or m is model.get_output_embeddings()}
    lcfg = LoraConfig(task_type=task, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, modules_to_save=sorted(emb_names))
    return get_peft_model(model, lcfg)


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """The plain transformers model (LoRA weights merged) for saving and decoding."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def save_model(model: torch.nn.Module, layout: TokenLayout, folder: str | Path) -> None:
    folder = Path(folder)
    merged(model).save_pretrained(folder, safe_serialization=True)
    (folder / LAYOUT_FILE).write_text(layout.to_json())


def load_model(folder: str | Path) -> tuple[torch.nn.Module, TokenLayout]:
    """Load a saved generator (safetensors) and its token layout."""
    from transformers import AutoConfig, AutoModelForCausalLM, T5ForConditionalGeneration

    folder = Path(folder)
    conf = AutoConfig.from_pretrained(folder)
    cls = T5ForConditionalGeneration if conf.is_encoder_decoder else AutoModelForCausalLM
    model = cls.from_pretrained(folder, use_safetensors=True)
    model.eval()
    layout = TokenLayout.from_json((folder / LAYOUT_FILE).read_text())
    return model, layout


def is_encoder_decoder(model: torch.nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def describe(model: torch.nn.Module) -> dict:
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": int(params), "trainable": int(trainable),
            "config": json.loads(model.config.to_json_string()) if hasattr(model, "config") else {}}
