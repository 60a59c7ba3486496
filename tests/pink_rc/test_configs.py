"""pink_rc configs: the paper recipe and every overlay parse with the CLI; sizes follow the spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pink_rc.train import vision_geometry

CONFIGS = Path(__file__).resolve().parents[2] / "pink_rc" / "configs"


def _merged(*names: str) -> dict:
    out: dict = {}

    def merge(a: dict, b: dict) -> dict:
        for k, v in b.items():
            a[k] = (
                merge(dict(a.get(k) or {}), v)
                if isinstance(v, dict) and k not in ("llm_config", "vision_config", "toy_options")
                else v
            )
        return a

    for n in names:
        merge(out, yaml.safe_load((CONFIGS / n).read_text()) or {})
    return out


def test_paper_recipe_holds_the_spec_numbers() -> None:
    cfg = _merged("paper.yaml")
    m = cfg["model"]
    assert m["config"]["llm"] == "meta-llama/Llama-2-7b-chat-hf"
    assert m["config"]["vision"] == "openai/clip-vit-large-patch14"
    assert (m["config"]["select_layer"], m["config"]["adapter_rank"], m["config"]["adapter_dropout"]) == (
        -2,
        8,
        0.1,
    )
    assert (m["lr"], m["warmup_ratio"], m["weight_decay"], m["stage"]) == (5e-4, 0.05, 0.02, 2)
    assert vision_geometry(m["config"], "num_patches") == 256
    s1 = _merged("paper.yaml", "exp/stage1.yaml")["model"]
    assert (s1["stage"], s1["lr"], s1["warmup_ratio"], s1["weight_decay"]) == (1, 2e-3, 0.03, 0.0)


def test_every_number_in_paper_yaml_has_a_comment_or_is_a_plain_switch() -> None:
    for line in (CONFIGS / "paper.yaml").read_text().splitlines():
        body = line.split("#")[0]
        if any(ch.isdigit() for ch in body.split(":")[-1]) and "seed" not in body:
            assert "#" in line, line


def test_tiny_overlay_shrinks_per_spec() -> None:
    cfg = _merged("paper.yaml", "tiny.yaml")["model"]["config"]
    assert cfg["llm"] is None and cfg["vision"] is None
    llm, vis = cfg["llm_config"], cfg["vision_config"]
    assert (llm["hidden_size"], llm["num_hidden_layers"], llm["num_attention_heads"]) == (64, 2, 4)
    assert (vis["num_hidden_layers"], vis["hidden_size"], vis["patch_size"], vis["image_size"]) == (
        3,
        32,
        8,
        64,
    )
    assert vision_geometry(cfg, "num_patches") == 64 and cfg["adapter_rank"] == 4


def test_frozen_vit_overlay_only_drops_the_vision_adapters() -> None:
    assert yaml.safe_load((CONFIGS / "exp" / "frozen_vit.yaml").read_text()) == {
        "model": {"config": {"adapters_vision": False}}
    }


@pytest.mark.parametrize("overlays", [[], ["tiny.yaml"], ["tiny.yaml", "exp/frozen_vit.yaml"],
                                      ["tiny.yaml", "exp/toy_stage0.yaml"], ["exp/stage1.yaml"],
                                      ["tiny.yaml", "exp/grounding_aids.yaml"]])  # fmt: skip
def test_configs_parse_with_the_cli(overlays: list[str], capsys: pytest.CaptureFixture) -> None:
    from pink_rc.train import main

    args = ["fit", "--config", str(CONFIGS / "paper.yaml")]
    for o in overlays:
        args += ["--config", str(CONFIGS / o)]
    with pytest.raises(SystemExit) as e:
        main([*args, "--print_config"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["config"]["select_layer"] == -2
    assert printed["model"]["config"]["adapters_vision"] == ("exp/frozen_vit.yaml" not in overlays)
    assert "num_patches" not in printed["data"]  # linked from the vision config, stated once
    toy = "tiny.yaml" in overlays  # the sin-cos position init is a toy setting: off for the real tower
    assert printed["model"]["config"]["toy_pos_sincos"] == (1.0 if toy else 0.0)
    if overlays in ([], ["tiny.yaml"]):
        assert printed["model"]["lr"] == 5e-4  # the paper's stage-2 lr, the toy run's too
