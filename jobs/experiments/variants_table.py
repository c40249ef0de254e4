"""Markdown rows for docs/EXPERIMENTS.md from trained variants (jobs/experiments/beauty-variants.sh), and their
reports kept beside the docs so that a re-run can be compared with them.

    python jobs/experiments/variants_table.py logs/variants-cpu.log runs/variants docs/results/variants-cpu-300s \
        cpu cpu-lr1e3 ...

Reads each variant's ``generate/report.json``, ``generate/history.json`` and ``manifest.json`` (validation figures
only: the variants never read the test split) and the 1-minute load average the script logged at its start;
copies those three files to ``OUT/<variant>/``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path


def load_at_start(log: Path) -> dict[str, str]:
    """variant -> the 1-minute load average beauty-variants.sh printed when it started that variant."""
    found = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"== (\S+) \(.*load: (\S+)", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def row(variant: str, run: Path, load: str) -> str:
    rep = json.loads((run / "generate" / "report.json").read_text())
    hist = json.loads((run / "generate" / "history.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    train = manifest["stages"]["train"]["config"]["train"]  # the train stage's own resolved config
    best_hr = max(h["valid_hr10"] for h in hist)
    return (f"| `{variant}` | {train['lr']:g} | {train['warmup_steps']} | {train['batch_size']} | {train['dropout']:g} "
            f"| {train['d_model']} | {train['num_layers']} | {load} | {len(hist)} | {rep['steps']:,} "
            f"| {rep['train_s']} "
            f"| {rep['best_epoch']} | **{rep['best_valid_ndcg10']:.4f}** | {best_hr:.4f} | {rep['parameters']:,} "
            f"| {rep['examples_per_s']} |")


def main(argv: list[str]) -> int:
    log, runs, out, variants = Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[3:]
    loads = load_at_start(log)
    print("| variant | lr | warm-up | batch | dropout | d | layers | load 1m | epochs | steps | train s | best epoch "
          "| **valid NDCG@10** | valid HR@10 | parameters | examples/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        run = runs / v
        if not (run / "generate" / "report.json").exists():
            print(f"| `{v}` | not trained ({run / 'generate' / 'report.json'} missing) |")
            continue
        print(row(v, run, loads.get(v, "?")))
        dst = out / v
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("generate/report.json", "generate/history.json", "manifest.json"):
            shutil.copy(run / name, dst / Path(name).name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
