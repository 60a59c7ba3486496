"""Model, losses and streaming: shapes, masking, known answers against slow loops, streaming equivalence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tsgsv.losses import focal_bce, soft_labels, span_loss, tsgsv_loss
from tsgsv.model import (
    MultimodalTokenLearner,
    TSGSVConfig,
    TSGSVModel,
    causal_mask,
    make_windows,
    offline_scores,
    pool_sentence,
    sentence_mask,
)
from tsgsv.streaming import StreamingGrounder


def tiny_config(**kw) -> TSGSVConfig:
    base = dict(
        video_dim=12, sent_dim=10, hidden=16, short_mem=4, long_mem=6, future_mem=5,
        compressor_tokens=[3, 2], dec_layers=2, heads=2, ffn=32, dropout=0.1,
    )  # fmt: skip
    base.update(kw)
    return TSGSVConfig(**base)


def random_inputs(cfg: TSGSVConfig, b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "long": torch.randn(b, cfg.long_mem, cfg.video_dim, generator=g),
        "long_mask": torch.ones(b, cfg.long_mem, dtype=torch.bool),
        "short": torch.randn(b, cfg.short_mem, cfg.video_dim, generator=g),
        "short_mask": torch.ones(b, cfg.short_mem, dtype=torch.bool),
        "sent": torch.randn(b, 7, cfg.sent_dim, generator=g),
        "sent_len": torch.tensor([7, 3, 5][:b]),
        "future": torch.randn(b, cfg.future_mem, cfg.video_dim, generator=g),
        "future_mask": torch.ones(b, cfg.future_mem, dtype=torch.bool),
    }


def test_forward_shapes_and_twin_branch_only_with_future() -> None:
    cfg = tiny_config()
    model = TSGSVModel(cfg)
    x = random_inputs(cfg)
    out = model(**x)
    assert out["logits"].shape == (3, cfg.short_mem, 3)
    assert out["twin_logits"].shape == (3, cfg.short_mem, 3)
    x.pop("future"), x.pop("future_mask")
    assert "twin_logits" not in model(**x)
    assert not hasattr(TSGSVModel(tiny_config(future_usage="none")), "pincer")


def test_logits_bounded_by_cosine_scale() -> None:
    cfg = tiny_config()
    out = TSGSVModel(cfg)(**random_inputs(cfg))
    assert out["logits"].abs().max() <= cfg.logit_scale + 1e-4


def test_main_stream_ignores_future_and_is_causal_within_short_memory() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = TSGSVModel(cfg).eval()
    x = random_inputs(cfg)
    ref = model(**x)["logits"]
    y = dict(x, future=torch.randn_like(x["future"]))
    assert torch.allclose(model(**y)["logits"], ref)
    z = dict(x, short=x["short"].clone())
    z["short"][:, -1] += 5.0
    out = model(**z)["logits"]
    assert torch.allclose(out[:, :-1], ref[:, :-1], atol=1e-5)
    assert not torch.allclose(out[:, -1], ref[:, -1], atol=1e-3)


def test_twin_branch_sees_future() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = TSGSVModel(cfg).eval()
    x = random_inputs(cfg)
    a = model(**x)["twin_logits"]
    b = model(**dict(x, future=x["future"] + 3.0))["twin_logits"]
    assert not torch.allclose(a, b, atol=1e-3)


def test_masked_long_memory_steps_do_not_matter() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = TSGSVModel(cfg).eval()
    x = random_inputs(cfg)
    x["long_mask"][:, :2] = False
    ref = model(**x)["logits"]
    y = dict(x, long=x["long"].clone())
    y["long"][:, :2] = 100.0
    assert torch.allclose(model(**y)["logits"], ref, atol=1e-5)


def test_fully_padded_memories_give_finite_outputs() -> None:
    cfg = tiny_config()
    model = TSGSVModel(cfg).eval()
    x = random_inputs(cfg)
    x["long_mask"][:] = False
    x["short_mask"][:, :3] = False
    x["future_mask"][:] = False
    out = model(**x)
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(out["twin_logits"]).all()


def test_token_learner_matches_slow_loop() -> None:
    torch.manual_seed(0)
    h, n, t = 8, 3, 5
    layer = MultimodalTokenLearner(h, n, 0.0, 0.0).eval()
    x, q = torch.randn(2, t, h), torch.randn(2, h)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=torch.bool)
    x = x * mask[..., None]
    got = layer(x, mask, q)
    for b in range(2):
        xs = x[b, mask[b]]  # valid steps only
        a = layer.visual(xs).softmax(0)  # (t', n)
        z_v = a.T @ xs
        e = layer.w_a(torch.tanh(layer.w_x(xs) + layer.w_q(q[b])))
        z_q = e.softmax(0).T @ xs
        g_v = layer.gate_v(xs.mean(0))
        g_q = layer.gate_q(q[b])
        want = F.layer_norm(g_v * z_v + g_q * z_q, (h,))
        assert torch.allclose(got[b], want, atol=1e-5)


def test_sentence_mask_and_pooling_modes() -> None:
    lengths = torch.tensor([2, 4])
    assert sentence_mask(lengths, 5).tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]]
    assert sentence_mask(lengths, 5, off_by_one=True).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    q = torch.arange(10, dtype=torch.float32).view(2, 5, 1)
    m = sentence_mask(lengths, 5)
    assert torch.allclose(pool_sentence(q, m, "padded_mean").flatten(), torch.tensor([1 / 5, 26 / 5]))
    assert torch.allclose(pool_sentence(q, m, "masked_mean").flatten(), torch.tensor([0.5, 6.5]))


def test_causal_mask_blocks_future_and_padding_but_never_self() -> None:
    valid = torch.tensor([[False, True, True]])
    m = causal_mask(valid, heads=1)[0]
    want = torch.tensor([[False, True, True], [True, False, True], [True, False, False]])
    assert torch.equal(m, want)


def test_make_windows_indices_and_padding() -> None:
    video = torch.arange(10, dtype=torch.float32)[:, None]
    w = make_windows(video, torch.ones(10, dtype=torch.bool), torch.tensor([0, 9]), 3, 2, 2)
    assert w["short"][0, :, 0].tolist() == [0, 0] and w["short_mask"][0].tolist() == [False, True]
    assert w["long_mask"][0].tolist() == [False] * 3
    assert w["future"][0, :, 0].tolist() == [1, 2]
    assert w["long"][1, :, 0].tolist() == [5, 6, 7] and w["short"][1, :, 0].tolist() == [8, 9]
    assert w["future_mask"][1].tolist() == [False, False]
    assert w["short_steps"][1].tolist() == [8, 9]


def test_soft_labels_closed_form() -> None:
    steps = torch.arange(10)
    y = soft_labels(steps, torch.tensor(2.0), torch.tensor(6.0))
    assert y[2, 0] == 1 and y[6, 1] == 1 and y[4, 2] == 1
    assert math.isclose(y[3, 0].item(), math.exp(-1 / (2 * 1.0**2)), rel_tol=1e-6)
    assert math.isclose(y[5, 2].item(), math.exp(-1 / (2 * (0.21 * 4) ** 2)), rel_tol=1e-6)


def test_focal_bce_known_value_and_detached_modulation() -> None:
    z = torch.tensor([0.3], requires_grad=True)
    y = torch.tensor([0.8])
    p = torch.sigmoid(torch.tensor(0.3)).item()
    bce = -(0.8 * math.log(p) + 0.2 * math.log(1 - p))
    got = focal_bce(z, y)
    assert math.isclose(got.item(), abs(p - 0.8) ** 3 * bce, rel_tol=1e-5)
    got.sum().backward()
    assert math.isclose(z.grad.item(), abs(p - 0.8) ** 3 * (p - 0.8), rel_tol=1e-4)


def test_span_loss_weights_and_valid_positions() -> None:
    logits = torch.randn(2, 3, 3)
    target = torch.rand(2, 3, 3)
    valid = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    per = focal_bce(logits, target)
    want = sum(w * per[..., k][valid].mean() for k, w in enumerate((0.5, 0.5, 1.0)))
    assert torch.allclose(span_loss(logits, target, valid), want)


def test_kd_total_matches_formula() -> None:
    torch.manual_seed(0)
    out = {"logits": torch.randn(2, 4, 3), "twin_logits": torch.randn(2, 4, 3)}
    y, v = torch.rand(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    w = 0.4
    got = tsgsv_loss(out, y, v, w)["loss"]
    want = (
        (1 - w) * span_loss(out["logits"], y, v)
        + span_loss(out["twin_logits"], y, v)
        + w * span_loss(out["logits"], out["twin_logits"].sigmoid(), v)
    )
    assert torch.allclose(got, want)
    assert torch.allclose(
        tsgsv_loss({"logits": out["logits"]}, y, v, w)["loss"], span_loss(out["logits"], y, v)
    )


def test_kd_term_gives_no_gradient_to_twin() -> None:
    zm = torch.randn(1, 2, 3, requires_grad=True)
    zt = torch.randn(1, 2, 3, requires_grad=True)
    y, v = torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool)
    parts = tsgsv_loss({"logits": zm, "twin_logits": zt}, y, v, 0.4)
    parts["loss_kd"].backward()
    assert zt.grad is None and zm.grad is not None


@pytest.mark.parametrize("future_usage", ["TemporalPincer", "none"])
def test_streaming_equals_offline_and_ignores_future(future_usage: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(future_usage=future_usage)
    model = TSGSVModel(cfg).eval()
    t = 20
    video = torch.randn(t, cfg.video_dim)
    sent, sent_len = torch.randn(7, cfg.sent_dim), 5
    offline = offline_scores(
        model, video[None], torch.ones(1, t, dtype=torch.bool), sent[None], torch.tensor([sent_len]), chunk=7
    )[0]
    stream = StreamingGrounder(model, sent, sent_len)
    numel = stream.state_numel
    online = stream.run(video)
    assert stream.state_numel == numel == (cfg.long_mem + cfg.short_mem) * cfg.video_dim + cfg.hidden
    assert torch.allclose(online, offline, atol=1e-5)
    # Changing the future never changes the past.
    cut = 13
    changed = video.clone()
    changed[cut:] = torch.randn(t - cut, cfg.video_dim) * 3
    online2 = StreamingGrounder(model, sent, sent_len).run(changed)
    assert torch.allclose(online2[:cut], online[:cut], atol=1e-6)
    assert not torch.allclose(online2[cut:], online[cut:], atol=1e-3)
