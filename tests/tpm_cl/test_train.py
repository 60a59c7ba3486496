"""tpm_cl end to end: a fast_dev_run fit, a two-process gloo DDP fit, and a short toy run beating chance."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tpm_cl" / "configs"


def _fit(tmp_path: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("ANTMM_RUN_VERSION", None)
    cmd = [sys.executable, "-m", "tpm_cl.train", "fit"]
    cmd += ["--config", str(CONFIGS / "paper.yaml"), "--config", str(CONFIGS / "tiny.yaml")]
    cmd += ["--runs_dir", str(tmp_path / "runs"), "--data.root", str(tmp_path / "toy")]
    cmd += ["--trainer.enable_progress_bar", "false", *extra]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


SMALL = [
    "--data.toy_num", "40", "--data.toy_options", '{"family_size": 4, "num_frames": 4, "size": 32}',
    "--data.num_frames", "4", "--data.image_size", "32", "--data.batch_size", "4",
    "--data.eval_batch_size", "8", "--data.max_words", "16", "--model.config.context_length", "16",
]  # fmt: skip


def _run_dir(tmp_path: Path) -> Path:
    (run,) = (tmp_path / "runs" / "tpm_cl").glob("*/*")
    return run


def test_one_step_fit_writes_run_record_with_headline_and_chance(tmp_path: Path) -> None:
    result = _fit(tmp_path, *SMALL, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((_run_dir(tmp_path) / "run_info.json").read_text())
    assert info["headline_metric"] == "val/t2v_R@1" and info["chance_level"] == pytest.approx(100 / 4)


@pytest.mark.slow  # two spawned ranks: ~40 s on the shared 2-core CPU
def test_two_process_gloo_ddp_fit(tmp_path: Path) -> None:
    result = _fit(
        tmp_path, *SMALL, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_steps", "2",
        "--trainer.log_every_n_steps", "1",
        "--trainer.limit_val_batches", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr
    info = json.loads((_run_dir(tmp_path) / "run_info.json").read_text())
    assert (info["world_size"], info["status"], info["global_step"]) == (2, "finished", 2)
    rows = list(csv.DictReader(open(_run_dir(tmp_path) / "metrics.csv")))
    batches = {float(r["train/global_batch"]) for r in rows if r.get("train/global_batch")}
    assert batches == {8.0}  # S is built on the gathered global batch: 2 ranks x 4


@pytest.mark.slow
def test_short_toy_run_beats_chance(tmp_path: Path) -> None:
    result = _fit(
        tmp_path, "--data.toy_num", "200", "--trainer.max_epochs", "2", "--data.eval_batch_size", "20",
        "--data.toy_options", '{"family_size": 4, "num_frames": 8, "size": 64}',
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [r for r in csv.DictReader(open(_run_dir(tmp_path) / "metrics.csv")) if r.get("val/t2v_R@1")]
    best = max(float(r["val/t2v_R@1"]) for r in rows)
    assert best >= 2 * 100 / 20, best  # 20 test videos: chance is 5 %
