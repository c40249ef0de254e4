"""The demo job on a real multi-node Ray cluster (tests/cluster/conftest.py): submitted through the Jobs API with an
S3 run directory, its heavy work shown on the worker nodes, and a worker node killed during the generator's
training, during the export and under serving load, each loss counted.

One demo run is shared: its job is submitted once (a worker node is killed during its ``train`` stage and a
replacement node joins), then the export and the serving tests use its run directory in S3.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pytest

from cemg_ray.stages import STAGES
from tests.conftest import FAST_DEMO, REPO
from tests.headnode import free_port

pytestmark = pytest.mark.slow

# The demo job shrunk as the single-node tests shrink it (FAST_DEMO), further (fewer epochs: every stage's work still
# runs, and this job runs beside the rest of the suite), plus: a checkpoint after every epoch and no early stop (the
# kill needs a registered checkpoint and epochs after it), and evaluation on a Ray Data actor pool
# (evaluate.num_actors: 1, the jobs' default path; FAST_DEMO ranks in the driver) of the generator's list only.
SETS = [f"{k}={v}" for k, v in {
    **dict(s.split("=", 1) for s in FAST_DEMO), "sasrec.epochs": "2", "lightgcn.epochs": "5", "tokenize.epochs": "30",
    "train.epochs": "3", "train.valid_users": "50", "train.checkpoint_every_s": "0", "train.patience": "10",
    "evaluate.num_actors": "1", "evaluate.models": "[cemg]", "evaluate.select_default": "[]"}.items()]
TRAIN_EPOCHS = 3
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def driver_cpu_bound(wall_s: float) -> float:
    """What a stage may cost the driver in CPU seconds while its work runs elsewhere: importing torch and Ray Data
    once, reading inputs' metadata, writing markers to S3, and Ray's client threads, which poll for as long as the
    stage runs (measured on this cluster, 2026-12-07: 0.02 to 2.3 s per stage; at most 4.0 s, in a train stage of
    230 s wall on a host loaded by other jobs). Work done in the driver would cost about its wall time."""
    return 5.0 + 0.1 * wall_s


# -- helpers -------------------------------------------------------------------------------------------------------


def s3():
    import boto3

    return boto3.client("s3")  # endpoint and dummy credentials from the environment (the s3_server fixture)


def keys(bucket: str, prefix: str) -> list[str]:
    out = []
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def read_json(bucket: str, key: str) -> Any:
    return json.loads(s3().get_object(Bucket=bucket, Key=key)["Body"].read())


def submit(cluster, entrypoint: str) -> str:
    """Submit ``entrypoint`` with this repository as the job's working directory (as ``ray job submit
    --working-dir .`` does: each node unpacks it into its own temp dir)."""
    jobs = cluster.jobs()
    deadline = time.time() + 60
    while True:  # the job agent comes up a little after the dashboard
        try:
            return jobs.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(1)


def wait_job(cluster, job_id: str, timeout_s: float, on_poll=None) -> str:
    """Poll the job until it ends (calling ``on_poll()`` each time while it runs); its final status."""
    jobs = cluster.jobs()
    deadline = time.time() + timeout_s
    while True:
        status = str(jobs.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        if time.time() > deadline:
            jobs.stop_job(job_id)
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s} s:\n{jobs.get_job_logs(job_id)[-3000:]}")
        if on_poll is not None:
            on_poll()
        time.sleep(0.5)


def cemg(*args: str) -> str:
    return " ".join(["cemg-ray", *map(shlex.quote, args)])


def sets() -> list[str]:
    return [arg for s in SETS for arg in ("--set", s)]


def uses_cpu(task: dict) -> bool:
    """A task or actor that holds CPUs: plain (``CPU``) or in a placement group bundle (``CPU_group_...``)."""
    return any(k == "CPU" or k.startswith("CPU_group_") for k, v in (task.get("required_resources") or {}).items()
               if v)


def epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- the shared demo run --------------------------------------------------------------------------------------------


@dataclass
class DemoRun:
    bucket: str
    run_dir: str  # s3://bucket/demo
    job_id: str
    ray_job_id: str
    status: str
    logs: str
    manifest: dict
    tasks: list[dict]  # Ray's task table for the job (state API), actor creations and actor tasks included
    node_names: dict[str, str]  # Ray node id -> head / w1 / w2 / w3
    actor_nodes: dict[str, str]  # the job's actors (state API, dead ones included): actor id -> node name
    kill: dict  # what the kill during training saw: the node, the registered checkpoint's state
    driver_log: str  # the driver's log file (logs/ in its working directory on the head), workers' lines included


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    name = f"mn-{uuid.uuid4().hex[:10]}"
    s3().create_bucket(Bucket=name)
    return name


def registered_checkpoint(bucket: str, prefix: str) -> dict | None:
    """The trainer state of the last checkpoint Ray Train registered (its checkpoint manager's snapshot in S3:
    written after a reported checkpoint is uploaded and registered, so a worker group restarted now resumes from
    it), or None before the first one."""
    snaps = [k for k in keys(bucket, prefix) if k.endswith("/checkpoint_manager_snapshot.json")]
    if not snaps:
        return None
    snap = read_json(bucket, snaps[0])
    latest = snap.get("latest_checkpoint_result")
    if not latest:
        return None
    state_key = f"{snaps[0].rsplit('/', 1)[0]}/{latest['checkpoint_dir_name']}/trainer_state.json"
    try:
        return {**read_json(bucket, state_key), "checkpoint": latest["checkpoint_dir_name"]}
    except s3().exceptions.NoSuchKey:  # deleted by a newer registration between the two reads
        return None


def alive_actor_nodes(cluster, ray_job_id: str, class_part: str) -> list[str]:
    """Names of the nodes where the job's live actors whose class name contains ``class_part`` run."""
    names = cluster.node_names()
    return [names.get(a["node_id"], a["node_id"]) for a in cluster.list("actors", [("job_id", "=", ray_job_id)])
            if class_part in a["class_name"] and a["state"] == "ALIVE"]


