#!/usr/bin/env bash
# The hybrid policy's grid on a trained run directory's validation split (the test split is not read), then the
# pick: docs/RESULTS.md, docs/results/<run>/hybrid_selection.{txt,json}.
#
#   bash jobs/experiments/hybrid_sweep.sh RUN_DIR JOB.yaml OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
run_dir=$1; job=$2; out=$3
PY=${PY:-.venv/bin/python}
mkdir -p "$out"
models=(cemg)
for w in 0.6 0.7 0.8 0.9; do
  for b in 1.5 2.0 2.5 3.0; do models+=("cemg:hybrid(weight=$w,cold_bias=$b)"); done
done
"$PY" jobs/experiments/valid_models.py "$run_dir" "$job" "${models[@]}" > "$out/hybrid_sweep.log"
grep -v '^{' "$out/hybrid_sweep.log" > "$out/hybrid_selection.txt"
tail -n 1 "$out/hybrid_sweep.log" > "$out/hybrid_selection.json"
"$PY" jobs/experiments/pick_hybrid.py "$out/hybrid_selection.json" | tee -a "$out/hybrid_selection.txt"
rm "$out/hybrid_sweep.log"
