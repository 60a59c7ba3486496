"""M2-Encoder configs: paper.yaml, tiny.yaml and every overlay parse; sizes match the released models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from m2_encoder.model import M2EncoderConfig

CONFIGS = Path(__file__).resolve().parents[2] / "m2_encoder" / "configs"


def _merged(*names: str) -> dict:
    out: dict = {}

    def merge(a: dict, b: dict) -> None:
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v

    for name in names:
        merge(out, yaml.safe_load((CONFIGS / name).read_text()))
    return out


def test_paper_yaml_is_the_released_0_4b_model() -> None:
    arch = _merged("paper.yaml")["model"]["arch"]
    cfg = M2EncoderConfig(**arch)
    assert (cfg.embed_dim, cfg.num_heads, cfg.ffn_dim, cfg.num_layers, cfg.num_vl_layers) == (
        768,
        12,
        3072,
        9,
        3,
    )
    assert cfg.vocab_size == 115244 and cfg.num_patches == 196
    data = _merged("paper.yaml")["data"]
    assert (data["max_text_len"], data["eos_id"], data["cls_id"]) == (52, 50000, 50002)


def test_paper_yaml_marks_reconstructed_parts() -> None:
    assert (CONFIGS / "paper.yaml").read_text().count("# DEVIATION") >= 5


@pytest.mark.parametrize("overlay", sorted(p.name for p in (CONFIGS / "exp").glob("*.yaml")))
def test_overlays_parse_into_the_cli(overlay: str) -> None:
    from m2_encoder.train import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "paper.yaml"), "--config", str(CONFIGS / f"exp/{overlay}"),
              "--print_config"])  # fmt: skip
    assert exit_info.value.code == 0


def test_tiny_overlay_parses_into_the_cli(capsys) -> None:
    from m2_encoder.train import main

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(CONFIGS / "paper.yaml"),
                "--config",
                str(CONFIGS / "tiny.yaml"),
                "--print_config",
            ]
        )
    assert exit_info.value.code == 0
    assert "embed_dim: 64" in capsys.readouterr().out
