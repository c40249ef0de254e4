"""`cemg-ray bench serving` with chosen rates and one replica count, as JSON; the closed loop's four configurations
and ratios, as printed: the documented line's test (tests/test_documented_demo_commands.py)."""

from __future__ import annotations

import json


def test_bench_serving_open_loop_reports_each_rate_and_the_single_request(trained_run, capsys) -> None:
    from cemg_ray.cli import main

    run_dir, _ = trained_run
    code = main(["bench", "serving", "--run-dir", str(run_dir), "--model", "sasrec", "--requests", "16",
                 "--warmup", "4", "--concurrency", "4", "--replicas", "1", "--replica-cpus", "0.5", "--num-cpus", "2",
                 "--rates", "10,40", "--json"])
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("{\n"):])
    assert code == 0 and out["mode"] == "open"
    assert out["model_alone"]["p50_ms"] > 0
    for r in out["results"]:
        assert r["single_request"]["errors"] == 0 and r["single_request"]["p50_ms"] > 0
        assert [o["target_rate"] for o in r["open_loop"]] == [10.0, 40.0]
        for o in r["open_loop"]:
            assert o["errors"] == 0 and o["requests"] == 16
            assert 0 < o["p50_ms"] <= o["p99_ms"] <= o["p999_ms"]
            assert o["wall_s"] >= 15 / o["target_rate"]  # requests left on the schedule, not as fast as possible


def test_open_loop_charges_the_queue_a_slow_server_builds() -> None:
    """At twice what a one-at-a-time server can answer, latency counted from the schedule grows with the queue."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from cemg_ray.bench.serving import open_loop

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["content-length"]))
            time.sleep(0.05)
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Slow)  # one request at a time: 20 per second at most
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        slow = open_loop(url, [b"{}"] * 20, rate=40.0)
        easy = open_loop(url, [b"{}"] * 8, rate=5.0)
    finally:
        server.shutdown()
    assert slow["errors"] == 0 and easy["errors"] == 0
    assert easy["p99_ms"] < 150  # below capacity: about the 50 ms service time
    # 20 requests over 0.5 s against 1 s of work: the last waits ~0.5 s behind the others
    assert slow["p99_ms"] > 350 and slow["p99_ms"] > 3 * easy["p50_ms"]
