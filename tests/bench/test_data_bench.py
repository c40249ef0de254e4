"""``cemg-ray bench data`` on a small synthetic parquet: both loaders, each in its own process, identical outputs."""

from __future__ import annotations

import pyarrow.parquet as pq


def test_bench_data_measures_both_paths_and_checks_their_outputs_agree(tmp_path) -> None:
    from cemg_ray.bench.data import PATHS, run

    out = run([3000], tmp_path, users_per=10, items_per=20)
    (row,) = out["sizes"]
    assert row["dataset"]["interactions"] == 3000 and row["dataset"]["bytes_on_disk"] > 0
    assert set(row["paths"]) == set(PATHS) and row["identical_outputs"] is True
    for r in row["paths"].values():
        assert r["wall_s"] > 0 and r["peak_rss_bytes"] >= r["start_rss_bytes"] > 0
        assert r["users"] == 300 and r["report"]["skipped_total"] == row["paths"]["arrow"]["report"]["skipped_total"]
    assert row["ratios"]["wall"] > 0 and row["ratios"]["peak_above_start"] > 0
    assert pq.read_table(tmp_path / "parquet-3000" / "interactions.parquet").num_rows == 3000


def test_bench_data_is_a_cli_subcommand() -> None:
    from cemg_ray.cli import build_parser

    args = build_parser().parse_args(["bench", "data", "--interactions", "1000", "--path", "arrow", "--json"])
    assert args.interactions == "1000" and args.path == "arrow" and args.json
