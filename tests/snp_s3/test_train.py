"""SNP-S3 end to end: a one-step fit, the three chained toy stages and eval, a two-process gloo DDP fit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "snp_s3" / "configs"


def _small(tmp_path: Path) -> list[str]:
    root = tmp_path / "toy"
    return [
        "--data.toy_root", str(root), "--data.pretrain_file", str(root / "webvid/train.jsonl"),
        "--data.retrieval_root", str(root / "msrvtt"), "--data.mc_file", str(root / "mc/mc_test.jsonl"),
        "--data.qa_root", str(root / "qa"), "--data.tokenizer", str(root / "tokenizer.json"),
        "--data.significant_words", str(root / "significant/count_reprocess.json"),
        "--data.lemma_lists", str(root / "significant/vocab_simi_list.json"),
        "--data.toy_num", '{"webvid": 24, "msrvtt": 20, "mc": 6, "qa": 12}',
        "--data.toy_options", '{"num_frames": 4, "size": 32}', "--data.image_size", "32",
        "--data.n_clips", "2", "--data.batch_size", "4", "--data.eval_batch_size", "4",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip


def _run(
    tmp_path: Path, module: str, args: list[str], timeout: int = 300, runs: bool = True
) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("ANTMM_RUN_VERSION", None)
    cmd = [sys.executable, "-m", module, *args] + (["--runs_dir", str(tmp_path / "runs")] if runs else [])
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def _fit(tmp_path: Path, *extra: str, configs=("paper.yaml", "tiny.yaml"), timeout: int = 300):
    cfg = [a for c in configs for a in ("--config", str(CONFIGS / c))]
    return _run(tmp_path, "snp_s3.train", ["fit", *cfg, *_small(tmp_path), *extra], timeout)


def test_one_step_fit_writes_run_record_with_headline_and_chance(tmp_path: Path) -> None:
    r = _fit(
        tmp_path,
        "--trainer.max_steps",
        "1",
        "--trainer.val_check_interval",
        "1",
        "--trainer.log_every_n_steps",
        "1",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "snp_s3").glob("*/*")
    info = json.loads((run / "run_info.json").read_text())
    assert info["headline_metric"] == "val/t2v_R@1" and info["chance_level"] == pytest.approx(100 / 2)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert any(row.get("val/mc_acc") for row in rows) and any(row.get("train/loss_lvwm") for row in rows)


@pytest.mark.slow  # three fits and a test run in subprocesses
def test_toy_script_chains_the_three_stages(tmp_path: Path) -> None:
    r = _run(tmp_path, "snp_s3.scripts.toy", [*_small(tmp_path), "--trainer.max_steps", "1",
             "--trainer.val_check_interval", "1"])  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    runs = {p.parents[1].name for p in (tmp_path / "runs" / "snp_s3").glob("*/*/run_info.json")}
    assert runs == {"tiny-pretrain", "tiny-retrieval", "tiny-qa"}
    (qa,) = (tmp_path / "runs" / "snp_s3" / "tiny-qa").glob("*/run_info.json")
    assert json.loads(qa.read_text())["headline_metric"] == "val/qa_acc"
    ckpt = next((tmp_path / "runs" / "snp_s3" / "tiny-retrieval").glob("*/checkpoints/retrieval-final.ckpt"))
    t = _run(tmp_path, "snp_s3.train", ["test", "--config", str(ckpt.parents[1] / "config.yaml"),
             "--ckpt_path", str(ckpt), "--exp", "eval"])  # fmt: skip
    assert t.returncode == 0, t.stderr[-3000:]
    assert "test/t2v_R@1" in t.stdout
    video = next((tmp_path / "toy" / "msrvtt" / "videos").glob("*.mp4"))
    pred = ["--ckpt", str(ckpt), "--video", str(video), "--text", "a red circle",
            "--text", "a blue star moves", "--png", str(tmp_path / "pred.png")]  # fmt: skip
    p = _run(tmp_path, "snp_s3.predict", pred, runs=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "rank  l2_score" in p.stdout and (tmp_path / "pred.png").stat().st_size > 1000


@pytest.mark.slow  # two spawned gloo ranks
def test_two_process_gloo_ddp_fit(tmp_path: Path) -> None:
    r = _fit(tmp_path, "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.devices", "2",
             "--trainer.max_steps", "2",
             "--trainer.val_check_interval", "2", "--trainer.log_every_n_steps", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "terminate called" not in r.stderr
    (run,) = (tmp_path / "runs" / "snp_s3").glob("*/*")
    info = json.loads((run / "run_info.json").read_text())
    assert (info["world_size"], info["status"], info["global_step"]) == (2, "finished", 2)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert any(row.get("val/t2v_R@1") for row in rows)


@pytest.mark.slow  # ~1 min: retrieval fine-tuning from scratch on a small toy MSR-VTT, MC scored beside it
def test_short_toy_retrieval_run_beats_chance(tmp_path: Path) -> None:
    root = tmp_path / "toy"
    args = [*_small(tmp_path), "--data.toy_num", '{"webvid": 24, "msrvtt": 200, "mc": 50, "qa": 12}',
            "--data.toy_options", '{"num_frames": 8}', "--data.image_size", "64", "--data.n_clips", "4",
            "--data.batch_size", "16", "--data.eval_batch_size", "25", "--trainer.max_steps", "120",
            "--trainer.val_check_interval", "60", "--stages", "retrieval"]  # fmt: skip
    r = _run(tmp_path, "snp_s3.scripts.toy", args, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (metrics,) = (tmp_path / "runs" / "snp_s3" / "tiny-retrieval").glob("*/metrics.csv")
    rows = [row for row in csv.DictReader(open(metrics)) if row.get("val/t2v_R@1")]
    best_r1 = max(float(row["val/t2v_R@1"]) for row in rows)
    best_mc = max(float(row["val/mc_acc"]) for row in rows)
    assert root.is_dir()
    assert best_mc >= 1.5 * 20, best_mc  # 5 options: chance 20 %
    assert best_r1 >= 2 * 100 / 20, best_r1  # 20 test videos: chance 5 %
