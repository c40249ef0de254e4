"""Config of the fusion + RQ-VAE tokenization stage."""

from __future__ import annotations

from cemg_ray.configbase import Section


class TokenizeConfig(Section):
    # ablation switches (paper section 4.3)
    use_image: bool = True
    use_text: bool = True
    use_collab: bool = True
    use_guide: bool = True  # False: fixed equal weights instead of collaborative-guided attention
    # RQ-VAE (paper: M=4, K=512, lambda_q=0.25, lambda_d=0.01)
    num_levels: int = 4
    codebook_size: int = 512
    latent_dim: int = 32
    hidden_dims: list[int] = [512, 256, 128]
    lambda_q: float = 0.25
    lambda_d: float = 0.01
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    seed: int = 0
