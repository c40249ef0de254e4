"""A real multi-node Ray cluster on this host: a head with no task CPUs and 2-CPU worker nodes, token auth on.

Each node is its own ``ray start --block`` process (separate raylet, object store, dashboard agent and runtime-env
agent), started in its own session so that it can be killed as a whole, like a machine that goes away. Nothing here
ever runs ``ray stop``: that stops every Ray process on the host, another user's cluster included.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.headnode import VENV_BIN, _die_with_parent, client, free_port

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import StateApiClient

WORKER_CPUS = 2
OBJECT_STORE_BYTES = 300 * 1024 * 1024  # per node; the default (30% of the host's memory) is far more than needed


def node_resource(name: str) -> str:
    """The custom resource that tells this test which Ray node is which of its processes."""
    return f"mn_{name}"


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid``: a node's ``ray start``, its raylet, agents and every Ray worker it started
    (Ray sets process groups, never sessions, so the session holds them all)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3]: the session id; zombies are already dead
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid: int, timeout_s: float = 30.0) -> int:
    """SIGKILL every process of session ``sid``, by id, until none is left; returns how many were killed."""
    killed: set[int] = set()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        alive = session_pids(sid)
        if not alive:
            return len(killed)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.2)
    raise TimeoutError(f"processes of session {sid} still alive after {timeout_s} s: {session_pids(sid)}")


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    root: Path  # its temp dir (--temp-dir), TMPDIR and working directory live here, on no other node
    log: Any
    killed: bool = False


@dataclass
class MultiNodeCluster:
    """The running cluster: its addresses, token and nodes, and the calls the tests make on it."""

    root: Path
    token: str
    env: dict[str, str]
    gcs_address: str = ""
    dashboard_url: str = ""
    nodes: dict[str, Node] = field(default_factory=dict)
    node_ids: dict[str, str] = field(default_factory=dict)  # name -> Ray node id, recorded when the node joined
    _count: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _start(self, name: str, args: list[str]) -> Node:
        root = self.root / name
        for sub in ("ray", "tmp", "cwd"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        env = {**self.env, "TMPDIR": str(root / "tmp")}
        log = open(root / "node.log", "w")  # noqa: SIM115 - closed with the node
        proc = subprocess.Popen(
            [str(VENV_BIN / "ray"), "start", "--block", f"--temp-dir={root / 'ray'}", "--disable-usage-stats",
             f"--dashboard-agent-listen-port={free_port()}", f"--object-store-memory={OBJECT_STORE_BYTES}", *args],
            cwd=root / "cwd", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        node = Node(name, proc, root, log)
        self.nodes[name] = node
        return node

    def start_head(self) -> None:
        port, dash = free_port(), free_port()
        # every process of every node finds this cluster through RAY_ADDRESS, as the only Ray instance of a real
        # machine is found; on a shared host Ray's own lookups (Train's placement-group cleaner, the state API
        # without an address) would otherwise see several clusters and fail
        self.env["RAY_ADDRESS"] = f"127.0.0.1:{port}"
        self._start("head", ["--head", "--num-cpus=0", f"--port={port}", f"--dashboard-port={dash}",
                             "--dashboard-host=127.0.0.1", "--include-dashboard=true",
                             f"--ray-client-server-port={free_port()}"])
        self.gcs_address, self.dashboard_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}"
        client(self.dashboard_url, self.token, wait_s=120)
        self._wait_joined("head", 120)

    def _wait_joined(self, name: str, timeout_s: float) -> None:
        """Wait until the cluster lists node ``name`` alive and record its Ray node id (a dead node's entry no longer
        shows its resources, so the id is kept from now)."""
        deadline = time.time() + timeout_s
        while True:
            for n in self.list("nodes", [("state", "=", "ALIVE")]):
                if (n["is_head_node"] if name == "head" else node_resource(name) in (n.get("resources_total") or {})):
                    self.node_ids[name] = n["node_id"]
                    return
            if self.nodes[name].proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"node {name} did not join: {self.tail(name)}")
            time.sleep(0.5)

    def add_worker(self, timeout_s: float = 120.0, attempts: int = 3) -> str:
        """Start one more worker node (``w1``, ``w2``, ...) and wait until the cluster lists it alive.

        A node whose raylet does not register within Ray's own 30 s (``ray start`` then exits: "timed out during
        startup", seen on an overloaded host) is given up, its processes killed, and a new one started."""
        for attempt in range(attempts):
            self._count += 1
            name = f"w{self._count}"
            self._start(name, [f"--address={self.gcs_address}", f"--num-cpus={WORKER_CPUS}",
                               f"--resources={json.dumps({node_resource(name): 1})}"])
            try:
                self._wait_joined(name, timeout_s)
                return name
            except RuntimeError:
                node = self.nodes[name]
                kill_session(node.proc.pid)
                node.proc.wait()
                node.killed = True
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    def tail(self, name: str, chars: int = 3000) -> str:
        return (self.nodes[name].root / "node.log").read_text(errors="replace")[-chars:]

    def state(self) -> StateApiClient:
        from ray.util.state import StateApiClient

        return StateApiClient(self.dashboard_url, headers={**self.headers, "Content-Type": "application/json"})

    def list(self, resource: str, filters: list | None = None, detail: bool = True) -> list[dict]:
        """Ray's state API (``ray.util.state``) through the head's dashboard, as dicts."""
        from dataclasses import asdict

        from ray.util.state.common import ListApiOptions, StateResource

        deadline = time.time() + 120
        while True:
            try:
                rows = self.state().list(StateResource(resource), ListApiOptions(
                    limit=10_000, filters=filters or [], detail=detail, timeout=60), raise_on_missing_output=False)
                return [asdict(r) for r in rows]
            except Exception:  # noqa: BLE001 - the dashboard's state module starts late or answers slowly under load
                if time.time() > deadline:
                    raise
                time.sleep(1)

    def node_names(self) -> dict[str, str]:
        """Ray node id -> this cluster's name of the node (``head``, ``w1``, ...), dead nodes included."""
        return {node_id: name for name, node_id in self.node_ids.items()}

    def alive_workers(self) -> list[str]:
        names = []
        for n in self.list("nodes", [("state", "=", "ALIVE")]):
            names += [name for name in self.nodes if node_resource(name) in (n.get("resources_total") or {})]
        return sorted(names)

    def kill_node(self, name: str, timeout_s: float = 60.0) -> int:
        """Kill worker node ``name`` as a machine that dies would: every process of it, SIGKILL, by id; then wait
        until the cluster marks it dead. Returns how many processes were killed."""
        assert name != "head", "the head is never killed"
        node = self.nodes[name]
        count = kill_session(node.proc.pid)
        node.proc.wait()
        node.killed = True
        deadline = time.time() + timeout_s
        while name in self.alive_workers():
            if time.time() > deadline:
                raise TimeoutError(f"node {name} still listed alive {timeout_s} s after its processes were killed")
            time.sleep(0.5)
        return count

    def jobs(self) -> JobSubmissionClient:
        return client(self.dashboard_url, self.token)

    def shutdown(self) -> None:
        """Stop the nodes this test started, workers first, by their process ids (never ``ray stop``)."""
        for node in sorted(self.nodes.values(), key=lambda n: n.name == "head"):
            if node.proc.poll() is None:
                node.proc.terminate()  # `ray start --block` stops its own processes on SIGTERM
                try:
                    node.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            kill_session(node.proc.pid)  # whatever it left behind (workers, agents)
            node.proc.wait()
            node.log.close()


