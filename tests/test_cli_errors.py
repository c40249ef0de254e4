"""Every command on bad input: one message naming the file or key at fault, exit 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from cemg_ray.cli import main
from tests.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path


def _cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: missing.yaml\n")
    bad_data = tmp_path / "bad-data.yaml"
    bad_data.write_text(f"run_dir: {tmp_path / 'run'}\ndataset:\n  format: json\n  path: {tmp_path / 'nowhere'}\n")
    items = tmp_path / "items.parquet"
    items.write_bytes(b"not parquet")
    no_run = tmp_path / "no-run.yaml"
    no_run.write_text(f"run_dir: {tmp_path / 'never-ran'}\n")
    return [
        (["validate", str(empty)], "the job file is empty"),
        (["validate", str(child)], "extends: in"),
        (["validate", str(tmp_path)], "not a file"),
        (["validate", "jobs/demo.yaml", "--set", "train.batch_size=0"], "train.batch_size"),
        (["run", str(child)], "missing.yaml: file not found"),
        (["run", str(bad_data), "--stages", "data"], "nowhere"),
        (["run", str(no_run), "--stages", "nosuchstage"], "nosuchstage"),
        (["data", "stats", str(tmp_path / "nowhere"), "--format", "json"], "nowhere"),
        (["export", str(no_run), "--date", "2026-13-40"], "export.date"),
        (["export", str(no_run)], "never-ran"),
        (["codes", "assign", str(no_run), str(items)], ""),
        # preflight: a stage evaluate needs is neither run nor done; a dataset path that is not there
        (["run", "jobs/demo.yaml", "--run-dir", str(tmp_path / "fresh"), "--stages", "data,popularity,evaluate"],
         "need(s) the 'train' stage"),
        # the blend reads SASRec too: a run with the generator's stages but not SASRec's is named at once
        (["run", "jobs/demo.yaml", "--run-dir", str(tmp_path / "fresh"), "--stages", "data,train,evaluate",
          "--set", "evaluate.models=[cemg:blend]", "--set", "evaluate.select_default=[]"],
         "cemg:blend need(s) the 'sasrec' stage"),
        (["validate", str(bad_data)], "dataset.path"),
        (["validate", "jobs/demo.yaml", "--set", "evaluate.select_default=[cemg_hybird]"],
         "evaluate.select_default: unknown model 'cemg_hybird'; known: popularity, sasrec, cemg"),
        (["run", str(no_run), "--set", "run_dir=gs://bucket/x", "--stages", "data"], "only local paths and s3://"),
    ]


def test_every_command_fails_with_a_message_not_a_traceback(tmp_path, capsys) -> None:
    for argv, needle in _cases(tmp_path):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (argv, rc, err)
        assert "Traceback" not in err and err.strip(), (argv, err)
        assert needle in err, (argv, err)


def test_debug_shows_the_traceback(tmp_path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("extends: missing.yaml\n")
    from cemg_ray.config import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "run", str(child)])


def test_validate_checks_that_an_s3_run_directorys_endpoint_answers(s3_bucket, capsys) -> None:
    """An endpoint that did not answer passed ``validate`` and stopped the run in its first stage with a bare network
    message; now one request with a short timeout names the run directory, the endpoint and where it was set."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    run_dir = f"{s3_bucket}/runs/x"
    t0 = time.perf_counter()
    rc = main(["validate", "jobs/demo.yaml", "--set", f"run_dir={run_dir}", "--set", f"storage.endpoint_url={closed}"])
    err = capsys.readouterr().err
    assert rc == 2 and time.perf_counter() - t0 < 15, err
    assert f"jobs/demo.yaml: run_dir: {run_dir}: the S3 endpoint {closed} (storage.endpoint_url) does not answer" in err
    # the local S3 server through the AWS chain (AWS_ENDPOINT_URL): a missing bucket, then the fixture's own
    assert main(["validate", "jobs/demo.yaml", "--set", "run_dir=s3://no-such-bucket/x"]) == 2
    assert "bucket 'no-such-bucket' does not exist at the S3 endpoint http://127.0.0.1:" in capsys.readouterr().err
    assert main(["validate", "jobs/demo.yaml", "--set", f"run_dir={run_dir}"]) == 0, capsys.readouterr().err


# The command from a working directory that is removed under it (on a cluster whose nodes shared one temporary
# folder, the driver's went mid-job); torch is loaded first, while the folder exists, as it would have been.
GONE = textwrap.dedent("""
    import os, shutil, sys
    import torch  # noqa: F401
    from cemg_ray.cli import main
    os.chdir(sys.argv[1])
    shutil.rmtree(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
""")


def test_an_os_error_says_what_was_being_done_and_on_which_path(tmp_path) -> None:
    """It printed only ``error: [Errno 2] No such file or directory``: now the command (or the stage and its run
    directory), the path, and that the working directory is the one that went."""
    work = tmp_path / "work"
    work.mkdir()
    job = str(REPO / "jobs" / "demo.yaml")
    done = subprocess.run([sys.executable, "-c", GONE, str(work), "run", job, "--stages", "data", "--set",
                           "run_dir=run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: cemg-ray run {job} --stages data --set run_dir=run: [Errno 2]"), line
    assert f"the working directory {work} no longer exists" in line and "Traceback" not in done.stderr
