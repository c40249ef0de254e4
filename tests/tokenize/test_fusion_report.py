"""The fusion weights broken down by popularity and genre, from the stage and from an existing run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cemg_ray.tokenize.fusion_report import MIN_GENRE_ITEMS, fusion_breakdown, fusion_table
from tests.conftest import FAST_DEMO, REPO


def _planted(n: int = 200) -> tuple:
    """alpha_visual rises with the item's training count; Animation items lean on the image."""
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 300, n)
    av = 0.2 + 0.6 * counts / 300
    genres = [["Animation"] if i % 4 == 0 else ["Drama"] for i in range(n)]
    av[::4] += 0.1
    alpha = np.stack([av, 1 - av], 1)
    present = np.ones((n, 2), dtype=bool)
    present[-5:, 0] = False  # no poster: not part of the two-modality statistics
    alpha[-5:] = [0.0, 1.0]
    return alpha, present, counts, genres


def test_breakdown_finds_planted_popularity_and_genre_effects() -> None:
    alpha, present, counts, genres = _planted()
    out = fusion_breakdown(fusion_table(alpha, present, counts, genres))
    assert out["items_with_both"] == 195
    assert out["spearman_alpha_visual_vs_train_count"] > 0.9
    buckets = [b["alpha_visual"].get("mean") for b in out["by_popularity"] if b["alpha_visual"]["items"]]
    assert buckets == sorted(buckets)  # rises with popularity, as planted
    assert out["by_genre"]["Animation"]["alpha_visual"]["mean"] > out["by_genre"]["Drama"]["alpha_visual"]["mean"]
    assert list(out["by_genre"])[0] == "Animation"  # sorted by mean alpha_visual


def test_entropy_is_one_bit_for_equal_weights_and_rare_genres_are_left_out() -> None:
    n = 30
    alpha = np.full((n, 2), 0.5)
    genres = [["Rare"] if i < MIN_GENRE_ITEMS - 1 else ["Common"] for i in range(n)]
    table = fusion_table(alpha, np.ones((n, 2), dtype=bool), np.arange(n), genres)
    assert np.allclose(table.column("entropy_bits").to_numpy(), 1.0)
    out = fusion_breakdown(table)
    assert "Rare" not in out["by_genre"] and out["alpha_visual"]["std"] == pytest.approx(0.0)
    assert "spearman_alpha_visual_vs_train_count" not in out  # undefined when alpha does not move


def test_stage_writes_the_analysis_and_the_command_recomputes_it(demo_run, capsys) -> None:
    from cemg_ray.cli import main

    cfg, store = demo_run
    written = store.read_parquet("tokenize/fusion.parquet").to_pandas()
    assert len(written) == store.read_parquet("data/items.parquet").num_rows
    assert store.exists("tokenize/fusion.png")
    report = store.read_json("tokenize/report.json")["fusion"]["breakdown"]
    assert report["items_with_both"] == int((written["has_image"] & written["has_text"]).sum())
    job = str(REPO / "jobs" / "demo.yaml")
    assert main(["codes", "fusion", job, "--run-dir", store.root_uri,
                 *[a for kv in FAST_DEMO for a in ("--set", kv)]]) == 0
    printed = json.loads(capsys.readouterr().out.split("\ntable:")[0])
    assert printed["items_with_both"] == report["items_with_both"]
    again = store.read_parquet("tokenize/fusion.parquet").to_pandas()
    assert np.allclose(again["alpha_visual"], written["alpha_visual"], atol=1e-6)



def test_breakdown_reports_what_the_weights_follow_when_given_the_input_norms() -> None:
    alpha, present, counts, genres = _planted()
    text_norm = alpha[:, 0] * 3 + 1  # planted: alpha_visual rises with the text vector's norm
    out = fusion_breakdown(fusion_table(alpha, present, counts, genres, np.ones(len(alpha)), text_norm))
    assert out["spearman_alpha_visual_vs_text_norm"] > 0.99
    assert out["spearman_alpha_visual_vs_image_norm"] is None  # constant: undefined, not NaN
