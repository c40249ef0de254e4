"""A job from jobs/ submitted through the Jobs API to a local cluster with token authentication on."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.headnode import VENV_BIN, client, token_head

REPO = Path(__file__).resolve().parents[2]
# jobs/pipeline.yaml is the cluster job (Beauty, S3); these overrides shrink it to a synthetic catalog.
SMALL = ["dataset.format=synthetic", "dataset.path=null", "dataset.synthetic.num_users=100",
         "dataset.synthetic.num_items=40", "dataset.synthetic.num_clusters=4", "lightgcn.epochs=1"]


@pytest.fixture(scope="module")
def cluster():
    """A one-node cluster started with ``ray start --head``, token auth on: (dashboard URL, token)."""
    with token_head() as head:
        yield head


def test_jobs_api_refuses_a_wrong_or_missing_token(cluster, monkeypatch) -> None:
    url, token = cluster
    client(url, token).list_jobs()
    with pytest.raises(Exception) as err:  # noqa: PT011 - Ray raises a generic error on 401/403
        client(url, "not-the-token", wait_s=0).list_jobs()
    assert "Authentication failed" in str(err.value) or "403" in str(err.value), str(err.value)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a client that sends no token at all
    with pytest.raises(Exception) as err:  # noqa: PT011
        client(url, None, wait_s=0).list_jobs()
    assert any(s in str(err.value) for s in ("401", "403", "uthenticat")), str(err.value)


def test_cli_reads_the_token_from_the_environment(cluster) -> None:
    """The README's way: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) for `ray job ...`."""
    url, token = cluster
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    ok = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address", url], env=env, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr[-2000:]
    env["RAY_AUTH_TOKEN"] = "wrong"
    bad = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address", url], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0


def test_pipeline_job_submitted_through_the_jobs_api_succeeds(cluster, tmp_path) -> None:
    from ray.job_submission import JobStatus

    url, token = cluster
    jobs = client(url, token)
    run_dir = tmp_path / "run"
    sets = " ".join(f"--set {s}" for s in SMALL)
    submit = {  # what `ray job submit --working-dir . -- cemg-ray run jobs/pipeline.yaml ...` sends
        "entrypoint": f"cemg-ray run jobs/pipeline.yaml --stages data,popularity,lightgcn --run-dir {run_dir} {sets}",
        "runtime_env": {"working_dir": str(REPO)},  # .gitignore keeps .venv and runs/ out of the upload
    }
    deadline = time.time() + 60
    while True:  # the job agent comes up a little after the dashboard
        try:
            job_id = jobs.submit_job(**submit)
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(1)
    deadline = time.time() + 240
    status = jobs.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} and time.time() < deadline:
        time.sleep(2)
        status = jobs.get_job_status(job_id)
    logs = jobs.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert (run_dir / "lightgcn" / "item_emb.safetensors").exists()
    assert "ray: joined the cluster at" in logs  # it ran on this cluster, not on a local one of its own
    assert token not in logs  # the token never reaches the job's logs
