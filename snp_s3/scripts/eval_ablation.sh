#!/usr/bin/env bash
# Re-test each finished ablation retrieval checkpoint (adds the family-restricted fam_t2v_* metrics of the
# one-attribute hard split): runs/snp_s3/abl-eval-<arm>-s<seed>/. Then summarise_ablation.py prints both.
set -euo pipefail
RUNS=${1:-runs}
PY=${PY:-.venv/bin/python}
for ckpt in "$RUNS"/snp_s3/abl-*-s*-retrieval/*/checkpoints/retrieval-final.ckpt; do
  run=$(dirname "$(dirname "$ckpt")")
  name=$(basename "$(dirname "$run")")
  exp="abl-eval-${name#abl-}"
  exp="${exp%-retrieval}"
  if ls "$RUNS/snp_s3/$exp"/*/metrics.csv >/dev/null 2>&1; then continue; fi
  "$PY" -m snp_s3.train test --config "$run/config.yaml" --ckpt_path "$ckpt" --exp "$exp" --runs_dir "$RUNS" \
    --trainer.enable_progress_bar false
done
