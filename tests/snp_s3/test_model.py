"""SNP-S3 model, losses, masking rules and metrics: shapes, the shared-module claim and known answers."""

from __future__ import annotations

import math
import random

import pytest
import torch

from snp_s3.losses import lvwm_scores, masked_lm_loss, mil_nce, mil_nce_text_clips, moco_loss
from snp_s3.masking import attentive_mask, lvwm_positions, mssm_mask, num_to_mask, random_mask
from snp_s3.metrics import accuracy, rank_metrics, ranks_from_similarity, retrieval_metrics
from snp_s3.model import SNPS3Config, SNPS3Model, load_bert_weights

TINY = dict(
    vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=32,
    backbone="conv", conv_dims=[8, 16], img_fc_dim=16, similarity_hidden=8, num_answers=7, sep_id=3,
)  # fmt: skip


def tiny_model(**kw) -> SNPS3Model:
    torch.manual_seed(0)
    return SNPS3Model(SNPS3Config(**{**TINY, **kw})).eval()


def test_cross_pass_uses_the_text_pass_modules_themselves() -> None:
    m = tiny_model()
    seen = []
    m.bert.encoder.register_forward_hook(lambda mod, i, o: seen.append(mod))
    m.bert.embeddings.register_forward_hook(lambda mod, i, o: seen.append(mod))
    ids, mask = torch.randint(5, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    m.text_pass(ids, mask)
    n_text = len(seen)
    m.cross(ids, mask, torch.randn(2, 3, 16))
    assert all(mod is m.bert.encoder or mod is m.bert.embeddings for mod in seen)
    assert len(seen) - n_text == 3  # text and visual embeddings + one encoder pass, no copy
    assert m.cross_pooler is not m.bert.pooler
    assert m.cross_mlm.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight
    assert m.text_mlm.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight


def test_shapes_of_every_head() -> None:
    m = tiny_model()
    frames = torch.randn(2, 3, 3, 32, 32)
    clips = m.encode_video(frames)
    assert clips.shape == (2, 3, 16)
    v = m.video_feature(clips)
    assert torch.allclose(v.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    ids, mask = torch.randint(5, 50, (4, 6)), torch.ones(4, 6, dtype=torch.long)
    hidden, t, att = m.text_pass(ids, mask, output_attentions=True)
    assert hidden.shape == (4, 6, 16) and t.shape == (4, 16) and len(att) == 2
    assert att[0].shape == (4, 2, 6, 6)
    h, pooled = m.cross(ids[:2], mask[:2], clips)
    assert h.shape == (2, 6 + 3 + 1, 16) and pooled.shape == (2, 16)
    assert m.all_pair_scores(ids, mask, clips, chunk=3).shape == (4, 2)
    assert m.qa_logits(ids[:2], mask[:2], clips).shape == (2, 7)


def test_all_pair_scores_equal_one_pair_at_a_time() -> None:
    m = tiny_model()
    ids, mask = torch.randint(5, 50, (3, 5)), torch.ones(3, 5, dtype=torch.long)
    mask[1, 3:] = 0
    clips = torch.randn(4, 2, 16)
    full = m.all_pair_scores(ids, mask, clips, chunk=2)
    for i in range(3):
        for j in range(4):
            one = m.pair_score(ids[i : i + 1], mask[i : i + 1], clips[j : j + 1])
            assert torch.allclose(full[i, j], one[0], atol=1e-5)


def test_padding_does_not_change_the_cross_score() -> None:
    m = tiny_model()
    ids, clips = torch.randint(5, 50, (1, 4)), torch.randn(1, 2, 16)
    a = m.pair_score(ids, torch.ones(1, 4, dtype=torch.long), clips)
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    b = m.pair_score(padded, torch.tensor([[1, 1, 1, 1, 0, 0, 0]]), clips)
    assert torch.allclose(a, b, atol=1e-4)


def test_p3e_has_a_separate_fusion_encoder_and_more_parameters() -> None:
    snp, p3e = tiny_model(), tiny_model(fusion="p3e", p3e_layers=2)
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert p3e.fusion_encoder is not None and snp.fusion_encoder is None
    assert n(p3e) - n(snp) == n(p3e.fusion_encoder)


@pytest.mark.slow  # builds BERT-base + ResNet-50 twice
def test_real_sizes_give_the_papers_parameter_count_order() -> None:
    # Table II: SNP-R50 160.4M. Ours: 138.7M trainable (BERT-base 109.5M + R50 23.5M + heads); the 22M gap is
    # not explained by the released code (README); P3E adds six BERT layers (42.5M) to the same model.
    m = SNPS3Model(SNPS3Config(backbone="r50"))
    total = sum(p.numel() for p in m.parameters()) / 1e6
    assert 130 < total < 165, total
    p3e = SNPS3Model(SNPS3Config(backbone="r50", fusion="p3e"))
    extra = sum(p.numel() for p in p3e.parameters()) / 1e6 - total
    assert 40 < extra < 46, extra  # paper: 205.5M - 160.4M = 45.1M


# ------------------------------------------------------------------------------------------- losses
def test_mil_nce_with_one_clip_matches_the_closed_form() -> None:
    torch.manual_seed(1)
    s = torch.randn(4, 4)
    expect = []
    for b in range(4):
        den = sum(math.exp(s[j, b]) for j in range(4)) + sum(math.exp(s[b, j]) for j in range(4) if j != b)
        expect.append(-math.log(math.exp(s[b, b]) / den))
    assert mil_nce(s, 1).item() == pytest.approx(sum(expect) / 4, rel=1e-5)


def test_mil_nce_with_clips_matches_a_slow_loop() -> None:
    torch.manual_seed(2)
    b, p = 3, 2
    s = torch.randn(b * p, b * p)
    total = 0.0
    for vid in range(b):
        r = vid * p + p // 2
        col = [s[j, r].item() for j in range(b * p)]
        row = [s[r, j].item() if j // p != vid else -1e12 for j in range(b * p)]
        z = sum(math.exp(x) for x in col + row)
        num = sum(math.exp(col[j]) for j in range(b * p) if j // p == vid)
        total += -math.log(num / z)
    assert mil_nce(s, p).item() == pytest.approx(total / b, rel=1e-5)


def test_mil_nce_text_clips_is_lower_for_matching_scores() -> None:
    good = torch.eye(3).repeat_interleave(2, 1) * 10  # (3, 6): text b high on its two clips
    assert mil_nce_text_clips(good, 2) < mil_nce_text_clips(torch.zeros(3, 6), 2)


def test_moco_loss_known_answer() -> None:
    pos, neg, t = torch.tensor([[1.0, 0.5]]), torch.tensor([[0.2, -0.1, 0.3]]), 0.5
    allv = [1.0, 0.5, 0.2, -0.1, 0.3]
    expect = math.log(sum(math.exp(x / t) for x in allv)) - math.log(sum(math.exp(x / t) for x in (1, 0.5)))
    assert moco_loss(pos, neg, t).item() == pytest.approx(expect, rel=1e-6)


def test_lvwm_scores_are_a_logsumexp_over_words() -> None:
    torch.manual_seed(3)
    w, v = torch.randn(2, 3, 4), torch.randn(2, 2, 4)
    s = lvwm_scores(w, v)
    for i in range(2):
        for j in range(2):
            for p in range(2):
                ref = torch.logsumexp(torch.stack([w[i, k] @ v[j, p] for k in range(3)]), 0)
                assert s[i, j * 2 + p].item() == pytest.approx(ref.item(), rel=1e-5)


def test_masked_lm_loss_ignores_minus_one_and_is_zero_without_labels() -> None:
    logits = torch.randn(1, 3, 5)
    labels = torch.tensor([[-1, 2, -1]])
    ref = torch.nn.functional.cross_entropy(logits[0, 1:2], torch.tensor([2]))
    assert masked_lm_loss(logits, labels).item() == pytest.approx(ref.item(), rel=1e-6)
    assert masked_lm_loss(logits, torch.full((1, 3), -1)).item() == 0.0


# ------------------------------------------------------------------------------------------ masking
@pytest.mark.parametrize("length,n", [(1, 0), (2, 1), (8, 1), (9, 2), (12, 2), (20, 3), (30, 5)])
def test_num_to_mask_rounds_up_from_point_three(length: int, n: int) -> None:
    assert num_to_mask(length) == n


def test_mssm_masks_only_significant_words_with_the_80_10_10_rule() -> None:
    ids = [2] + list(range(10, 30)) + [3]  # 20 content tokens
    maskable = [False] + [True] * 20 + [False]
    significant = {12, 15, 18, 21, 24}
    variants = {12: [40], 15: [41], 18: [], 21: [43], 24: [44]}
    counts = {"mask": 0, "variant": 0, "kept": 0}
    for seed in range(600):
        out, labels = mssm_mask(
            ids, maskable, significant, sorted(significant), variants, 4, random.Random(seed)
        )
        chosen = [i for i, lab in enumerate(labels) if lab >= 0]
        assert len(chosen) == 3 and all(ids[i] in significant for i in chosen)
        assert all(labels[i] == ids[i] for i in chosen)
        assert all(out[i] == ids[i] for i in range(len(ids)) if i not in chosen)
        for i in chosen:
            if out[i] == 4:
                counts["mask"] += 1
            elif out[i] in (40, 41, 43, 44):
                counts["variant"] += 1
            else:
                assert out[i] == ids[i]  # fix #1: an empty lemma list keeps the token
                counts["kept"] += 1
    total = sum(counts.values())
    assert 0.76 < counts["mask"] / total < 0.84
    assert 0.06 < counts["variant"] / total < 0.10  # 10% * 4/5 non-empty lists
    assert 0.10 < counts["kept"] / total < 0.16


def test_mssm_tops_up_with_other_positions_when_too_few_are_significant() -> None:
    ids, maskable = list(range(10, 30)), [True] * 20
    _, labels = mssm_mask(ids, maskable, {11}, [11], {}, 4, random.Random(0))
    chosen = [i for i, lab in enumerate(labels) if lab >= 0]
    assert len(chosen) == 3 and 1 in chosen


def test_random_mask_rate_and_never_special() -> None:
    ids, maskable = [2] + [7] * 98 + [3], [False] + [True] * 98 + [False]
    n = 0
    for seed in range(50):
        out, labels = random_mask(ids, maskable, 4, 50, 5, random.Random(seed))
        assert labels[0] == labels[-1] == -1 and out[0] == 2
        assert all(5 <= o < 50 for o, lab in zip(out, labels) if lab >= 0 and o != 4)
        n += sum(lab >= 0 for lab in labels)
    assert 0.12 < n / (50 * 98) < 0.18


def test_attentive_mask_picks_k_important_maskable_positions() -> None:
    ids = torch.arange(10, 20)[None].repeat(2, 1)
    maskable = torch.ones(2, 10, dtype=torch.bool)
    maskable[:, 0] = maskable[:, 9] = False
    maskable[1, 5:] = False
    imp = torch.zeros(2, 10)
    imp[0, 3] = 1e6
    out, labels = attentive_mask(ids, maskable, imp, 4, torch.Generator().manual_seed(0))
    assert (labels[0] >= 0).sum() == 1 and labels[0, 3] == 13 and out[0, 3] == 4  # k = max(floor(1.2), 1)
    assert (labels[1] >= 0).sum() == 1 and bool(maskable[1][labels[1] >= 0].all())


def test_lvwm_positions_rules() -> None:
    ids, maskable = [2, 10, 11, 12, 13, 3], [False, True, True, True, True, False]
    rank = {10: 1, 11: 50, 12: 2, 13: 3}
    rng = random.Random(0)
    assert sorted(lvwm_positions(ids, maskable, rank, 5, 3, rng)) == [1, 3, 4]
    few = lvwm_positions(ids, maskable, {10: 1}, 5, 3, rng)
    assert few == [1, 1, 1]
    none = lvwm_positions(ids, maskable, {}, 5, 3, rng)
    assert len(none) == 3 and set(none) <= {1, 2, 3, 4}
    assert lvwm_positions([2, 3], [False, False], {}, 5, 3, rng) == [0, 1, 2]


# ------------------------------------------------------------------------------------------ metrics
def test_retrieval_metrics_hand_computed() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8], [0.5, 0.4, 0.1], [0.0, 0.0, 0.0]])
    t2v = torch.tensor([0, 1, 2, 1])
    # text ranks: 1, 3 (0.8 and 0.3 beat 0.2), 3, 3 (ties count against)
    ranks = ranks_from_similarity(sim, t2v[:, None] == torch.arange(3)[None])
    assert ranks.tolist() == [1, 3, 3, 3]
    m = retrieval_metrics(sim, t2v)
    assert m["t2v_R@1"] == 25.0 and m["t2v_R@5"] == 100.0 and m["t2v_MdR"] == 3.0 and m["t2v_MnR"] == 2.5
    assert m["t2v_mean_recall"] == pytest.approx(75.0)
    # video 1 has texts 1 and 3: best rank among texts for video 1 column [0.1,0.2,0.4,0.0] -> text 1 at 0.2
    assert rank_metrics(torch.tensor([1, 2, 11]))["R@10"] == pytest.approx(200 / 3)


def test_accuracy_counts_out_of_vocabulary_as_wrong() -> None:
    assert accuracy(torch.tensor([1, 2, 0, 0]), torch.tensor([1, 2, -1, 3])) == 50.0


# -------------------------------------------------------------------------------------- checkpoints
def test_bert_base_layout_checkpoint_loads_with_no_missing_keys(tmp_path) -> None:
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForPreTraining

    hf = BertForPreTraining(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=32)
    )  # fmt: skip
    state = {k: v.clone().contiguous() for k, v in hf.state_dict().items()}
    state.pop("cls.predictions.decoder.bias", None)
    state.pop("cls.predictions.decoder.weight", None)  # tied, as in the released file
    save_file(state, str(tmp_path / "model.safetensors"))
    m = tiny_model()
    missing = load_bert_weights(m, tmp_path)
    assert missing == []
    assert torch.equal(
        m.bert.encoder.layer[1].output.dense.weight, hf.bert.encoder.layer[1].output.dense.weight
    )
    assert torch.equal(m.cross_pooler.dense.weight, hf.bert.pooler.dense.weight)
    hf.eval()
    ids = torch.randint(5, 50, (2, 6))
    ref = hf.bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    ours, _, _ = m.bert(ids, torch.ones_like(ids))
    assert torch.allclose(ours, ref, atol=1e-5)


