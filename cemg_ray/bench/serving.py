"""``cemg-ray bench serving``: latency and throughput of the Serve app, closed or open loop.

One run measures four configurations on the same local cluster and run directory: 1 and 2 replicas,
with request batching on (``@serve.batch``, up to 32 per model call) and off (1 per call). Latencies are
measured at the client over loopback HTTP.

Closed loop (the default): each client thread sends its next request as soon as the previous answer
arrives, until the configuration's request budget is spent; the figure is the saturating throughput.

Open loop (``--open-loop``): what users see. Per configuration, the single-request latency (one client,
one request at a time), the saturating rate (closed loop), then requests sent on a fixed schedule at several
rates (by default 25-125 % of that saturating rate), each latency counted from the request's scheduled
send time, so a server that falls behind is charged for the queue it builds (no coordinated omission).
The model's own time for one user, measured in the benchmark's process, says how much of a request's
latency is the model and how much is HTTP and Serve.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import threading
import time
from datetime import UTC, datetime

import numpy as np

from cemg_ray import artifacts
from cemg_ray.bench import emit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bodies(run_dir: str, k: int, n: int, seed: int = 0) -> list[bytes]:
    """Request bodies for ``n`` random known users (their stored histories), as a client would send them."""
    from cemg_ray.store import Store

    users = artifacts.read_sequences(Store(run_dir), ["user_id"]).column("user_id").to_pylist()
    rng = np.random.default_rng(seed)
    return [json.dumps({"user_id": str(users[i]), "k": k}).encode() for i in rng.integers(0, len(users), n)]


def closed_loop(url: str, bodies: list[bytes], concurrency: int) -> dict:
    """Send every body once from ``concurrency`` clients, each waiting for its answer before the next."""
    import requests

    lock, latencies, errors = threading.Lock(), [], []
    queue = iter(bodies)

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = session.post(url, data=body, headers={"content-type": "application/json"}, timeout=120)
                    error = None if r.status_code == 200 else f"{r.status_code}: {r.text}"
                except requests.RequestException as exc:
                    error = f"{type(exc).__name__}: {exc}"
                dt = time.perf_counter() - t0
                with lock:
                    if error is None:
                        latencies.append(dt)
                    else:
                        errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000.0
    return {"requests": len(bodies), "errors": len(errors), "wall_s": round(wall, 3),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "req_per_s": round(len(latencies) / wall, 2), "first_error": errors[0][:300] if errors else None}


def _latency_stats(latencies_s: list[float], errors: list[str], wall: float, sent: int) -> dict:
    lat = np.asarray(latencies_s) * 1000.0

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat, q)), 2) if len(lat) else None

    return {"requests": sent, "errors": len(errors), "wall_s": round(wall, 3), "p50_ms": pct(50), "p99_ms": pct(99),
            "p999_ms": pct(99.9), "req_per_s": round(len(latencies_s) / wall, 2) if wall else None,
            "first_error": errors[0][:300] if errors else None}


def open_loop(url: str, bodies: list[bytes], rate: float, max_in_flight: int = 256) -> dict:
    """Send ``bodies`` at ``rate`` per second on a fixed schedule, whether or not earlier answers came back.

    Each latency runs from the request's scheduled send time, so client-side queueing (when every sender
    thread is busy) counts against the server as it would for real users.
    """
    from concurrent.futures import ThreadPoolExecutor

    import requests

    local = threading.local()

    def send(body: bytes, scheduled: float) -> tuple[float, str | None]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            r = session.post(url, data=body, headers={"content-type": "application/json"}, timeout=120)
            error = None if r.status_code == 200 else f"{r.status_code}: {r.text}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - scheduled, error

    with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        t0 = time.perf_counter()
        futures = []
        for i, body in enumerate(bodies):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, body, scheduled))
        done = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    latencies = [dt for dt, err in done if err is None]
    out = _latency_stats(latencies, [err for _, err in done if err is not None], wall, len(bodies))
    return {"target_rate": round(rate, 2), **out}


def model_latency(run_dir: str, model: str, k: int, n: int = 50) -> dict:
    """The model's own time to rank one user (no HTTP, no Serve), in this process: p50 / p99 in ms."""
    from cemg_ray.api import open_run

    run = open_run(run_dir, model)  # the same ranking path as a serving replica (Run.rank)
    seqs = artifacts.read_sequences(run.store, ["items"]).column("items").to_pylist()
    rng = np.random.default_rng(1)
    times = []
    for i in rng.integers(0, len(seqs), n + 5):
        hist = np.asarray(seqs[i], dtype=np.int64)
        t0 = time.perf_counter()
        run.rank([hist], [k], [True])
        times.append(time.perf_counter() - t0)
    lat = np.asarray(times[5:]) * 1000.0
    return {"users": n, "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def run(run_dir: str, model: str, replicas: list[int], concurrency: int, requests_per_config: int, warmup: int,
        k: int, replica_cpus: float, num_cpus: int | None, open_loop_rates: list[float] | None = None,
        open_loop_mode: bool = False) -> dict:
    import ray
    from ray import serve

    try:
        from serve_app.app import Ingress, ModelReplica
    except ModuleNotFoundError as exc:
        if exc.name != "serve_app":
            raise
        raise SystemExit("bench serving: the serve_app package is not importable; run from the repository root "
                         "or reinstall the package (pip install -e .)") from None

    run_dir = run_dir if "://" in run_dir else os.path.abspath(run_dir)
    started_ray = not ray.is_initialized()
    if started_ray:  # address="local": a cluster of its own, never one that happens to run on this host
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}/recommend"
    bodies = _bodies(run_dir, k, warmup + requests_per_config)
    fractions = (0.25, 0.5, 0.75, 1.0, 1.25)
    own = model_latency(run_dir, model, k) if open_loop_mode else None
    load_before = round(os.getloadavg()[0], 2)  # other work on a shared machine shows up in the figures
    results = []
    try:
        for n in replicas:
            for batching in (True, False):
                user_config = {"run_dir": run_dir, "model": model, "max_batch_size": 32 if batching else 1}
                dep = ModelReplica.options(num_replicas=n, autoscaling_config=None, user_config=user_config,
                                          max_ongoing_requests=64, ray_actor_options={"num_cpus": replica_cpus})
                # the ingress reserves no CPU here, so that n model replicas of replica_cpus each fit the host
                ingress = Ingress.options(ray_actor_options={"num_cpus": 0})
                serve.run(ingress.bind(dep.bind()), name="bench", route_prefix="/")
                closed_loop(url, bodies[:warmup], concurrency)
                res = closed_loop(url, bodies[warmup:], concurrency)
                row = {"replicas": n, "batching": batching, **res}
                if open_loop_mode:
                    single = closed_loop(url, bodies[warmup:warmup + 50], 1)
                    row["single_request"] = {key: single[key] for key in ("p50_ms", "p99_ms", "errors")}
                    rates = open_loop_rates or [round(f * res["req_per_s"], 1) for f in fractions]
                    row["open_loop"] = [open_loop(url, bodies[warmup:], r) for r in rates if r > 0]
                results.append(row)
                serve.delete("bench")
    finally:
        serve.shutdown()
        if started_ray:
            ray.shutdown()
    import torch

    def find(n: int, b: bool) -> dict:
        return next(r for r in results if r["replicas"] == n and r["batching"] == b)

    ratios = {}
    for n in replicas:
        off = find(n, False)["req_per_s"]
        ratios[f"batching_speedup_{n}_replicas"] = round(find(n, True)["req_per_s"] / off, 2) if off else None
    if 1 in replicas and 2 in replicas:
        for b in (True, False):
            one = find(1, b)["req_per_s"]
            ratios[f"two_replicas_speedup_batching_{'on' if b else 'off'}"] = round(find(2, b)["req_per_s"] / one, 2) \
                if one else None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"torch {torch.__version__}, ray {ray.__version__}",
        "run_dir": run_dir, "model": model, "k": k, "concurrency": concurrency, "requests": requests_per_config,
        "warmup": warmup, "replica_cpus": replica_cpus, "load_average_1m": [load_before, round(os.getloadavg()[0], 2)],
        "results": results, "ratios": ratios, "mode": "open" if open_loop_mode else "closed",
        "model_alone": own,
    }


