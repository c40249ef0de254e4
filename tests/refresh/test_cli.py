"""``cemg-ray refresh`` on bad input: one message naming what is wrong, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

from cemg_ray.cli import main


def test_bad_input_is_a_message_and_exit_2(tmp_path: Path, capsys) -> None:
    job = tmp_path / "refresh.yaml"
    job.write_text(f"run_dir: {tmp_path / 'never-trained'}\nrefresh:\n  root: {tmp_path / 'root'}\n")
    assert main(["refresh", str(job), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "refresh: the run to start from: run_dir" in err and "never-trained" in err and "Traceback" not in err
    assert main(["refresh", str(job), str(tmp_path), "--set", "refresh.metric=MRR"]) == 2
    assert "refresh.metric: Value error, expected HR@K or NDCG@K" in capsys.readouterr().err
    job.write_text(f"run_dir: {tmp_path}\nrefresh:\n  serve_config: {tmp_path / 's.yaml'}\n"
                   f"  serve_template: {tmp_path / 'nowhere.yaml'}\n")
    assert main(["refresh", str(job), str(tmp_path)]) == 2
    assert "refresh.serve_template: cannot read" in capsys.readouterr().err
    assert not list((tmp_path / "root").glob("*")) and not (tmp_path / "s.yaml").exists()  # no version, no marker
