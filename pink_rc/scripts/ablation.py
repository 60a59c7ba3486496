"""The miniature ablation (spec §8): vision adapters (default) against ``configs/exp/frozen_vit.yaml``.

``python -m pink_rc.scripts.ablation [--seeds 0 1 2] [--config OVERLAY ...] [--runs_dir runs]`` runs, per
seed, the toy stages 0 and 1 once (identical for both arms: the vision adapters start as the identity and
are not trained before stage 2), then stage 2 twice from the same stage-1 checkpoint, with and without the
vision adapters. ``--summarise`` prints the last validation of every finished stage-2 run:
``val/rec_acc@0.5``, ``val/relation_acc``, ``val/count_acc``, ``val/format_error_rate`` (mean, std, values).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
from pathlib import Path

from common.cli import RUN_VERSION_ENV
from pink_rc.scripts.toy import CONFIGS, run_stage

KEYS = (
    "val/rec_acc@0.5",
    "val/relation_acc",
    "val/count_acc",
    "val/format_error_rate",
    "val/rec_random_box_acc",
)
ARMS = {"vision_adapters": [], "frozen_vit": ["--config", str(CONFIGS / "exp" / "frozen_vit.yaml")]}


def run_seed(seed: int, extra: list[str], name: str) -> None:
    """Stages 0 and 1 once, then stage 2 for each arm."""
    base = [*extra, "--seed_everything", str(seed), "--data.seed", str(seed)]
    os.environ.pop(RUN_VERSION_ENV, None)  # a new run folder per seed, even when the seeds share a process
    ckpt = None
    for stage in (0, 1):
        ckpt = run_stage(stage, base, ckpt, f"{name}-s{seed}")
    for arm, overlay in ARMS.items():
        run_stage(2, [*base, *overlay], ckpt, f"{name}-{arm}")


def last_val(metrics: Path) -> dict[str, float] | None:
    rows = [r for r in csv.DictReader(open(metrics)) if r.get(KEYS[0])]
    return {k: float(rows[-1][k]) for k in KEYS} if rows else None


def summarise(runs_dir: Path, name: str) -> str:
    """Markdown table: mean +- std over seeds of the last validation of each arm."""
    lines = ["| arm | seeds | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for arm in ARMS:
        vals = [
            v
            for m in sorted((runs_dir / "pink_rc" / f"{name}-{arm}").glob("*/metrics.csv"))
            if (v := last_val(m))
        ]
        if not vals:
            continue
        cells = []
        for k in KEYS:
            xs = [v[k] for v in vals]
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            cells.append(f"{statistics.mean(xs):.3f} ± {sd:.3f} ({', '.join(f'{x:.2f}' for x in xs)})")
        lines.append(f"| {arm} | {len(vals)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--name", default="ablation")
    p.add_argument("--runs_dir", default="runs")
    p.add_argument("--summarise", action="store_true")
    args, extra = p.parse_known_args(argv)
    if not args.summarise:
        for seed in args.seeds:
            run_seed(seed, [*extra, "--runs_dir", args.runs_dir], args.name)
    print(summarise(Path(args.runs_dir), args.name))


if __name__ == "__main__":
    main()
