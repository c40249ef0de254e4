"""`serve run serve_app/config.yaml` on the trained demo run: the CLI path a user takes, over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from cemg_ray.recommenders import default_model
from tests.headnode import _die_with_parent, stop_group
from tests.serve_app.conftest import REPO, free_port

SERVE = Path(sys.executable).parent / "serve"


@pytest.fixture(scope="module")
def serve_run(demo_run, tmp_path_factory):
    """The repository's config file with only run_dir and the port changed, run by the `serve` CLI."""
    _, store = demo_run
    port = free_port()
    conf = yaml.safe_load((REPO / "serve_app" / "config.yaml").read_text())
    conf["http_options"] = {"host": "127.0.0.1", "port": port}
    conf["applications"][0]["deployments"][0]["user_config"]["run_dir"] = store.root_uri
    assert "model" not in conf["applications"][0]["deployments"][0]["user_config"]  # the run's default list
    tmp = tmp_path_factory.mktemp("serve-run")
    (tmp / "config.yaml").write_text(yaml.safe_dump(conf))
    log = open(tmp / "serve.log", "w")
    # RAY_ADDRESS=local: a cluster of its own even when another one runs on this host
    env = {**os.environ, "RAY_ADDRESS": "local", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.Popen([str(SERVE), "run", str(tmp / "config.yaml")], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            try:
                if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"serve run did not become ready: {(tmp / 'serve.log').read_text()[-3000:]}")
        yield url, store
    finally:
        stop_group(proc, signal.SIGINT)  # serve run shuts the app and its local cluster down on Ctrl-C
        log.close()


@pytest.mark.slow
def test_serve_run_answers_recommend_with_catalog_items(serve_run) -> None:
    url, store = serve_run
    table = store.read_parquet("data/items.parquet", columns=["item_idx", "item_id"]).to_pylist()
    items = {r["item_idx"]: r["item_id"] for r in table}
    seqs = store.read_parquet("data/sequences.parquet").slice(0, 1).to_pylist()[0]
    meta = requests.get(f"{url}/metadata", timeout=10).json()
    assert meta["model"] == default_model(store) and meta["catalog_size"] == len(items)
    assert meta["code_config"]["num_levels"] == len(meta["code_config"]["level_sizes"])
    r = requests.post(f"{url}/recommend", json={"user_id": seqs["user_id"], "k": 10}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    got = [i["item_id"] for i in body["items"]]
    assert len(got) == 10 and len(set(got)) == 10 and set(got) <= set(items.values())
    assert not set(got) & {items[i] for i in seqs["items"]}
    assert body["model_version"] == meta["model_version"] and body["model_version"].startswith("train-")
    r = requests.post(f"{url}/recommend", json={"history": [items[0], "not-an-item"], "k": 0}, timeout=60)
    assert r.status_code == 422 and "k must be between 1 and 100" in r.json()["error"]
