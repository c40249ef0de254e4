"""The synthetic catalog cut by time into a base dataset and daily increments, for tests, the demo and the
refresh-against-retrain measurement (docs/OPERATIONS.md, "Refreshing a model").

Every user's walk is spread over the period: its first ``base_share`` is the base, the rest falls on the following
days. A share of the users arrive on one of the days (all their interactions then), and a share of the items are
released on one of the days: an interaction with an item before its release is dropped, and the item's row (title,
text and image) comes with the increment of its release day. The base is a ``parquet``-format dataset; each day is
an increment folder (``interactions.parquet``, ``items.parquet``) that ``cemg-ray refresh`` reads.

    python -m cemg_ray.refresh.synthetic OUT --users 600 --items 300   # OUT/base, OUT/day1, OUT/day2, OUT/all
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cemg_ray.config import SyntheticConfig
from cemg_ray.data.synthetic import make_catalog

DAY_S = 86_400
START = 1_767_225_600  # 2026-01-01T00:00:00Z: the base's first second


def _item_rows(items: pa.Table, which: np.ndarray) -> pa.Table:
    rows = items.take(pa.array(np.flatnonzero(which)))
    texts = rows.column("text").to_pylist()
    cats = [t.split("Categories: ", 1)[1] if t and "Categories: " in t else None for t in texts]
    return pa.table({"item_id": rows.column("item_id"), "title": rows.column("title"),
                     "categories": pa.array(cats, pa.string()), "image": rows.column("image")})


def split_by_time(synthetic: SyntheticConfig, out: str | Path, days: int = 2, base_share: float = 0.7,
                  new_item_share: float = 0.1, new_user_share: float = 0.1, seed: int = 0,
                  whole: bool = False) -> dict[str, Path]:
    """Write ``out/base`` and ``out/day1`` ... ``out/day<days>`` (and with ``whole``, ``out/all``: every day in one
    dataset, what a retrain from scratch reads); returns their paths by name."""
    cat = make_catalog(synthetic)
    rng = np.random.default_rng(seed)
    n_items, n_users = cat.num_items, len(cat.sequences)
    release = np.zeros(n_items, dtype=np.int64)
    new_items = rng.choice(n_items, size=int(round(new_item_share * n_items)), replace=False)
    release[new_items] = rng.integers(1, days + 1, size=len(new_items))
    arrival = np.zeros(n_users, dtype=np.int64)
    new_users = rng.choice(n_users, size=int(round(new_user_share * n_users)), replace=False)
    arrival[new_users] = rng.integers(1, days + 1, size=len(new_users))
    width = (1.0 - base_share) / days
    events: dict[int, list[tuple[str, str, int]]] = {d: [] for d in range(days + 1)}
    item_ids = cat.items.column("item_id").to_pylist()
    for u, seq in enumerate(cat.sequences):
        for j, item in enumerate(seq):
            t = (j + 0.5) / len(seq)
            day = int(arrival[u]) if arrival[u] else (0 if t < base_share else
                                                      1 + min(days - 1, int((t - base_share) / width)))
            if release[item] > day:
                continue  # the item did not exist yet
            events[day].append((cat.user_ids[u], item_ids[item], START + day * DAY_S + int(t * (DAY_S - 1))))
    out = Path(out)
    paths = {}
    for day in range(days + 1):
        name = "base" if day == 0 else f"day{day}"
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        users, items, stamps = zip(*events[day]) if events[day] else ((), (), ())
        pq.write_table(pa.table({"user_id": pa.array(users, pa.string()), "item_id": pa.array(items, pa.string()),
                                 "timestamp": pa.array(stamps, pa.int64())}), folder / "interactions.parquet")
        pq.write_table(_item_rows(cat.items, release == day), folder / "items.parquet")
        paths[name] = folder
    if whole:
        folder = out / "all"
        folder.mkdir(parents=True, exist_ok=True)
        every = [e for day in range(days + 1) for e in events[day]]
        users, items, stamps = zip(*every)
        pq.write_table(pa.table({"user_id": pa.array(users, pa.string()), "item_id": pa.array(items, pa.string()),
                                 "timestamp": pa.array(stamps, pa.int64())}), folder / "interactions.parquet")
        pq.write_table(_item_rows(cat.items, release >= 0), folder / "items.parquet")
        paths["all"] = folder
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--clusters", type=int, default=6)
    p.add_argument("--days", type=int, default=2)
    a = p.parse_args(argv)
    for name, path in split_by_time(SyntheticConfig(num_users=a.users, num_items=a.items, num_clusters=a.clusters),
                                    a.out, a.days, whole=True).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
