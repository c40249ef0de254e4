"""The serving app on a local Ray Serve instance over real HTTP: answers, batching, bad input, hot reload."""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import time
from typing import TYPE_CHECKING

import pytest
import requests
import yaml

from tests.serve_app.conftest import REPO, free_port

if TYPE_CHECKING:
    from collections.abc import Callable

CONFIG = REPO / "serve_app" / "config.yaml"


def serve_config(port: int, user_config: dict, replicas: int = 1) -> dict:
    """serve_app/config.yaml with this test's port, small model replicas (one by default, so counters are per
    replica) and ``user_config``."""
    conf = yaml.safe_load(CONFIG.read_text())
    conf["http_options"] = {"host": "127.0.0.1", "port": port}
    dep = next(d for d in conf["applications"][0]["deployments"] if d["name"] == "ModelReplica")
    dep.pop("autoscaling_config")
    dep.update(ray_actor_options={"num_cpus": 0.5}, user_config=user_config)
    if replicas == 1:
        dep["num_replicas"] = 1
    else:  # the class's own autoscaling_config (min 1) would win over a plain num_replicas: pin both bounds
        dep["autoscaling_config"] = {"min_replicas": replicas, "max_replicas": replicas, "initial_replicas": replicas}
    return conf


@pytest.fixture(scope="module")
def served(trained_run):
    """A local cluster with the dashboard; the app deployed from its config file as `serve deploy` does."""
    import ray
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    run_dir, _ = trained_run
    port, dash = free_port(), free_port()
    if ray.is_initialized():  # an earlier test module's cluster (the demo pipeline's) would clash
        ray.shutdown()
    # address="local": never join another cluster running on this host
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_port=dash)
    client = ServeSubmissionClient(f"http://{ctx.dashboard_url}")
    url = f"http://127.0.0.1:{port}"
    base = {"run_dir": str(run_dir), "model": "sasrec", "max_k": 50}

    def deploy(user_config: dict, applied: Callable[[dict], bool], replicas: int = 1) -> None:
        """PUT the config (a user_config change reconfigures the running replica) and wait until ``applied``."""
        client.deploy_applications(serve_config(port, user_config, replicas))
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if applied(requests.get(f"{url}/metadata", timeout=5).json()):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"user_config {user_config} not applied; serve: {client.get_serve_details()}")

    deploy(base, lambda m: m.get("model") == "sasrec")
    yield url, run_dir, base, deploy
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def catalog(trained_run) -> tuple[list[str], dict[str, list[str]]]:
    import pyarrow.parquet as pq

    run_dir, _ = trained_run
    items = pq.read_table(run_dir / "data" / "items.parquet").to_pylist()
    ids = {r["item_idx"]: r["item_id"] for r in items}
    seqs = pq.read_table(run_dir / "data" / "sequences.parquet").to_pylist()
    return [ids[i] for i in sorted(ids)], {r["user_id"]: [ids[i] for i in r["items"]] for r in seqs}


def post(url: str, body: object, **kw: object) -> requests.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.post(url, data=data, headers={"content-type": "application/json"}, timeout=60, **kw)


def test_probes_and_metadata(served, catalog) -> None:
    url, _, _, _ = served
    ids, _ = catalog
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{url}/readyz", timeout=10).json()
    assert ready["ready"] is True and ready["model_version"].startswith("sasrec-")
    meta = requests.get(f"{url}/metadata", timeout=10).json()
    assert meta["catalog_size"] == len(ids) and meta["model"] == "sasrec" and meta["max_k"] == 50
    assert meta["model_version"] == ready["model_version"] and meta["code_config"] is None  # no tokenize stage


