"""``cemg-ray bench split`` on a small table: both paths, each in its own process, the same split."""

from __future__ import annotations


def test_bench_split_measures_both_paths_and_checks_they_agree(tmp_path) -> None:
    from cemg_ray.bench.split import PATHS, run

    out = run([2000], tmp_path, max_len=20)
    (row,) = out["sizes"]
    assert row["identical"] is True and row["dataset"]["users"] == 2000
    assert set(row["paths"]) == set(PATHS)
    for r in row["paths"].values():
        assert r["wall_s"] > 0 and r["peak_rss_bytes"] >= r["start_rss_bytes"] > 0
        assert r["split_users"] == row["paths"]["ragged"]["split_users"] > 0
    assert row["ratios"]["wall"] > 0 and row["ratios"]["peak_above_start"] > 0


def test_bench_split_is_a_cli_subcommand() -> None:
    from cemg_ray.cli import build_parser

    args = build_parser().parse_args(["bench", "split", "--users", "1000", "--json"])
    assert args.users == "1000" and args.json
