"""The generator contract: one family per layout, picked by config or by a saved model, one search for both."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from cemg_ray.generate.config import ItemLayoutConfig, TokenLayoutConfig, TrainConfig
from cemg_ray.generate.dataset import build_tensors, item_eval_tensors
from cemg_ray.generate.decoding import build_index, constrained_beam_search
from cemg_ray.generate.family import GeneratorFamily, families, family_for, family_of_model_dir
from cemg_ray.generate.item_decoding import beam_search_from_hidden
from cemg_ray.generate.itemseq import build_item_model
from cemg_ray.generate.model import build_model
from cemg_ray.generate.tokens import TokenLayout

LAYOUT = TokenLayout((4, 3, 2))
CODES = np.array([[0, 0, 0], [0, 0, 1], [0, 2, 0], [1, 1, 0], [2, 0, 0], [2, 1, 0], [3, 2, 0], [3, 2, 1]])
HISTORIES = [np.array([0, 3]), np.array([5]), np.array([1, 2, 7])]
TARGETS = np.array([4, 6, 0])


def _item_cfg(**kw: object) -> TrainConfig:
    return TrainConfig(**{**dict(backbone="decoder", history="items", objective="dense", d_model=16, num_layers=2,
                                 num_heads=2, d_ff=32, dropout=0.0), **kw})


def _token_cfg(**kw: object) -> TrainConfig:
    return TrainConfig(**{**dict(backbone="t5", d_model=32, num_layers=2, num_heads=2, d_kv=16, d_ff=64,
                                 dropout=0.0), **kw})


def test_each_layout_has_one_family_that_implements_the_whole_contract() -> None:
    contract = {name for name, _ in inspect.getmembers(GeneratorFamily, inspect.isfunction) if not name.startswith("_")}
    contract |= set(GeneratorFamily.__annotations__)
    assert set(families()) == {"tokens", "items"}
    for history, family in families().items():
        assert family.history == history
        missing = {name for name in contract if not hasattr(family, name)}
        assert not missing, f"{type(family).__name__} lacks {missing}"
    assert family_for(_item_cfg()).history == "items" and family_for(_token_cfg()).history == "tokens"


def test_a_saved_model_names_its_family_and_a_folder_without_one_is_an_error(tmp_path) -> None:
    item_model = build_item_model(_item_cfg(), LAYOUT, CODES, 5).eval()
    token_model = build_model(_token_cfg(), LAYOUT).eval()
    for family, model in ((families()["items"], item_model), (families()["tokens"], token_model)):
        family.save(model, LAYOUT, tmp_path / family.history)
        assert family_of_model_dir(tmp_path / family.history).history == family.history
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: not a saved generator"):
        family_of_model_dir(tmp_path / "empty")


def test_both_families_validate_through_the_one_search_and_it_equals_each_familys_own_entry_point() -> None:
    index = build_index(CODES, LAYOUT)
    item_model = build_item_model(_item_cfg(), LAYOUT, CODES, 5).eval()
    rows = item_eval_tensors(HISTORIES, TARGETS, 5)
    got = families()["items"].top_k(item_model, rows, index, 6, 4, "beam")
    hidden = item_model.last_hidden(torch.as_tensor(rows["items"]))
    assert np.array_equal(got, beam_search_from_hidden(item_model, hidden, index, 6, 4)[0].numpy())

    token_model = build_model(_token_cfg(), LAYOUT).eval()
    rows = build_tensors(HISTORIES, TARGETS, CODES, LAYOUT, 5)
    got = families()["tokens"].top_k(token_model, rows, index, 6, 4, "beam")
    ids, mask = torch.as_tensor(rows["input_ids"]).long(), torch.as_tensor(rows["attention_mask"]).long()
    assert np.array_equal(got, constrained_beam_search(token_model, ids, mask, index, 6, 4)[0].numpy())
    assert ((got >= 0) & (got < len(CODES))).all()
    with pytest.raises(ValueError, match="train.valid_list"):
        families()["tokens"].top_k(token_model, rows, index, 6, 4, "dense")


def test_the_train_section_splits_per_family_and_a_key_of_the_other_family_is_an_error() -> None:
    item_keys, token_keys = set(ItemLayoutConfig.model_fields), set(TokenLayoutConfig.model_fields)
    assert not item_keys & token_keys
    assert item_keys | token_keys <= set(TrainConfig.model_fields)
    with pytest.raises(ValueError, match="train.d_kv: only the tokens layout reads it"):
        _item_cfg(d_kv=32)
    with pytest.raises(ValueError, match="train.dense_weight: only the items layout reads it"):
        _token_cfg(dense_weight=1.0)
    # a key at its default is no conflict: jobs that extend a token-layout job and switch to items still validate
    assert _item_cfg(d_kv=64).d_kv == 64 and _token_cfg(content_input=False).history == "tokens"
