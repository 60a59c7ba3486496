"""``common.report`` on a fabricated runs tree: the table's rows, the summary over seeds and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.report import collect_runs, main, write_report


def _fake_run(root: Path, paper: str, exp: str, seed: int, values: list[float], info: bool = True) -> Path:
    run_dir = root / paper / exp / f"s{seed}-20260101-000000"
    run_dir.mkdir(parents=True)
    lines = ["epoch,step,train/loss,val/acc"]
    for i, v in enumerate(values):
        lines.append(f"{i},{10 * i + 9},{1.0 / (i + 1)},")
        lines.append(f"{i},{10 * i + 9},,{v}")
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    if info:
        record = {
            "paper": paper,
            "exp": exp,
            "seed": seed,
            "global_step": 10 * len(values),
            "wall_time_s": 12.5,
            "status": "finished",
            "headline_metric": "val/acc",
            "chance_level": 0.25,
        }
        (run_dir / "run_info.json").write_text(json.dumps(record))
    return run_dir


def test_report_table_lists_every_run_with_final_best_and_seed_summary(tmp_path: Path) -> None:
    _fake_run(tmp_path, "paper_a", "tiny", 0, [0.3, 0.6, 0.5])
    _fake_run(tmp_path, "paper_a", "tiny", 1, [0.4, 0.7])
    _fake_run(tmp_path, "paper_a", "tiny+ablation", 0, [0.2, 0.3])
    _fake_run(tmp_path, "paper_b", "paper", 3, [0.9], info=False)

    out_md, out_png, table = write_report(tmp_path)

    rows = [line for line in table.splitlines() if line.startswith("| paper_")]
    assert "| paper_a | tiny | 0 | 30 | 12.5 | val/acc | 0.5 | 0.6 | 0.25 | finished |" in rows
    assert "| paper_a | tiny | 1 | 20 | 12.5 | val/acc | 0.7 | 0.7 | 0.25 | finished |" in rows
    # Without run_info.json: seed from the folder name, headline from the first val/ column, steps from
    # the log.
    assert "| paper_b | paper | 3 | 9 | - | val/acc | 0.9 | 0.9 | - | unknown |" in rows
    # Mean and standard deviation of the final values 0.5 and 0.7 over the two seeds.
    assert "| paper_a | tiny | val/acc | 2 | 0.6 | 0.1414 |" in rows
    assert out_md.read_text().count("| paper_") == len(rows)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out_png.stat().st_size > 5000


def test_report_best_is_minimum_for_a_loss_headline(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, "p", "e", 0, [0.3, 0.1, 0.2])
    info = json.loads((run_dir / "run_info.json").read_text())
    (run_dir / "run_info.json").write_text(json.dumps({**info, "headline_metric": "val/acc_loss"}))
    (run_dir / "metrics.csv").write_text("epoch,step,val/acc_loss\n0,1,0.3\n1,2,0.1\n2,3,0.2\n")
    (run,) = collect_runs(tmp_path)
    assert (run.final, run.best) == (0.2, 0.1)


def test_report_without_runs_exits_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no runs under"):
        main(["--runs", str(tmp_path)])