@pytest.fixture(scope="module")
def demo(multinode, bucket) -> DemoRun:
    """The demo job through the Jobs API with ``run_dir=s3://<bucket>/demo``; once Ray Train has registered the
    generator's first checkpoint, the worker node running the training is killed and a replacement node started."""
    cluster = multinode
    run_dir = f"s3://{bucket}/demo"
    job_id = submit(cluster, cemg("run", "jobs/demo.yaml", "--run-dir", run_dir, *sets()))
    jobs = cluster.jobs()
    kill: dict = {}

    def during_the_job() -> None:
        if kill:
            return
        state = registered_checkpoint(bucket, "demo/_staging/train/generate/checkpoints/")
        if state is None:
            return
        ray_job_id = jobs.get_job_info(job_id).job_id
        nodes = alive_actor_nodes(cluster, ray_job_id, "RayTrainWorker")
        if not nodes:
            return  # between the report and the next poll of the controller; try again
        kill.update(node=nodes[0], state=state, at=time.time(), workers_before=cluster.alive_workers())
        kill["processes"] = cluster.kill_node(nodes[0])
        kill["replacement"] = cluster.add_worker()

    status = wait_job(cluster, job_id, 900, during_the_job)
    info = jobs.get_job_info(job_id)
    logs = jobs.get_job_logs(job_id)
    manifest = read_json(bucket, "demo/manifest.json") if status == "SUCCEEDED" else {}
    tasks = cluster.list("tasks", [("job_id", "=", info.job_id)]) if info.job_id else []
    names = cluster.node_names()
    actors = {a["actor_id"]: names.get(a["node_id"], "?")
              for a in (cluster.list("actors", [("job_id", "=", info.job_id)]) if info.job_id else [])}
    driver_logs = sorted(cluster.nodes["head"].root.rglob("logs/demo-*.log"))
    driver_log = driver_logs[-1].read_text(errors="replace") if driver_logs else ""
    for name, entry in manifest.get("stages", {}).items():  # shown with -s, and kept in the report of a failure
        print(f"stage {name:10s} wall {entry['wall_s']:7.1f} s  driver {entry['driver']}")
    run = DemoRun(bucket, run_dir, job_id, info.job_id, status, logs, manifest, tasks, names, actors, kill,
                  driver_log)
    if os.environ.get("CEMG_KEEP_MULTINODE"):  # beside the nodes' logs, to look at a failure
        (cluster.root / "demo.json").write_text(json.dumps(asdict(run), default=str))
    return run


def stage_window(manifest: dict, stage: str) -> tuple[float, float]:
    """When ``stage`` ran: from the end of the stage before it (stages run one after another) to its own end."""
    order = list(STAGES)
    i = order.index(stage)
    start = manifest["started"] if i == 0 else manifest["stages"][order[i - 1]]["finished"]
    return epoch_s(start), epoch_s(manifest["stages"][stage]["finished"])


def stage_tasks(run: DemoRun, stage: str) -> list[dict]:
    """The job's tasks (actor creations and actor calls included) that started while ``stage`` ran."""
    lo, hi = stage_window(run.manifest, stage)
    return [t for t in run.tasks if t.get("start_time_ms") and lo <= t["start_time_ms"] / 1000 <= hi]


