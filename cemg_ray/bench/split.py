"""``cemg-ray bench split``: the leave-one-out split as views into one flat array (``data/split.py``'s
:class:`~cemg_ray.data.split.Ragged`) against the list of one numpy array per user and kind it replaced.

Both paths read the same sequence table (the data stage's ``sequences.parquet`` layout) and split it; each runs in
its own process so that its peak resident memory is its own. Each child prints a digest of everything the split
holds (every row of the four kinds, the targets, the training counts), and the parent checks that they agree.

The reference, :func:`reference_leave_one_out`, is the split as it was (four Python lists of per-user views); it is
kept here as the benchmark's baseline and as the equivalence test's oracle (``tests/data/test_split.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray.bench import emit
from cemg_ray.bench.data import _proc_status

PATHS = ("per_user_lists", "ragged")


def reference_leave_one_out(sequences: list[np.ndarray], num_items: int, max_len: int = 20,
                            user_idx: np.ndarray | None = None) -> dict[str, object]:
    """The split as it was before :class:`Ragged`: one array per user in each of four lists."""
    if user_idx is None:
        user_idx = np.arange(len(sequences))
    keep = [i for i, s in enumerate(sequences) if len(s) >= 3]
    seqs = [np.asarray(sequences[i], dtype=np.int64) for i in keep]
    train = [s[:-2] for s in seqs]
    counts = np.bincount(np.concatenate(train) if train else np.zeros(0, np.int64), minlength=num_items)
    return {"user_idx": np.asarray(user_idx)[keep], "train": train,
            "valid_history": [s[:-2][-max_len:] for s in seqs],
            "valid_target": np.array([s[-2] for s in seqs], dtype=np.int64),
            "test_history": [s[:-1][-max_len:] for s in seqs],
            "test_target": np.array([s[-1] for s in seqs], dtype=np.int64), "train_counts": counts}


def write_sequences(path: str | Path, users: int, mean_length: float, items: int, seed: int = 0) -> dict:
    """A sequence table of ``users`` users with geometric lengths (at least 1) around ``mean_length``."""
    rng = np.random.default_rng(seed)
    lengths = rng.geometric(1.0 / mean_length, users)
    flat = rng.integers(0, items, int(lengths.sum()), dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    table = pa.table({"user_idx": pa.array(np.arange(users, dtype=np.int32)),
                      "items": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))})
    pq.write_table(table, path)
    return {"users": users, "interactions": int(lengths.sum()), "items": items,
            "bytes_on_disk": os.path.getsize(path)}


def _digest(rows: dict[str, object]) -> str:
    h = hashlib.sha256()
    for key in ("user_idx", "valid_target", "test_target", "train_counts"):
        h.update(np.ascontiguousarray(rows[key], dtype=np.int64).tobytes())
    for key in ("train", "valid_history", "test_history"):
        part = rows[key]
        lengths = np.fromiter((len(r) for r in part), dtype=np.int64, count=len(part))
        h.update(lengths.tobytes())
        h.update(np.concatenate(list(part)).astype(np.int64).tobytes() if len(part) else b"")
    return h.hexdigest()


def _child(path: str, which: str, num_items: str, max_len: str) -> None:
    """Split the table at ``path`` by ``which`` path and print its time, memory and digest as JSON."""
    from cemg_ray.data.split import leave_one_out, sequences_from_table

    table = pq.read_table(path)
    start_rss = _proc_status("VmRSS")
    t0 = time.perf_counter()
    users, seqs = sequences_from_table(table)
    if which == "ragged":
        split = leave_one_out(seqs, int(num_items), max_len=int(max_len), user_idx=users)
        rows = {k: getattr(split, k) for k in ("user_idx", "train", "valid_history", "valid_target",
                                                "test_history", "test_target", "train_counts")}
    else:
        rows = reference_leave_one_out(list(seqs), int(num_items), int(max_len), users)
    wall = time.perf_counter() - t0
    peak = _proc_status("VmHWM")
    print(json.dumps({"wall_s": round(wall, 3), "peak_rss_bytes": peak, "start_rss_bytes": start_rss,
                      "split_users": int(len(rows["user_idx"])), "digest": _digest(rows)}))


def measure(path: str | Path, which: str, num_items: int, max_len: int) -> dict:
    code = "import sys; from cemg_ray.bench.split import _child; _child(*sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, str(path), which, str(num_items), str(max_len)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench split: the {which} path failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(users: list[int], workdir: str | Path, mean_length: float = 8.9, items_per_user: float = 0.54,
        max_len: int = 50, seed: int = 0) -> dict:
    """For each number of users (Beauty's shape by default: 8.9 interactions a user, 0.54 items a user): write the
    table, split it by each path in its own process, and compare the digests."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in users:
        items = max(1, int(n * items_per_user))
        path = workdir / f"sequences-{n}.parquet"
        data = write_sequences(path, n, mean_length, items, seed)
        res = {p: measure(path, p, items, max_len) for p in PATHS}
        for r in res.values():
            r["peak_above_start_bytes"] = r["peak_rss_bytes"] - r["start_rss_bytes"]
            r["bytes_per_user"] = round(r["peak_above_start_bytes"] / n, 1)
        a, b = PATHS
        rows.append({"dataset": data, "paths": res, "identical": res[a]["digest"] == res[b]["digest"],
                     "ratios": {"wall": round(res[a]["wall_s"] / max(res[b]["wall_s"], 1e-9), 2),
                                "peak_above_start": round(res[a]["peak_above_start_bytes"]
                                                          / max(res[b]["peak_above_start_bytes"], 1), 2)}})
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
            "numpy": np.__version__, "date": datetime.now(UTC).date().isoformat(), "max_len": max_len,
            "load_average_1m": round(os.getloadavg()[0], 2), "sizes": rows}


def _print(res: dict) -> None:
    print(f"leave-one-out split, per-user lists vs ragged views, each in its own process ({res['machine']}, "
          f"Python {res['python']}; 1-min load {res['load_average_1m']}, {res['date']})")
    print(f"  {'users':>11} {'interactions':>13}  {'path':<15} {'wall s':>8} {'above start':>12} {'B/user':>8}")
    for row in res["sizes"]:
        d = row["dataset"]
        for name, r in row["paths"].items():
            print(f"  {d['users']:>11,} {d['interactions']:>13,}  {name:<15} {r['wall_s']:>8.2f} "
                  f"{r['peak_above_start_bytes'] / 2**20:>10.0f}MB {r['bytes_per_user']:>8.1f}")
        print(f"  {'':>11} identical: {row['identical']}; lists / ragged: wall {row['ratios']['wall']:.1f}x, "
              f"memory above start {row['ratios']['peak_above_start']:.1f}x")


def _cmd(args: argparse.Namespace) -> int:
    emit(run([int(s) for s in args.users.split(",")], args.dir, max_len=args.max_len), args.json, _print)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="the leave-one-out split: ragged views vs per-user lists, time and peak memory")
    p.add_argument("--users", default="1000000,5000000", help="comma-separated numbers of users")
    p.add_argument("--max-len", type=int, default=50, help="history length of the validation and test rows")
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "cemg-bench-split"),
                   help="where the sequence tables are written")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
