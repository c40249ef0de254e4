"""``cemg-ray bench growth``: the real pipeline at two catalog sizes, stage times from the run's manifest."""

from __future__ import annotations

import json
import math

import pytest

from cemg_ray.bench.growth import from_kept, growth_per_10x, run, size_overrides
from cemg_ray.config import ConfigError, load_config


def test_growth_per_10x_is_10_for_linear_and_100_for_quadratic_time() -> None:
    assert growth_per_10x(2.0, 20.0, 1000, 10000) == pytest.approx(10.0)
    assert growth_per_10x(2.0, 200.0, 1000, 10000) == pytest.approx(100.0)
    assert growth_per_10x(1.0, 2.0, 1000, 100000) == pytest.approx(math.sqrt(2.0))
    assert growth_per_10x(0.0, 2.0, 1000, 10000) is None


@pytest.mark.parametrize("items", [1000, 100000, 1000000])
def test_size_overrides_make_a_valid_job_with_codes_enough_for_the_catalog(items: int) -> None:
    cfg = load_config("jobs/demo.yaml", size_overrides(items, 1.85, 1, "/tmp/growth"))
    assert cfg.dataset.synthetic.num_items == items
    assert cfg.dataset.synthetic.num_users == round(items * 1.85)
    assert cfg.lightgcn.epochs == cfg.tokenize.epochs == cfg.train.epochs == 1
    assert cfg.tokenize.codebook_size ** cfg.tokenize.num_levels >= 4 * items
    trained = load_config("jobs/demo.yaml", size_overrides(items, 1.85, 1, "/tmp/growth", tokenize_epochs=20))
    assert trained.tokenize.epochs == 20 and trained.train.epochs == 1
    with pytest.raises(ConfigError, match="tokenize.epochs"):  # 0 is refused by name, not read as "unset"
        load_config("jobs/demo.yaml", size_overrides(items, 1.85, 1, "/tmp/growth", tokenize_epochs=0))


def test_bench_growth_runs_the_pipeline_per_size_and_reads_each_stage_time(tmp_path, capsys) -> None:
    from cemg_ray.bench.growth import _print, plot

    stages = ["data", "popularity", "features", "pca"]
    out = run("jobs/demo.yaml", [120, 240], 2.0, 1, stages, ["features.image.image_size=32"], keep=str(tmp_path))
    assert [r["items"] for r in out["rows"]] == [120, 240]
    assert [r["users"] for r in out["rows"]] == [240, 480]
    for row in out["rows"]:
        assert set(row["wall_s"]) == set(stages) and min(row["wall_s"].values()) > 0
        assert row["interactions"] > row["users"]  # every synthetic user has several items
        manifest = json.loads((tmp_path / f"items-{row['items']}" / "manifest.json").read_text())
        assert {s: manifest["stages"][s]["wall_s"] for s in stages} == row["wall_s"]
    assert set(out["growth_per_10x"]) == set(stages) and all(len(g) == 1 for g in out["growth_per_10x"].values())
    _print(out)
    text = capsys.readouterr().out
    assert "features" in text and "/ 10x" in text and "240" in text
    plot(out, str(tmp_path / "growth.png"))
    assert (tmp_path / "growth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the kept sweep tabulates again without running, and a size stopped part-way keeps its finished stages
    kept = from_kept(str(tmp_path), stages)
    assert all(r["max_items_per_code"] is None for r in kept["rows"])  # no tokenize stage in this sweep
    assert [r["wall_s"] for r in kept["rows"]] == [r["wall_s"] for r in out["rows"]]
    assert [r["users"] for r in kept["rows"]] == [240, 480] and kept["users_per_item"] == 2.0
    path = tmp_path / "items-240" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["stages"]["pca"]
    path.write_text(json.dumps(manifest))
    partial = from_kept(str(tmp_path), stages)
    assert "pca" not in partial["rows"][1]["wall_s"] and partial["growth_per_10x"]["pca"] == [None]
    assert partial["rows"][1]["total_s"] == pytest.approx(sum(partial["rows"][1]["wall_s"].values()), abs=0.01)
    with pytest.raises(SystemExit, match="is not a folder"):
        from_kept(str(tmp_path / "missing"), stages)
    with pytest.raises(SystemExit, match="no items-N"):
        from_kept(str(tmp_path / "items-240"), stages)


def test_bench_growth_reads_precomputed_vectors_and_reports_each_stages_memory(tmp_path, capsys) -> None:
    """Issue 27: the driver's and the largest Ray worker's peak memory beside each stage's time; the encoders
    replaced by precomputed vectors."""
    from cemg_ray.bench.growth import MEMORY_FILE, _print

    stages = ["data", "popularity", "features", "pca"]
    out = run("jobs/demo.yaml", [150], 2.0, 1, stages, [], keep=str(tmp_path), precomputed_dims=(24, 12))
    manifest = json.loads((tmp_path / "items-150" / "manifest.json").read_text())
    features = manifest["stages"]["features"]["report"]
    assert features["text"]["precomputed"].endswith("vectors-150-text.npy") and features["text"]["dim"] == 24
    assert features["image"]["dim"] == 12
    memory = out["rows"][0]["memory_mib"]
    assert set(memory) == set(stages)
    assert all(memory[s]["driver_mib"] > 0 for s in stages)
    for s in ("data", "features", "pca"):  # their work runs in a Ray task: a worker of this cluster holds it
        assert memory[s]["worker_mib"] > 0 and memory[s]["worker"].startswith("ray::"), memory[s]
    assert json.loads((tmp_path / "items-150" / MEMORY_FILE).read_text()) == memory
    assert from_kept(str(tmp_path), stages)["rows"][0]["memory_mib"] == memory
    _print(out)
    assert "driver / largest Ray worker" in capsys.readouterr().out


def test_worker_memory_windows_come_from_the_manifest_and_the_peak_from_the_samples() -> None:
    from cemg_ray.bench.memory import WorkerMemorySampler, stage_windows

    manifest = {"stages": {"a": {"status": "ok", "wall_s": 10.0, "finished": "2026-01-01T00:00:10+00:00"},
                           "b": {"status": "failed", "wall_s": 1.0}}}
    start, end = stage_windows(manifest)["a"]
    assert end - start == 10.0 and set(stage_windows(manifest)) == {"a"}
    sampler = WorkerMemorySampler(samples=[(start - 1, 900, "ray::x"), (start + 1, 300, "ray::y"),
                                           (end, 500, "ray::z"), (end + 1, 999, "ray::w")])
    assert sampler.peak_between(start, end) == (500, "ray::z")
    assert sampler.peak_between(end + 5, end + 6) == (0, "")