@pytest.fixture(scope="module")
def multinode(s3_server):
    """A head started with ``ray start --head --num-cpus=0`` (GCS, dashboard, Jobs API, job drivers; no task CPUs)
    and two worker nodes of 2 CPUs (``ray start --address=...``), token auth on, and the local S3 server of
    ``tests/conftest.py`` in every node's environment (AWS_ENDPOINT_URL and dummy credentials).

    Every node has its own ``--temp-dir``, its own ``TMPDIR`` and its own working directory under
    ``/tmp/mn-*/<node>/``, so nothing can rely on a disk that the driver and the workers share. A shared temporary
    directory is a trap of clusters on one host: Ray's runtime-environment cleanup on one node then removes the job
    package that another node (the driver's) is still running from (issue 27, item 5), and a path that only works
    on a shared disk would pass here and fail on a real cluster. Run directories and exports go to S3.

    Nodes are killed as a whole: each starts with ``start_new_session=True`` and every process of its session is
    SIGKILLed by id (not only its process group: Ray gives each worker process a group of its own, so a group kill
    would leave the node's workers running). The whole cluster dies with pytest (PR_SET_PDEATHSIG); ``ray stop`` is
    never run. ``CEMG_KEEP_MULTINODE=1`` keeps the nodes' folders (logs, and the demo run's record) after the tests.
    """
    token = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="mn-", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "DS_ACCELERATOR": "cpu",
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # a test cluster: no Serve traffic to drain on SIGTERM
           "RAY_health_check_period_ms": "1000",  # a killed node is marked dead in seconds, not 15 s
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # job entrypoints find `cemg-ray`
    for key in ("RAY_ADDRESS", "TMPDIR", "RAY_TMPDIR"):
        env.pop(key, None)
    cluster = MultiNodeCluster(root=root, token=token, env=env)
    try:
        cluster.start_head()
        cluster.add_worker()
        cluster.add_worker()
        yield cluster
    finally:
        cluster.shutdown()
        if not os.environ.get("CEMG_KEEP_MULTINODE"):  # keep the nodes' logs to debug a failure
            shutil.rmtree(root, ignore_errors=True)
