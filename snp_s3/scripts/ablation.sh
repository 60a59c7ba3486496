#!/usr/bin/env bash
# Miniature ablation (spec §8, Table III rows B1 vs B4): MLM+GVTM (exp/mlm_random.yaml) against MSSM+GVTM+LVWM
# (exp/mssm_lvwm.yaml), both without attentive masking, 3 seeds, on the one-attribute family split
# (exp/hard_split.yaml); pretraining then retrieval fine-tuning (the QA stage is skipped).
# Usage: bash snp_s3/scripts/ablation.sh [RUNS_DIR]   then   python -m snp_s3.scripts.summarise_ablation RUNS_DIR
# SEEDS="1" runs a subset (the README's runs used three such processes side by side, one per seed).
set -euo pipefail
RUNS=${1:-runs}
PY=${PY:-.venv/bin/python}
for seed in ${SEEDS:-0 1 2}; do
  for arm in mssm_lvwm mlm_random; do
    "$PY" -m snp_s3.scripts.toy --config snp_s3/configs/exp/hard_split.yaml --config "snp_s3/configs/exp/$arm.yaml" \
      --stages pretrain,retrieval --exp "abl-$arm-s$seed" --seed_everything "$seed" --runs_dir "$RUNS" \
      --trainer.enable_progress_bar false
  done
done
