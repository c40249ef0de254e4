"""The synthetic catalog cut by time: the base and the days partition the walks, new items only after release."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from cemg_ray.config import SyntheticConfig
from cemg_ray.data.synthetic import make_catalog
from cemg_ray.refresh.synthetic import split_by_time


def test_base_and_days_partition_the_walks_in_time(tmp_path: Path) -> None:
    cfg = SyntheticConfig(num_users=60, num_items=40, num_clusters=4)
    paths = split_by_time(cfg, tmp_path, days=2, new_item_share=0.2)
    parts = {n: pq.read_table(p / "interactions.parquet").to_pylist() for n, p in paths.items()}
    items = {n: set(pq.read_table(p / "items.parquet").column("item_id").to_pylist()) for n, p in paths.items()}
    assert set(paths) == {"base", "day1", "day2"}
    assert sum(len(v) for v in items.values()) == 40 and len(items["day1"] | items["day2"]) == 8
    released = {"base": items["base"], "day1": items["base"] | items["day1"]}
    released["day2"] = released["day1"] | items["day2"]
    for name, rows in parts.items():
        assert {r["item_id"] for r in rows} <= released[name]  # nothing before its release
    base_end = max(r["timestamp"] for r in parts["base"])
    assert base_end < min(r["timestamp"] for r in parts["day1"]) <= max(r["timestamp"] for r in parts["day1"]) \
        < min(r["timestamp"] for r in parts["day2"])
    cat = make_catalog(cfg)  # every kept interaction is the catalog's, in its order
    ids = cat.items.column("item_id").to_pylist()
    walks = {u: [ids[i] for i in s] for u, s in zip(cat.user_ids, cat.sequences)}
    by_user: dict[str, list] = {}
    for rows in parts.values():
        for r in rows:
            by_user.setdefault(r["user_id"], []).append((r["timestamp"], r["item_id"]))
    for user, events in by_user.items():
        kept = [i for _, i in sorted(events)]
        it = iter(walks[user])
        assert all(i in it for i in kept)  # a subsequence of the user's walk