def test_recommend_by_history_returns_catalog_items_ranked(served, catalog) -> None:
    url, _, _, _ = served
    ids, _ = catalog
    r = post(f"{url}/recommend", {"history": ids[:3], "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    got = [i["item_id"] for i in body["items"]]
    assert len(got) == 5 and len(set(got)) == 5 and set(got) <= set(ids)
    assert not set(got) & set(ids[:3])  # exclude_seen defaults to true
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["model"] == "sasrec" and body["fallback"] is None and body["unknown_items"] == []
    kept = post(f"{url}/recommend", {"history": ids[:3], "k": 50, "exclude_seen": False}).json()["items"]
    assert len(kept) == 50


def test_recommend_by_user_id_uses_their_history(served, catalog) -> None:
    url, _, _, _ = served
    _, users = catalog
    user, seen = next(iter(users.items()))
    r = post(f"{url}/recommend", {"user_id": user, "k": 10})
    assert r.status_code == 200, r.text
    got = [i["item_id"] for i in r.json()["items"]]
    assert len(got) == 10 and not set(got) & set(seen)
    same = post(f"{url}/recommend", {"history": seen, "k": 10}).json()["items"]
    assert [i["item_id"] for i in same] == got  # a user_id is exactly their stored history


def test_batch_form_answers_each_entry(served, catalog) -> None:
    url, _, _, _ = served
    ids, users = catalog
    entries = [{"history": ids[i:i + 2], "k": 4} for i in range(5)]
    entries += [{"user_id": "nobody"}, {"history": ["ghost"]}, {"history": ids[:1], "k": 999},
                {"user_id": next(iter(users)), "k": 2}]
    r = post(f"{url}/recommend/batch", {"requests": entries})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [len(x["items"]) for x in results[:5]] == [4] * 5
    assert results[5]["status"] == 404 and "unknown user_id" in results[5]["error"]
    assert results[6]["status"] == 422 and results[6]["unknown_items"] == ["ghost"]
    assert results[7]["status"] == 422 and "k must be between 1 and 50" in results[7]["error"]
    assert len(results[8]["items"]) == 2


def test_concurrent_requests_are_batched(served, catalog) -> None:
    url, _, _, _ = served
    ids, _ = catalog
    before = requests.get(f"{url}/metadata", timeout=10).json()["replica_stats"]
    with cf.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: post(f"{url}/recommend", {"history": [ids[i % len(ids)]], "k": 3}).status_code,
                              range(64)))
    assert codes == [200] * 64
    after = requests.get(f"{url}/metadata", timeout=10).json()["replica_stats"]
    calls, reqs = after["model_calls"] - before["model_calls"], after["requests"] - before["requests"]
    assert reqs == 64 and calls < reqs and after["largest_batch"] > 1  # several requests per model call


BAD = [
    ({"history": ["nope-1", "nope-2"]}, 422, "none of the history"),
    ({"history": ["x"], "k": 0}, 422, "k must be between 1 and 50"),
    ({"history": ["x"], "k": 51}, 422, "k must be between 1 and 50"),
    ({"history": ["x"], "k": -3}, 422, "k must be between"),
    ({"history": ["x"], "k": "ten"}, 422, "k: Input should be a valid integer"),
    ({"history": ["x"], "k": 2.5}, 422, "k: Input should be a valid integer"),
    ({"history": ["x"], "k": 10**30}, 422, "k must be between"),
    ({"history": ["x"], "exclude_seen": "yes"}, 422, "exclude_seen"),
    ({"history": "not a list"}, 422, "history: Input should be a valid list"),
    ({"history": [1, 2]}, 422, "history.0: Input should be a valid string"),
    ({"history": [None]}, 422, "history.0"),
    ({"history": ["x"] * 201}, 422, "at most 200"),
    ({"k": 3}, 422, "give either 'user_id' or 'history'"),
    ({"user_id": "u", "history": ["x"]}, 422, "not both"),
    ({"user_id": 7}, 422, "user_id: Input should be a valid string"),
    ({"history": ["x"], "colour": "red"}, 422, "colour: unknown field"),
    ({"history": ["x"], "policy": "hybrid"}, 422, "policy: 'sasrec:hybrid': sasrec is not a generator"),
    ({"history": ["x"], "policy": 3}, 422, "policy: Input should be a valid string"),
    ({"user_id": "no-such-user"}, 404, "unknown user_id 'no-such-user'"),
    ([1, 2], 422, "valid dictionary"),
    ("null", 422, "valid dictionary"),
    ("{not json", 422, "body is not valid JSON"),
    ("[" * 50_000, 4, None),  # nested past the JSON parser's recursion limit
    (b"\xff\xfe\x00garbage", 4, None),
    ("x" * 2_000_000, 413, "request body over 1000000 bytes"),
]


