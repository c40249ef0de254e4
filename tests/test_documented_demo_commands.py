"""The documented commands that need the trained demo run or S3, run verbatim from a folder of their own.

`make demo`'s job (``cemg-ray run jobs/demo.yaml``) trains ``runs/demo`` there; then OPERATIONS.md's export to
``s3://my-bucket/recs``, the README's run into ``s3://bucket/runs/x``, the serving benchmarks and OPERATIONS.md's
``ray job submit`` line run exactly as written. A local moto S3
server stands in for AWS through the standard AWS chain (``AWS_ENDPOINT_URL`` and dummy keys in the environment),
as it would for a user with a MinIO or LocalStack endpoint: the command lines themselves are untouched.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from tests.conftest import REPO
from tests.headnode import submit_verbatim, token_head

DEMO_LINE = "cemg-ray run jobs/demo.yaml"
EXPORT_LINE = "cemg-ray export jobs/demo.yaml --output s3://my-bucket/recs --date 2026-11-25 -k 20"
S3_RUN_LINE = "cemg-ray run jobs/demo.yaml --set tokenize.codebook_size=64 --set run_dir=s3://bucket/runs/x"
SERVING_LINE = ".venv/bin/cemg-ray bench serving --run-dir runs/demo --requests 300"
OPEN_LOOP_LINE = ".venv/bin/cemg-ray bench serving --run-dir runs/demo --open-loop --requests 400"
SUBMIT_LINE = "ray job submit --working-dir . -- cemg-ray run jobs/demo.yaml"
WHERE = {DEMO_LINE: "Makefile", EXPORT_LINE: "docs/OPERATIONS.md", S3_RUN_LINE: "README.md",
         SERVING_LINE: "docs/OPERATIONS.md", OPEN_LOOP_LINE: "docs/OPERATIONS.md", SUBMIT_LINE: "docs/OPERATIONS.md"}
# the stages the README's S3 line shares with `make demo`'s run (its --set changes the tokenizer and what reads it)
SHARED_WITH_THE_DEMO = ("data", "popularity", "sasrec", "features", "pca", "lightgcn")
CONFIGS = [("1", "on"), ("1", "off"), ("2", "on"), ("2", "off")]

pytestmark = pytest.mark.slow


def _run_verbatim(line: str, cwd: Path, smaller: tuple[str, ...] = ()) -> str:
    """Run a documented ``cemg-ray`` line as written (this environment's entry point); return its output.

    ``.venv/bin/cemg-ray`` and ``cemg-ray`` both name the entry point of the environment running the tests.
    ``smaller``: options appended after the line (the last one wins) to run a documented benchmark at a smaller
    count; every other word is the line's.
    """
    assert line in (REPO / WHERE[line]).read_text(), f"{WHERE[line]} no longer holds {line!r}: update this test"
    cli = Path(sys.executable).with_name("cemg-ray")
    # a cluster of its own, whatever else runs on this host; the AWS chain is the s3_server fixture's environment
    env = {**os.environ, "RAY_ADDRESS": "local"}
    done = subprocess.run([str(cli), *shlex.split(line)[1:], *smaller], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    out = done.stderr + done.stdout  # in the order a terminal shows them: the job's progress, then its figures
    assert done.returncode == 0, f"{line}: exit {done.returncode}\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    return out


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory, s3_server) -> tuple[Path, str, str]:
    """A folder whose ``jobs`` is the repository's, with ``make demo``'s run trained in it; buckets created.
    (folder, S3 endpoint, what the demo printed)"""
    import ray

    if ray.is_initialized():  # this process's cluster would sit idle on the two cores beside the commands'
        ray.shutdown()
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    for bucket in ("my-bucket", "bucket"):
        s3.create_bucket(Bucket=bucket)
    work = tmp_path_factory.mktemp("documented") / "repo"
    work.mkdir()
    (work / "jobs").symlink_to(REPO / "jobs")
    out = _run_verbatim(DEMO_LINE, work)
    assert (work / "runs" / "demo" / "_stages" / "evaluate.json").exists()
    return work, s3_server, out


def test_the_demo_prints_a_line_per_stage_and_ends_with_the_figures(demo_folder) -> None:
    """A newcomer's console: under 60 lines, no error-level line (Ray's and the libraries' lines are in the
    run's log file), one line per stage, and the test figures of every evaluated model last."""
    import json

    work, _, out = demo_folder
    lines = out.strip().splitlines()
    assert len(lines) < 60, out
    errors = [line for line in lines if re.search(r"\bERROR\b|^\[[^]]* E \d+ \d+\]|Traceback|core_worker\.cc", line)]
    assert not errors, out
    stages = [line.split()[1] for line in lines if line.startswith("stage ")]
    assert stages == ["data", "popularity", "sasrec", "features", "pca", "lightgcn", "tokenize", "train",
                      "evaluate", "export"][:len(stages)] and "evaluate" in stages, out
    metrics = json.loads((work / "runs" / "demo" / "eval" / "metrics.json").read_text())
    table = lines[-len(metrics):]
    for name, row in zip(metrics, table):
        assert row.split()[0] == name and f"{metrics[name]['overall']['HR@10']:.4f}" in row, out
    log = next((work / "runs" / "demo" / "_logs").glob("demo-*.log")).read_text()
    assert "Started a local Ray instance" in log  # Ray's lines were kept, in the log file


def test_the_documented_export_to_s3_writes_every_users_list(demo_folder) -> None:
    work, endpoint, _ = demo_folder
    _run_verbatim(EXPORT_LINE, work)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="my-bucket", Prefix="recs/").get("Contents", [])]
    assert "recs/dt=2026-11-25/_SUCCESS" in keys and not any("_staging" in k for k in keys)
    fs = pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", scheme="http")
    table = pads.dataset("my-bucket/recs/dt=2026-11-25", filesystem=fs, format="parquet").to_table()
    users = pads.dataset(str(work / "runs" / "demo" / "data" / "sequences.parquet")).count_rows()
    assert table.num_rows == users * 20 and table.column("user_id").to_pandas().nunique() == users


