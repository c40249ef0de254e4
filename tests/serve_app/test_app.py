"""The serving app on a local Ray Serve instance, over real HTTP: answers, batching, bad input, reload."""

from __future__ import annotations

import concurrent.futures as cf
import json

import pytest
import requests

PORT = 8123


@pytest.fixture(scope="module")
def served(demo_run):
    import ray
    from ray import serve

    from serve_app.app import Recommender

    cfg, store = demo_run
    ray.init(num_cpus=2, ignore_reinit_error=True, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    dep = Recommender.options(user_config={"run_dir": str(store.root_uri), "model": "cemg", "max_k": 50},
                              ray_actor_options={"num_cpus": 0.5})
    serve.run(dep.bind(), name="cemg", route_prefix="/")
    yield f"http://127.0.0.1:{PORT}", store
    serve.shutdown()


def post(url: str, body, **kw):  # noqa: ANN001, ANN201
    return requests.post(url, data=body if isinstance(body, str | bytes) else json.dumps(body),
                         headers={"content-type": "application/json"}, timeout=60, **kw)


def test_recommend_returns_real_items_with_scores(served) -> None:
    url, store = served
    ids = store.read_parquet("data/items.parquet").column("item_id").to_pylist()
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{url}/readyz", timeout=10).json()["ready"] is True
    meta = requests.get(f"{url}/metadata", timeout=10).json()
    assert meta["catalog_size"] == len(ids) and meta["code_config"]["num_levels"] >= 2
    r = post(f"{url}/recommend", {"history": ids[:3], "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    got = [i["item_id"] for i in body["items"]]
    assert len(got) == 5 and len(set(got)) == 5 and set(got) <= set(ids)
    assert not set(got) & set(ids[:3])  # exclude_seen
    assert body["model_version"].startswith("train-")
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    seqs = store.read_parquet("data/sequences.parquet")
    r = post(f"{url}/recommend", {"user_id": seqs.column("user_id")[0].as_py(), "k": 3})
    assert r.status_code == 200 and len(r.json()["items"]) == 3


def test_batch_form_and_concurrent_requests(served) -> None:
    url, store = served
    ids = store.read_parquet("data/items.parquet").column("item_id").to_pylist()
    r = post(f"{url}/recommend/batch", {"requests": [{"history": ids[i:i + 2], "k": 4} for i in range(6)]})
    assert r.status_code == 200 and [len(x["items"]) for x in r.json()["results"]] == [4] * 6
    with cf.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: post(f"{url}/recommend", {"history": [ids[i]], "k": 3}).status_code,
                              range(24)))
    assert codes == [200] * 24


@pytest.mark.parametrize("body, status, needle", [
    ({"history": ["nope-1", "nope-2"]}, 422, "none of the history"),
    ({"history": [], "k": 3}, 200, None),
    ({"history": ["x"], "k": 0}, 422, "k must be between"),
    ({"history": ["x"], "k": 51}, 422, "k must be between"),
    ({"history": ["x"], "k": "ten"}, 422, "k"),
    ({"history": "not a list"}, 422, "history"),
    ({"history": [1, 2]}, 422, "history"),
    ({"k": 3}, 422, "either 'user_id' or 'history'"),
    ({"history": ["x"], "colour": "red"}, 422, "colour"),
    ({"user_id": "no-such-user"}, 404, "unknown user_id"),
    ("{not json", 422, "invalid request"),
    ("x" * 2_000_000, 413, "request body over"),
])
def test_bad_requests_get_4xx_with_a_message(served, body, status: int, needle: str | None) -> None:
    url, _ = served
    r = post(f"{url}/recommend", body)
    assert r.status_code == status, r.text
    if needle:
        assert needle in r.text
    if status == 200:
        assert r.json()["fallback"] == "popular" and len(r.json()["items"]) == 3


def test_unknown_items_are_ignored_and_listed(served) -> None:
    url, store = served
    ids = store.read_parquet("data/items.parquet").column("item_id").to_pylist()
    r = post(f"{url}/recommend", {"history": [ids[0], "ghost"], "k": 3})
    assert r.status_code == 200 and r.json()["unknown_items"] == ["ghost"]


def test_new_model_version_through_user_config_without_failed_requests(served) -> None:
    from ray import serve

    from serve_app.app import Recommender

    url, store = served
    ids = store.read_parquet("data/items.parquet").column("item_id").to_pylist()
    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(post, f"{url}/recommend", {"history": [ids[i % 50]], "k": 3}) for i in range(40)]
        dep = Recommender.options(user_config={"run_dir": str(store.root_uri), "model": "sasrec", "max_k": 50},
                                  ray_actor_options={"num_cpus": 0.5})
        serve.run(dep.bind(), name="cemg", route_prefix="/")
        statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * 40
    assert requests.get(f"{url}/metadata", timeout=10).json()["model"] == "sasrec"


def test_user_config_typos_are_errors() -> None:
    from serve_app.app import validate_user_config

    with pytest.raises(ValueError, match="modle"):
        validate_user_config({"run_dir": "x", "modle": "cemg"})
