import argparse
import json

import pytest

from cemg_ray.cli import build_parser, main


def _all_subcommand_paths(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _all_subcommand_paths(sub, (*prefix, name))


def test_every_subcommand_has_help(capsys):
    paths = list(_all_subcommand_paths(build_parser()))
    assert ("validate",) in paths and ("data", "stats") in paths and ("run",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        assert exit_.value.code == 0
        assert "usage: cemg-ray" in capsys.readouterr().out


def test_every_leaf_subcommand_has_a_handler():
    """A command whose parser sets no handler fails only when a user runs it (``bench growth`` once did)."""
    def leaves(parser: argparse.ArgumentParser, prefix=()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix, parser
        for action in subs:
            for name, sub in action.choices.items():
                yield from leaves(sub, (*prefix, name))

    found = dict(leaves(build_parser()))
    assert ("bench", "growth") in found and ("run",) in found
    for path, sub in found.items():
        assert callable(sub.get_default("func")), f"cemg-ray {' '.join(path)} sets no handler"


def test_validate_reports_errors_with_key_path(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("run_dir: /tmp/x\n")
    bad.write_text("run_dir: /tmp/x\nlightgcn:\n  epochs: many\n  layers: 3\n")
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: lightgcn.epochs: Input should be a valid integer" in err
    assert f"{bad}: lightgcn.layers: unknown key" in err


def test_data_stats_json_and_errors(tmp_path, capsys):
    seq = tmp_path / "d.txt"
    seq.write_text("1 1 2 3\n2 2 3 4 5\n")
    assert main(["data", "stats", str(seq), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (2, 5, 7)
    assert main(["data", "stats", str(tmp_path / "absent")]) == 2
    assert "path not found" in capsys.readouterr().err


def test_run_rejects_unknown_stage_and_bad_override(tmp_path, capsys):
    assert main(["run", "--run-dir", str(tmp_path), "--stages", "data,nope"]) == 2
    assert "unknown stage(s) nope" in capsys.readouterr().err
    assert main(["run", "--run-dir", str(tmp_path), "--set", "train.lr=fast"]) == 2
    assert "train.lr" in capsys.readouterr().err
