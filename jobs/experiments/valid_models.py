"""Validation figures of a trained run directory's models (never the test split), for model selection.

    .venv/bin/python jobs/experiments/valid_models.py RUN_DIR JOB.yaml cemg cemg:cold_share cemg:dense
    .venv/bin/python jobs/experiments/valid_models.py RUN_DIR JOB.yaml \
        "cemg:cold_share(share=0.1)" "cemg:dense(cold_bias=0.5)" "cemg:hybrid(weight=0.8,cold_bias=2.5)"

Each argument is a model reference (``MODEL[:POLICY[(knob=value,...)]]``, cemg_ray/generate/policy.py), loaded
through the registry that evaluation, export and serving use (``cemg_ray.recommenders``) and scored on every
user's validation target (the second-to-last item), overall and on cold-start targets.
The last line is the JSON of every result.
"""

from __future__ import annotations

import json
import sys

from cemg_ray import recommenders
from cemg_ray.config import load_config
from cemg_ray.data.split import load_split
from cemg_ray.evaluate.harness import evaluate
from cemg_ray.store import Store


def main(run_dir: str, job: str, models: list[str]) -> None:
    cfg = load_config(job, [f"run_dir={run_dir}"])
    store = Store(run_dir)
    split = load_split(store, cfg.dataset.max_len, cfg.dataset.cold_start_max)
    rows = {}
    for name in models:
        res = evaluate(recommenders.load(name, cfg, store), split, "valid", [5, 10, 20], 512)
        rows[name] = res
        print(f"{name}: valid HR@10 {res['overall']['HR@10']:.4f} NDCG@10 {res['overall']['NDCG@10']:.4f} | "
              f"cold-start ({res['cold_start_users']} users) HR@10 {res['cold_start']['HR@10']:.4f} "
              f"NDCG@10 {res['cold_start']['NDCG@10']:.4f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