def stage_work(run: DemoRun, stage: str) -> list[tuple[str, str | None]]:
    """(name, node) of each task or actor holding CPUs that started while ``stage`` ran: an actor's node from the
    actor table, a task's from its own events (None where the state API did not get it)."""
    return [(t["name"], run.actor_nodes.get(t.get("actor_id") or "") or run.node_names.get(t.get("node_id") or ""))
            for t in stage_tasks(run, stage) if uses_cpu(t)]


# -- the tests ------------------------------------------------------------------------------------------------------


def test_demo_job_through_the_jobs_api_runs_every_stage_with_its_heavy_work_on_worker_nodes(demo) -> None:
    assert demo.status == "SUCCEEDED", demo.logs[-4000:]
    assert "ray: joined the cluster at" in demo.logs  # the driver joined this cluster, it did not start its own
    assert demo.manifest["run_dir"] == demo.run_dir
    stages = demo.manifest["stages"]
    assert {s: stages[s]["status"] for s in STAGES} == dict.fromkeys(STAGES, "ok")
    assert any(k.endswith("/_SUCCESS") for k in keys(demo.bucket, "demo/export/dt="))  # the export to S3 committed

    assert sorted(demo.node_names.values())[0] == "head" and len(demo.node_names) >= 3
    # The head has no task CPUs: whatever holds a CPU runs on a worker node. On the head run only the driver and
    # Ray's 0-CPU bookkeeping actors (Train's controller, Data's stats and coordinator actors).
    assert "head" not in {node for stage in STAGES for _, node in stage_work(demo, stage)}
    for stage in STAGES:
        # its work: Ray tasks, Ray Data actors or Ray Train workers that hold CPUs, started while it ran, on workers
        work = stage_work(demo, stage)
        where = {node for _, node in work if node}
        assert where and all(w.startswith("w") for w in where), (stage, work)
        worker = stages[stage]["report"].get("worker")  # the stages that run one task or worker say where
        if isinstance(worker, dict) and "node_id" in worker:
            assert demo.node_names.get(worker["node_id"], "?").startswith("w"), (stage, worker)
        # ... while the driver mostly waited: what it still does (read a stage's inputs' metadata, write the
        # marker and manifest to S3, import torch once, run Ray's client threads) costs little CPU
        driver = stages[stage]["driver"]
        assert driver["cpu_s"] < driver_cpu_bound(stages[stage]["wall_s"]), (stage, driver, stages[stage]["wall_s"])


def test_a_worker_node_killed_during_training_resumes_from_its_s3_checkpoint_with_no_epoch_lost(demo) -> None:
    kill = demo.kill
    assert kill, "the training ended before a checkpoint was registered and its node could be killed"
    assert demo.status == "SUCCEEDED", demo.logs[-4000:]
    registered, before = kill["state"]["epoch"], kill["state"]["history"]
    assert registered < TRAIN_EPOCHS - 1, "killed after the last epoch: nothing left to resume"
    history = read_json(demo.bucket, "demo/generate/history.json")
    assert [h["epoch"] for h in history] == list(range(TRAIN_EPOCHS))  # every epoch once, none twice
    # the restarted group resumed from that checkpoint (or one registered between the look and the kill), and the
    # epochs it holds come back as they were: a restart from scratch would have trained them again, with other
    # losses and timings. Epochs lost = epochs checkpointed before the kill and trained again = 0.
    resumed = re.findall(r"resumed from checkpoint after epoch (\d+)", demo.driver_log)
    assert len(resumed) == 1 and registered <= int(resumed[0]) < TRAIN_EPOCHS - 1, resumed
    lost = [h["epoch"] for h, b in zip(history, before, strict=False) if h != b]
    assert lost == [] and len(before) == registered + 1
    assert demo.manifest["stages"]["train"]["report"]["epochs_run"] == TRAIN_EPOCHS
    # the worker group ran on the killed node, then again on another worker node (which never saw its disk)
    where = [node for name, node in stage_work(demo, "train") if name == "RayTrainWorker.__init__"]
    assert kill["node"] in where and {w for w in where if w != kill["node"]} - {"head", None}, where


