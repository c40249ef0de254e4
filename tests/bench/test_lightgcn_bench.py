"""``cemg-ray bench lightgcn`` on a small random graph: both paths timed in one run, with their ratios."""

from __future__ import annotations

import pytest


def test_bench_lightgcn_times_both_paths_and_reports_ratios() -> None:
    from cemg_ray.bench.lightgcn import run

    out = run(None, dim=8, layers=2, batch=256, repeats=1, size=(300, 200, 2000))
    assert out["graph"] == "random graph" and out["edges"] == 2000
    assert set(out["step_s"]) == set(out["epoch_s"]) == {"edge_index", "csr_adjacency"}
    assert min(out["step_s"].values()) > 0 and min(out["epoch_s"].values()) > 0
    r = out["ratios"]
    assert r["step_edge_index_over_csr"] == pytest.approx(out["step_s"]["edge_index"] / out["step_s"]["csr_adjacency"])
    assert r["sampler_set_over_searchsorted"] > 0
