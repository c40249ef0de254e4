"""Validation figures of a trained run directory's models (never the test split), for model selection.

    .venv/bin/python jobs/experiments/valid_models.py RUN_DIR JOB.yaml cemg cemg_cold cemg_dense
    .venv/bin/python jobs/experiments/valid_models.py RUN_DIR JOB.yaml cemg_cold@0.1 cemg_cold@0.2  # decode.cold_share
    .venv/bin/python jobs/experiments/valid_models.py RUN_DIR JOB.yaml cemg_dense@0.5 cemg_dense@1  # decode.cold_bias
    .venv/bin/python jobs/experiments/valid_models.py RUN_DIR JOB.yaml \
        cemg_hybrid@hybrid_weight=0.8,hybrid_cold_bias=2.5  # any decode.* fields

Each model is loaded through the registry that evaluation, export and serving use (``cemg_ray.recommenders``)
and scored on every user's validation target (the second-to-last item), overall and on cold-start targets.
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
        model, _, share = name.partition("@")
        job = cfg.model_copy(deep=True)
        if "=" in share:
            for pair in share.split(","):
                key, _, value = pair.partition("=")
                setattr(job.decode, key, float(value))
            job.decode = type(job.decode).model_validate(job.decode.model_dump())  # the schema's bounds
        elif share and model.startswith("cemg_dense"):
            job.decode.cold_bias = float(share)
        elif share:
            job.decode.cold_share = float(share)
        res = evaluate(recommenders.load(model, job, store), split, "valid", [5, 10, 20], 512)
        rows[name] = res
        print(f"{name}: valid HR@10 {res['overall']['HR@10']:.4f} NDCG@10 {res['overall']['NDCG@10']:.4f} | "
              f"cold-start ({res['cold_start_users']} users) HR@10 {res['cold_start']['HR@10']:.4f} "
              f"NDCG@10 {res['cold_start']['NDCG@10']:.4f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
