"""The recipes parse, carry the spec's sizes, and the overlays change what their names say."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tsgsv.train import main

CONFIGS = Path(__file__).resolve().parents[2] / "tsgsv" / "configs"


def _config(*overlays: str) -> dict:
    out: dict = {}
    for f in ["paper.yaml", *overlays]:
        _merge(out, yaml.safe_load((CONFIGS / f).read_text()))
    return out


def _merge(a: dict, b: dict) -> None:
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            _merge(a[k], v)
        else:
            a[k] = v


def test_paper_yaml_has_activitynet_sizes() -> None:
    c = _config()
    m, d = c["model"], c["data"]
    assert (m["config"]["hidden"], m["config"]["video_dim"], m["config"]["sent_dim"]) == (1024, 500, 768)
    assert (d["short_mem"], d["long_mem"], d["future_mem"]) == (8, 64, 64)
    assert m["config"]["compressor_tokens"] == [16, 16] and m["kd_weight"] == 0.4
    assert (m["lr"], c["trainer"]["max_epochs"], d["min_video_len"]) == (1e-5, 10, 70)


@pytest.mark.parametrize(
    "overlay, checks",
    [
        ("exp/tacos.yaml", {"kd_weight": 0.2, "dec_layers": 1, "video_dim": 4096}),
        ("exp/mad.yaml", {"kd_weight": 0.2, "hidden": 512, "video_proj": False}),
        ("exp/no_twinnet.yaml", {"kd_weight": 0.0, "future_usage": "none"}),
    ],
)
def test_overlays(overlay: str, checks: dict) -> None:
    m = _config(overlay)["model"]
    flat = {**m, **m["config"]}
    for k, v in checks.items():
        assert flat[k] == v, k


def test_every_config_is_accepted_by_the_cli(tmp_path: Path) -> None:
    import contextlib
    import io

    overlays = [None, "tiny.yaml", *(f"exp/{p.name}" for p in sorted((CONFIGS / "exp").glob("*.yaml")))]
    for overlay in overlays:
        files = ["paper.yaml"] + ([overlay] if overlay else [])
        if overlay and overlay.startswith("exp/") and overlay not in ("exp/tacos.yaml", "exp/mad.yaml"):
            files.insert(1, "tiny.yaml")
        args = [a for f in files for a in ("--config", str(CONFIGS / f))]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
            main(["fit", *args, "--print_config"])
        assert e.value.code == 0, overlay
        printed = yaml.safe_load(buf.getvalue())
        assert "long_mem" not in printed["model"]["config"] and printed["data"]["long_mem"] > 0  # stated once
