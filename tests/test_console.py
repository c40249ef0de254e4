"""The console of a job: progress and warnings on it, Ray's and the libraries' lines in the run's log file."""

from __future__ import annotations

import logging

import pytest

from cemg_ray import console


@pytest.fixture()
def quiet_console(tmp_path, capsys):
    log_file = tmp_path / "_logs" / "job.log"
    console.configure(verbose=False, log_file=log_file)
    yield log_file, capsys
    console.reset()


def test_quiet_console_keeps_progress_and_warnings_and_the_file_keeps_everything(quiet_console) -> None:
    log_file, capsys = quiet_console
    console.progress("stage %-10s ok in %.1fs", "data", 0.9)
    logging.getLogger("ray").info("Started a local Ray instance.")
    logging.getLogger("ray.data").warning("Progress bars disabled.")
    logging.getLogger("cemg_ray").info("sasrec epoch 3/200")
    logging.getLogger("cemg_ray").warning("export: 4 rows short")
    shown = capsys.readouterr().err.splitlines()
    assert shown == ["stage data       ok in 0.9s", "export: 4 rows short"]
    kept = log_file.read_text()
    for line in ("Started a local Ray instance.", "Progress bars disabled.", "sasrec epoch 3/200", "stage data"):
        assert line in kept


def test_native_core_lines_go_to_the_log_file_and_the_rest_of_stderr_to_the_console(tmp_path) -> None:
    """A child process writes to the same stderr descriptor as Ray's C++ core does in the driver."""
    import subprocess
    import sys

    log_file = tmp_path / "job.log"
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from cemg_ray import console\n"
        f"console.configure(False, Path({str(log_file)!r}))\n"
        "console.capture_native_stderr()\n"
        "os.write(2, b'[2026-12-07 01:51:21,965 E 20468 20468] core_worker.cc:2465: Actor with class name\\n')\n"
        "print('error: something the user must see', file=sys.stderr)\n"
        "console.reset()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == ["error: something the user must see"]
    assert "core_worker.cc:2465" in log_file.read_text()


def test_the_figures_table_has_a_row_per_model_with_standard_errors() -> None:
    metrics = {"sasrec": {"overall": {"HR@10": 0.0922, "NDCG@10": 0.0563}, "overall_se": {"HR@10": 0.0019,
                                                                                          "NDCG@10": 0.0013},
                          "cold_start": {"HR@10": 0.0361}, "cold_start_se": {"HR@10": 0.0024}},
               "popularity": {"overall": {"HR@10": 0.0115, "NDCG@10": 0.0055}}}
    header, sasrec, popularity = console.figures_table(metrics)
    assert header.split()[0] == "model" and "cold-start" in header
    assert sasrec.split() == ["sasrec", "0.0922", "±", "0.0019", "0.0563", "±", "0.0013", "0.0361", "±", "0.0024"]
    assert popularity.split()[-1] == "-"
