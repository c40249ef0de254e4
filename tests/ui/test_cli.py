"""``cemg-ray ui RUN_DIR``: registered with the other subcommands, refuses a non-run, serves a real run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from cemg_ray.cli import build_parser, main


def test_the_subcommand_and_its_options():
    args = build_parser().parse_args(["ui", "runs/demo", "--host", "0.0.0.0", "--port", "9001"])
    assert (args.run_dir, args.host, args.port, args.model) == ("runs/demo", "0.0.0.0", 9001, None)
    defaults = build_parser().parse_args(["ui", "runs/demo"])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8000)  # this machine only by default


def test_a_directory_that_is_not_a_run_is_one_message(tmp_path, capsys):
    assert main(["ui", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and str(tmp_path) in err and "Traceback" not in err
    assert main(["ui", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_serves_the_page(demo_run):
    _, store = demo_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cemg_ray.cli", "ui", store.root_uri, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/api/run", timeout=5)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"cemg-ray ui did not start: {proc.stdout.read()}") from None
                time.sleep(0.5)
        assert resp.status_code == 200 and resp.json()["run"] == store.root_uri
        assert "<title>" in requests.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"open http://127.0.0.1:{port}/" in out