def _print(out: dict) -> None:
    print(f"serving benchmark, {out['date']}, {out['machine']}; 1-min load average before/after "
          f"{out['load_average_1m']}")
    print(f"model {out['model']} from {out['run_dir']}; k={out['k']}; closed loop: {out['concurrency']} clients, "
          f"{out['requests']} requests per configuration after {out['warmup']} warm-up")
    print(f"{'replicas':>8} {'batching':>9} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>8} {'errors':>7}")
    for r in out["results"]:
        print(f"{r['replicas']:>8} {'on' if r['batching'] else 'off':>9} {r['p50_ms']:>9} {r['p99_ms']:>9} "
              f"{r['req_per_s']:>8} {r['errors']:>7}")
    for name, value in out["ratios"].items():
        print(f"  {name}: {value}x")
    if out.get("mode") != "open":
        return
    own = out["model_alone"]
    print(f"model alone (in process, one user per call): p50 {own['p50_ms']} ms, p99 {own['p99_ms']} ms")
    print("open loop: requests on a fixed schedule, latency from the scheduled send time")
    print(f"{'replicas':>8} {'batching':>9} {'rate/s':>8} {'got/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'p99.9 ms':>9} "
          f"{'errors':>7}")
    for r in out["results"]:
        single = r["single_request"]
        print(f"{r['replicas']:>8} {'on' if r['batching'] else 'off':>9} {'single':>8} {'':>8} {single['p50_ms']:>9} "
              f"{single['p99_ms']:>9} {'':>9} {single['errors']:>7}")
        for o in r["open_loop"]:
            print(f"{r['replicas']:>8} {'on' if r['batching'] else 'off':>9} {o['target_rate']:>8} {o['req_per_s']:>8} "
                  f"{o['p50_ms']:>9} {o['p99_ms']:>9} {o['p999_ms']:>9} {o['errors']:>7}")


