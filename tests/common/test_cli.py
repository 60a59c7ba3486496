"""``common.cli.ProjectCLI`` end to end on a miniature paper (``tests/common/cli_fixture.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import experiment_name

REPO = Path(__file__).resolve().parents[2]


def _configs(tmp_path: Path) -> list[str]:
    paper = tmp_path / "paper.yaml"
    paper.write_text(
        "seed_everything: 7\n"
        "trainer:\n  max_epochs: 3\n  accelerator: cpu\n  enable_progress_bar: false\n"
        "  log_every_n_steps: 1\n"
        "model:\n  dim: 4\ndata:\n  dim: 4\n"
    )
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("trainer:\n  max_epochs: 2\n")
    return ["--config", str(paper), "--config", str(tiny)]


def _fit(tmp_path: Path, *extra: str, wandb_mode: str = "disabled") -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": wandb_mode, "PYTHONPATH": str(REPO)}
    env.pop("ANTMM_RUN_VERSION", None)
    cmd = [sys.executable, "-m", "tests.common.cli_fixture", "fit", *_configs(tmp_path)]
    cmd += ["--runs_dir", str(tmp_path / "runs"), *extra]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _single_run_dir(tmp_path: Path, exp: str) -> Path:
    (run_dir,) = (tmp_path / "runs" / "blobs" / exp).iterdir()
    return run_dir


def test_experiment_name_is_the_overlays_after_paper_yaml() -> None:
    assert experiment_name(["a/configs/paper.yaml"]) == "paper"
    assert experiment_name(["a/configs/paper.yaml", "a/configs/tiny.yaml"]) == "tiny"
    assert experiment_name(["paper.yaml", "tiny.yaml", "exp/mlm_random.yaml"]) == "tiny+mlm_random"


def test_fit_writes_csv_log_config_and_run_record(tmp_path: Path) -> None:
    result = _fit(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = _single_run_dir(tmp_path, "tiny")
    assert run_dir.name.startswith("s7-")
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "train/loss", "val/acc"} <= set(header)
    assert "max_epochs: 2" in (run_dir / "config.yaml").read_text()
    info = json.loads((run_dir / "run_info.json").read_text())
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert info["git_commit"].split("+")[0] == commit
    assert (info["paper"], info["exp"], info["seed"], info["status"]) == ("blobs", "tiny", 7, "finished")
    assert (info["headline_metric"], info["chance_level"]) == ("val/acc", 0.5)
    assert info["global_step"] == 16  # 2 epochs of 256 samples in batches of 32
    assert not (tmp_path / "wandb").exists()


def test_exp_flag_names_the_run_and_wandb_logs_offline_into_the_run_folder(tmp_path: Path) -> None:
    result = _fit(tmp_path, "--exp", "named", wandb_mode="offline")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = _single_run_dir(tmp_path, "named")
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1


def test_ddp_fit_with_two_gloo_processes_exits_cleanly(tmp_path: Path) -> None:
    result = _fit(tmp_path, "--trainer.strategy", "ddp", "--trainer.devices", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr
    info = json.loads((_single_run_dir(tmp_path, "tiny") / "run_info.json").read_text())
    assert (info["world_size"], info["status"]) == (2, "finished")
    # Each rank sees half of the 256 samples per epoch: 4 steps of 32, 2 epochs.
    assert info["global_step"] == 8


@pytest.mark.parametrize("bad", ["--model.no_such_field", "--trainer.max_epochs"])
def test_bad_config_key_or_value_is_rejected(tmp_path: Path, bad: str) -> None:
    value = "1" if bad.endswith("field") else "many"
    result = _fit(tmp_path, bad, value)
    assert result.returncode == 2
