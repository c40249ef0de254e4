"""`cemg-ray bench serving` end to end on a tiny budget: four configurations, figures and ratios."""

from __future__ import annotations

import json


def test_bench_serving_reports_every_configuration(trained_run, capsys) -> None:
    from cemg_ray.cli import main

    run_dir, _ = trained_run
    code = main(["bench", "serving", "--run-dir", str(run_dir), "--model", "sasrec", "--requests", "16",
                 "--warmup", "4", "--concurrency", "4", "--replica-cpus", "0.5", "--num-cpus", "2", "--json"])
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("{\n"):])  # Ray may print its own log lines before the JSON
    assert code == 0
    assert [(r["replicas"], r["batching"]) for r in out["results"]] == [(1, True), (1, False), (2, True), (2, False)]
    for r in out["results"]:
        assert r["errors"] == 0 and r["requests"] == 16 and r["req_per_s"] > 0
        assert 0 < r["p50_ms"] <= r["p99_ms"]
    assert set(out["ratios"]) == {"batching_speedup_1_replicas", "batching_speedup_2_replicas",
                                  "two_replicas_speedup_batching_on", "two_replicas_speedup_batching_off"}
    assert out["date"] and "CPUs" in out["machine"]
