"""The page's JSON endpoints against the real application on the demo run, over real HTTP (uvicorn)."""

from __future__ import annotations

import http.client
import json
import math
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

pytestmark = pytest.mark.slow  # the session's demo run


def get(url: str, path: str, **params) -> requests.Response:
    return requests.get(f"{url}/{path}", params=params, timeout=60)


def post(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/api/recommendations", json=body, timeout=60)


def assert_error(resp: requests.Response, status: int, field: str, value) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["field"] == field and body["value"] == value, body
    assert field.split("[")[0] in body["error"], body  # the message names the field


def check_item(shown: dict, oracle, expected_items: dict) -> None:
    want = expected_items[shown["item_id"]]
    assert shown["title"] == want["title"]
    assert shown["cold_start"] == want["cold_start"]
    assert shown["train_interactions"] == want["train_interactions"]
    assert shown["semantic_id"] == oracle.codes([shown["item_id"]])[shown["item_id"]]


def test_page_and_its_static_files(ui_url):
    page = get(ui_url, "")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="static/app.js"' in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        resp = get(ui_url, f"static/{name}")
        assert resp.status_code == 200 and kind in resp.headers["content-type"]


def test_run_summary(ui_url, oracle):
    body = get(ui_url, "api/run").json()
    assert body["model"] == oracle.model and body["model_version"] == str(oracle.model_version)
    assert body["users"] == len(oracle.user_history) and body["items"] == len(oracle.item_ids)
    assert body["cold_start_max"] == oracle.cfg.dataset.cold_start_max and body["has_codes"] is True


def test_users_are_paged_and_searchable(ui_url, oracle):
    users = list(oracle.user_history)
    first = get(ui_url, "api/users", offset=0, limit=7).json()
    second = get(ui_url, "api/users", offset=7, limit=7).json()
    assert first["total"] == len(users)
    assert [u["user_id"] for u in first["users"] + second["users"]] == users[:14]
    assert first["users"][0]["history_length"] == len(oracle.user_history[users[0]])
    target = users[-1]
    found = get(ui_url, "api/users", q=target.upper(), limit=500).json()  # case-insensitive substring
    assert target in [u["user_id"] for u in found["users"]] and found["total"] < len(users)


def test_a_users_history_and_top_k_match_the_python_api(ui_url, oracle, expected_items):
    user = list(oracle.user_history)[3]
    body = get(ui_url, "api/recommendations", user_id=user, k=7).json()
    want = oracle.recommend_for_users([user], k=7)[user]
    assert body["user_id"] == user and body["k"] == 7 and body["model"] == oracle.model
    assert [r["item_id"] for r in body["recommendations"]] == [i for i, _ in want]
    assert [r["rank"] for r in body["recommendations"]] == list(range(1, 8))
    for shown, (_, score) in zip(body["recommendations"], want):
        assert shown["score"] == pytest.approx(score, rel=1e-6, abs=1e-6)
        check_item(shown, oracle, expected_items)
    history = [oracle.item_ids[i] for i in oracle.user_history[user]]
    assert [h["item_id"] for h in body["history"]] == history
    assert not set(history) & {r["item_id"] for r in body["recommendations"]}  # seen items left out
    for h in body["history"]:
        check_item(h, oracle, expected_items)
    max_len = oracle.cfg.dataset.max_len
    assert [h["seen_by_model"] for h in body["history"]] == [p >= len(history) - max_len for p in range(len(history))]


def test_seen_items_are_kept_when_asked(ui_url, oracle):
    user = list(oracle.user_history)[5]
    body = get(ui_url, "api/recommendations", user_id=user, k=20, exclude_seen="false").json()
    want = oracle.recommend_for_users([user], k=20, exclude_seen=False)[user]
    assert body["exclude_seen"] is False and [r["item_id"] for r in body["recommendations"]] == [i for i, _ in want]


def test_a_typed_history_matches_the_python_api(ui_url, oracle, expected_items):
    history = [str(oracle.item_ids[i]) for i in (4, 17, 42)]
    body = post(ui_url, {"history": history, "k": 5}).json()
    want = oracle.recommend([history], k=5)[0]
    assert body["user_id"] is None and [h["item_id"] for h in body["history"]] == history
    assert [r["item_id"] for r in body["recommendations"]] == [i for i, _ in want]
    for shown in body["recommendations"]:
        check_item(shown, oracle, expected_items)


def test_an_empty_typed_history_gets_the_popular_items(ui_url, oracle):
    body = post(ui_url, {"history": [], "k": 3}).json()
    assert [r["item_id"] for r in body["recommendations"]] == [i for i, _ in oracle.recommend([[]], k=3)[0]]
    assert all(r["score"] is None or math.isfinite(r["score"]) for r in body["recommendations"])


def test_bad_requests_name_the_field_and_value(ui_url, oracle):
    item = str(oracle.item_ids[0])
    assert_error(get(ui_url, "api/recommendations", user_id="no-such-user"), 404, "user_id", "no-such-user")
    assert_error(post(ui_url, {"history": [item, "no-such-item"]}), 400, "history[1]", "no-such-item")
    assert_error(get(ui_url, "api/items/info", item_id="no-such-item"), 404, "item_id", "no-such-item")
    user = list(oracle.user_history)[0]
    assert_error(get(ui_url, "api/recommendations", user_id=user, k=0), 400, "k", 0)
    assert_error(get(ui_url, "api/recommendations", user_id=user, k=10**6), 400, "k", 10**6)
    assert_error(get(ui_url, "api/recommendations", user_id=user, k="ten"), 422, "k", "ten")
    assert_error(get(ui_url, "api/users", limit=0), 400, "limit", 0)
    assert_error(get(ui_url, "api/users", offset=-1), 400, "offset", -1)
    missing = get(ui_url, "api/recommendations")
    assert missing.status_code == 422 and missing.json()["field"] == "user_id"
    extra = post(ui_url, {"history": [item], "kk": 3})
    assert extra.status_code == 422 and extra.json()["field"] == "kk"
    not_a_list = post(ui_url, {"history": item})
    assert not_a_list.status_code == 422 and not_a_list.json()["field"] == "history"


def test_item_search_and_metadata(ui_url, oracle, expected_items):
    item = str(oracle.item_ids[11])
    title = expected_items[item]["title"]
    found = get(ui_url, "api/items", q=title.upper()).json()
    assert item in [i["item_id"] for i in found["items"]]
    shown = get(ui_url, "api/items/info", item_id=item).json()
    check_item(shown, oracle, expected_items)
    assert shown["image_url"].startswith("api/items/image?item_id=")


def test_item_pictures_come_from_the_catalog(ui_url, oracle, expected_items):
    item = str(oracle.item_ids[11])
    resp = get(ui_url, "api/items/image", item_id=item)
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert resp.content == expected_items[item]["image"]


@pytest.mark.parametrize("path", ["/api/items/image?item_id=../../manifest.json",
                                  "/api/items/image?item_id=..%2F..%2Fdata%2Fitems.parquet",
                                  "/static/../app.py", "/static/..%2Fapp.py", "/static/%2e%2e/%2e%2e/api.py",
                                  "/api/report/figure?name=../manifest.json",
                                  "/api/report/figure?name=..%2F..%2F..%2Fetc%2Fpasswd"])
def test_no_path_reaches_outside_what_the_page_serves(ui_url, path):
    """Raw request targets (no client-side normalisation of ``..``)."""
    parts = urlsplit(ui_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status in (400, 404), (path, resp.status, body[:200])
    assert b"import " not in body and b"PAR1" not in body and b"root:" not in body


def test_the_report(ui_url, demo_run, oracle):
    _, store = demo_run
    body = get(ui_url, "api/report").json()
    run = Path(store.root_uri)
    metrics = json.loads((run / "eval/metrics.json").read_text())
    assert set(body["metrics"]["models"]) == set(metrics)
    for name, m in metrics.items():
        shown = body["metrics"]["models"][name]
        assert shown["overall"] == pytest.approx(m["overall"]) and shown["overall_se"] == pytest.approx(m["overall_se"])
        assert shown["cold_start"] == pytest.approx(m["cold_start"])
    chosen = json.loads((run / "eval/default_model.json").read_text())["model"]
    assert body["metrics"]["default"] == chosen
    history = json.loads((run / "generate/history.json").read_text())
    curve = body["training_curve"]
    assert curve["epochs"] == [row["epoch"] for row in history]
    assert curve["series"]["loss"] == pytest.approx([row["loss"] for row in history])
    codes = body["code_usage"]
    n = len(oracle.item_ids)
    assert codes["counts"] and all(sum(level["counts"]) == n for level in codes["counts"])
    assert codes["counts"][-1]["disambiguation"] and codes["after_disambiguation"]["colliding_items"] == 0
    fusion = body["fusion"]
    assert sum(fusion["histogram"]["counts"]) == fusion["items"] > 0 and 0 <= fusion["alpha_visual_mean"] <= 1
    assert body["stages"]["evaluate"]["status"] == "ok"
    assert "ndcg" in body["figures"] and "generator_curves" in body["figures"]
    png = get(ui_url, "api/report/figure", name="ndcg")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert_error(get(ui_url, "api/report/figure", name="manifest"), 404, "name", "manifest")
