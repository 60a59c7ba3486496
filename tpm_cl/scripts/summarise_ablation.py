"""Summarise the miniature ablation: final val/t2v_R@1 and val/fam_t2v_R@1 per arm and seed, mean ± std.

``python -m tpm_cl.scripts.summarise_ablation [--runs runs]`` reads ``runs/tpm_cl/ablation-*/s*/metrics.csv``
(written by ``tpm_cl/scripts/ablation.sh``; finished runs only) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

KEYS = ("val/t2v_R@1", "val/fam_t2v_R@1", "val/v2t_R@1", "val/t2v_MdR")


def final_metrics(path: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(open(path)) if r.get(KEYS[0])]
    return {k: float(rows[-1][k]) for k in KEYS} if rows else {}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default="runs")
    args = parser.parse_args(argv)
    lines = ["| arm | seed | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for exp_dir in sorted((Path(args.runs) / "tpm_cl").glob("ablation-*")):
        per_seed = []
        for run in sorted(exp_dir.glob("s*")):
            info = run / "run_info.json"
            finished = info.is_file() and json.loads(info.read_text()).get("status") == "finished"
            m = final_metrics(run / "metrics.csv") if finished else {}
            if m:
                per_seed.append(m)
                vals = " | ".join(f"{m[k]:.1f}" for k in KEYS)
                lines.append(f"| {exp_dir.name[9:]} | {run.name.split('-')[0]} | {vals} |")
        if len(per_seed) > 1:
            cells = []
            for k in KEYS:
                vals = [m[k] for m in per_seed]
                cells.append(f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}")
            stats = " | ".join(cells)
            lines.append(f"| **{exp_dir.name[9:]}** | mean ± sd ({len(per_seed)}) | {stats} |")
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
