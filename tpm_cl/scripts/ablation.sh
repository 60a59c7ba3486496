#!/usr/bin/env bash
# The miniature ablation of the README: default vs infonce vs no_tpm, seeds 0-2, 2 epochs each on the toy world,
# two runs at a time (one CPU thread each). Results: runs/tpm_cl/<exp>/s<seed>-*/metrics.csv, summarised by
# `python -m tpm_cl.scripts.summarise_ablation`.
set -euo pipefail
cd "$(dirname "$0")/../.."
run() {  # exp seed
    local overlay=()
    [ "$1" != tiny ] && overlay=(--config "tpm_cl/configs/exp/$1.yaml")
    .venv/bin/python -m tpm_cl.train fit --config tpm_cl/configs/paper.yaml --config tpm_cl/configs/tiny.yaml \
        "${overlay[@]}" --seed_everything "$2" --data.seed "$2" --trainer.max_epochs 2 \
        --trainer.enable_progress_bar false --exp "ablation-$1" > "runs/tpm_cl-ablation-$1-s$2.log" 2>&1
}
mkdir -p runs
jobs=()
for seed in 0 1 2; do
    for exp in tiny infonce no_tpm; do jobs+=("$exp $seed"); done
done
for ((i = 0; i < ${#jobs[@]}; i += 2)); do
    run ${jobs[i]} &
    if [ $((i + 1)) -lt ${#jobs[@]} ]; then run ${jobs[i + 1]} & fi
    wait
done
