"""``cemg-ray bench decode`` on a tiny catalog: every path measured, ratios from the same run, a profile."""

from __future__ import annotations


def test_bench_decode_reports_throughputs_ratios_scaling_and_profile() -> None:
    from cemg_ray.bench.decode import run

    out = run(items=300, batch=4, beams=4, k=2, levels=2, codebook=16, scale=[200, 400], repeats=1, threads=1,
              profile=True)
    ups = out["users_per_s"]
    assert set(ups) == {"cemg_ray", "hf_constrained", "hf_unconstrained"} and min(ups.values()) > 0
    assert abs(out["ratios"]["vs_hf_constrained"] - ups["cemg_ray"] / ups["hf_constrained"]) < 1e-6
    sec = out["seconds_per_batch"]
    assert abs(sec["cemg_ray"] * ups["cemg_ray"] - 4) < 1e-6 and 0 < sec["encoder_only"]
    assert [r["items"] for r in out["scaling"]] == [200, 400] and all(r["index_mb"] > 0 for r in out["scaling"])
    ops = out["profile"]
    assert ops and all(op["self_cpu_ms"] >= 0 and 0 <= op["share"] <= 1 for op in ops)
    assert ops == sorted(ops, key=lambda op: op["self_cpu_ms"], reverse=True)


def test_bench_decode_items_backbone_against_exact_scoring() -> None:
    from cemg_ray.bench.decode import run_items

    out = run_items(items=300, batch=4, beams=4, k=2, levels=2, codebook=16, scale=[200, 400], repeats=1, threads=1)
    ups = out["users_per_s"]
    assert set(ups) == {"cemg_ray_items", "exhaustive_scoring"} and min(ups.values()) > 0
    assert abs(out["ratios"]["vs_exhaustive"] - ups["cemg_ray_items"] / ups["exhaustive_scoring"]) < 1e-6
    assert 0 < out["seconds_per_batch"]["backbone_only"]
    assert [r["items"] for r in out["scaling"]] == [200, 400]
