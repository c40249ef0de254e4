"""Stages whose work is one process run it in a Ray task (cemg_ray/raytask.py): the driver only waits, and the task's
own errors reach the user unchanged."""

from __future__ import annotations

import os

import pytest


def test_data_and_popularity_run_in_ray_tasks_not_in_the_driver(small_job) -> None:
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    manifest = run_pipeline(small_job, ["data", "popularity"])
    for stage in ("data", "popularity"):
        worker = manifest["stages"][stage]["report"]["worker"]
        assert worker["pid"] != os.getpid() and worker["node_id"], stage
    from cemg_ray import artifacts
    from cemg_ray.data.split import load_split

    store = Store(small_job.run_dir)
    assert store.read_json(artifacts.DATA_REPORT)["stats"]["users"] == 120
    counts = artifacts.read_popularity(store)  # written by the task, equal to the split read here
    assert (counts == load_split(store, small_job.dataset.max_len).train_counts).all()


def test_a_bad_input_file_fails_with_its_own_error_naming_the_file(tmp_path) -> None:
    from cemg_ray.config import load_config
    from cemg_ray.data.catalog import DataError
    from cemg_ray.pipeline import run_pipeline

    data = tmp_path / "catalog"
    data.mkdir()
    (data / "interactions.parquet").write_text("not parquet")
    cfg = load_config(None, [f"run_dir={tmp_path / 'run'}", "dataset.format=parquet", f"dataset.path={data}"])
    with pytest.raises(DataError, match=r"interactions\.parquet: not a readable Parquet file"):
        run_pipeline(cfg, ["data"])


def test_a_task_no_node_can_hold_fails_at_once_naming_the_stage_and_the_request(small_job) -> None:
    from cemg_ray.raycluster import InfeasibleRequestError
    from cemg_ray.raytask import run_in_task
    from cemg_ray.stagekit import StageContext
    from cemg_ray.store import Store

    ctx = StageContext(small_job, Store(small_job.run_dir), "data")
    with pytest.raises(InfeasibleRequestError, match=r"stage data: each task asks for 64 CPU, but no node"):
        run_in_task(ctx, "cemg_ray.data.stage:load_and_write", {"ds": small_job.dataset}, cpus=64)
