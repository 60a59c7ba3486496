"""SNPS3LitModule: the six pretraining terms and their switches, MoCo state, evaluation and the schedule."""

from __future__ import annotations

import pytest
import torch

from snp_s3.model import SNPS3Config
from snp_s3.module import LOSSES, SNPS3LitModule

CFG = dict(
    vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=32,
    backbone="conv", conv_dims=[8, 16], img_fc_dim=16, similarity_hidden=8, num_answers=5, sep_id=3,
)  # fmt: skip


def make(**kw) -> SNPS3LitModule:
    torch.manual_seed(0)
    m = SNPS3LitModule(SNPS3Config(**CFG), queue_size=32, moco_momentum=0.9, **kw)
    m.configure_model()
    m.mask_id = 4
    m.log = lambda *a, **k: None  # no trainer attached
    return m


def batch(b: int = 4, p: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 40, (b, length), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    maskable = torch.ones(b, length, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False
    labels = torch.full_like(ids, -1)
    labels[:, 2] = ids[:, 2]
    masked = ids.clone()
    masked[:, 2] = 4
    return {
        "video": torch.randn(b, p, 3, 32, 32, generator=g), "index": torch.arange(b),
        "text_ids": ids, "text_mask": torch.ones_like(ids), "masked_ids": masked, "mlm_labels": labels,
        "maskable": maskable, "word_pos": torch.tensor([[1, 2, 3]] * b),
        "neg_ids": ids.roll(1, 0), "neg_mask": torch.ones_like(ids),
    }  # fmt: skip


def test_pretraining_computes_all_six_terms_and_they_are_finite() -> None:
    m = make(attentive_prob=0.0)
    losses = m._pretrain_losses(batch())
    assert set(losses) == set(LOSSES)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["itm"].item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=0.2)


@pytest.mark.parametrize("off", LOSSES)
def test_a_zero_weight_switches_its_term_off(off: str) -> None:
    m = make(attentive_prob=0.0, loss_weights={off: 0.0})
    assert off not in m._pretrain_losses(batch())


def test_retrieval_task_uses_itc_and_gvtm_only() -> None:
    m = make(task="retrieval")
    assert set(m._pretrain_losses(batch())) == {"itc", "gvtm"}


def test_without_moco_itc_is_mil_nce_and_no_momentum_encoders() -> None:
    m = make(with_moco=False)
    assert not hasattr(m, "bert_m")
    assert "itc" in m._pretrain_losses(batch())


def test_moco_keys_are_enqueued_and_momentum_encoders_are_not_optimised() -> None:
    m = make()
    m.trainer_ = None
    before = m.queue_v.clone()
    m._pretrain_losses(batch(b=4, p=2))
    assert int(m.ptr_t) == 4 and int(m.ptr_v) == 8
    assert not torch.equal(before[:8], m.queue_v[:8]) and torch.equal(before[8:], m.queue_v[8:])
    opt = m.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_opt for p in m.bert_m.parameters())
    assert all(not p.requires_grad for p in m.visual_m.parameters())


def test_unknown_loss_weight_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown loss_weights"):
        SNPS3LitModule(SNPS3Config(**CFG), loss_weights={"mlmm": 1.0})


def test_attentive_masking_replaces_the_labels() -> None:
    m = make(attentive_prob=1.0, loss_weights={k: 0.0 for k in LOSSES if k != "mlm"})
    from snp_s3 import module as mod

    calls = []
    real = mod.attentive_mask
    mod.attentive_mask = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        m._pretrain_losses(batch())
    finally:
        mod.attentive_mask = real
    assert calls == [1]


def test_the_loss_backpropagates_into_the_shared_encoder_from_the_cross_pass() -> None:
    m = make(attentive_prob=0.0, loss_weights={k: (1.0 if k == "gvtm" else 0.0) for k in LOSSES})
    m._pretrain_losses(batch())["gvtm"].backward()
    assert m.model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert m.model.visual.backbone.body[0].weight.grad.abs().sum() > 0
    assert m.model.bert.pooler.dense.weight.grad is None  # the text pooler is not on the cross path


def test_evaluation_computes_retrieval_and_mc_metrics() -> None:
    m = make()
    m.eval()
    m._eval_start()
    b = batch(b=3)
    m._eval_step({"video": b["video"], "index": torch.arange(3), "text_ids": b["text_ids"],
                  "text_mask": b["text_mask"], "text_to_video": torch.arange(3)})  # fmt: skip
    opts = b["text_ids"][:, None].repeat(1, 5, 1)
    m._eval_step({"video": b["video"], "index": torch.arange(3), "option_ids": opts,
                  "option_mask": torch.ones_like(opts), "answer": torch.tensor([0, 1, 2])})  # fmt: skip
    logged = {}
    m.log = lambda k, v, **kw: logged.__setitem__(k, v)
    m._eval_end("val")
    assert {"val/t2v_R@1", "val/l1_t2v_R@1", "val/v2t_R@1", "val/t2v_mean_recall", "val/mc_acc"} <= set(
        logged
    )
    assert logged["val/mc_acc"] == pytest.approx(100 / 3)  # identical options: argmax picks option 0
    assert m.chance_level == pytest.approx(100 / 3)


def test_schedule_warms_up_linearly_then_steps_down() -> None:
    m = make(lr=1.0, warmup_steps=10, warmup_start=0.1, milestones=[20, 30])
    sched = m.configure_optimizers()["lr_scheduler"]["scheduler"]
    f = sched.lr_lambdas[0]
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55) and f(10) == 1.0
    assert f(25) == pytest.approx(0.1) and f(35) == pytest.approx(0.01)
