"""A local cluster's workers find their own cluster while another local cluster runs on the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

# The lookup Ray Train's placement-group cleaner makes (State API address from RAY_ADDRESS or the host's clusters),
# from a task on the cluster ensure_ray started, while a second local cluster is up.
PROBE = textwrap.dedent("""
    import json, os, subprocess, sys
    other = subprocess.Popen([sys.executable, "-c",
        "import ray, sys; ray.init(address='local', num_cpus=1, include_dashboard=False); "
        "print('up', flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "up"
    try:
        import ray
        from cemg_ray.config import RayConfig
        from cemg_ray.raycluster import ensure_ray

        ensure_ray(RayConfig(num_cpus=1))

        @ray.remote
        def lookup():
            from ray._private import services
            return {"env": os.environ.get("RAY_ADDRESS"), "own": ray.get_runtime_context().gcs_address,
                    "found": services.canonicalize_bootstrap_address_or_die("auto")}

        print(json.dumps(ray.get(lookup.remote())))
        ray.shutdown()
    finally:
        other.stdin.close()
        other.wait(timeout=60)
""")


@pytest.mark.parametrize("ray_address", [None, "local"])
def test_workers_of_a_local_cluster_find_it_beside_another_cluster(tmp_path, ray_address) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address:
        env["RAY_ADDRESS"] = ray_address  # how the tests give each command a cluster of its own
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["env"] == seen["own"] == seen["found"]


# A Ray Train run on the cluster ensure_ray starts, logging the way the generator's training loop does; then, on
# the same cluster (one start for both tests), a training worker wider than the node, and one that fits the node
# while an actor holds both its CPUs, so that its start can never succeed (the start timeout cut to 2 s).
TRAIN_PROBE = textwrap.dedent("""
    import os, sys, time
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer
    from cemg_ray.config import RayConfig
    from cemg_ray.raycluster import InfeasibleRequestError, WorkerGroupStartError, ensure_ray
    from cemg_ray.raytrain import run_config, torch_trainer
    from cemg_ray.store import Store

    ensure_ray(RayConfig(num_cpus=2))

    def loop():
        from cemg_ray.generate import train
        train.log.info("progress-mark %d", 1)
        time.sleep(5)  # the placement-group cleaner checks its controller about once a second meanwhile

    TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1)).fit()
    time.sleep(2)  # let the workers' last lines reach the driver

    def idle(config):
        pass

    store = Store(sys.argv[1])
    t0 = time.perf_counter()
    try:
        torch_trainer("lightgcn", idle, {}, run_config(store, "ckpt", "wide"), cpus_per_worker=3)
    except InfeasibleRequestError as exc:
        print("INFEASIBLE", round(time.perf_counter() - t0, 1), exc, flush=True)

    @ray.remote(num_cpus=2)
    class Holder:
        def ready(self):
            return True

    holder = Holder.remote()
    ray.get(holder.ready.remote())
    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = "2"  # read by the controller Ray Train starts next
    t0 = time.perf_counter()
    try:
        torch_trainer("train", idle, {}, run_config(store, "ckpt", "held", start_retries=1)).fit()
    except WorkerGroupStartError as exc:
        print("BOUNDED", round(time.perf_counter() - t0, 1), exc, flush=True)
""")


@pytest.fixture(scope="module")
def train_probe(tmp_path_factory) -> subprocess.CompletedProcess:
    """TRAIN_PROBE run once, on a cluster of its own."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    work = tmp_path_factory.mktemp("train-probe")
    return subprocess.run([sys.executable, "-c", TRAIN_PROBE, str(work / "run")], capture_output=True, text=True,
                          timeout=300, cwd=work, env=env)


def test_training_progress_reaches_the_driver_once_without_state_api_retry_warnings(train_probe) -> None:
    """Ray Train's print patch doubled every ``print`` from a worker, and its placement-group cleaner warned once
    a second that the State API (the dashboard, off on local clusters) was unavailable: 108 lines in a 4-minute run."""
    done = train_probe
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert sum("progress-mark 1" in line for line in out.splitlines()) == 1, out[-3000:]
    assert "Failed to query Ray Train Controller actor state" not in out, out[-3000:]


def test_a_training_worker_group_that_cannot_start_fails_with_the_stage_and_the_request(train_probe) -> None:
    """The demo's 2 CPUs per training worker on 1-CPU nodes waited forever: Ray Train retried the start without
    limit. A worker wider than every node fails before Ray Train starts; one that fits a node but never finds it
    free fails after the bounded retries (``raytrain.START_RETRIES``), both naming the stage and the request."""
    assert train_probe.returncode == 0, train_probe.stderr[-3000:]
    lines = {line.split()[0]: line for line in train_probe.stdout.splitlines()
             if line.startswith(("INFEASIBLE", "BOUNDED"))}
    assert float(lines["INFEASIBLE"].split()[1]) < 10, lines  # one query of the nodes, no Ray Train start
    assert "stage lightgcn: each worker asks for 3 CPU" in lines["INFEASIBLE"]
    assert "largest per resource: 2 CPU" in lines["INFEASIBLE"]
    assert float(lines["BOUNDED"].split()[1]) < 120, lines  # 2 starts of 2 s, and the controller's own start
    assert "stage train: the worker group (1 worker(s), each asking for 1 CPU) did not start in 2 attempt(s)" in \
        lines["BOUNDED"]


def test_code_run_in_ray_train_workers_reports_through_logging_not_print() -> None:
    """A ``print`` in a Train worker reaches the driver twice (the probe above, with ``print``, shows 2 lines)."""
    import ast

    from tests.conftest import REPO

    for module in ("cemg_ray/generate/train.py", "cemg_ray/collab/lightgcn.py"):
        path = REPO / module
        calls = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
        assert calls == [], f"{module}: print() at lines {calls}"


def test_a_request_no_node_can_meet_fails_at_once_naming_the_stage_and_the_request(tmp_path) -> None:
    """Ray Data would wait for a 64-CPU node forever; the stage stops with the request and the largest node."""
    env = {**os.environ, "RAY_ADDRESS": "local"}
    cmd = [sys.executable, "-m", "cemg_ray.cli", "run", "--stages", "data,features",
           "--set", f"run_dir={tmp_path / 'run'}", "--set", "ray.num_cpus=2", "--set", "features.cpus_per_actor=64",
           "--set", "dataset.synthetic.num_users=50", "--set", "dataset.synthetic.num_items=30"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)  # a hang guard, not a timing
    assert done.returncode == 2, done.stderr[-2000:]
    assert "stage features: each encoder actor asks for 64 CPU" in done.stderr
    assert "largest per resource: 2 CPU" in done.stderr

