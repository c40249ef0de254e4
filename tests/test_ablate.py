"""``cemg-ray ablate``: every (row, seed) cell is a real run; shared stages are computed once and copied."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cemg_ray.ablate import ROWS_BY_NAME, cell_config, summarize, summary_markdown
from tests.conftest import REPO

TINY = ["dataset.synthetic.num_users=150", "dataset.synthetic.num_items=60", "dataset.synthetic.num_clusters=4",
        "features.image.image_size=32", "sasrec.epochs=2", "lightgcn.epochs=5", "tokenize.epochs=20",
        "train.epochs=2", "train.valid_users=50", "evaluate.num_actors=0"]  # six evaluations: no actor pool start


def test_cell_config_sets_every_seed_and_its_own_run_dir(tmp_path) -> None:
    cfg = cell_config(str(REPO / "jobs" / "demo.yaml"), [f"run_dir={tmp_path}"], ROWS_BY_NAME["wo_image"], 3)
    assert cfg.run_dir == f"{tmp_path}/ablate/seed3/wo_image"
    assert (cfg.lightgcn.seed, cfg.tokenize.seed, cfg.train.seed, cfg.sasrec.seed) == (3, 3, 3, 3)
    assert cfg.tokenize.use_image is False and cfg.evaluate.models == ["cemg"] and cfg.evaluate.split == "test"


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    def cell(hr: float) -> dict:
        metrics = {f"{m}@{k}": hr for m in ("HR", "NDCG") for k in (5, 10, 20)}
        return {"overall": metrics, "cold_start": metrics, "wall_s": 10.0}

    rows = [ROWS_BY_NAME["full"]]
    summary = summarize(rows, {"full": {0: cell(0.1), 1: cell(0.2), 2: cell(0.3)}})
    hr = summary["full"]["overall"]["HR@10"]
    assert hr["mean"] == pytest.approx(0.2) and hr["std"] == pytest.approx(0.1)
    assert "0.2000 +- 0.1000" in summary_markdown(rows, summary, [0, 1, 2])


def test_ablate_runs_every_cell_and_copies_the_stages_it_shares(tmp_path, capsys) -> None:
    """One seed (two pipelines: the full cell, then w/o guide on what it shares); the seeds' own settings:
    test_cell_config_sets_every_seed_and_its_own_run_dir, their mean and std: test_summary_is_mean_and_sample_std."""
    from cemg_ray.cli import main
    from cemg_ray.store import Store

    run_dir = tmp_path / "run"
    sets = [a for kv in [f"run_dir={run_dir}", *TINY] for a in ("--set", kv)]
    assert main(["ablate", str(REPO / "jobs" / "demo.yaml"), "--seeds", "3", "--rows", "full,wo_guide,sasrec",
                 *sets]) == 0
    printed = capsys.readouterr().out
    assert "w/o guide" in printed and "+-" in printed
    summary = json.loads((run_dir / "ablate" / "summary.json").read_text())
    assert summary["seeds"] == [3] and set(summary["rows"]) == {"full", "wo_guide", "sasrec"}
    assert all(summary["rows"][r]["seeds"] == 1 for r in summary["rows"])
    full_cell = Store(str(run_dir / "ablate" / "seed3" / "full"))
    cell = Store(str(run_dir / "ablate" / "seed3" / "wo_guide"))
    stages = cell.read_json("manifest.json")["stages"]
    # copied in, so the pipeline skipped them; the tokenizer and the generator ran for this cell
    assert {stages[s]["status"] for s in ("data", "features", "pca", "lightgcn")} == {"skipped"}
    assert stages["tokenize"]["status"] == stages["train"]["status"] == "ok"
    assert cell.read_json("manifest.json")["config"]["train"]["seed"] == 3
    fusion = cell.read_parquet("tokenize/fusion.parquet").to_pandas()
    both = fusion["has_image"] & fusion["has_text"]
    assert np.allclose(fusion.loc[both, "alpha_visual"], 0.5)  # without the guide: equal weights
    # the seeded stage copied is the full cell's own (same seed), byte for byte
    assert cell.read_bytes("lightgcn/item_emb.safetensors") == full_cell.read_bytes("lightgcn/item_emb.safetensors")
    # the sasrec row is read from the full cell, not trained again
    assert summary["cells"]["sasrec"]["3"]["overall"] == full_cell.read_json("eval/metrics.json")["sasrec"]["overall"]
    # the seed-free stages were computed by the first cell and kept in the shared store for the next seeds
    assert full_cell.read_json("manifest.json")["stages"]["features"]["status"] == "ok"
    assert Store(str(run_dir)).exists("_stages/features.json")


def test_ablate_names_an_unknown_row(tmp_path, capsys) -> None:
    from cemg_ray.cli import main

    assert main(["ablate", str(REPO / "jobs" / "demo.yaml"), "--rows", "full,wo_magic",
                 "--set", f"run_dir={tmp_path}"]) == 2
    assert "wo_magic" in capsys.readouterr().err
