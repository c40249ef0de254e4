"""Choose ``decode.cold_share`` on the validation split of a trained run directory (never the test split).

    .venv/bin/python jobs/experiments/cold_share.py RUN_DIR JOB.yaml 0 0.1 0.2 0.3

Loads the run's generator once per share through the same loader that evaluation, export and serving use,
and prints validation HR/NDCG@10 overall and on cold-start targets.
"""

from __future__ import annotations

import json
import sys

from cemg_ray.config import load_config
from cemg_ray.data.split import load_split
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.generate.recommender import load_recommender
from cemg_ray.store import Store


def main(run_dir: str, job: str, shares: list[float]) -> None:
    cfg = load_config(job, [f"run_dir={run_dir}"])
    store = Store(run_dir)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    rows = {}
    for share in shares:
        rec = load_recommender(cfg, store, cold_share=share)
        rec.name = f"cemg_cold@{share}"
        res = evaluate(rec, split, "valid", [5, 10, 20], 512)
        rows[share] = res
        print(f"share {share}: valid HR@10 {res['overall']['HR@10']:.4f} NDCG@10 {res['overall']['NDCG@10']:.4f} | "
              f"cold-start ({res['cold_start_users']} users) HR@10 {res['cold_start']['HR@10']:.4f} "
              f"NDCG@10 {res['cold_start']['NDCG@10']:.4f}", flush=True)
    print(json.dumps({str(k): v for k, v in rows.items()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [float(s) for s in sys.argv[3:]])
