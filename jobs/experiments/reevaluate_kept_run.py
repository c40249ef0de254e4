"""Re-run the ``evaluate`` stage of a kept run directory with its own config and another ``evaluate.num_actors``.

Used to compare the evaluate stage in the driver against the actor pool on the same trained models (docs/BENCHMARKS.md,
"After the driver's work moved"): ``python jobs/experiments/reevaluate_kept_run.py RUN_DIR N``. The stage's earlier
rows are removed first, so every list is scored again; prints the stage's wall time and what it cost the driver.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cemg_ray.config import JobConfig
from cemg_ray.pipeline import run_pipeline


def main(run_dir: str, num_actors: int) -> dict:
    run = Path(run_dir)
    cfg = JobConfig.model_validate(json.loads((run / "manifest.json").read_text())["config"])
    cfg.evaluate = cfg.evaluate.model_copy(update={"num_actors": num_actors})
    for stale in ("_stages/evaluate.json", "eval/metrics.json", "eval/default_model.json"):
        (run / stale).unlink(missing_ok=True)
    stage = run_pipeline(cfg, ["evaluate"])["stages"]["evaluate"]
    return {"num_actors": num_actors, "wall_s": stage["wall_s"], "driver": stage["driver"]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