def _cmd(args: argparse.Namespace) -> int:
    replicas = [int(x) for x in args.replicas.split(",") if x.strip()]
    rates = [float(x) for x in args.rates.split(",") if x.strip()] if args.rates else None
    if rates and any(r <= 0 for r in rates):
        raise SystemExit(f"bench serving: --rates must be positive requests per second, got {args.rates!r}")
    out = run(args.run_dir, args.model, replicas, args.concurrency, args.requests, args.warmup, args.k,
              args.replica_cpus, args.num_cpus, rates, args.open_loop or bool(rates))
    emit(out, args.json, _print)
    failed = any(r["errors"] for r in out["results"]) or any(
        o["errors"] for r in out["results"] for o in r.get("open_loop", []))
    return 1 if failed else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serving", help="p50/p99 latency and req/s of the Serve app: 1 and 2 replicas, "
                              "batching on and off, from one run")
    p.add_argument("--run-dir", default="runs/demo", help="a trained run directory (default: runs/demo)")
    p.add_argument("--model", default="cemg", help="model to serve (cemg, sasrec, popularity, ...)")
    p.add_argument("--replicas", default="1,2", help="comma-separated replica counts (default: 1,2)")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop clients (default: 16)")
    p.add_argument("--requests", type=int, default=400, help="measured requests per configuration (default: 400)")
    p.add_argument("--warmup", type=int, default=32, help="unmeasured requests first (default: 32)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs reserved per replica (default: 1)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (default: all)")
    p.add_argument("--open-loop", action="store_true",
                   help="also send requests at fixed rates (25-125 %% of the saturating rate) and the single-request "
                        "latency: p50/p99/p99.9 per rate")
    p.add_argument("--rates", help="comma-separated open-loop rates in requests/s (implies --open-loop)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd)
