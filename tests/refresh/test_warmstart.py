"""The warm start: matching parameters copied, a per-item table that grew keeps its old rows, buffers untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemg_ray.generate.config import TrainConfig
from cemg_ray.generate.itemseq import build_item_model
from cemg_ray.generate.tokens import TokenLayout
from cemg_ray.refresh.warmstart import WarmStartError, copy_weights

CFG = TrainConfig(backbone="decoder", history="items", objective="dense", d_model=16, num_layers=1, num_heads=2,
                  d_ff=32, item_ids=True, item_id_min_count=1, dense_weight=1.0, content_input=True)


def _model(n: int, seed: int) -> torch.nn.Module:
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.integers(0, 4, (n, 2)), np.arange(n)[:, None] % 16], 1)
    layout = TokenLayout((4, 4, 16))
    content = rng.normal(size=(n, 6)).astype(np.float32)
    return build_item_model(CFG.model_copy(update={"seed": seed}), layout, codes, 5, content, np.ones(n))


def test_a_grown_catalog_keeps_the_old_rows_and_its_own_buffers() -> None:
    old, new = _model(10, seed=1), _model(12, seed=2)
    before_new = {k: v.clone() for k, v in new.state_dict().items()}
    report = copy_weights(new, {k: v for k, v in old.state_dict().items()})
    assert report["grown"] == {"id_emb.weight": [10, 12]} and not report["fresh"]
    assert torch.equal(new.id_emb.weight[:10], old.id_emb.weight)
    assert torch.equal(new.id_emb.weight[10:], before_new["id_emb.weight"][10:])  # new items: fresh rows
    assert torch.equal(new.code_emb.weight, old.code_emb.weight)
    assert torch.equal(new.backbone.h[0].attn.c_attn.weight, old.backbone.h[0].attn.c_attn.weight)
    for name in ("item_tokens", "content", "id_mask"):  # the catalog of the run being trained
        assert torch.equal(getattr(new, name), before_new[name])


def test_another_architecture_is_refused_by_name() -> None:
    old = _model(10, seed=1)
    wide = build_item_model(CFG.model_copy(update={"d_model": 32}), old.layout, np.zeros((10, 3), np.int64), 5,
                            np.zeros((10, 6), np.float32), np.ones(10))
    with pytest.raises(WarmStartError, match="not the same architecture"):
        copy_weights(wide, old.state_dict())
    with pytest.raises(WarmStartError, match="no parameter of the previous model matches"):
        copy_weights(old, {"nothing": torch.zeros(1)})
