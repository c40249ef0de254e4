"""Config of the fusion + RQ-VAE tokenization stage."""

from __future__ import annotations

from cemg_ray.configbase import Section


class TokenizeConfig(Section):
    # ablation switches (paper section 4.3)
    use_image: bool = True
    use_text: bool = True
    use_collab: bool = True
    use_guide: bool = True  # False: fixed equal weights instead of collaborative-guided attention
    attn_dim: int | None = None  # rows of W_q and W_k; None = the content width d (paper: d x d)
    attn_scale: bool = False  # divide the Eq. 2 logits by sqrt(attn_dim); the paper does not
    cold_collab_neighbours: int = 10  # items without interactions borrow e_c from their content kNN
    # RQ-VAE (paper: M=4, K=512, lambda_q=0.25, lambda_d=0.01)
    num_levels: int = 4
    codebook_size: int = 512
    latent_dim: int = 32
    hidden_dims: list[int] = [512, 256, 128]
    dropout: float = 0.0
    lambda_q: float = 0.25
    lambda_d: float = 0.01
    commitment_beta: float = 0.25  # inside L_quant: codebook term + beta * commitment term
    diversity_temperature: float = 1.0
    kmeans_init: bool = True
    dead_code_reset: bool = True
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    disamb_headroom: int = 4  # spare slots in the disambiguation level for items added later
    seed: int = 0
