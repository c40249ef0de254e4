"""The artifact contract names every stage the pipeline knows."""

from __future__ import annotations

from cemg_ray import artifacts
from cemg_ray.pipeline import STAGE_MODULES


def test_every_stage_declares_its_outputs() -> None:
    assert set(artifacts.STAGE_OUTPUTS) == set(STAGE_MODULES)
    assert artifacts.stage_marker("tokenize") == "_stages/tokenize.json"