def test_a_worker_node_killed_during_the_export_leaves_no_user_missing_or_twice(multinode, demo) -> None:
    """``cemg-ray export`` as a job on the demo run (many small blocks, two decoder actors, so that it is
    still running when a node goes); the node of a decoder actor is killed once staged parts are in S3. Ray Data
    restarts the actor on a node that is left, or the job fails and its re-submission (the documented recovery:
    a re-run deletes the killed attempt's staging) commits: either way every user is in the output exactly once."""
    from cemg_ray.store import Store

    assert demo.status == "SUCCEEDED", "needs the demo run"
    cluster, jobs = multinode, multinode.jobs()
    prefix = "nightly/"
    args = ["export", "jobs/demo.yaml", "--run-dir", demo.run_dir, "--output", f"s3://{demo.bucket}/{prefix}",
            "--date", "2026-12-01", *sets(), "--set", "export.k=5", "--set", "export.batch_size=8",
            "--set", "export.num_blocks=40", "--set", "export.num_actors=2"]
    kill: dict = {}

    def during_the_export(job_id: str) -> None:
        if kill:
            return
        found = keys(demo.bucket, prefix)
        staged = [k for k in found if "/_staging/" in k and k.endswith(".parquet")]
        if not staged:
            return
        nodes = alive_actor_nodes(cluster, jobs.get_job_info(job_id).job_id, "ExportDecoder")
        if not nodes:
            return
        kill.update(node=nodes[0], staged=len(staged), committed=any(k.endswith("/_SUCCESS") for k in found))
        kill["processes"] = cluster.kill_node(nodes[0])
        kill["replacement"] = cluster.add_worker()

    job_id = submit(cluster, cemg(*args))
    attempts = [wait_job(cluster, job_id, 600, lambda: during_the_export(job_id))]
    assert kill, "the export ended before one of its nodes could be killed"
    assert not kill["committed"], "killed after the export had committed: nothing was lost"
    if attempts[0] != "SUCCEEDED":  # the re-run a user (or the next nightly job) makes
        rerun = submit(cluster, cemg(*args))
        attempts.append(wait_job(cluster, rerun, 600))
        assert attempts[-1] == "SUCCEEDED", jobs.get_job_logs(rerun)[-4000:]

    import pyarrow.dataset as pads

    out = Store(f"s3://{demo.bucket}/{prefix}")
    table = pads.dataset(out.path("dt=2026-12-01"), filesystem=out.fs, format="parquet").to_table().to_pandas()
    users = set(Store(demo.run_dir).read_parquet("data/sequences.parquet", ["user_id"]).column("user_id").to_pylist())
    per_user = table.groupby("user_id")["rank"].apply(sorted)
    missing, unknown = users - set(per_user.index), set(per_user.index) - users
    twice = [u for u, ranks in per_user.items() if ranks != [1, 2, 3, 4, 5]]
    assert (len(missing), len(twice), len(unknown)) == (0, 0, 0), (attempts, sorted(missing)[:5], twice[:5])
    assert len(table) == 5 * len(users)
    manifest = read_json(demo.bucket, f"{prefix}dt=2026-12-01/_manifest.json")
    assert manifest["users"] == len(users) and manifest["rows"] == len(table)
    assert not [k for k in keys(demo.bucket, prefix) if "/_staging/" in k]  # the killed attempt's parts are gone
    print(f"export: node {kill['node']} killed with {kill['staged']} parts staged; attempts {attempts}")


