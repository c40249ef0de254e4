"""A job from jobs/ submitted through the Jobs API to a local cluster with token authentication on."""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# jobs/pipeline.yaml is the cluster job (Beauty, S3); these overrides shrink it to a synthetic catalog.
SMALL = ["dataset.format=synthetic", "dataset.path=null", "dataset.synthetic.num_users=100",
         "dataset.synthetic.num_items=40", "dataset.synthetic.num_clusters=4", "lightgcn.epochs=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child: SIGTERM when pytest dies, so the cluster never outlives the test run."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="module")
def cluster():
    """``ray start --head --block`` with token auth, its own ports and temp dir; killed as a group if it hangs.

    Its own ``--temp-dir`` keeps it out of /tmp/ray/ray_current_cluster, so a plain ``ray.init()``
    elsewhere on this host never joins it by accident.
    """
    token = secrets.token_hex(16)
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths live under it
    dash = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "DS_ACCELERATOR": "cpu",
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # a test cluster: no Serve traffic to drain on SIGTERM
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # job entrypoints find `cemg-ray`
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp) / "head.log", "w")
    proc = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", "--block", "--num-cpus=2", f"--port={free_port()}",
         f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
         f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        yield f"http://127.0.0.1:{dash}", token
    finally:
        proc.terminate()  # `ray start --block` stops its own processes on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def client(url: str, token: str | None, wait_s: float = 90.0) -> JobSubmissionClient:
    """A Jobs API client sending ``Authorization: Bearer <token>``; waits for the dashboard to come up."""
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.time() + wait_s
    while True:
        try:
            return JobSubmissionClient(url, headers=headers)
        except Exception:  # noqa: BLE001 - connection refused while the dashboard starts
            if time.time() > deadline:
                raise
            time.sleep(1)


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


DOCUMENTED_SUBMIT = "ray job submit --working-dir . -- cemg-ray run jobs/demo.yaml"


def test_the_documented_ray_job_submit_line_runs_verbatim(cluster) -> None:
    """docs/OPERATIONS.md's test-cluster line, as written, from the repository root, token auth on."""
    import shlex

    assert DOCUMENTED_SUBMIT in (REPO / "docs" / "OPERATIONS.md").read_text(), "update DOCUMENTED_SUBMIT"
    url, token = cluster
    env = {**os.environ, "RAY_ADDRESS": url, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # the shell that has the venv active
    argv = shlex.split(DOCUMENTED_SUBMIT)
    deadline = time.time() + 60
    while True:  # the job agent comes up a little after the dashboard
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        out = done.stdout + done.stderr
        if "No available agent" not in out or time.time() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0, out[-4000:]
    assert "succeeded" in out
    assert re.search(r"stage evaluate\s+ok in", out), out[-3000:]  # the whole demo ran, its last stage included
    assert token not in out  # the token never reaches the job's log
