"""Shared fixtures: a real local S3-compatible server (moto server mode) and small job configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The real public data (../shared/data beside the checkout, or CEMG_DATA_DIR); tests using it skip without it.
SHARED_DATA = Path(os.environ.get("CEMG_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
BEAUTY = SHARED_DATA / "beauty"


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 with dummy credentials in the environment (never real ones)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                            "AWS_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1")
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh bucket on the local S3 server; returns its s3:// URI."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture()
def small_job(tmp_path):
    """A job on a small synthetic catalog in a temporary run directory."""
    from cemg_ray.config import load_config

    return load_config(None, [f"run_dir={tmp_path / 'run'}", "dataset.synthetic.num_users=120",
                              "dataset.synthetic.num_items=60", "dataset.synthetic.num_clusters=4"])


REPO = Path(__file__).resolve().parents[1]
# The demo job, shrunk so the whole pipeline runs in about a minute of compute on 2 cores.
# evaluate.num_actors=0: the tests that are not about evaluation rank in the driver, saving an actor pool's start per
# evaluate run; the actor path (every job's default) is tested by tests/evaluate/test_distributed.py and
# test_stage.py, the documented demo lines, `ray job submit` and the multi-node cluster
FAST_DEMO = ["sasrec.epochs=5", "features.image.image_size=64", "lightgcn.epochs=20", "tokenize.epochs=60",
             "train.epochs=6", "train.valid_users=100", "dataset.synthetic.num_users=400", "evaluate.num_actors=0"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo job run once on a local Ray cluster, every stage up to evaluation: (config, store)."""
    from cemg_ray.config import load_config
    from cemg_ray.pipeline import run_pipeline
    from cemg_ray.store import Store

    run_dir = tmp_path_factory.mktemp("demo") / "run"
    cfg = load_config(REPO / "jobs" / "demo.yaml", [f"run_dir={run_dir}", *FAST_DEMO])
    manifest = run_pipeline(cfg, ["data", "popularity", "sasrec", "features", "pca", "lightgcn", "tokenize", "train",
                                  "evaluate"])
    assert all(s["status"] == "ok" for s in manifest["stages"].values()), manifest["stages"]
    return cfg, Store(str(run_dir))
