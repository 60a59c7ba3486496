"""M2-Encoder model: multiway routing, sub-LN init, encoders, unused VL B-experts, checkpoint loading."""

from __future__ import annotations

import math

import pytest
import torch

from m2_encoder.model import (
    M2Encoder,
    M2EncoderConfig,
    Multiway,
    _resize_patch_positions,
    load_released_checkpoint,
)


def tiny_cfg(**kw) -> M2EncoderConfig:
    base = dict(
        embed_dim=32, num_heads=4, ffn_dim=64, num_layers=2, num_vl_layers=1, out_dim=16,
        vocab_size=50, image_size=32, patch_size=8, max_text_positions=16, decoder_layers=1,
    )  # fmt: skip
    base.update(kw)
    return M2EncoderConfig(**base)


def test_multiway_split_routes_tokens_to_experts() -> None:
    torch.manual_seed(0)
    mw = Multiway(torch.nn.Linear, 4, 4)
    x = torch.randn(2, 5, 4)
    assert torch.allclose(mw(x, -1), mw.A(x))
    assert torch.allclose(mw(x, 0), mw.B(x))
    mixed = mw(x, 2)
    assert torch.allclose(mixed[:, :2], mw.A(x[:, :2])) and torch.allclose(mixed[:, 2:], mw.B(x[:, 2:]))


def test_subln_init_scales_fc_out_and_v_projections_by_sqrt_log_2n() -> None:
    cfg = tiny_cfg(num_layers=3)
    torch.manual_seed(0)
    model = M2Encoder(cfg)
    scale = model.backbone.encoder.init_scale
    assert scale == pytest.approx(math.sqrt(math.log(6)))
    # nn.Linear's default init bounds |w| by 1/sqrt(fan_in); scaled weights exceed it, unscaled ones don't.
    layer = model.backbone.encoder.layers[0]
    bound = 1 / math.sqrt(cfg.embed_dim)
    assert layer.self_attn.v_proj.A.weight.abs().max() > bound
    assert layer.self_attn.q_proj.A.weight.abs().max() <= bound
    assert layer.ffn.B.fc1.weight.abs().max() <= bound * scale + 1e-6


def test_encoders_give_unit_features_and_padding_does_not_change_text() -> None:
    torch.manual_seed(0)
    model = M2Encoder(tiny_cfg()).eval()
    images = torch.randn(3, 3, 32, 32)
    ids = torch.randint(0, 50, (3, 8))
    masks = torch.ones(3, 8, dtype=torch.long)
    masks[0, 5:] = 0
    img, txt = model(images, ids, masks)
    assert img.shape == txt.shape == (3, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    # Changing the ids at padded positions leaves the text embedding unchanged.
    ids2 = ids.clone()
    ids2[0, 5:] = 7
    assert torch.allclose(model(images, ids2, masks)[1], txt, atol=1e-5)


def test_inference_ignores_the_vl_stack_b_experts() -> None:
    torch.manual_seed(0)
    model = M2Encoder(tiny_cfg()).eval()
    images, ids, masks = torch.randn(2, 3, 32, 32), torch.randint(0, 50, (2, 6)), torch.ones(2, 6).long()
    before = model(images, ids, masks)
    with torch.no_grad():
        for name, p in model.backbone_vl.named_parameters():
            if ".B." in name:
                p.add_(torch.randn_like(p))
    after = model(images, ids, masks)
    assert torch.allclose(before[0], after[0]) and torch.allclose(before[1], after[1])


def test_mixed_sequence_routes_image_to_a_and_text_to_b() -> None:
    torch.manual_seed(0)
    model = M2Encoder(tiny_cfg()).eval()
    images, ids = torch.randn(2, 3, 32, 32), torch.randint(0, 50, (2, 6))
    joint = model.backbone(text_ids=ids, images=images)
    assert joint.shape == (2, 17 + 6, 32)


def test_position_table_resize_keeps_leading_rows_and_area_interpolates() -> None:
    table = torch.arange(3 + 16, dtype=torch.float32)[:, None].repeat(1, 2)  # 4x4 grid
    out = _resize_patch_positions(table, num_visual_tokens=4 + 1)  # to a 2x2 grid
    assert out.shape == (3 + 4, 2)
    assert torch.equal(out[:3], table[:3])
    grid = table[3:, 0].reshape(4, 4)
    expected = torch.tensor(
        [grid[:2, :2].mean(), grid[:2, 2:].mean(), grid[2:, :2].mean(), grid[2:, 2:].mean()]
    )
    assert torch.allclose(out[3:, 0], expected)


@pytest.mark.parametrize("layout", ["state_dict", "module", "raw"])
def test_released_checkpoint_layout_loads_with_no_missing_inference_keys(tmp_path, layout: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(decoder_layers=0)
    released = M2Encoder(cfg)
    state = dict(released.state_dict())
    state["visual_tokenizer.quantize.embedding.weight"] = torch.randn(8, 4)  # dropped on load
    # A released position table for a larger grid (8x8 patches + 3 rows) is area-interpolated to 4x4.
    state["backbone.encoder.embed_positions.A.weight"] = torch.randn(3 + 64, 32)
    if layout == "state_dict":
        ckpt = {"state_dict": state, "epoch": 3}
    elif layout == "module":
        ckpt = {"module": {f"_forward_module.{k}": v for k, v in state.items()}}
    else:
        ckpt = state
    path = tmp_path / "m2.ckpt"
    torch.save(ckpt, path)
    fresh = M2Encoder(tiny_cfg())  # with decoders: those are the only missing keys
    missing, unexpected = load_released_checkpoint(fresh, str(path))
    assert unexpected == []
    assert set(missing) & set(fresh.inference_parameter_names()) == set()
    assert all(k.startswith(("cmlm_decoder.", "cmim_decoder.")) for k in missing)
    assert torch.equal(fresh.itc_vl_image_proj.fc.weight, released.itc_vl_image_proj.fc.weight)
    assert fresh.backbone.encoder.embed_positions.A.weight.shape == (3 + 16, 32)


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="M2-Encoder checkpoint not found"):
        load_released_checkpoint(M2Encoder(tiny_cfg()), str(tmp_path / "nope.ckpt"))
