#!/usr/bin/env bash
# Miniature ablation (spec §8): TwinNet KD (default) vs no_twinnet, 3 seeds each, on the toy world.
# Usage: bash tsgsv/scripts/ablation.sh [default|no_twinnet|all]   (arms can run in parallel, one per core)
# Summary: python -m tsgsv.scripts.summarise_ablation
set -euo pipefail
arm="${1:-all}"
PY=${PY:-.venv/bin/python}
run() {  # $1 seed, $2.. extra configs
  local seed=$1; shift
  nice -n 5 "$PY" -m tsgsv.train fit --config tsgsv/configs/paper.yaml --config tsgsv/configs/tiny.yaml \
    "$@" --config tsgsv/configs/exp/ablation_short.yaml --seed_everything "$seed" \
    --trainer.enable_progress_bar false
}
for seed in 0 1 2; do
  if [[ "$arm" == default || "$arm" == all ]]; then run "$seed"; fi
  if [[ "$arm" == no_twinnet || "$arm" == all ]]; then run "$seed" --config tsgsv/configs/exp/no_twinnet.yaml; fi
done
