"""Config of the generator (T5 / decoder-only) training and constrained decoding."""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from cemg_ray.configbase import Section
from cemg_ray.generate.policy import BUILTIN, DEFAULT_POLICY, LEGACY_DECODE_KEYS, Policy, named_policies

log = logging.getLogger("cemg_ray")


class ItemLayoutConfig(Section):
    """The ``train`` keys only the item-level generator reads (``train.history: items``; item_family.py)."""

    content_input: bool = False  # items layout: add a projection of each item's fused content vector
    # items layout: weight of a dense retrieval loss beside the code head's (LIGER): each position's state,
    # projected, scores every catalog item's input vector by cosine / dense_temperature, softmax over the
    # catalog. 0 = no dense head. The ``cemg_dense`` model re-ranks the beam's candidates plus the cold-start
    # items with it, which is how items with few interactions reach the list (cemg_ray/generate/item_decoding.py)
    dense_weight: float = Field(0.0, ge=0)
    dense_temperature: float = Field(0.07, gt=0, le=10)
    # how the dense head scores an item: "cosine" (unit vectors over dense_temperature, LIGER's) or "dot" (the
    # projected state times the item's input vector, unbounded, as SASRec scores with its item embeddings)
    dense_score: Literal["cosine", "dot"] = "cosine"
    # weight of the code head's loss (items layout); 0 with a dense head trains the dense head alone, the code
    # head then stays at its initialisation (beam search needs it: only the dense policies are meaningful)
    code_weight: float = Field(1.0, ge=0)
    # dropout on the item vectors before the backbone (None: train.dropout); GPT-2 applies its own embedding
    # dropout (train.dropout) after adding positions, so the default drops inputs twice
    input_dropout: float | None = Field(None, ge=0, lt=1)
    # 0: the dense softmax runs over the whole catalog (on Beauty it doubles a step's cost); N > 0: over the
    # batch's targets plus N items drawn uniformly per step (sampled softmax), a fraction of the cost
    dense_negatives: int = Field(0, ge=0)
    # items layout: a learned ID vector per item with at least ``item_id_min_count`` training interactions, added
    # to its pooled codes (inputs and the dense head's keys): warm items get SASRec's resolution, items with
    # fewer interactions keep codes and content only (their ID vector would be noise)
    item_ids: bool = False
    item_id_min_count: int = Field(6, ge=1)
    # items layout: constrained sequence learning (MSCGRec): each level's softmax runs over the codes that
    # continue the teacher-forced prefix to a real item, in training and in scoring, so the head learns to tell
    # real items apart instead of pushing down codes no item has
    constrained_loss: bool = False


class TokenLayoutConfig(Section):
    """The ``train`` keys only the token layout reads (``train.history: tokens``; token_family.py)."""

    num_decoder_layers: int | None = Field(None, ge=1)  # T5's decoder depth (None: num_layers)
    d_kv: int = Field(64, ge=1)  # per-head size of T5 and of the decoder-only LLM


