"""End to end: a fast_dev_run fit through the CLI, a two-process gloo DDP fit, and a short toy run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tsgsv" / "configs"

SMALL = [
    "--data.toy_num", "10", "--data.toy_options",
    '{"num_frames": 32, "size": 32, "val_fraction": 0.2}',
    "--data.long_mem", "8", "--data.future_mem", "8", "--data.batch_size", "8", "--data.eval_batch_size", "4",
]  # fmt: skip


def _fit(tmp_path: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("ANTMM_RUN_VERSION", None)
    cmd = [sys.executable, "-m", "tsgsv.train", "fit"]
    cmd += ["--config", str(CONFIGS / "paper.yaml"), "--config", str(CONFIGS / "tiny.yaml")]
    cmd += ["--runs_dir", str(tmp_path / "runs"), "--data.root", str(tmp_path / "toy")]
    cmd += ["--trainer.enable_progress_bar", "false", *extra]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def _run_dir(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "runs" / "tsgsv").glob("*/*")
    return run


def test_short_fit_through_cli_writes_metrics_and_chance(tmp_path: Path) -> None:
    result = _fit(
        tmp_path, *SMALL, "--trainer.limit_train_batches", "2", "--trainer.max_epochs", "1",
        "--trainer.log_every_n_steps", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((_run_dir(tmp_path) / "run_info.json").read_text())
    assert info["headline_metric"] == "val/R@1_IoU0.5" and 0 < info["chance_level"] < 1
    rows = list(csv.DictReader(open(_run_dir(tmp_path) / "metrics.csv")))
    keys = {k for r in rows for k, v in r.items() if v}
    assert {
        "val/R@1_IoU0.5",
        "val/R@1_IoU0.7",
        "val/mcAP",
        "val/mcAP_strict",
        "val/R@1_IoU0.5_random",
    } <= keys
    assert {"train/loss", "train/loss_kd", "train/loss_twin"} <= keys


@pytest.mark.slow  # two spawned ranks on the shared 2-core CPU
def test_two_process_gloo_ddp_fit(tmp_path: Path) -> None:
    result = _fit(
        tmp_path, *SMALL, "--trainer.strategy", "ddp", "--trainer.devices", "2",
        "--trainer.limit_train_batches", "2", "--trainer.max_epochs", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr
    info = json.loads((_run_dir(tmp_path) / "run_info.json").read_text())
    assert (info["world_size"], info["status"], info["global_step"]) == (2, "finished", 2)


@pytest.mark.slow  # ~90 s of CPU: data chain + 2 epochs (~260 steps) on 240 toy videos
def test_short_toy_run_beats_twice_the_random_proposal_baseline(tmp_path: Path) -> None:
    result = _fit(
        tmp_path, "--data.toy_num", "240", "--trainer.max_epochs", "2", "--model.lr", "3e-3",
        "--model.warmup_epochs", "0", "--trainer.num_sanity_val_steps", "0",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r for r in csv.DictReader(open(_run_dir(tmp_path) / "metrics.csv")) if r.get("val/R@1_IoU0.5")]
    r1, rand = float(rows[-1]["val/R@1_IoU0.5"]), float(rows[-1]["val/R@1_IoU0.5_random"])
    assert 0 < rand < 0.2
    assert r1 >= 2 * rand, (r1, rand)