@pytest.mark.parametrize("body, status, needle", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_requests_get_4xx_with_a_message(served, body, status: int, needle: str | None) -> None:
    url, _, _, _ = served
    r = post(f"{url}/recommend", body)
    if status < 10:  # only the class is fixed
        assert 400 <= r.status_code < 500, r.text
    else:
        assert r.status_code == status, r.text
    assert r.json()["error"]
    if needle:
        assert needle in r.text


def test_a_169_mb_body_written_whole_before_reading_gets_its_413_through_serve(served) -> None:
    """Serve's proxy closes a ``connection: close`` request's socket right after the answer; with the body's rest
    unread (past the guard's former 16 MB bound) that close was a reset, and a client writing everything first saw
    only the reset (tests/serve_app/test_errors.py has the same on uvicorn alone)."""
    url, _, _, _ = served
    host, port = url.removeprefix("http://").split(":")
    body = b'{"history": ["' + b"x" * 16_900_000 + b'"]}'
    head = (f"POST /recommend HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head + body)  # a reset while writing raises here
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'{"error":"request body over 1000000 bytes"}' in answer


def test_wrong_content_type_chunked_body_and_unknown_routes(served) -> None:
    url, _, _, _ = served
    r = requests.post(f"{url}/recommend", data='{"history": []}', headers={"content-type": "text/plain"}, timeout=30)
    assert r.status_code == 422 and "application/json" in r.json()["error"]
    chunks = (b"x" * 100_000 for _ in range(20))  # 2 MB with no content-length: the bytes are counted
    r = requests.post(f"{url}/recommend", data=chunks, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "request body over" in r.json()["error"]
    assert requests.get(f"{url}/nowhere", timeout=10).status_code == 404
    assert requests.get(f"{url}/recommend", timeout=10).status_code == 405
    assert post(f"{url}/recommend/batch", {"requests": []}).status_code == 422


def test_empty_history_falls_back_to_popular_items_and_says_so(served, trained_run) -> None:
    url, run_dir, _, _ = served
    r = post(f"{url}/recommend", {"history": [], "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] == "popular" and "popular" in body["message"]
    counts = json.loads((run_dir / "baselines" / "popularity.json").read_text())["counts"]
    assert [i["score"] for i in body["items"]] == sorted(counts, reverse=True)[:3]


def test_unknown_items_are_ignored_and_listed(served, catalog) -> None:
    url, _, _, _ = served
    ids, _ = catalog
    r = post(f"{url}/recommend", {"history": [ids[0], "ghost", "ghost-2"], "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknown_items"] == ["ghost", "ghost-2"] and "2 unknown" in body["message"]
    alone = post(f"{url}/recommend", {"history": [ids[0]], "k": 3}).json()
    assert body["items"] == alone["items"]  # the unknown ids changed nothing


def test_new_model_version_through_user_config_without_failed_requests(served, catalog) -> None:
    url, run_dir, base, deploy = served
    ids, _ = catalog
    old = requests.get(f"{url}/metadata", timeout=10).json()["model_version"]
    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(post, f"{url}/recommend", {"history": [ids[i % len(ids)]], "k": 3}) for i in range(60)]
        deploy({**base, "model": "popularity"}, lambda m: m["model"] == "popularity")
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200] * 60
    meta = requests.get(f"{url}/metadata", timeout=10).json()
    assert meta["model"] == "popularity" and meta["model_version"].startswith("popularity-")
    assert {a.json()["model_version"] for a in answers} <= {old, meta["model_version"]}

    # a version that cannot load leaves the running one in place and says why
    deploy({**base, "run_dir": str(run_dir / "missing")}, lambda m: m["reload_error"])
    ready = requests.get(f"{url}/readyz", timeout=10).json()
    assert ready["ready"] is True and "does not exist" in ready["reload_error"]
    assert post(f"{url}/recommend", {"history": [ids[0]], "k": 2}).status_code == 200
    deploy(base, lambda m: m["model"] == "sasrec" and not m["reload_error"])


def test_batching_can_be_turned_off_through_user_config(served, catalog) -> None:
    url, _, base, deploy = served
    ids, _ = catalog
    deploy({**base, "max_batch_size": 1}, lambda m: m["max_batch_size"] == 1)
    try:
        before = requests.get(f"{url}/metadata", timeout=10).json()
        assert before["max_batch_size"] == 1
        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: post(f"{url}/recommend", {"history": [ids[i]], "k": 3}), range(16)))
        after = requests.get(f"{url}/metadata", timeout=10).json()["replica_stats"]
        stats = before["replica_stats"]
        assert after["model_calls"] - stats["model_calls"] == after["requests"] - stats["requests"] == 16
    finally:
        deploy(base, lambda m: m["max_batch_size"] == 32)


def test_user_config_errors_name_the_key() -> None:
    from serve_app.app import validate_user_config

    with pytest.raises(ValueError, match="modle: unknown key"):
        validate_user_config({"run_dir": "x", "modle": "cemg"})
    with pytest.raises(ValueError, match="unknown model 'bert4rec'"):
        validate_user_config({"run_dir": "x", "model": "bert4rec"})
    with pytest.raises(ValueError, match="write 'cemg:hybrid'"):
        validate_user_config({"run_dir": "x", "model": "cemg_hybrid"})
    with pytest.raises(ValueError, match="run_dir"):
        validate_user_config({"model": "cemg"})
    with pytest.raises(ValueError, match="max_k"):
        validate_user_config({"run_dir": "x", "max_k": 0})
    assert validate_user_config({"run_dir": "s3://b/run", "model": "sasrec"}).max_batch_size == 32


def _running_model_replicas() -> list[str]:
    """Names of the live model replicas (named actors in Serve's namespace; the driver's own cluster only)."""
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and "REPLICA" in a["name"] and "ModelReplica" in a["name"])


def test_killing_one_of_two_model_replicas_under_load_fails_no_request(served, catalog) -> None:
    """The ingress retries a recommendation whose model replica died; clients see only 200s."""
    import threading

    import ray

    url, _, base, deploy = served
    from ray import serve

    deploy(base, lambda m: m.get("model") == "sasrec", replicas=2)
    deadline = time.time() + 300  # a new replica imports torch and loads the model: slow on a loaded machine
    while len(_running_model_replicas()) < 2 and time.time() < deadline:
        time.sleep(1)
    status = serve.status().applications["cemg"].deployments["ModelReplica"]
    assert len(_running_model_replicas()) == 2, (status.status, status.replica_states, status.message)
    users = list(catalog[1])[:50]
    stop, statuses, errors = threading.Event(), [], []

    def client(offset: int) -> None:
        session, i = requests.Session(), offset
        while not stop.is_set():
            try:
                r = session.post(f"{url}/recommend", json={"user_id": users[i % len(users)], "k": 5}, timeout=30)
                statuses.append(r.status_code)
                if r.status_code != 200:
                    errors.append(r.text[:200])
            except requests.RequestException as exc:  # a reset connection counts as a failed request
                errors.append(repr(exc))
            i += 1

    threads = [threading.Thread(target=client, args=(n * 7,)) for n in range(4)]  # bounded: 4 closed-loop clients

    def wait_for(count: int, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while len(statuses) + len(errors) < count and time.time() < deadline:
            time.sleep(0.2)

    for t in threads:
        t.start()
    wait_for(8, 120)
    before = len(statuses)
    victim = _running_model_replicas()[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)  # requests are in flight on it
    wait_for(before + 24, 180)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert before >= 8 and len(statuses) - before >= 20 and set(statuses) == {200}
    assert victim not in _running_model_replicas()  # the kill happened (Serve names its replacement anew)
    deploy(base, lambda m: m.get("model") == "sasrec", replicas=1)

