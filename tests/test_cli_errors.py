"""Every command on bad input: one message naming the file or key at fault, exit 2, never a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cemg_ray.cli import main

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
