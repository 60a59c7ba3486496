"""Run the miniature GBA-ITC ablation (``configs/exp/gba_itc.yaml``): three arms x seeds, then a table.

Each run is ``python -m m2_encoder.train fit`` on 4 gloo processes; the table reports, per arm, the mean and
standard deviation over seeds of the loss's gathered bytes per step (``train/itc_gathered_bytes``), the
inter-"node" part, the features the loss holds (``train/itc_loss_feature_bytes``, a loss-memory proxy)
and the final ``val/mean_recall_{en,zh}``.

Usage: ``python -m m2_encoder.scripts.ablation_gba --seeds 0 1 2 --out runs/m2_encoder/gba_itc.md``
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
from pathlib import Path

# The overlay's per-rank batch is 8. ``gba_accumulate`` loads 16 per rank and contrasts them as 2
# micro-batches of 8 (GradCache re-forward, one optimizer step), so each row meets as many negatives as
# under global ITC (2 ranks x 16 = 4 ranks x 8) while gathering only inside the node. ``gba_buffer``
# instead keeps the previous step's detached group features as the second group batch (MoCo-style, the
# spec's default).
ARMS = {
    "global": ["--model.gba.aggregate_nodes", "-1", "--model.gba.accumulate_steps", "1"],
    "grouped": ["--model.gba.aggregate_nodes", "1", "--model.gba.accumulate_steps", "1"],
    "gba_accumulate": [
        *("--model.gba.aggregate_nodes", "1", "--model.gba.accumulate_steps", "2"),
        *("--model.gba.mode", "accumulate", "--data.batch_size", "16"),
        *("--trainer.gradient_clip_val", "null", "--model.gba.clip_grad_norm", "3.0"),
    ],
    "gba_buffer": [
        *("--model.gba.aggregate_nodes", "1", "--model.gba.accumulate_steps", "2"),
        *("--model.gba.mode", "buffer"),
    ],
}
KEYS = [
    "train/itc_gathered_bytes",
    "train/itc_internode_bytes",
    "train/itc_loss_feature_bytes",
    "val/mean_recall_en",
    "val/mean_recall_zh",
]


def last(metrics: Path, key: str) -> float:
    rows = [r for r in csv.DictReader(metrics.open()) if r.get(key)]
    return float(rows[-1][key]) if rows else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--out", default="runs/m2_encoder/gba_itc.md")
    parser.add_argument(
        "--summarize", action="store_true", help="only tabulate the newest existing run of each arm and seed"
    )
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more CLI arguments")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {}
    for arm in args.arms:
        arm_args = ARMS[arm]
        for seed in args.seeds:
            exp = f"gba_itc-{arm}"
            cmd = [
                sys.executable,
                "-m",
                "m2_encoder.train",
                "fit",
                "--config",
                "m2_encoder/configs/paper.yaml",
            ]
            cmd += [
                "--config",
                "m2_encoder/configs/tiny.yaml",
                "--config",
                "m2_encoder/configs/exp/gba_itc.yaml",
            ]
            cmd += [*arm_args, "--seed_everything", str(seed), "--data.seed", str(seed), "--exp", exp]
            cmd += ["--trainer.enable_progress_bar", "false", *args.extra]
            if not args.summarize:
                subprocess.run(cmd, check=True)
            run = max(Path("runs/m2_encoder", exp).glob(f"s{seed}-*"), key=lambda p: p.stat().st_mtime)
            results.setdefault(arm, []).append({k: last(run / "metrics.csv", k) for k in KEYS})
    lines = ["| arm | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 1) + "|"]
    for arm, rows in results.items():
        cells = []
        for k in KEYS:
            vals = [r[k] for r in rows]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.2f} ± {sd:.2f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"seeds {args.seeds}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
