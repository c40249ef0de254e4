"""A small trained run (data, popularity, SASRec) for the serving tests, built once per session."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["dataset.synthetic.num_users=200", "dataset.synthetic.num_items=80", "dataset.synthetic.num_clusters=4",
         "sasrec.epochs=2"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The demo job's data, popularity and SASRec stages on a smaller catalog: (run_dir, config)."""
    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("serve") / "run"
    cfg = load_config(REPO / "jobs" / "demo.yaml", [f"run_dir={run_dir}", *SMALL])
    manifest = run_pipeline(cfg, ["data", "popularity", "sasrec"])
    assert all(s["status"] == "ok" for s in manifest["stages"].values()), manifest["stages"]
    return run_dir, cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
