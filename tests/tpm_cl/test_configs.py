"""tpm_cl configs: paper.yaml holds the spec's numbers, overlays change only what they name, all parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tpm_cl.train import main

CONFIGS = Path(__file__).resolve().parents[2] / "tpm_cl" / "configs"


def _load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def test_paper_yaml_has_the_spec_values() -> None:
    cfg = _load("paper.yaml")
    m, d = cfg["model"], cfg["data"]
    assert (m["config"]["embed_dim"], m["config"]["patch_size"], m["config"]["vision_width"]) == (
        512,
        32,
        768,
    )
    assert (m["config"]["interaction"], m["config"]["partial_type"], m["config"]["temporal"]) == (
        "att_ti",
        4,
        "seqTransf",
    )
    assert (m["config"]["rho"], m["config"]["tpm_margin"], m["config"]["nfc_weight"]) == (0.6, 0.6, 0.5)
    assert (m["loss_type"], m["logit_scale"], m["hard_weight"], m["hard_margin"]) == (
        "negnce",
        100.0,
        0.5,
        0.0,
    )
    assert (m["pretrained"], m["pretrained_arch"]) == ("openai", "ViT-B-32")
    assert (d["num_frames"], d["max_words"], d["image_size"]) == (12, 32, 224)
    assert d["batch_size"] * cfg["trainer"]["devices"] == 128
    assert m["lr"] * m["clip_lr_coef"] == pytest.approx(1e-7)


def test_paper_yaml_marks_reconstructed_values_and_names_real_weights() -> None:
    text = (CONFIGS / "paper.yaml").read_text()
    assert text.count("# DEVIATION:") >= 8
    assert "pretrained: openai" in text and "pretrained: null" in (CONFIGS / "tiny.yaml").read_text()


@pytest.mark.parametrize("overlay", ["infonce", "no_tpm", "no_dmae", "vit_b16"])
def test_ablation_overlays_change_only_what_they_name(overlay: str) -> None:
    cfg = _load(f"exp/{overlay}.yaml")
    flat = {f"{k}.{kk}" for k, v in cfg.items() for kk in v}
    allowed = {
        "infonce": {"model.loss_type"},
        "no_tpm": {"model.config"},
        "no_dmae": {"model.config", "data.caption_drop"},
        "vit_b16": {"model.config", "model.pretrained_arch"},
    }[overlay]
    assert flat == allowed


OVERLAYS = [
    [], ["tiny.yaml"], ["tiny.yaml", "exp/infonce.yaml"], ["tiny.yaml", "exp/no_tpm.yaml"],
    ["exp/didemo.yaml"], ["exp/activitynet.yaml"], ["exp/msvd.yaml"],
]  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configs_parse_and_link_shared_values(overlay: list[str], capsys: pytest.CaptureFixture) -> None:
    args = ["fit", "--config", str(CONFIGS / "paper.yaml")]
    for name in overlay:
        args += ["--config", str(CONFIGS / name)]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    # linked values are stated once, in data, and not settable in model.config
    assert "num_frames" not in printed["model"]["config"] and "max_words" not in printed["model"]["config"]
    frames = {"tiny.yaml": 8, "exp/didemo.yaml": 64, "exp/activitynet.yaml": 64}
    assert printed["data"]["num_frames"] == (frames.get(overlay[0], 12) if overlay else 12)
    if "exp/infonce.yaml" in overlay:
        assert printed["model"]["loss_type"] == "infonce"
    if "exp/no_tpm.yaml" in overlay:
        assert printed["model"]["config"]["partial_type"] == -1
