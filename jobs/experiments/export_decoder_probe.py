"""The export's decoder (``ExportDecoder``) over the first N users of a run, timed without the model load.

Run it with ``PYTHONPATH`` at a checkout of the revision to measure (from outside the repository, so that the
working directory does not shadow it), alternating revisions in one session so that machine drift falls on both:

    git worktree add /tmp/old a740591
    cd /tmp && PYTHONPATH=/tmp/old /work/main/.venv/bin/python /work/main/jobs/experiments/export_decoder_probe.py \\
        /work/main/runs/beauty-bench 10000

Prints one JSON line: the module measured, users, rows, seconds, users/s and quantiles of the users' distinct
seen items (what sets the fetch size).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from cemg_ray import artifacts
from cemg_ray.config import JobConfig
from cemg_ray.export import stage
from cemg_ray.store import Store


def main(run_dir: str, users_n: int, model: str = "cemg", k: int = 10, batch: int = 256) -> dict:
    store = Store(run_dir)
    raw = artifacts.read_manifest(store)["config"]
    raw["run_dir"] = run_dir
    raw["export"] = {**raw.get("export", {}), "model": model, "k": k}
    decoder = stage.ExportDecoder(JobConfig.model_validate(raw).model_dump(mode="json"), run_dir)
    users = artifacts.read_sequences(store, ["user_id", "items"]).slice(0, users_n)
    seen = np.array([len(set(x)) for x in users.column("items").to_pylist()])
    t0, rows = time.perf_counter(), 0
    for start in range(0, users.num_rows, batch):
        part = users.slice(start, batch)
        out = decoder({"user_id": np.asarray(part.column("user_id").to_pylist(), dtype=object),
                       "items": part.column("items").to_pylist()})
        rows += len(out["user_id"])
    sec = time.perf_counter() - t0
    return {"module": stage.__file__, "users": users.num_rows, "rows": rows, "seconds": round(sec, 2),
            "users_per_s": round(users.num_rows / sec, 1),
            "distinct_seen_quantiles_50_80_90_99_100": np.quantile(seen, [0.5, 0.8, 0.9, 0.99, 1.0]).tolist(),
            "share_at_configured_width": round(float(np.mean(seen + k <= raw.get("decode", {}).get("num_beams", 20))),
                                               3)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
