"""Summarise the miniature ablation: final retrieval metrics per arm and seed, mean and std over seeds.

``python -m snp_s3.scripts.summarise_ablation RUNS_DIR`` reads ``RUNS_DIR/snp_s3/abl-<arm>-s<seed>-retrieval``
and prints a Markdown table of t2v R@1 and mean recall (l2, the headline, and l1) at the last validation
of each finished run.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from pathlib import Path

KEYS = ("val/t2v_R@1", "val/t2v_mean_recall", "val/l1_t2v_R@1", "val/l1_t2v_mean_recall", "val/mc_acc")
FAM_KEYS = ("test/fam_t2v_R@1", "test/fam_t2v_MnR", "test/l1_fam_t2v_R@1", "test/t2v_R@1")


def last_metrics(metrics_csv: Path, keys: tuple[str, ...] = KEYS) -> dict[str, float]:
    rows = [r for r in csv.DictReader(open(metrics_csv)) if r.get(keys[0])]
    if not rows:
        return {}
    return {k: float(rows[-1][k]) for k in keys if rows[-1].get(k)}


def summarise(runs: Path) -> str:
    table: dict[str, dict[int, dict[str, float]]] = {}
    for path in sorted((runs / "snp_s3").glob("abl-*-s*-retrieval/*/metrics.csv")):
        m = re.match(r"abl-(.+)-s(\d+)-retrieval", path.parents[1].name)
        info = path.parent / "run_info.json"
        finished = info.is_file() and json.loads(info.read_text()).get("status") == "finished"
        if m and finished:
            table.setdefault(m.group(1), {})[int(m.group(2))] = last_metrics(path)
    for path in sorted((runs / "snp_s3").glob("abl-eval-*-s*/*/metrics.csv")):
        m = re.match(r"abl-eval-(.+)-s(\d+)$", path.parents[1].name)
        if m and int(m.group(2)) in table.get(m.group(1), {}):
            table[m.group(1)][int(m.group(2))].update(last_metrics(path, FAM_KEYS))
    keys = KEYS + FAM_KEYS
    lines = ["| arm | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for arm, seeds in sorted(table.items()):
        cells = []
        for k in keys:
            vals = [s[k] for s in seeds.values() if k in s]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(
                f"{statistics.mean(vals):.1f} ± {sd:.1f} ({', '.join(f'{v:.1f}' for v in vals)})"
                if vals
                else "-"
            )
        lines.append(f"| {arm} | {sorted(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1] if len(sys.argv) > 1 else "runs")))
