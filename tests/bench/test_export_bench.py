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
