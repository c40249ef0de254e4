"""``cemg-ray bench features`` end to end on a tiny encoder."""

from __future__ import annotations


def test_bench_features_reports_items_per_s_and_ratios(local_ray, capsys) -> None:
    import json

    from cemg_ray.cli import main

    assert main(["bench", "features", "--items", "24", "--model", "tiny-random-bert", "--batch-size", "8",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["items"] == 24 and set(res["items_per_s"]) == {"plain_loop", "ray_1_actors", "ray_2_actors"}
    assert all(v > 0 for v in res["items_per_s"].values())
    assert set(res["ratios"]) == {"ray_1_actors_vs_plain", "ray_2_actors_vs_plain", "ray_2_vs_1_actors"}
