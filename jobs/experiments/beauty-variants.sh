#!/usr/bin/env bash
# Generator variants on Beauty at an equal wall-clock budget (train.max_train_s), selected on validation
# NDCG@10 only (3,000 validation users; the test split is not read). docs/EXPERIMENTS.md lists the figures.
#
#   bash jobs/experiments/beauty-variants.sh BUDGET_S VARIANT...      e.g. 480 items-dense items-content
#   bash jobs/experiments/beauty-variants.sh 300 cpu cpu-lr1e3 cpu-lr4e3 cpu-warmup1000 cpu-batch256 cpu-d256 cpu-layers4
#
# VALID_MODELS="cemg cemg:cold_share cemg:dense" also scores those models of each trained variant on every user's
# validation target, overall and cold-start (jobs/experiments/valid_models.py; the test split is not read).
#
# Each variant trains in a copy of the upstream run directory that holds its features and codes
# (runs/beauty-<codes>), so features, PCA, LightGCN and the tokenizer are shared, not re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
budget=$1; shift
CLI=${CLI:-.venv/bin/cemg-ray}
PY=${PY:-.venv/bin/python}
ITEMS=(--set train.backbone=decoder --set train.history=items --set train.objective=dense --set train.d_model=128
       --set train.num_layers=2 --set train.num_heads=4 --set train.d_ff=512 --set train.batch_size=128
       --set train.lr=0.002 --set train.warmup_steps=300 --set train.weight_decay=0.035 --set train.dropout=0.3)
CPU=("${ITEMS[@]}" --set train.content_input=true --set train.dense_weight=1.0 --set train.dense_negatives=1024)
for variant in "$@"; do
  codes=cls-m4k512; extra=()
  case $variant in
    tokens-prefix) extra=(--set train.backbone=t5 --set train.num_layers=2 --set train.num_heads=4 --set train.d_kv=32
                          --set train.d_ff=512 --set train.batch_size=128 --set train.lr=0.001 --set train.warmup_steps=500
                          --set train.weight_decay=0.035 --set train.dropout=0.2) ;;
    items-prefix) extra=("${ITEMS[@]}" --set train.objective=prefix) ;;
    items-dense) extra=("${ITEMS[@]}") ;;
    items-content) extra=("${ITEMS[@]}" --set train.content_input=true) ;;
    items-content-d05) extra=("${ITEMS[@]}" --set train.content_input=true --set train.dropout=0.5) ;;
    items-content-lr5e3) extra=("${ITEMS[@]}" --set train.content_input=true --set train.lr=0.005) ;;
    items-content-d256) extra=("${ITEMS[@]}" --set train.content_input=true --set train.d_model=256 --set train.d_ff=1024) ;;
    mean-items-content) codes=mean-m4k512; extra=("${ITEMS[@]}" --set train.content_input=true) ;;
    mean-items-content-dense) codes=mean-m4k512; extra=("${ITEMS[@]}" --set train.content_input=true --set train.dense_weight=1.0) ;;
    mean-items-content-dense05) codes=mean-m4k512; extra=("${ITEMS[@]}" --set train.content_input=true --set train.dense_weight=0.5) ;;
    mean-items-content-dense-t02) codes=mean-m4k512; extra=("${ITEMS[@]}" --set train.content_input=true --set train.dense_weight=1.0
                                  --set train.dense_temperature=0.2) ;;
    mean-items-content-dense-s1024) codes=mean-m4k512; extra=("${ITEMS[@]}" --set train.content_input=true --set train.dense_weight=1.0
                                    --set train.dense_negatives=1024) ;;
    mean-items-content-dense-s4096) codes=mean-m4k512; extra=("${ITEMS[@]}" --set train.content_input=true --set train.dense_weight=1.0
                                    --set train.dense_negatives=4096) ;;
    mean-items-content-dense05-s1024) codes=mean-m4k512; extra=("${ITEMS[@]}" --set train.content_input=true --set train.dense_weight=0.5
                                      --set train.dense_negatives=1024) ;;
    mean3x256-items-content) codes=mean-m3k256; extra=("${ITEMS[@]}" --set train.content_input=true) ;;
    # schedule and size around the CPU default (= mean-items-content-dense-s1024, jobs/beauty-cpu.yaml's generator)
    cpu) codes=mean-m4k512; extra=("${CPU[@]}") ;;
    cpu-lr1e3) codes=mean-m4k512; extra=("${CPU[@]}" --set train.lr=0.001) ;;
    cpu-lr4e3) codes=mean-m4k512; extra=("${CPU[@]}" --set train.lr=0.004) ;;
    cpu-warmup1000) codes=mean-m4k512; extra=("${CPU[@]}" --set train.warmup_steps=1000) ;;
    cpu-batch256) codes=mean-m4k512; extra=("${CPU[@]}" --set train.batch_size=256) ;;
    cpu-batch64) codes=mean-m4k512; extra=("${CPU[@]}" --set train.batch_size=64) ;;
    cpu-dropout02) codes=mean-m4k512; extra=("${CPU[@]}" --set train.dropout=0.2) ;;
    cpu-d256) codes=mean-m4k512; extra=("${CPU[@]}" --set train.d_model=256 --set train.d_ff=1024) ;;
    cpu-layers4) codes=mean-m4k512; extra=("${CPU[@]}" --set train.num_layers=4) ;;
    *) echo "unknown variant $variant" >&2; exit 2 ;;
  esac
  src=runs/beauty-$codes; dst=runs/variants/$variant
  pooling=cls; [[ $codes == mean-* ]] && pooling=mean
  tok=(); [[ $codes == *m3k256 ]] && tok=(--set tokenize.num_levels=3 --set tokenize.codebook_size=256)
  rm -rf "$dst"; mkdir -p runs/variants
  cp -r "$src" "$dst"; rm -rf "$dst/generate" "$dst/eval" "$dst/_stages/train.json" "$dst/_stages/evaluate.json"
  echo "== $variant (codes $codes, budget ${budget}s) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$CLI" run jobs/beauty.yaml --stages train --set run_dir="$dst" --set features.text.pooling=$pooling "${tok[@]}" \
    --set ray.address=local --set train.epochs=200 --set train.patience=200 --set train.valid_users=3000 \
    --set train.max_train_s="$budget" --set train.log_every=0 "${extra[@]}" > "logs/variant-$variant.log" 2>&1
  "$PY" - "$dst" "$variant" <<'PY'
import json, sys
rep = json.load(open(f"{sys.argv[1]}/generate/report.json"))
hist = json.load(open(f"{sys.argv[1]}/generate/history.json"))
print(f"{sys.argv[2]}: best valid NDCG@10 {rep['best_valid_ndcg10']:.4f} (epoch {rep['best_epoch']}), "
      f"HR@10 {max(h['valid_hr10'] for h in hist):.4f}, epochs {len(hist)}, steps {rep['steps']}, "
      f"train {rep['train_s']} s, params {rep['parameters']}")
PY
  if [[ -n ${VALID_MODELS:-} ]]; then
    # shellcheck disable=SC2086
    "$PY" jobs/experiments/valid_models.py "$dst" jobs/beauty-cpu.yaml $VALID_MODELS \
      > "logs/variant-$variant-valid.log" 2>&1
    grep -ao '[a-z_@0-9.]*: valid HR@10.*' "logs/variant-$variant-valid.log" | sed "s/^/$variant /"
  fi
done
