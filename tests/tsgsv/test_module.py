"""LitModule: schedule, checkpoint key mapping, a training step and the evaluation path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tsgsv.test_model import random_inputs, tiny_config
from tsgsv.model import TSGSVModel
from tsgsv.module import OFFICIAL_PREFIXES, TSGSVLitModule, flat_cosine, load_pretrained


def test_flat_cosine_schedule_shape() -> None:
    total, warm = 100, 10
    assert flat_cosine(0, total, warm, 0.4) == pytest.approx(0.1)
    assert flat_cosine(5, total, warm, 0.4) == pytest.approx(0.55)
    assert flat_cosine(10, total, warm, 0.4) == 1.0 and flat_cosine(39, total, warm, 0.4) == 1.0
    assert flat_cosine(70, total, warm, 0.4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 30 / 60)))
    assert flat_cosine(100, total, warm, 0.4) == pytest.approx(0.0)


def _official_layout(model: TSGSVModel) -> dict[str, torch.Tensor]:
    """Our state dict renamed to the released (mmcv) layout, wrapped like an mmcv checkpoint."""
    inverse = {dst: src for src, dst in OFFICIAL_PREFIXES.items()}
    out = {}
    for key, value in model.state_dict().items():
        for dst, src in inverse.items():
            if key.startswith(dst):
                key = src + key[len(dst) :]
                break
        out[key] = value.clone()
    return out


def test_official_checkpoint_loads_with_no_missing_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    src = TSGSVModel(cfg).eval()
    state = _official_layout(src)
    assert any(k.startswith("interactor.") for k in state) and not any(
        k.startswith("compressor.") for k in state
    )
    torch.save({"meta": {"epoch": 3}, "state_dict": state}, tmp_path / "epoch_3.pth")
    dst = TSGSVModel(cfg).eval()
    load_pretrained(dst, tmp_path / "epoch_3.pth")
    x = random_inputs(cfg)
    assert torch.allclose(dst(**x)["logits"], src(**x)["logits"])


def test_mismatched_or_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tiny_config()
    state = TSGSVModel(cfg).state_dict()
    state.pop("head.video.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="missing.*head.video.weight"):
        load_pretrained(TSGSVModel(cfg), tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(TSGSVModel(cfg), tmp_path / "nowhere.pth")


def _batch(cfg, b: int = 3) -> dict[str, torch.Tensor]:
    x = random_inputs(cfg, b)
    x["labels"] = torch.rand(b, cfg.short_mem, 3)
    return x


@pytest.mark.parametrize("future_usage", ["TemporalPincer", "none"])
def test_training_step_backpropagates(future_usage: str) -> None:
    cfg = tiny_config(future_usage=future_usage)
    module = TSGSVLitModule(cfg, kd_weight=0.4)
    module.configure_model()
    module.log = lambda *a, **k: None
    loss = module.training_step(_batch(cfg), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert module.model.head.video.weight.grad is not None
    if future_usage == "TemporalPincer":
        assert module.model.pincer.self_attn.in_proj_weight.grad is not None


def test_eval_path_collects_per_query_scores_and_metrics() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    module = TSGSVLitModule(cfg)
    module.configure_model()
    module.model.eval()
    t = 40
    batch = {
        "video": torch.randn(2, t, cfg.video_dim),
        "video_mask": torch.tensor([[True] * t, [True] * 30 + [False] * 10]),
        "sent": torch.randn(2, 5, cfg.sent_dim),
        "sent_len": torch.tensor([5, 3]),
        "duration": torch.tensor([39.0, 29.0]),
        "gt": torch.tensor([[3.0, 9.0], [10.0, 20.0]]),
        "num_steps": torch.tensor([t, 30]),
        "index": torch.tensor([0, 1]),
    }
    module.on_validation_epoch_start()
    module.validation_step(batch, 0)
    items = module._gather()
    assert [x["scores"].shape for x in items] == [(40, 3), (30, 3)]
    m = module.compute_metrics(items)
    assert 0 <= m["R@1_IoU0.5"] <= 1 and 0 < m["R@1_IoU0.5_random"] < 1
    assert np.isfinite(m["mcAP"]) and m["mcAP"] == m["mcAP_ext"]


def test_ablation_summary_reads_final_validation_rows(tmp_path: Path) -> None:
    import json

    from tsgsv.scripts.summarise_ablation import summarise

    for seed, r1 in ((0, 0.2), (1, 0.4)):
        run = tmp_path / "armA" / f"s{seed}-20260101-000000"
        run.mkdir(parents=True)
        (run / "run_info.json").write_text(json.dumps({"status": "finished"}))
        cols = ["epoch"] + [f"val/{m}" for m in ("R@1_IoU0.5", "R@1_IoU0.7", "mcAP", "mcAP_strict", "end_err",
                                                  "R@1_IoU0.5_random")]  # fmt: skip
        rows = [",".join(cols), "0," + ",".join(["0.0"] * 6), "1," + ",".join([str(r1)] + ["0.1"] * 5)]
        (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    table = summarise(tmp_path, ("armA",))
    assert "| armA | 0,1 | 0.300 ± 0.141 |" in table
