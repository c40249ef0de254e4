"""Bulk export to a real local S3 server: one ranked list per user, _SUCCESS last, kill-safe re-runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import numpy as np
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from cemg_ray.export.stage import run_export

if TYPE_CHECKING:
    import pyarrow as pa

    from cemg_ray.config import JobConfig
    from cemg_ray.store import Store
from tests.conftest import REPO


def _job(demo_run: str, output: str, **export: object) -> tuple[JobConfig, Store]:
    """The demo run's own config with an export section pointing at ``output``."""
    from cemg_ray.config import JobConfig

    cfg, store = demo_run
    raw = cfg.model_dump(mode="json")
    raw["export"] = {"output": output, "date": "2026-11-24", "k": 5, "cpus_per_actor": 0.5, **export}
    return JobConfig.model_validate(raw), store


@pytest.fixture()
def ray_sees_s3(s3_server):
    """Workers read credentials from the standard AWS chain (here: the environment) when their cluster starts,
    so a cluster started before the S3 server's dummy credentials were set is stopped; the export starts a new one."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield s3_server


def _read_partition(uri: str, endpoint: str) -> pa.Table:
    fs = pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", scheme="http")
    return pads.dataset(uri.removeprefix("s3://"), filesystem=fs, format="parquet").to_table()


def _keys(endpoint: str, bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def _success_is_last(endpoint: str, bucket: str, prefix: str) -> bool:
    """No object a reader sees (anything outside ``_staging/``) is newer than _SUCCESS (S3 times have 1 s
    resolution: ties allowed). Staging leftovers are not data: readers skip them and the next attempt deletes them."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    objs = [o for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            if "/_staging/" not in o["Key"]]
    marker = [o["LastModified"] for o in objs if o["Key"].endswith("/_SUCCESS")]
    return len(marker) == 1 and all(o["LastModified"] <= marker[0] for o in objs)


def _kill_session(sid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL every process of session ``sid`` (the driver and the Ray cluster it started) and wait until they are
    gone, so that no writer of the killed attempt is still uploading while the re-run is checked."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # fields[3] is the session id
                alive.append(int(stat.parent.name))
        if not alive:
            return
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def test_export_to_s3_one_list_per_user_success_last_and_idempotent(demo_run, ray_sees_s3, s3_server,
                                                                    s3_bucket) -> None:
    cfg, store = _job(demo_run, f"{s3_bucket}/recs")
    manifest = run_export(cfg, store)
    part = f"{s3_bucket}/recs/dt=2026-11-24"
    table = _read_partition(part, s3_server)  # readers skip _staging and marker files
    users = store.read_parquet("data/sequences.parquet").num_rows
    assert manifest["users"] == users and manifest["rows"] == table.num_rows == users * 5
    df = table.to_pandas()
    ranks = df.groupby("user_id")["rank"].apply(lambda r: sorted(r.tolist()))
    assert all(r == [1, 2, 3, 4, 5] for r in ranks)
    assert df["user_id"].nunique() == users and df["model_version"].nunique() == 1
    keys = _keys(s3_server, s3_bucket.removeprefix("s3://"), "recs/dt=2026-11-24/")
    assert _success_is_last(s3_server, s3_bucket.removeprefix("s3://"), "recs/dt=2026-11-24/")
    assert not any("_staging" in k for k in keys) and any(k.endswith("/_manifest.json") for k in keys)
    again = run_export(cfg, store)
    assert again.get("skipped") is True
    assert _read_partition(part, s3_server).num_rows == users * 5


def test_killed_export_leaves_nothing_trusted_and_rerun_has_no_duplicates(demo_run, ray_sees_s3, s3_server,
                                                                         s3_bucket, tmp_path) -> None:
    cfg, store = _job(demo_run, f"{s3_bucket}/nightly", num_blocks=40, batch_size=8)
    job = tmp_path / "job.yaml"
    import yaml

    job.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    proc = subprocess.Popen([sys.executable, "-m", "cemg_ray.cli", "export", str(job)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bucket = s3_bucket.removeprefix("s3://")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any("_staging" in k and k.endswith(".parquet") for k in _keys(s3_server, bucket, "nightly/")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "export finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
    proc.wait()
    _kill_session(proc.pid)
    keys = _keys(s3_server, bucket, "nightly/")
    assert not any(k.endswith("_SUCCESS") for k in keys)  # nothing a reader would trust
    manifest = run_export(cfg, store)
    table = _read_partition(f"{s3_bucket}/nightly/dt=2026-11-24", s3_server).to_pandas()
    users = store.read_parquet("data/sequences.parquet").num_rows
    assert len(table) == manifest["rows"] == users * 5
    assert not table.duplicated(["user_id", "rank"]).any()
    assert _success_is_last(s3_server, bucket, "nightly/")
    assert not any(manifest["attempt"] in k for k in _keys(s3_server, bucket, "nightly/"))  # its staging is gone


def test_export_bad_date_is_a_config_error_naming_the_key(tmp_path) -> None:
    from cemg_ray.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config(None, [f"run_dir={tmp_path}", "export.date=24/11/2026"])
    assert "export.date" in str(err.value) and "YYYY-MM-DD" in str(err.value)


def test_export_cli_names_an_unknown_model_and_a_missing_stage(demo_run, tmp_path, capsys) -> None:
    from cemg_ray.cli import main

    _, store = demo_run
    job = str(REPO / "jobs" / "demo.yaml")
    assert main(["export", job, "--run-dir", store.root_uri, "--model", "nosuch"]) == 2
    assert "export.model: unknown model 'nosuch'" in capsys.readouterr().err
    assert main(["export", job, "--run-dir", str(tmp_path / "empty"), "--model", "popularity"]) == 2
    assert "stage 'data' has no completed output" in capsys.readouterr().err


def test_exclude_seen_drops_items_older_than_the_decoded_history(demo_run) -> None:
    """A seen item outside the last max_len items is still never recommended again."""
    from cemg_ray.export.stage import ExportDecoder

    cfg, store = demo_run
    raw = cfg.model_dump(mode="json")
    raw["dataset"]["max_len"] = 2
    raw["export"] = {"model": "popularity", "k": 5}
    decoder = ExportDecoder(raw, store.root_uri)
    ids = decoder.run.item_ids
    popular = decoder.run.recommender.recommend([np.array([], dtype=np.int64)], 3)[0][0]  # the 3 most popular items
    sequence = np.array([*popular.tolist(), 0, 1], dtype=np.int64)  # the popular ones fall outside max_len=2
    out = decoder({"user_id": np.array(["u"], dtype=object), "items": [sequence]})
    assert not set(out["item_id"].tolist()) & {ids[i] for i in sequence.tolist()}
    # k + 2 candidates were fetched, up to 5 of them seen: a shorter list, ranked from 1 without gaps
    assert 2 <= len(out["rank"]) <= 5 and out["rank"].tolist() == list(range(1, len(out["rank"]) + 1))
