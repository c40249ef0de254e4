"""``cemg-ray bench export`` on the demo run: the plain loop and the Ray Data export rank every user."""

from __future__ import annotations


def test_bench_export_measures_plain_loop_and_actor_pool(demo_run, tmp_path) -> None:
    from cemg_ray.bench.export import run

    _, store = demo_run
    out = run(store.root_uri, "popularity", k=5, batch_size=64, actors=[1], cpus_per_actor=0.5,
              output=str(tmp_path / "bench"))
    users = store.read_parquet("data/sequences.parquet").num_rows
    plain, pool = out["results"]
    assert plain["users"] == pool["users"] == users and pool["rows"] == users * 5
    assert plain["users_per_s"] > 0 and pool["users_per_s"] > 0
    ratio = out["ratios"]["Ray Data, 1 actor(s) / plain loop"]
    assert abs(ratio - pool["users_per_s"] / plain["users_per_s"]) < 0.01
    partitions = list((tmp_path / "bench" / "bench-1").glob("dt=*"))
    assert len(partitions) == 1 and (partitions[0] / "_SUCCESS").exists()


def test_bench_export_at_scale_draws_users_from_the_run_and_separates_the_fixed_cost(demo_run, tmp_path) -> None:
    from cemg_ray.bench.export import run_scaled, scaled_run
    from cemg_ray.store import Store

    _, store = demo_run
    copy = Store(scaled_run(store.root_uri, 1000, str(tmp_path)))
    own = store.read_parquet("data/sequences.parquet").to_pydict()
    histories = {u: tuple(h) for u, h in zip(own["user_id"], own["items"])}
    drawn = copy.read_parquet("data/sequences.parquet").to_pydict()
    assert len(drawn["user_id"]) == len(set(drawn["user_id"])) == 1000  # new, distinct ids
    for uid, items in zip(drawn["user_id"], drawn["items"]):
        assert histories[uid.rsplit("~", 1)[0]] == tuple(items)  # each a real user's history
    out = run_scaled(store.root_uri, [600, 1200], "popularity", k=5, batch_size=100, actors=[1], cpus_per_actor=0.5)
    assert [(r["users"], r["actors"]) for r in out["results"]] == [(600, 0), (600, 1), (1200, 0), (1200, 1)]
    plain = {r["users"]: r["users_per_s"] for r in out["results"] if r["actors"] == 0}
    for r in out["results"]:
        assert r["users_per_s"] > 0 and r["fixed_s"] >= 0
        assert r["actors"] == 0 or r["fixed_s"] > 0  # an actor pool always costs its start (the loop may round to 0)
        assert abs(r["vs_plain_loop"] - r["users_per_s"] / plain[r["users"]]) <= 0.006  # the ratio, rounded
