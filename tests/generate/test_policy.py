"""Decoding policies: references, knobs validated by their policy, and the old names and keys read as policies."""

from __future__ import annotations

import pytest

from cemg_ray.generate.config import DecodeConfig
from cemg_ray.generate.policy import (
    BUILTIN,
    HybridPolicy,
    PolicyError,
    legacy_hint,
    parse_ref,
    resolve,
)


def test_references_name_a_model_a_policy_and_knobs() -> None:
    assert parse_ref("cemg") == ("cemg", None, {})
    assert parse_ref("cemg:hybrid") == ("cemg", "hybrid", {})
    assert parse_ref("cemg:hybrid(weight=0.7, cold_bias=2)") == ("cemg", "hybrid", {"weight": "0.7", "cold_bias": "2"})
    for bad in ("cemg:", "cemg:hybrid(weight)", "cemg hybrid", "cemg:hybrid(weight=1"):
        with pytest.raises(PolicyError, match="evaluate.models"):
            parse_ref(bad, "evaluate.models")


def test_knobs_are_validated_by_their_policy_and_overrides_keep_the_rest() -> None:
    named = DecodeConfig(policies={"hybrid": {"weight": 0.6, "cold_bias": 2.5}}).named()
    assert resolve("hybrid", {}, named) == HybridPolicy(weight=0.6, cold_bias=2.5)
    assert resolve("hybrid", {"weight": "0.7"}, named) == HybridPolicy(weight=0.7, cold_bias=2.5)
    with pytest.raises(PolicyError, match="weight"):
        resolve("hybrid", {"weight": "1.5"}, named)
    with pytest.raises(PolicyError, match="share"):
        resolve("hybrid", {"share": "0.5"}, named)  # a knob of another policy
    with pytest.raises(PolicyError, match="unknown decoding policy 'hybridd'"):
        resolve("hybridd", {}, named)


def test_a_new_policy_name_needs_a_kind_and_may_be_the_default() -> None:
    cfg = DecodeConfig(policies={"gentle": {"kind": "hybrid", "weight": 0.9}}, policy="gentle")
    assert cfg.named()["gentle"] == HybridPolicy(weight=0.9)
    with pytest.raises(ValueError, match="needs a kind"):
        DecodeConfig(policies={"gentle": {"weight": 0.9}})
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        DecodeConfig(policy="nope")


def test_old_decode_keys_are_read_into_the_policies_that_used_them(caplog) -> None:
    old = DecodeConfig(cold_share=0.3, cold_bias=-0.5, hybrid_weight=0.8, hybrid_cold_bias=2.5)
    named = old.named()
    assert named["cold_share"].share == 0.3
    assert named["dense"].cold_bias == -0.5 and named["merge"].cold_bias == -0.5
    assert named["hybrid"] == HybridPolicy(weight=0.8, cold_bias=2.5)
    assert named["beam"] == BUILTIN["beam"]
    assert "decode.hybrid_weight -> decode.policies.hybrid.weight" in caplog.text
    assert DecodeConfig(cold_share=0.0).named()["cold_share"] == BUILTIN["cold_share"]  # 0 meant "none reserved"


def test_old_model_names_say_which_policy_to_write() -> None:
    assert legacy_hint("cemg_dense_all") == ("'cemg_dense_all' is no longer a model: it is the decoding policy "
                                             "'dense_all' of the model 'cemg'; write 'cemg:dense_all'")
    assert legacy_hint("cemg") == ""
