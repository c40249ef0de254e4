"""``cemg-ray bench data``: the ``parquet`` loader, vectorised (pyarrow + numpy), against the per-interaction one.

Both paths read the same synthetic ``interactions.parquet`` / ``items.parquet`` (string ids, timestamps with many
ties, a few malformed rows, items missing from the item table) and produce what the data stage writes: the item
table, the sequence table and the load report. Each path runs in its own Python process so that its peak resident
memory is its own (``VmHWM``, beside the resident size after the imports, before the load); the parent then
checks that the two produced identical tables and reports.

The reference, :func:`reference_load_parquet`, is the loader as it was before the vectorised one (one Python tuple
and strings per interaction, one list per user); it is kept here as the benchmark's baseline and as the
equivalence test's oracle (``tests/data/test_parquet_vectorised.py``), never as a production path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cemg_ray.bench import emit

PATHS = ("per_interaction", "arrow")


# -- the reference: the parquet loader as it was, one Python object per interaction ---------------------------------
def reference_load_parquet(path: str | Path, images_dir: str | None = None):  # noqa: ANN201 - a Catalog
    from cemg_ray import artifacts
    from cemg_ray.data.catalog import Catalog, LoadReport, build_items_table
    from cemg_ray.data.loaders import _check_nonempty, _index_sequences, _meta_text, _natural_key, _parquet_image

    path = Path(path)
    inter_path = path / artifacts.PARQUET_DATASET_INTERACTIONS
    items_path = path / artifacts.PARQUET_DATASET_ITEMS
    _check_nonempty(inter_path)
    report = LoadReport(str(inter_path))
    raw = _ref_sequences(inter_path, report)
    item_meta = _ref_items(items_path, report) if items_path.exists() else {}
    item_ids = sorted(item_meta, key=_natural_key) if item_meta else None
    user_ids, seqs, item_ids = _index_sequences(raw, item_ids, report)
    titles, texts, images, uris = [], [], [], []
    base = Path(images_dir) if images_dir else path
    for iid in item_ids:
        m = item_meta.get(iid, {})
        title, text = _meta_text(m, report, f"{items_path}: item {iid}")
        titles.append(title)
        texts.append(text)
        image, uri = _parquet_image(m.get("image"), base, f"{items_path}: item {iid}", report)
        images.append(image)
        uris.append(uri)
    return Catalog(build_items_table(item_ids, titles, texts, images, uris), user_ids, seqs, report)


def reference_sequences_table(catalog) -> pa.Table:  # noqa: ANN001 - a Catalog
    """The sequence table as the data stage built it: one Python list entry per user."""
    from cemg_ray.data.catalog import SEQUENCE_SCHEMA

    seqs = catalog.sequences
    return pa.table({
        "user_idx": pa.array(np.arange(len(seqs), dtype=np.int32)),
        "user_id": pa.array(catalog.user_ids, pa.string()),
        "items": pa.array([s.astype(np.int32) for s in seqs], pa.list_(pa.int32())),
    }, schema=SEQUENCE_SCHEMA)


def _ref_read(path: Path) -> pa.Table:
    from cemg_ray.data.catalog import DataError

    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _ref_require(table: pa.Table, path: Path, cols: list[str]) -> None:
    from cemg_ray.data.catalog import DataError

    for c in cols:
        if c not in table.column_names:
            raise DataError(f"{path}: missing required column {c!r} (has {', '.join(table.column_names)})")


def _ref_id_column(table: pa.Table, name: str, path: Path) -> list[str | None]:
    from cemg_ray.data.catalog import DataError

    kind = table.schema.field(name).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_dictionary(kind)):
        raise DataError(f"{path}: column {name!r} has type {kind}; ids must be strings or integers")
    return table.column(name).cast(pa.string()).to_pylist()


def _ref_sequences(inter_path: Path, report) -> dict[str, list[str]]:  # noqa: ANN001
    from cemg_ray.data.catalog import DataError

    inter = _ref_read(inter_path)
    _ref_require(inter, inter_path, ["user_id", "item_id", "timestamp"])
    ts_type = inter.schema.field("timestamp").type
    if not (pa.types.is_integer(ts_type) or pa.types.is_floating(ts_type) or pa.types.is_timestamp(ts_type)):
        raise DataError(f"{inter_path}: column 'timestamp' has type {ts_type}; expected a number or timestamp")
    if inter.num_rows == 0:
        raise DataError(f"{inter_path}: no rows")
    users = _ref_id_column(inter, "user_id", inter_path)
    items = _ref_id_column(inter, "item_id", inter_path)
    tcol = inter.column("timestamp")
    if pa.types.is_timestamp(ts_type):
        tcol = tcol.cast(pa.int64())
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for n, (u, i, t) in enumerate(zip(users, items, tcol.to_pylist())):
        if u is None or i is None:
            report.skip("null_user_or_item", f"{inter_path}: row {n}")
            continue
        if t is None:
            report.skip("null_timestamp", f"{inter_path}: row {n}")
            continue
        by_user[u].append((float(t), n, i))
    return {u: [i for _, _, i in sorted(v)] for u, v in by_user.items()}


def _ref_items(items_path: Path, report) -> dict[str, dict]:  # noqa: ANN001
    from cemg_ray.data.catalog import DataError
    from cemg_ray.data.loaders import _check_nonempty

    _check_nonempty(items_path)
    it = _ref_read(items_path)
    _ref_require(it, items_path, ["item_id"])
    ids = _ref_id_column(it, "item_id", items_path)
    dup = [i for i, c in Counter(i for i in ids if i is not None).items() if c > 1]
    if dup:
        raise DataError(f"{items_path}: duplicate item_id {dup[0]!r} ({len(dup)} duplicated ids)")
    item_meta: dict[str, dict] = {}
    for n, (iid, row) in enumerate(zip(ids, it.to_pylist())):
        if iid is None:
            report.skip("null_item_id", f"{items_path}: row {n}")
            continue
        item_meta[iid] = row
    return item_meta


# -- the synthetic input ----------------------------------------------------------------------------------------------
def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def write_synthetic(folder: str | Path, interactions: int, users: int, items: int, seed: int = 0,
                    bad_share: float = 0.001, without_metadata: float = 0.02, days: int = 60,
                    row_group_size: int = 250_000) -> dict:
    """A parquet dataset: every user draws items from a skewed popularity; timestamps are days (``days`` of them, so
    most users have ties); ``bad_share`` of the rows lose their user, item or time; ``without_metadata`` of the items
    are missing from ``items.parquet``. Rows are in random order, written in row groups of ``row_group_size``."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    user = rng.integers(0, users, interactions)
    item = np.minimum((rng.random(interactions) ** 2.5 * items).astype(np.int64), items - 1)
    ts = rng.integers(1_700_000_000 // 86400, 1_700_000_000 // 86400 + days, interactions) * 86400
    user_ids, item_ids, times = _ids("u", user), _ids("i", item), pa.array(ts)
    bad = rng.random(interactions) < bad_share
    which = rng.integers(0, 3, interactions)
    null_s, null_t = pa.scalar(None, pa.string()), pa.scalar(None, pa.int64())
    user_ids = pc.if_else(pa.array(bad & (which == 0)), null_s, user_ids)
    item_ids = pc.if_else(pa.array(bad & (which == 1)), null_s, item_ids)
    times = pc.if_else(pa.array(bad & (which == 2)), null_t, times)
    pq.write_table(pa.table({"user_id": user_ids, "item_id": item_ids, "timestamp": times}),
                   folder / "interactions.parquet", row_group_size=row_group_size)
    listed = rng.permutation(items)[:items - int(items * without_metadata)]
    pq.write_table(pa.table({"item_id": _ids("i", listed), "title": _ids("Item ", listed),
                             "description": _ids("A synthetic item, number ", listed)}),
                   folder / "items.parquet")
    return {"interactions": interactions, "users": users, "items": items, "malformed_rows": int(bad.sum()),
            "items_without_metadata_share": without_metadata, "timestamp_days": days,
            "bytes_on_disk": sum(p.stat().st_size for p in folder.glob("*.parquet"))}


# -- one path in its own process ----------------------------------------------------------------------------------
def _proc_status(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in bytes. The peak is the process's own
    since its ``exec``: ``ru_maxrss`` would not do, Linux carries the parent's peak into it across fork and exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(folder: str, which: str, out_dir: str) -> None:
    """Load ``folder`` by ``which`` path, print its time and memory as JSON, write its outputs under ``out_dir``."""
    from cemg_ray.data.loaders import load_parquet

    start_rss = _proc_status("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    if which == "arrow":
        catalog = load_parquet(folder)
        sequences = catalog.sequences_table()
    else:
        catalog = reference_load_parquet(folder)
        sequences = reference_sequences_table(catalog)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _proc_status("VmHWM")
    out = Path(out_dir)
    pq.write_table(catalog.items, out / f"{which}-items.parquet")
    pq.write_table(sequences, out / f"{which}-sequences.parquet")
    print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_bytes": peak,
                      "start_rss_bytes": start_rss, "users": sequences.num_rows, "items": catalog.items.num_rows,
                      "report": catalog.report.to_dict(), "report_order": list(catalog.report.skipped)}))