def test_the_readmes_run_into_an_s3_run_directory(demo_folder) -> None:
    """The README's line into ``s3://bucket/runs/x``. The six stages it shares with `make demo`'s run are adopted
    from that run first (``cemg_ray.ablate.adopt_stage``, what `cemg-ray ablate` does between its cells), so the line
    runs the tokenizer, the generator, the evaluation and the export into S3 and skips the rest, as a user re-running
    with a new codebook would see. Every stage run into an S3 run directory: tests/cluster/test_multinode.py."""
    from cemg_ray.ablate import adopt_stage
    from cemg_ray.config import load_config
    from cemg_ray.store import Store

    work, endpoint, _ = demo_folder
    cfg = load_config(work / "jobs" / "demo.yaml", ["tokenize.codebook_size=64", "run_dir=s3://bucket/runs/x"])
    demo, target = Store(str(work / "runs" / "demo")), Store.for_job(cfg)
    assert all(adopt_stage(demo, target, cfg, stage) for stage in SHARED_WITH_THE_DEMO)
    _run_verbatim(S3_RUN_LINE, work)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bucket", Prefix="runs/x/").get("Contents", [])}
    assert {"runs/x/manifest.json", "runs/x/_stages/evaluate.json", "runs/x/eval/metrics.json"} <= keys
    assert not (work / "runs" / "x").exists()  # nothing of it landed locally
    stages = target.read_json("manifest.json")["stages"]
    assert {s: stages[s]["status"] for s in SHARED_WITH_THE_DEMO} == dict.fromkeys(SHARED_WITH_THE_DEMO, "skipped")
    assert {stages[s]["status"] for s in ("tokenize", "train", "evaluate", "export")} == {"ok"}
    assert target.read_json("tokenize/report.json")["level_sizes"][:3] == [64, 64, 64]


def _table_rows(out: str, columns: int) -> list[list[str]]:
    """The rows of ``bench serving``'s printed tables that have ``columns`` fields and start with a replica count."""
    rows = [line.split() for line in out.splitlines()]
    return [r for r in rows if len(r) == columns and re.fullmatch(r"[12]", r[0]) and r[1] in ("on", "off")]


