"""Compare runs without a W&B account: a markdown table and learning curves from every run's CSV log.

``python -m common.report [--runs runs] [--out runs/report.md]`` walks ``runs/<paper>/<exp>/<version>/``
(the layout of :mod:`common.cli`), reads each ``metrics.csv`` and ``run_info.json``, and writes

* ``report.md``: one row per run (paper, experiment, seed, steps, wall time, headline metric, its final and
  best value, its chance level, status) and one row per (paper, experiment) with the mean and standard
  deviation of the final headline value over seeds;
* ``report.png``: the headline metric against the step, one panel per paper, experiments overlaid in colours.

A run without ``run_info.json`` (killed early) still appears: its seed comes from the folder name and its
headline metric is the first ``val/`` column of its log.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    """One run folder's record and the headline metric's curve."""

    paper: str
    exp: str
    version: str
    path: Path
    seed: str = "?"
    steps: int | None = None
    wall_time_s: float | None = None
    status: str = "unknown"
    headline_metric: str | None = None
    chance_level: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def final(self) -> float | None:
        return self.curve[-1][1] if self.curve else None

    @property
    def best(self) -> float | None:
        # Losses and errors improve downwards; every other headline metric upwards.
        if not self.curve:
            return None
        values = [v for _, v in self.curve]
        lower_is_better = bool(re.search(r"loss|error|MdR|MnR|fid", self.headline_metric or "", re.I))
        return min(values) if lower_is_better else max(values)


def _read_metrics(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def load_run(metrics_csv: Path, runs_dir: Path) -> Run:
    """Read one run folder (``<runs>/<paper>/<exp>/<version>/metrics.csv``)."""
    run_dir = metrics_csv.parent
    parts = run_dir.relative_to(runs_dir).parts
    paper, exp = (parts[0], parts[1]) if len(parts) >= 3 else (parts[0], "?")
    run = Run(paper=paper, exp=exp, version=run_dir.name, path=run_dir)
    seed_match = re.match(r"s(-?\d+|None)", run_dir.name)
    if seed_match:
        run.seed = seed_match.group(1)
    info_path = run_dir / "run_info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        run.paper = info.get("paper") or run.paper
        run.exp = info.get("exp") or run.exp
        run.seed = str(info.get("seed", run.seed))
        run.steps = info.get("global_step")
        run.wall_time_s = info.get("wall_time_s")
        run.status = info.get("status", run.status)
        run.headline_metric = info.get("headline_metric")
        run.chance_level = info.get("chance_level")
    columns, rows = _read_metrics(metrics_csv)
    if run.headline_metric is None:
        run.headline_metric = next((c for c in columns if c.startswith("val/")), None)
    if run.headline_metric in columns:
        for row in rows:
            value = row.get(run.headline_metric, "")
            if value not in ("", None):
                step = int(float(row.get("step") or 0))
                run.curve.append((step, float(value)))
    if run.steps is None and rows:
        run.steps = max(int(float(r["step"])) for r in rows if r.get("step"))
    return run


def collect_runs(runs_dir: str | Path) -> list[Run]:
    """Every run under ``runs_dir``, sorted by paper, experiment and seed."""
    runs_dir = Path(runs_dir)
    runs = [load_run(p, runs_dir) for p in sorted(runs_dir.glob("*/*/*/metrics.csv"))]
    return sorted(runs, key=lambda r: (r.paper, r.exp, r.seed, r.version))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def markdown_table(runs: list[Run]) -> str:
    """The per-run table and the per-experiment summary over seeds, as markdown."""
    lines = [
        "| paper | experiment | seed | steps | wall time (s) | headline metric | final | best | chance "
        "| status |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.paper} | {r.exp} | {r.seed} | {r.steps if r.steps is not None else '-'} | "
            f"{_fmt(r.wall_time_s, 5)} | {r.headline_metric or '-'} | {_fmt(r.final)} | {_fmt(r.best)} | "
            f"{_fmt(r.chance_level)} | {r.status} |"
        )
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in runs:
        if r.final is not None:
            groups.setdefault((r.paper, r.exp, r.headline_metric or "-"), []).append(r.final)
    lines += [
        "",
        "Final headline value over seeds:",
        "",
        "| paper | experiment | headline metric | runs | mean | std |",
        "|---|---|---|---:|---:|---:|",
    ]
    for (paper, exp, metric), values in sorted(groups.items()):
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        lines.append(
            f"| {paper} | {exp} | {metric} | {len(values)} | {_fmt(statistics.fmean(values))} | {_fmt(std)} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(runs: list[Run], out_png: str | Path) -> None:
    """One panel per paper: the headline metric against the step, experiments in colours, chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    papers = sorted({r.paper for r in runs})
    cols = min(3, max(1, len(papers)))
    nrows = max(1, math.ceil(len(papers) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    for ax, paper in zip(axes.flat, papers, strict=False):
        paper_runs = [r for r in runs if r.paper == paper]
        exps = sorted({r.exp for r in paper_runs})
        colours = {e: plt.cm.tab10(i % 10) for i, e in enumerate(exps)}
        labelled: set[str] = set()
        for r in paper_runs:
            if not r.curve:
                continue
            steps, values = zip(*r.curve, strict=True)
            label = None if r.exp in labelled else r.exp
            labelled.add(r.exp)
            ax.plot(steps, values, marker="o", markersize=3, color=colours[r.exp], label=label, alpha=0.85)
        chance = next((r.chance_level for r in paper_runs if r.chance_level is not None), None)
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
        metric = next((r.headline_metric for r in paper_runs if r.headline_metric), "?")
        ax.set_title(paper)
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        if labelled:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(papers) :]:
        ax.axis("off")
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def write_report(runs_dir: str | Path, out_md: str | Path | None = None) -> tuple[Path, Path, str]:
    """Write ``report.md`` and ``report.png`` for every run under ``runs_dir``; return paths and the table."""
    runs_dir = Path(runs_dir)
    out_md = Path(out_md) if out_md else runs_dir / "report.md"
    out_png = out_md.with_suffix(".png")
    runs = collect_runs(runs_dir)
    if not runs:
        raise FileNotFoundError(
            f"no runs under {runs_dir} (expected {runs_dir}/<paper>/<exp>/<version>/metrics.csv)"
        )
    table = markdown_table(runs)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(f"# Runs under `{runs_dir}`\n\n![learning curves]({out_png.name})\n\n{table}")
    plot_curves(runs, out_png)
    return out_md, out_png, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs", help="runs folder (default: runs)")
    parser.add_argument("--out", default=None, help="markdown output (default: <runs>/report.md)")
    args = parser.parse_args(argv)
    try:
        out_md, out_png, table = write_report(args.runs, args.out)
    except FileNotFoundError as err:
        raise SystemExit(f"report: {err}") from None
    print(table)
    print(f"wrote {out_md} and {out_png}")


if __name__ == "__main__":
    main()