def test_serving_with_replicas_on_two_worker_nodes_fails_no_request_when_one_node_dies(multinode, demo) -> None:
    """serve_app/config.yaml deployed through the dashboard (as ``serve deploy``) with the demo's S3 run directory,
    two model replicas on two worker nodes (``max_replicas_per_node: 1``) and the proxy on the head; under a bounded
    load of real HTTP requests (three clients, a few recommendations per second each; around the kill, six more
    sending batch requests back to back) the node of the model replica that holds no ingress replica is killed.
    Counted: failed requests (0), and requests that were on the dying replica and retried by the ingress (> 0)."""
    import requests
    import yaml
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    from cemg_ray.store import Store

    assert demo.status == "SUCCEEDED", "needs the demo run"
    cluster = multinode
    port = free_port()
    conf = yaml.safe_load((REPO / "serve_app" / "config.yaml").read_text())
    conf["proxy_location"] = "HeadOnly"  # one proxy: the worker nodes' proxies would all want this host's port
    conf["http_options"] = {"host": "127.0.0.1", "port": port}
    model = next(d for d in conf["applications"][0]["deployments"] if d["name"] == "ModelReplica")
    model["autoscaling_config"] = {"min_replicas": 2, "max_replicas": 2, "initial_replicas": 2}
    model["max_replicas_per_node"] = 1
    model["user_config"]["run_dir"] = demo.run_dir
    serve = ServeSubmissionClient(cluster.dashboard_url, headers=cluster.headers)
    serve.deploy_applications(conf)

    def running() -> dict[str, list[str]]:
        """Deployment -> the nodes (head / w1 / ...) of its RUNNING replicas."""
        names = cluster.node_names()
        app = serve.get_serve_details().get("applications", {}).get("cemg", {})
        return {name: [names.get(r.get("node_id"), "?") for r in dep.get("replicas", []) if r["state"] == "RUNNING"]
                for name, dep in app.get("deployments", {}).items()}

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # replicas import torch and load the model from S3: slow on a loaded machine
    while time.time() < deadline:
        placed = running()
        if len(placed.get("ModelReplica", [])) == 2 and placed.get("Ingress"):
            try:
                if requests.get(f"{url}/readyz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
        time.sleep(1)
    else:
        raise TimeoutError(f"the app did not come up: {serve.get_serve_details()}")
    assert len(set(placed["ModelReplica"])) == 2 and all(n.startswith("w") for n in placed["ModelReplica"]), placed
    victim = next(n for n in placed["ModelReplica"] if n not in placed["Ingress"])

    users = Store(demo.run_dir).read_parquet("data/sequences.parquet", ["user_id"]).column("user_id").to_pylist()
    stop, lock = threading.Event(), threading.Lock()
    answers: list[tuple[float, int]] = []  # (time, status)
    errors: list[str] = []

    def check(r: requests.Response) -> None:
        with lock:
            answers.append((time.time(), r.status_code))
            body = r.json() if r.status_code == 200 else {}
            lists = [x["items"] for x in body.get("results", [])] if "results" in body else [body.get("items", [])]
            if r.status_code != 200 or any(len(items) != 5 for items in lists):
                errors.append(f"{r.status_code} {r.text[:200]}")

    heavy_done: list[float] = []  # when each batch request came back

    def batches(busy: threading.Event) -> None:  # every user in one request, back to back while ``busy`` is set
        while busy.is_set():
            try:
                check(requests.post(f"{url}/recommend/batch", timeout=120,
                                    json={"requests": [{"user_id": u, "k": 5} for u in users[:1000]]}))
                with lock:
                    heavy_done.append(time.time())
            except requests.RequestException as exc:
                with lock:
                    errors.append(repr(exc))

    def load(offset: int) -> None:  # a few requests per second per client, each a real HTTP request
        session, i = requests.Session(), offset
        while not stop.is_set():
            try:
                check(session.post(f"{url}/recommend", json={"user_id": users[i % 50], "k": 5}, timeout=60))
            except requests.RequestException as exc:  # a reset or refused connection is a failed request
                with lock:
                    errors.append(repr(exc))
            i += 1
            time.sleep(0.25)

    def wait_for(count: int, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while len(answers) + len(errors) < count and time.time() < deadline:
            time.sleep(0.2)

    clients = [threading.Thread(target=load, args=(n * 7,), daemon=True) for n in range(3)]
    for t in clients:
        t.start()
    try:
        wait_for(10, 120)
        # a single recommendation takes milliseconds: so that the dying replica surely has requests in flight, six
        # clients send every user in one batch request after another (the router spreads them over both replicas,
        # three or so on each at any moment); the kill waits until batches flow back, not for a fixed time: on a
        # loaded machine the first ones may still be in the ingress after a second (CI once killed too early)
        busy = threading.Event()
        busy.set()
        heavy = [threading.Thread(target=batches, args=(busy,), daemon=True) for _ in range(6)]
        for t in heavy:
            t.start()
        deadline = time.time() + 180
        while len(heavy_done) < 6 and time.time() < deadline and not errors:
            time.sleep(0.1)
        assert len(heavy_done) >= 6, f"batch requests did not flow before the kill: {errors[:3]}"
        killed_at = time.time()
        cluster.kill_node(victim)  # returns once the cluster has marked the node dead
        busy.clear()
        for t in heavy:
            t.join(180)
        after = len(answers)
        wait_for(after + 20, 180)
    finally:
        stop.set()
        for t in clients:
            t.join(90)
    late = [s for t, s in answers if t > killed_at]
    assert not errors, errors[:5]
    assert len(answers) >= 30 and len(late) >= 20 and {s for _, s in answers} == {200}
    deadline = time.time() + 120  # Serve's controller notices the dead replica after its health checks
    while victim in running().get("ModelReplica", []) and time.time() < deadline:
        time.sleep(1)
    assert victim not in running().get("ModelReplica", [])  # its replica went with the node
    retried = requests.get(f"{url}/metadata", timeout=30).json()["ingress_retries"]
    assert retried >= 1, "no request was on the dying replica: the kill showed nothing"  # each one answered 200
    print(f"serving: node {victim} killed; {len(answers)} requests, {len(late)} after the kill, 0 failed, "
          f"{retried} retried by the ingress")
