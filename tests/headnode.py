"""A one-node Ray cluster started as a user starts one (``ray start --head``), token auth on, for the Jobs API tests.

Shared by tests/jobs/test_submit.py, the documented ``ray job submit`` line (tests/test_documented_demo_commands.py)
and the multi-node cluster (tests/cluster/conftest.py, which reuses the helpers).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child: SIGTERM when pytest dies, so the cluster never outlives the test run."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 60) -> None:
    """Send ``sig`` to a process that shuts its own children down on it; SIGKILL its whole group if it hangs."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def token_head(num_cpus: int = 2) -> Iterator[tuple[str, str]]:
    """``ray start --head --block`` with token auth, its own ports and temp dir; killed as a group if it hangs.
    Yields (dashboard URL, token) once the dashboard answers.

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
        [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--num-cpus={num_cpus}", f"--port={free_port()}",
         f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
         f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        url = f"http://127.0.0.1:{dash}"
        client(url, token)  # the dashboard answers: every caller may submit at once
        yield url, token
    finally:
        stop_group(proc, signal.SIGTERM, 30)  # `ray start --block` stops its own processes on SIGTERM
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


def submit_verbatim(argv: list[str], cwd: Path, url: str, token: str) -> str:
    """Run a ``ray job submit ...`` command line from ``cwd`` against the cluster at ``url`` with the token in the
    environment (as README says), retrying while the job agent is still coming up; returns its output."""
    env = {**os.environ, "RAY_ADDRESS": url, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # the shell that has the venv active
    deadline = time.time() + 60
    while True:  # the job agent comes up a little after the dashboard
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        out = done.stdout + done.stderr
        if "No available agent" not in out or time.time() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0, out[-4000:]
    return out
