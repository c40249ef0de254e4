"""The demo job end to end on a local Ray cluster: every stage runs and CEMG ends with real metrics."""

from __future__ import annotations


def test_demo_job_runs_every_stage_and_writes_metrics(demo_run) -> None:
    cfg, store = demo_run
    manifest = store.read_json("manifest.json")
    assert set(manifest["stages"]) >= {"data", "features", "pca", "lightgcn", "tokenize", "train", "evaluate"}
    assert all(s["wall_s"] >= 0 for s in manifest["stages"].values())
    metrics = store.read_json("eval/metrics.json")
    for model in ("popularity", "sasrec", "cemg"):
        assert set(metrics[model]["overall"]) == {f"{m}@{k}" for m in ("HR", "NDCG") for k in (5, 10, 20)}
        assert metrics[model]["users"] == 400
    # planted structure is learnable: the generator beats the most-popular floor by a wide margin
    assert metrics["cemg"]["overall"]["HR@10"] > 3 * metrics["popularity"]["overall"]["HR@10"]
    assert store.exists("eval/report.md")
