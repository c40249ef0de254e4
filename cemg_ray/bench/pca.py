"""``cemg-ray bench pca``: what fitting the ``pca`` stage on a sample (``pca.sample_size``) costs against the exact fit.

Both fits are scikit-learn's ``PCA`` on the same rows; the sampled one sees ``sample`` random rows. The figure of
merit is the share of the variance of *every* row that each basis captures (the exact fit's is its explained
variance ratio, the most any d-dimensional basis can capture), beside the fit times. On a run's real item vectors
(``--features runs/<run>/features/text.parquet``) or on a random low-rank matrix of a catalog's size.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime

import numpy as np

from cemg_ray.bench import emit


def low_rank(rows: int, dim: int, rank: int, seed: int = 0) -> np.ndarray:
    """Rows on a ``rank``-dimensional subspace with a decaying spectrum, plus isotropic noise: encoder-like."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim)).astype(np.float32)
    scales = (1.0 / np.sqrt(np.arange(1, rank + 1))).astype(np.float32)
    return (rng.standard_normal((rows, rank)).astype(np.float32) * scales) @ basis + \
        0.05 * rng.standard_normal((rows, dim)).astype(np.float32)


def run(x: np.ndarray, d: int, samples: list[int], source: str, seed: int = 0) -> dict:
    from cemg_ray.features.pca import fit_pca
    from cemg_ray.features.stage import sampled_fit_capture

    t0 = time.perf_counter()
    _, exact_comps, _ = fit_pca(x, d, seed)
    exact_s = time.perf_counter() - t0
    exact = sampled_fit_capture(x, exact_comps)
    rng = np.random.default_rng(seed)
    rows = []
    for n in samples:
        if n >= len(x) or n < d:
            continue
        pick = np.sort(rng.choice(len(x), n, replace=False))
        t0 = time.perf_counter()
        _, comps, _ = fit_pca(x[pick], d, seed)
        fit_s = time.perf_counter() - t0
        captured = sampled_fit_capture(x, comps)
        rows.append({"sample": n, "fit_s": round(fit_s, 3), "captured": round(captured, 5),
                     "lost": round(exact - captured, 5), "lost_relative": round((exact - captured) / exact, 5),
                     "speedup": round(exact_s / fit_s, 2) if fit_s > 0 else None})
    return {"source": source, "rows": int(len(x)), "input_dim": int(x.shape[1]), "d": d,
            "exact": {"fit_s": round(exact_s, 3), "captured": round(exact, 5)}, "sampled": rows,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": datetime.now(UTC).date().isoformat(),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def _print(res: dict) -> None:
    print(f"PCA to d={res['d']} on {res['source']}: {res['rows']:,} rows x {res['input_dim']} "
          f"({res['machine']}; 1-min load {res['load_average_1m']}, {res['date']})")
    print(f"  exact fit: {res['exact']['fit_s']:.3f} s, captures {res['exact']['captured']:.4f} of the variance")
    print(f"  {'sample':>9} {'fit (s)':>9} {'captured':>9} {'lost':>9} {'lost/exact':>11} {'speed-up':>9}")
    for r in res["sampled"]:
        print(f"  {r['sample']:>9,} {r['fit_s']:>9.3f} {r['captured']:>9.4f} {r['lost']:>9.5f} "
              f"{100 * r['lost_relative']:>10.2f}% {r['speedup']:>8.1f}x")


def _cmd(args: argparse.Namespace) -> int:
    if args.features:
        import pyarrow.parquet as pq

        from cemg_ray.features.extract import embeddings

        emb, missing = embeddings(pq.read_table(args.features))
        x, source = emb[~missing.astype(bool)], args.features
    else:
        x, source = low_rank(args.rows, args.dim, args.rank), f"a random rank-{args.rank} matrix"
    emit(run(x, args.d, [int(s) for s in args.samples.split(",")], source), args.json, _print)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pca", help="the pca stage fitted on a sample against the exact fit: variance lost, time")
    p.add_argument("--features", help="a run's features/<modality>.parquet (default: a random low-rank matrix)")
    p.add_argument("--rows", type=int, default=200_000, help="rows of the random matrix")
    p.add_argument("--dim", type=int, default=384, help="width of the random matrix (MiniLM's)")
    p.add_argument("--rank", type=int, default=128, help="rank of the random matrix's signal")
    p.add_argument("--d", type=int, default=64, help="the reduced width (pca.dim)")
    p.add_argument("--samples", default="2000,10000,50000", help="sample sizes to fit on (comma-separated)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