def test_the_documented_serving_benchmark_measures_four_configurations(demo_folder) -> None:
    """The closed-loop line at 30 of its 300 requests (its figures are docs/OPERATIONS.md's, from the line as
    written): the four configurations, every ratio, the machine."""
    work, _, _ = demo_folder
    out = _run_verbatim(SERVING_LINE, work, smaller=("--requests", "30", "--warmup", "8"))
    rows = _table_rows(out, 6)  # replicas, batching, p50, p99, req/s, errors
    assert [(r[0], r[1]) for r in rows] == CONFIGS, out[-3000:]
    for _, _, p50, p99, rate, errors in rows:
        assert 0 < float(p50) <= float(p99) and float(rate) > 0 and errors == "0"
    for ratio in ("batching_speedup_1_replicas", "batching_speedup_2_replicas", "two_replicas_speedup_batching_on",
                  "two_replicas_speedup_batching_off"):
        assert re.search(rf"^  {ratio}: [0-9.]+x$", out, re.MULTILINE), out[-3000:]
    assert re.search(r"^serving benchmark, 20\d\d-.*CPUs", out, re.MULTILINE), out[-3000:]
    assert "open loop" not in out


def test_the_documented_open_loop_benchmark_reports_every_rate(demo_folder) -> None:
    """The open-loop line at 12 of its 400 requests per rate (its figures are docs/OPERATIONS.md's, from the line as
    written): the same four configurations and five rates, in a fraction of the time."""
    work, _, _ = demo_folder
    out = _run_verbatim(OPEN_LOOP_LINE, work, smaller=("--requests", "12", "--warmup", "4"))
    assert "model alone (in process, one user per call)" in out
    single = [r for r in _table_rows(out, 6) if r[2] == "single"]  # replicas, batching, single, p50, p99, errors
    assert [(r[0], r[1]) for r in single] == CONFIGS and all(r[5] == "0" for r in single), out[-3000:]
    scheduled = _table_rows(out, 8)  # replicas, batching, rate, got, p50, p99, p99.9, errors
    assert [(r[0], r[1]) for r in scheduled] == [c for c in CONFIGS for _ in range(5)], out[-3000:]  # 25-125 %
    for _, _, rate, got, p50, p99, p999, _ in scheduled:
        assert float(rate) > 0 and float(got) > 0 and 0 < float(p50) <= float(p99) <= float(p999)


@pytest.fixture(scope="module")
def head_node():
    """A one-node cluster started with ``ray start --head``, token auth on: (dashboard URL, token)."""
    with token_head() as head:
        yield head


def test_the_documented_ray_job_submit_line_runs_verbatim(demo_folder, head_node, tmp_path) -> None:
    """OPERATIONS.md's test-cluster line, as written, token auth on, from a copy of the folder `make demo` ran in.
    The line uploads that folder (``--working-dir .``) with its run: the stages `make demo` finished are skipped
    and evaluate and export, their records removed, run again on the cluster. The demo trained through the Jobs API,
    every stage's work on worker nodes: tests/cluster/test_multinode.py."""
    work, _, _ = demo_folder
    assert SUBMIT_LINE in (REPO / WHERE[SUBMIT_LINE]).read_text(), f"{WHERE[SUBMIT_LINE]} no longer holds it"
    folder = tmp_path / "repo"
    shutil.copytree(work, folder, symlinks=False, ignore=shutil.ignore_patterns("_logs", "logs"))
    for stage in ("evaluate", "export"):
        (folder / "runs" / "demo" / "_stages" / f"{stage}.json").unlink()
    url, token = head_node
    out = submit_verbatim(shlex.split(SUBMIT_LINE), folder, url, token)
    assert "succeeded" in out
    assert re.search(r"stage evaluate\s+ok in", out) and re.search(r"stage export\s+ok in", out), out[-3000:]
    assert re.search(r"stage train\s+skipped", out), out[-3000:]
    assert "ray: joined the cluster at" in out  # the job ran on the head node's cluster, not on one of its own
    assert token not in out  # the token never reaches the job's log
