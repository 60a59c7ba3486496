"""SNP-S3 configs: every overlay parses, paper.yaml holds the paper's sizes, deviations are in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from snp_s3.model import SNPS3Config

CONFIGS = Path(__file__).resolve().parents[2] / "snp_s3" / "configs"
README = CONFIGS.parent / "README.md"


def _print_config(capsys, *configs: str) -> dict:
    from snp_s3.train import main

    args = ["fit"] + [a for c in configs for a in ("--config", str(CONFIGS / c))] + ["--print_config"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize(
    "configs",
    [
        ["paper.yaml"],
        ["paper.yaml", "tiny.yaml"],
        ["paper.yaml", "stages/retrieval_msrvtt.yaml"],
        ["paper.yaml", "stages/retrieval_msrvtt.yaml", "stages/retrieval_msvd.yaml"],
        ["paper.yaml", "stages/retrieval_msrvtt.yaml", "stages/retrieval_didemo.yaml"],
        ["paper.yaml", "stages/qa_msrvtt.yaml", "stages/qa_msvd.yaml"],
        ["paper.yaml", "stages/retrieval_msrvtt.yaml", "tiny.yaml", "stages/tiny_retrieval.yaml"],
        ["paper.yaml", "stages/qa_msrvtt.yaml", "tiny.yaml", "stages/tiny_qa.yaml"],
        ["paper.yaml", "tiny.yaml", "exp/hard_split.yaml", "exp/mlm_random.yaml"],
        ["paper.yaml", "tiny.yaml", "exp/hard_split.yaml", "exp/mssm_lvwm.yaml"],
        ["paper.yaml", "tiny.yaml", "exp/p3e.yaml"],
    ],
)
def test_overlays_parse_and_set_the_stage(capsys, configs: list[str]) -> None:
    cfg = _print_config(capsys, *configs)
    stage = (
        "qa"
        if any("qa" in c for c in configs)
        else "retrieval"
        if any("retr" in c for c in configs)
        else "pretrain"
    )
    assert cfg["data"]["task"] == stage and "task" not in cfg["model"]  # model.task is linked from data.task


def test_paper_yaml_has_the_papers_sizes(capsys) -> None:
    cfg = _print_config(capsys, "paper.yaml")
    c = cfg["model"]["config"]
    assert (c["hidden_size"], c["num_layers"], c["num_heads"], c["intermediate_size"], c["vocab_size"]) == (
        768, 12, 12, 3072, 30522,
    )  # fmt: skip
    assert c["pvt_dims"] == [64, 128, 320, 512] and c["backbone"] == "pvt_v2"
    assert cfg["model"]["queue_size"] == 16384 and cfg["model"]["moco_temperature"] == 0.05
    assert cfg["data"]["words_top_k"] == 3000 and cfg["data"]["max_text_len"] == 30
    assert cfg["model"]["pretrained_bert"] == "bert-base-uncased"
    SNPS3Config(**c)  # valid (test_model builds the full-size network in the slow tier)


def test_tiny_overlay_keeps_the_classes_and_switches_weights_off(capsys) -> None:
    cfg = _print_config(capsys, "paper.yaml", "tiny.yaml")
    assert cfg["model"]["pretrained_bert"] is None and cfg["model"]["pretrained_visual"] is None
    assert cfg["data"]["toy"] is True and cfg["trainer"]["accelerator"] == "cpu"


def test_ablation_overlay_is_row_b1() -> None:
    ov = yaml.safe_load((CONFIGS / "exp" / "mlm_random.yaml").read_text())
    assert ov["data"]["mask_strategy"] == "random" and ov["model"]["loss_weights"]["lvwm"] == 0.0
    assert ov["model"]["attentive_prob"] == 0.0


def test_every_deviation_in_the_configs_is_listed_in_the_readme() -> None:
    readme = README.read_text().lower()
    assert "## deviations from the paper" in readme
    for path in sorted(CONFIGS.rglob("*.yaml")):
        for line in path.read_text().splitlines():
            m = re.search(r"# DEVIATION: (.*)", line)
            if m:
                key = line.split(":")[0].strip()
                assert key.lower() in readme, f"{path.name}: deviation of {key!r} not in the README"