class TrainConfig(ItemLayoutConfig, TokenLayoutConfig):
    """The generator's ``train`` section: the keys both families read, with each family's own keys inherited
    from its config class (the YAML stays flat; a key of the other family set to a non-default value is an
    error)."""

    HASH_IGNORE: ClassVar[frozenset[str]] = frozenset({"checkpoint_every_s"})
    HASH_OMIT_WHEN_DEFAULT: ClassVar[frozenset[str]] = frozenset({"dense_weight", "dense_temperature",
                                                                        "dense_negatives", "item_ids",
                                                                        "item_id_min_count", "constrained_loss",
                                                                        "valid_list", "code_weight", "dense_score",
                                                                        "input_dropout", "init_from"})

    backbone: Literal["t5", "decoder"] = "t5"
    # history layout: "tokens" feeds every code of every history item (the paper's); "items" one pooled
    # vector per history item into a GPT-2 decoder (cemg_ray/generate/itemseq.py; needs backbone: decoder)
    history: Literal["tokens", "items"] = "tokens"
    # "prefix": one example per prefix, supervised at its end (the paper's); "dense": the next item's codes
    # at every position of a user's sequence in one causal pass (needs history: items)
    objective: Literal["prefix", "dense"] = "prefix"
    pretrained: str | None = None  # hub id or local path; None builds the model from this config
    # from-scratch size (TIGER: d_model 128, 4+4 layers, 6 heads of 64, MLP 1024)
    d_model: int = Field(128, ge=1)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(6, ge=1)
    d_ff: int = Field(1024, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    # LoRA through peft (mostly for pretrained backbones)
    lora: bool = False
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture
    # distributed training
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: Literal[0, 1, 2] = 2
    offload: bool = False  # ZeRO optimizer-state offload to CPU memory
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16 on GPUs; fp32 on CPU
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(2.0, gt=0)  # also the worker's torch thread count on CPU
    use_gpu: bool = False
    max_failures: int = Field(1, ge=0)  # worker failures Ray Train recovers from the last checkpoint
    # a checkpoint at most every this many seconds and after the last epoch (0: every epoch); epochs of a
    # small catalog take about a second, and a checkpoint per epoch would cost more than the epoch
    checkpoint_every_s: float = Field(30.0, ge=0)
    # schedule (AdamW, linear warm-up then cosine decay)
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(256, ge=1)
    group_by_length: bool = True  # batches of similar history length: ~3x less padding on Beauty
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    # model selection on validation NDCG@10 (constrained beam search on a user sample)
    valid_users: int = Field(1000, ge=1)
    valid_beams: int = Field(20, ge=1)
    # which list early stopping follows: the constrained beam ("beam"), or the dense head's full-catalog ranking
    # with the history's items removed ("dense", as the harness ranks cemg_dense_all; needs train.dense_weight)
    valid_list: Literal["beam", "dense"] = "beam"
    patience: int = Field(3, ge=1)
    seed: int = 0
    log_every: int = Field(50, ge=0)  # steps between progress lines (rank 0); 0 turns them off
    kill_worker_after_epoch: int | None = None  # fault-injection hook for tests: SIGKILL once
    # wall-clock budget of training seconds (validation excluded): the cosine decay follows it and training
    # stops when it is spent (at most one batch later)
    max_train_s: float | None = Field(None, gt=0)
    # warm start (cemg-ray refresh): a run directory whose generator (generate/model) the weights start from; the
    # rows of items the catalog gained since start fresh (cemg_ray/refresh/warmstart.py)
    init_from: str | None = None

    @model_validator(mode="after")
    def _layouts_fit(self) -> TrainConfig:
        if self.history == "items" and self.backbone != "decoder":
            raise ValueError("train.history: 'items' runs a decoder backbone; set train.backbone: decoder")
        if self.objective == "dense" and self.history != "items":
            raise ValueError("train.objective: 'dense' needs train.history: items (the token layout trains "
                             "one example per prefix)")
        if self.valid_list == "dense" and not self.dense_weight:
            raise ValueError("train.valid_list: 'dense' ranks with the dense head; set train.dense_weight > 0")
        if not self.code_weight and not self.dense_weight:
            raise ValueError("train.code_weight: 0 leaves no loss without a dense head; set train.dense_weight > 0")
        own, other = ((ItemLayoutConfig, TokenLayoutConfig) if self.history == "items"
                      else (TokenLayoutConfig, ItemLayoutConfig))
        for name, field in other.model_fields.items():
            if name not in own.model_fields and getattr(self, name) != field.get_default(call_default_factory=True):
                layout = "items" if other is ItemLayoutConfig else "tokens"
                raise ValueError(f"train.{name}: only the {layout} layout reads it (train.history: {layout}); this "
                                 f"job trains the {self.history} layout: remove the key or set train.history")
        return self


class DecodeConfig(Section):
    """How the generator's lists are decoded: beam width, the named decoding policies and the default one
    (cemg_ray/generate/policy.py). Runs and job files written before policies existed are read through
    :func:`_legacy_keys`."""

    HASH_OMIT_WHEN_DEFAULT: ClassVar[frozenset[str]] = frozenset({"policy", "policies"})

    num_beams: int = Field(20, ge=1)
    # the policy a model without one (``cemg``) decodes with, unless evaluate.select_default chose another on
    # the validation split (eval/default_model.json)
    policy: str = DEFAULT_POLICY
    # knobs of named policies: built-in names (beam, unconstrained, cold_share, dense, merge, hybrid, dense_all)
    # need no ``kind``; a new name needs one. Asked for as ``cemg:NAME`` wherever a model is named.
    policies: dict[str, Policy] = Field(default_factory=dict)
    batch_size: int = Field(256, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        """Read the keys decode had when each policy was a model of its own (old job files and manifests)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        policies = {name: dict(body) if isinstance(body, dict) else body
                    for name, body in (data.get("policies") or {}).items()}
        moved = []
        for key, (name, knob) in LEGACY_DECODE_KEYS.items():
            if key in data:
                value = data.pop(key)
                if not (key == "cold_share" and not value):  # a share of 0 was "no reserved share"
                    policies.setdefault(name, {}).setdefault(knob, value)
                moved.append(f"decode.{key} -> decode.policies.{name}.{knob}")
        if "cold_bias" in data:  # read by two of the old models
            value = data.pop("cold_bias")
            for name in ("dense", "merge"):
                policies.setdefault(name, {}).setdefault("cold_bias", value)
            moved.append("decode.cold_bias -> decode.policies.dense.cold_bias and decode.policies.merge.cold_bias")
        for name, body in policies.items():
            if isinstance(body, dict) and "kind" not in body:
                if name not in BUILTIN:
                    raise ValueError(f"decode.policies.{name}: a policy with a new name needs a kind (one of "
                                     f"{', '.join(dict.fromkeys(p.kind for p in BUILTIN.values()))})")
                body["kind"] = BUILTIN[name].kind
        if moved:
            log.warning("decode: read old keys as decoding policies (write them so in the job): %s", "; ".join(moved))
        if policies or "policies" in data:
            data["policies"] = policies
        return data

    @model_validator(mode="after")
    def _default_policy_known(self) -> DecodeConfig:
        if self.policy not in self.named():
            raise ValueError(f"decode.policy: unknown policy {self.policy!r}; known: {', '.join(self.named())}")
        return self

    def named(self) -> dict[str, Any]:
        """Every policy the job can ask for by name: the built-ins with ``policies`` laid over them."""
        return named_policies(self.policies)

