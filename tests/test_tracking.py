"""Experiment tracking against a real local MLflow store (SQLite in tmp_path): no mocks of MLflow or the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cemg_ray import artifacts
from cemg_ray.config import ConfigError, TrackingConfig, load_config
from cemg_ray.tracking import (
    INSTALL_HINT,
    MAX_PARAM_VALUE,
    display_uri,
    eval_metrics,
    flat_params,
    metric_key,
    resolve_store,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_tracking_uri_from_the_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _client(store_dir: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store_dir / 'mlflow.db'}")


def _only_run(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_the_demo_run_reads_back_from_a_local_mlflow_store(demo_run, tmp_path) -> None:
    from cemg_ray.tracking import log_run

    cfg, store = demo_run
    run_id = log_run(store, TrackingConfig(enabled=True, uri=str(tmp_path / "mlruns")))
    client = _client(tmp_path / "mlruns")
    run = _only_run(client, cfg.name)  # the experiment is named after the job
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    manifest = artifacts.read_manifest(store)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags

    # the resolved config as params
    assert params["train.lr"] == json.dumps(cfg.train.lr)
    assert params["dataset.synthetic.num_users"] == "400"
    assert params["evaluate.models"] == json.dumps(cfg.evaluate.models)
    assert tags["cemg.job"] == cfg.name and tags["cemg.run_dir"] == store.uri()
    if manifest.get("git_commit"):
        assert tags["cemg.git_commit"] == manifest["git_commit"]

    # every stage's wall time and its report's figures
    assert set(manifest["stages"]) >= {"data", "sasrec", "lightgcn", "tokenize", "train", "evaluate"}
    for name, record in manifest["stages"].items():
        assert metrics[f"{name}.wall_s"] == pytest.approx(record["wall_s"])
        assert tags[f"cemg.stage.{name}"] == record["status"]
    assert metrics["data.stats.users"] == manifest["stages"]["data"]["report"]["stats"]["users"]

    # evaluation metrics with their standard errors, overall and cold-start, equal to eval/metrics.json
    evaluated = store.read_json(artifacts.METRICS)
    checked = 0
    for model, entry in evaluated.items():
        for subset in ("overall", "cold_start"):
            for name, value in entry[subset].items():
                key = f"eval.{model}.{subset}.{metric_key(name)}"
                assert metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
                assert metrics[f"{key}_se"] == pytest.approx(entry[f"{subset}_se"][name], rel=1e-12, abs=1e-15)
                checked += 1
    assert checked >= len(evaluated) * 2 * 6
    assert "eval.sasrec.overall.HR_at_10" in metrics and "eval.sasrec.cold_start.NDCG_at_10_se" in metrics

    # training curves: one value per epoch, at the epoch the history records
    generator = store.read_json(artifacts.GENERATOR_HISTORY)
    loss = client.get_metric_history(run_id, "train.epoch.loss")
    assert sorted(m.step for m in loss) == [row["epoch"] for row in generator]
    assert [m.value for m in sorted(loss, key=lambda m: m.step)] == pytest.approx([r["loss"] for r in generator])
    assert len(client.get_metric_history(run_id, "lightgcn.epoch.loss")) == cfg.lightgcn.epochs
    sasrec_epochs = manifest["stages"]["sasrec"]["report"]["epochs"]
    sasrec_steps = sorted(m.step for m in client.get_metric_history(run_id, "sasrec.epoch.loss"))
    assert sasrec_steps == list(range(1, sasrec_epochs + 1))  # SASRec counts its epochs from 1
    tokenize = store.read_json(artifacts.TOKENIZE_HISTORY)
    some_figure = next(k for k in tokenize[0] if k != "epoch")
    assert len(client.get_metric_history(run_id, f"tokenize.epoch.{metric_key(some_figure)}")) == len(tokenize)

    # the plots and reports as artifacts, in the run directory's layout
    listed = {f.path for f in client.list_artifacts(run_id, "eval")}
    assert {"eval/report.md", "eval/metrics.json"} <= listed
    assert "generate/curves.png" in {f.path for f in client.list_artifacts(run_id, "generate")}
    assert not any(f.is_dir for f in client.list_artifacts(run_id, "generate")), "model folders are not logged"
    local = client.download_artifacts(run_id, "eval/report.md", str(tmp_path / "down"))
    assert Path(local).read_bytes() == store.read_bytes(artifacts.EVAL_REPORT)
    config = json.loads(Path(client.download_artifacts(run_id, "config.json", str(tmp_path / "down"))).read_text())
    assert config == manifest["config"]


def test_cemg_ray_run_logs_a_finished_and_a_failed_job_beside_the_run_directory(tmp_path, capsys) -> None:
    from cemg_ray.cli import main

    common = ["--set", "tracking.enabled=true", "--set", "dataset.synthetic.num_users=60",
              "--set", "dataset.synthetic.num_items=30", "--set", "evaluate.models=[popularity]"]
    assert main(["run", "--stages", "data,popularity", "--run-dir", str(tmp_path / "ok"), *common,
                 "--set", "tracking.experiment=small"]) == 0
    # the popularity stage needs data, which this run directory has not: the job fails, its run is logged as such
    assert main(["run", "--stages", "popularity", "--run-dir", str(tmp_path / "bad"), *common]) == 2
    assert "stage 'data' has no completed output" in capsys.readouterr().err

    client = _client(tmp_path / "mlruns")  # uri: null -> mlruns/ beside the run directory
    ok = _only_run(client, "small")
    assert ok.info.status == "FINISHED"
    assert {"data.wall_s", "popularity.wall_s", "popularity.max_count"} <= set(ok.data.metrics)
    assert ok.data.params["dataset.synthetic.num_users"] == "60" and ok.data.params["tracking.enabled"] == "true"
    failed = _only_run(client, "cemg")  # the embedded job's name
    assert failed.info.status == "FAILED"
    assert "StageMissingError" in failed.data.tags["cemg.error"]

    # a store MLflow cannot use: the job's outputs stay, the command fails with what to do
    assert main(["run", "--stages", "data", "--run-dir", str(tmp_path / "lost"), *common,
                 "--set", "tracking.uri=nosuch://tracking"]) == 2
    err = capsys.readouterr().err
    assert "could not be logged to nosuch://tracking" in err and "run the same command again" in err
    assert (tmp_path / "lost" / artifacts.stage_marker("data")).exists()


def test_tracking_without_mlflow_fails_before_any_stage_with_the_install_hint(tmp_path) -> None:
    run_dir = tmp_path / "run"
    code = ("import sys; sys.modules['mlflow'] = None; from cemg_ray.cli import main; "
            f"sys.exit(main(['run', '--stages', 'data', '--run-dir', {str(run_dir)!r}, "
            "'--set', 'tracking.enabled=true']))")
    env = {**os.environ, "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", "/tmp")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert done.returncode == 2, done.stderr
    assert INSTALL_HINT in done.stderr and "tracking.enabled" in done.stderr
    assert not (run_dir / artifacts.MANIFEST).exists() and not (run_dir / "data").exists()


def test_the_store_sits_beside_a_local_run_directory_or_in_the_working_directory(tmp_path, monkeypatch) -> None:
    off = TrackingConfig()
    assert not off.enabled and off.uri is None and off.experiment is None
    uri, where = resolve_store(off, str(tmp_path / "runs" / "demo"))
    assert uri == f"sqlite:///{tmp_path / 'runs' / 'mlruns' / 'mlflow.db'}"
    assert where == (tmp_path / "runs" / "mlruns" / "artifacts").as_uri()
    monkeypatch.chdir(tmp_path)
    assert resolve_store(off, "s3://bucket/runs/x")[0] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert resolve_store(TrackingConfig(uri="http://127.0.0.1:5000"), "runs/x") == ("http://127.0.0.1:5000", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert resolve_store(off, "runs/x") == ("http://127.0.0.1:5001", None)


def test_credentials_stay_out_of_the_config_params_and_logs() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["tracking.uri=https://me:s3cret@mlflow.example:5000"])
    assert "tracking.uri" in str(err.value) and "s3cret" not in str(err.value)
    assert display_uri("https://token@mlflow.example/api?key=abc") == "https://***@mlflow.example/api"
    params = flat_params({"tracking": {"uri": "https://tok@h"}, "train": {"lr": 0.1, "note": "x" * 10_000}})
    assert params["tracking.uri"] == "https://***@h" and params["train.lr"] == "0.1"
    assert len(params["train.note"]) == MAX_PARAM_VALUE and "config.json" in params["train.note"]


def test_eval_metric_names_are_ones_mlflow_accepts() -> None:
    got = eval_metrics({"cemg:dense": {"overall": {"HR@10": 0.5}, "overall_se": {"HR@10": 0.01}, "users": 9,
                                       "split": "test", "exclude_seen": True}})
    assert got == {"eval.cemg:dense.overall.HR_at_10": 0.5, "eval.cemg:dense.overall.HR_at_10_se": 0.01,
                   "eval.cemg:dense.users": 9.0}
