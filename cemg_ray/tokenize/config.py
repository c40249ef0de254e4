"""Config of the tokenization stage: CEMG's fusion + RQ-VAE, or MSCGRec's one quantizer per modality."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from cemg_ray.configbase import Section


class TokenizeConfig(Section):
    # options added after run directories existed: they count in the stage hash only when set
    HASH_OMIT_WHEN_DEFAULT: ClassVar[frozenset[str]] = frozenset({"scheme", "modality_levels",
                                                                        "modality_codebook_size", "collab_source",
                                                                        "cpus_per_worker"})
    # the Ray Train worker the fusion and RQ-VAE train in (scheme cemg; the driver only encodes the catalog with
    # the weights it reports): its CPUs, also its torch threads
    cpus_per_worker: float = Field(2.0, gt=0)

    # "cemg": collaborative-guided fusion of the modalities, then one RQ-VAE (the paper's Eq. 2-4);
    # "mscgrec": every modality quantized on its own, the blocks concatenated (cemg_ray/tokenize/mscgrec.py)
    scheme: Literal["cemg", "mscgrec"] = "cemg"
    # where the collaborative modality comes from: LightGCN's item embeddings (stage ``lightgcn``) or the trained
    # SASRec's (stage ``sasrec``, MSCGRec's choice); the stage's dependencies follow it
    collab_source: Literal["lightgcn", "sasrec"] = "lightgcn"
    # ablation switches (paper section 4.3)
    use_image: bool = True
    use_text: bool = True
    use_collab: bool = True
    use_guide: bool = True  # False: fixed equal weights instead of collaborative-guided attention
    attn_dim: int | None = Field(None, ge=1)  # rows of W_q and W_k; None = the content width d (paper: d x d)
    attn_scale: bool = False  # divide the Eq. 2 logits by sqrt(attn_dim); the paper does not
    cold_collab_neighbours: int = Field(10, ge=1)  # items without interactions borrow e_c from their content kNN
    # RQ-VAE (paper: M=4, K=512, lambda_q=0.25, lambda_d=0.01)
    num_levels: int = Field(4, ge=1)
    codebook_size: int = Field(512, ge=2)
    latent_dim: int = Field(32, ge=1)
    hidden_dims: list[Annotated[int, Field(ge=1)]] = [512, 256, 128]
    dropout: float = Field(0.0, ge=0, lt=1)
    lambda_q: float = Field(0.25, ge=0)
    lambda_d: float = Field(0.01, ge=0)
    commitment_beta: float = Field(0.25, ge=0)  # inside L_quant: codebook term + beta * commitment term
    diversity_temperature: float = Field(1.0, gt=0)
    kmeans_init: bool = True
    dead_code_reset: bool = True
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    # mscgrec: residual levels and codes per level of each modality's quantizer (the paper: 3 x 256)
    modality_levels: int = Field(3, ge=1)
    modality_codebook_size: int = Field(256, ge=2)
    disamb_headroom: int = Field(4, ge=0)  # spare slots in the disambiguation level for items added later
    seed: int = 0
