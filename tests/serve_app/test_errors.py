"""The request guard and error handlers over real HTTP on loopback (uvicorn, as Ray Serve's proxy runs it)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from serve_app import errors

LIMITS = [errors.Limits(max_body_bytes=2048, max_header_bytes=4096, read_timeout_s=0.5)]


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int


@pytest.fixture(scope="module")
def server():
    app = FastAPI()

    async def current_limits() -> errors.Limits:  # as the serving ingress does: asked of the model deployment
        return LIMITS[0]

    errors.install(app, current_limits)

    @app.post("/echo")
    async def echo(body: Echo) -> dict:
        return {"k": body.k}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    srv.should_exit = True
    thread.join(5)


@pytest.fixture(autouse=True)
def default_limits():
    saved = LIMITS[0]
    yield
    LIMITS[0] = saved


def _post(port: int, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/echo", body=body, headers={"content-type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def _raw(port: int, data: bytes, wait_s: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_a_good_request_passes_the_guard(server) -> None:
    assert _post(server, b'{"k": 3}') == (200, {"k": 3})


def test_non_utf8_and_deeply_nested_bodies_get_422_with_details(server) -> None:
    status, body = _post(server, b'{"k": "\xff\xfe"}')
    assert status == 422 and "not UTF-8" in body["error"] and body["details"][0]["field"] == "body"
    LIMITS[0] = errors.Limits(max_body_bytes=1_000_000)
    status, body = _post(server, b"[" * 200_000 + b"]" * 200_000)
    assert status == 422 and "nested too deeply" in body["error"]


def test_a_body_over_the_limit_is_read_then_answered_413(server) -> None:
    body = b'{"k": 1, "pad": "' + b"x" * 10_000 + b'"}'
    head = (f"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    answer = _raw(server, head + body)  # the whole body written first, as most clients do
    assert answer.startswith(b"HTTP/1.1 413") and b"request body over 2048 bytes" in answer
    chunked = (b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
               b"connection: close\r\n\r\n" + b"".join(b"400\r\n" + b"y" * 1024 + b"\r\n" for _ in range(8)) +
               b"0\r\n\r\n")
    assert _raw(server, chunked).startswith(b"HTTP/1.1 413")


def post_head(length: int, extra: str = "connection: close\r\n") -> bytes:
    """The head of a POST declaring a ``length``-byte JSON body; ``connection: close`` by default: the server closes
    right after its answer, so body bytes left unread there would reset the connection."""
    return (f"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
            f"{extra}\r\n").encode()


def test_a_169_mb_body_written_whole_before_reading_gets_its_413_not_a_reset(server) -> None:
    """The 16.9 MB body of the corpus: the 413 went out with the body's rest unread past the former 16 MB bound,
    the close was a reset, and a client that writes everything first (``sendall``, then read) saw only that."""
    body = b'{"k": 1, "pad": "' + b"x" * 16_900_000 + b'"}'
    answer = _raw(server, post_head(len(body)) + body, wait_s=60)  # a reset while writing raises here
    assert answer.startswith(b"HTTP/1.1 413") and b'{"error":"request body over 2048 bytes"}' in answer


def test_a_body_declared_past_the_drain_bound_is_answered_at_once(server) -> None:
    """Past ``drain_cap_bytes`` nothing is read: a client that asked ``expect: 100-continue`` gets the 413 without
    sending its body (a client that writes first gets a reset there: the documented bound)."""
    LIMITS[0] = errors.Limits(max_body_bytes=2048, read_timeout_s=0.5, drain_cap_bytes=100_000)
    t0 = time.perf_counter()
    answer = _raw(server, post_head(500_000_000, "connection: close\r\nexpect: 100-continue\r\n"))
    assert answer.startswith(b"HTTP/1.1 413") and b"request body over 2048 bytes" in answer
    assert time.perf_counter() - t0 < 2


def test_a_stalled_body_is_answered_408_within_the_timeout(server) -> None:
    head = (b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n"
            b"connection: close\r\n\r\n{\"k\":")
    t0 = time.perf_counter()
    answer = _raw(server, head)
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 0.5 s" in answer
    assert time.perf_counter() - t0 < 4


def test_headers_over_the_limit_get_431(server) -> None:
    status, body = _post(server, b'{"k": 1}', {"x-filler": "z" * 8000})
    assert status == 431 and "over the limit of 4096" in body["error"]


def test_api_key_is_required_when_configured_and_probes_stay_open(server) -> None:
    LIMITS[0] = errors.Limits(api_key="s3cret")
    status, body = _post(server, b'{"k": 1}')
    assert status == 401 and "API key" in body["error"]
    assert _post(server, b'{"k": 1}', {"authorization": "Bearer wrong"})[0] == 401
    assert _post(server, b'{"k": 1}', {"authorization": "Bearer s3cret"}) == (200, {"k": 1})
    assert _post(server, b'{"k": 2}', {"x-api-key": "s3cret"}) == (200, {"k": 2})
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


def test_limits_come_from_the_serve_config_and_the_key_from_the_environment(monkeypatch) -> None:
    from serve_app.app import limits_for
    from serve_app.schemas import ServeConfig

    conf = ServeConfig(run_dir="x", read_timeout_s=2, max_header_bytes=2048, api_key_env="CEMG_TEST_KEY")
    monkeypatch.delenv("CEMG_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="CEMG_TEST_KEY.*not set"):
        limits_for(conf)
    monkeypatch.setenv("CEMG_TEST_KEY", "k1")
    lim = limits_for(conf)
    assert (lim.read_timeout_s, lim.max_header_bytes, lim.api_key) == (2, 2048, "k1")
    assert "k1" not in repr(ServeConfig.model_json_schema())


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"POST /recommend HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                                 b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"])
def test_malformed_http_gets_a_4xx_from_the_server_never_a_500(server, raw: bytes) -> None:
    """What the HTTP parser rejects never reaches the app: uvicorn answers 400 in plain text (documented)."""
    answer = _raw(server, raw)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