def measure(folder: str | Path, which: str, out_dir: str | Path) -> dict:
    code = "import sys; from cemg_ray.bench.data import _child; _child(*sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, str(folder), which, str(out_dir)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench data: the {which} path failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: list[int], workdir: str | Path, users_per: int = 10, items_per: int = 20, seed: int = 0,
        paths: tuple[str, ...] = PATHS) -> dict:
    """For each number of interactions: write the dataset (``n / users_per`` users, ``n / items_per`` items), run
    each path in its own process, and compare their outputs."""
    workdir = Path(workdir)
    rows = []
    for n in sizes:
        folder = workdir / f"parquet-{n}"
        data = write_synthetic(folder, n, max(1, n // users_per), max(1, n // items_per), seed=seed)
        with tempfile.TemporaryDirectory(dir=workdir) as out:
            res = {p: measure(folder, p, out) for p in paths}
            same = None
            if len(paths) == 2:
                a, b = paths
                same = all(pq.read_table(Path(out) / f"{a}-{t}.parquet").equals(
                    pq.read_table(Path(out) / f"{b}-{t}.parquet")) for t in ("items", "sequences")) \
                    and res[a]["report"] == res[b]["report"] and res[a]["report_order"] == res[b]["report_order"]
        for r in res.values():
            r["peak_above_start_bytes"] = r["peak_rss_bytes"] - r["start_rss_bytes"]
            r["bytes_per_interaction"] = round(r["peak_above_start_bytes"] / n, 1)
        row = {"dataset": data, "paths": res, "identical_outputs": same}
        if len(paths) == 2:
            a, b = paths
            row["ratios"] = {"wall": round(res[a]["wall_s"] / max(res[b]["wall_s"], 1e-9), 2),
                             "peak_above_start": round(res[a]["peak_above_start_bytes"]
                                                       / max(res[b]["peak_above_start_bytes"], 1), 2)}
        rows.append(row)
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
            "pyarrow": pa.__version__, "numpy": np.__version__, "date": datetime.now(UTC).date().isoformat(),
            "load_average_1m": round(os.getloadavg()[0], 2), "workdir": str(workdir), "sizes": rows}


def _print(res: dict) -> None:
    print(f"parquet loader, per-interaction vs Arrow/numpy, each in its own process ({res['machine']}, "
          f"Python {res['python']}, pyarrow {res['pyarrow']}; 1-min load {res['load_average_1m']}, {res['date']})")
    print(f"  {'interactions':>12} {'users':>9} {'items':>9} {'on disk':>9}  {'path':<16} {'wall s':>8} "
          f"{'peak RSS':>10} {'above start':>12} {'B/inter':>8}")
    for row in res["sizes"]:
        d = row["dataset"]
        for name, r in row["paths"].items():
            print(f"  {d['interactions']:>12,} {d['users']:>9,} {d['items']:>9,} {d['bytes_on_disk'] / 2**20:>7.1f}MB"
                  f"  {name:<16} {r['wall_s']:>8.2f} {r['peak_rss_bytes'] / 2**20:>8.0f}MB "
                  f"{r['peak_above_start_bytes'] / 2**20:>10.0f}MB {r['bytes_per_interaction']:>8.1f}")
        if "ratios" in row:
            print(f"  {'':>12} identical outputs: {row['identical_outputs']}; per-interaction / arrow: wall "
                  f"{row['ratios']['wall']:.1f}x, memory above start {row['ratios']['peak_above_start']:.1f}x")


def _cmd(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.interactions.split(",")]
    paths = PATHS if args.path == "both" else (args.path,)
    emit(run(sizes, args.dir, args.users_per, args.items_per, paths=paths), args.json, _print)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="the parquet loader: Arrow/numpy vs per-interaction Python, time and peak memory")
    p.add_argument("--interactions", default="1000000,5000000", help="comma-separated dataset sizes")
    p.add_argument("--users-per", type=int, default=10, help="interactions per user (users = n / this)")
    p.add_argument("--items-per", type=int, default=20, help="interactions per item (items = n / this)")
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "cemg-bench-data"),
                   help="where the synthetic datasets are written")
    p.add_argument("--path", choices=("both", *PATHS), default="both")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
