"""Summarise the miniature ablation: final-epoch validation metrics per arm, mean and std over seeds.

Reads ``runs/tsgsv/<exp>/s<seed>-*/metrics.csv`` (the latest run per seed) and prints a Markdown table.
``python -m tsgsv.scripts.summarise_ablation [--runs runs/tsgsv] [--arms tiny+ablation_short ...]``
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

METRICS = ("R@1_IoU0.5", "R@1_IoU0.7", "mcAP", "mcAP_strict", "end_err", "R@1_IoU0.5_random")
ARMS = ("tiny+ablation_short", "tiny+no_twinnet+ablation_short")


def final_metrics(run: Path) -> dict[str, float] | None:
    """The last validation row of a finished run (None if the run did not finish)."""
    info = run / "run_info.json"
    if not info.is_file() or json.loads(info.read_text()).get("status") != "finished":
        return None
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("val/R@1_IoU0.5")]
    if not rows:
        return None
    return {m: float(rows[-1][f"val/{m}"]) for m in METRICS}


def summarise(runs: Path, arms: tuple[str, ...]) -> str:
    lines = ["| arm | seeds | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for arm in arms:
        latest: dict[str, Path] = {}
        for run in sorted((runs / arm).glob("s*-*")):
            latest[run.name.split("-")[0]] = run
        vals = [m for m in (final_metrics(r) for r in latest.values()) if m]
        if not vals:
            continue
        cells = []
        for m in METRICS:
            x = np.array([v[m] for v in vals])
            cells.append(f"{x.mean():.3f} ± {x.std(ddof=1) if len(x) > 1 else 0:.3f}")
        seeds = ",".join(k[1:] for k, r in sorted(latest.items()) if final_metrics(r))
        lines.append(f"| {arm} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/tsgsv")
    p.add_argument("--arms", nargs="*", default=list(ARMS))
    a = p.parse_args(argv)
    print(summarise(Path(a.runs), tuple(a.arms)))


if __name__ == "__main__":
    main()