def test_missing_or_mismatched_weights_are_clear_errors(tmp_path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="not found"):
        load_bert_weights(tiny_model(), tmp_path / "nope")
    save_file(
        {"bert.embeddings.word_embeddings.weight": torch.zeros(99, 16)}, str(tmp_path / "w.safetensors")
    )
    with pytest.raises(ValueError, match="word_embeddings"):
        load_bert_weights(tiny_model(), tmp_path / "w.safetensors")


def test_timm_pvt_layout_checkpoint_loads_into_the_backbone(tmp_path) -> None:
    from safetensors.torch import save_file
    from timm.models.pvt_v2 import PyramidVisionTransformerV2

    from snp_s3.model import load_visual_weights

    small = dict(
        pvt_depths=[1, 1], pvt_dims=[8, 16], pvt_heads=[1, 2], pvt_sr_ratios=[2, 1], pvt_mlp_ratios=[2.0, 2.0]
    )
    ref = PyramidVisionTransformerV2(
        num_classes=10,
        depths=(1, 1),
        embed_dims=(8, 16),
        num_heads=(1, 2),
        sr_ratios=(2, 1),
        mlp_ratios=(2.0, 2.0),
    )  # timm's released layout, classifier included
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "pvt.safetensors"))
    m = tiny_model(backbone="pvt_v2", **small)
    assert load_visual_weights(m, tmp_path / "pvt.safetensors") == []
    key = "stages.1.blocks.0.attn.q.weight"
    assert torch.equal(m.visual.backbone.net.state_dict()[key], ref.state_dict()[key])
    assert isinstance(m.visual.img_proj, torch.nn.Identity)  # §6 #6: 16 channels = hidden 16, no projection
    assert isinstance(tiny_model(backbone="conv", conv_dims=[8, 12]).visual.img_proj, torch.nn.Conv2d)


def test_family_restricted_retrieval_ranks_within_the_family() -> None:
    sim = torch.tensor([[0.1, 0.9, 0.5, 0.8], [0.2, 0.3, 0.1, 0.9]])
    fam = torch.tensor([0, 0, 1, 1])
    m = retrieval_metrics(sim, torch.tensor([0, 2]), video_family=fam)
    # text 0 (video 0): globally 0.9, 0.5, 0.8 beat it (rank 4); in family {0, 1} only 0.9 (rank 2)
    # text 1 (video 2): globally rank 4; in family {2, 3} 0.9 beats it (rank 2)
    assert m["t2v_R@1"] == 0.0 and m["fam_t2v_MnR"] == 2.0 and m["fam_t2v_R@1"] == 0.0
    assert "fam_t2v_R@1" not in retrieval_metrics(
        sim, torch.tensor([0, 2]), video_family=torch.tensor([0, 0, -1, 1])
    )
