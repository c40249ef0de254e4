"""The evaluate stage keeps the committed rows of models it did not re-run, while their models are unchanged."""

import logging
import shutil

from cemg_ray.artifacts import METRICS
from cemg_ray.config import load_config
from cemg_ray.pipeline import run_pipeline
from cemg_ray.store import Store
from tests.conftest import FAST_DEMO, REPO


def _job(run_dir, *overrides):
    return load_config(REPO / "jobs" / "demo.yaml", [f"run_dir={run_dir}", *FAST_DEMO, *overrides])


def test_rerun_keeps_other_rows_and_drops_retrained_ones(demo_run, tmp_path, caplog):
    _, demo_store = demo_run
    run_dir = tmp_path / "run"
    shutil.copytree(demo_store.root_uri, run_dir)
    store = Store(str(run_dir))

    run_pipeline(_job(run_dir, "evaluate.models=[popularity,sasrec,cemg_cold]"), ["evaluate"])
    first = store.read_json(METRICS)
    # the demo's other rows (cemg_cold, cemg_dense: same models, not re-run) are kept as well
    assert {"popularity", "sasrec", "cemg", "cemg_cold"} <= set(first)

    # one model again with a changed decoding setting: the other rows stay, the re-run one is updated
    run_pipeline(_job(run_dir, "evaluate.models=[cemg_cold]", "decode.cold_share=0.6"), ["evaluate"])
    second = store.read_json(METRICS)
    assert set(second) == set(first)
    assert all(second[name] == first[name] for name in first if name != "cemg_cold")
    assert second["cemg_cold"]["overall"]["HR@10"] < first["cemg_cold"]["overall"]["HR@10"]
    assert "sasrec" in store.read_text("eval/report.md")

    # SASRec retrained: its old row no longer describes the model in the run directory
    run_pipeline(_job(run_dir, "sasrec.seed=7", "evaluate.models=[popularity]"), ["sasrec"])
    with caplog.at_level(logging.WARNING, logger="cemg_ray"):
        manifest = run_pipeline(_job(run_dir, "sasrec.seed=7", "evaluate.models=[popularity]"), ["evaluate"])
    third = store.read_json(METRICS)
    assert set(third) == set(first) - {"sasrec"}
    assert manifest["stages"]["evaluate"]["report"]["dropped_rows"] == ["sasrec"]
    assert any("dropping the earlier row of sasrec" in r.getMessage() for r in caplog.records)
