"""``cemg-ray bench pca``: a sampled fit against the exact one, on the same rows, in one run."""

from __future__ import annotations

import pytest


def test_bench_pca_reports_what_each_sample_loses_against_the_exact_fit(capsys) -> None:
    from sklearn.decomposition import PCA

    from cemg_ray.bench.pca import _print, low_rank, run

    x = low_rank(3000, 48, 24)
    out = run(x, 8, [200, 1000, 5000], "test")
    assert [r["sample"] for r in out["sampled"]] == [200, 1000]  # a sample as large as the data is the exact fit
    exact = PCA(n_components=8).fit(x).explained_variance_ratio_.sum()
    assert out["exact"]["captured"] == pytest.approx(exact, abs=1e-4)  # the exact basis: sklearn's own figure
    for r in out["sampled"]:
        assert 0 < r["captured"] <= out["exact"]["captured"] + 1e-6
        assert r["lost"] == pytest.approx(out["exact"]["captured"] - r["captured"], abs=2e-5)
    assert out["sampled"][1]["lost"] <= out["sampled"][0]["lost"] + 1e-3  # a larger sample loses no more
    _print(out)
    assert "exact fit" in capsys.readouterr().out
