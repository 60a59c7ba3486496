"""M2-Encoder LitModule and metrics: known answers for the retrieval protocol, zero-shot, ITC and masking."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from m2_encoder.metrics import (
    class_embeddings,
    retrieval_chance,
    retrieval_ground_truth,
    retrieval_recalls,
    top1_accuracy,
    zero_shot_logits,
)
from m2_encoder.model import M2EncoderConfig
from m2_encoder.module import GBAConfig, M2EncoderLitModule, ObjectiveConfig


def test_ground_truth_follows_the_released_get_data_with_duplicate_captions() -> None:
    images = ["a.jpg", "b.jpg"]
    captions = [["A Dog", "a cat"], ["a dog", "\u201cbird\u201d"]]
    texts, t2i, i2t = retrieval_ground_truth(images, captions)
    assert texts == ["a dog", "a cat", "a dog", '"bird"']
    # "a dog" is ground truth for both images in the t2i direction...
    assert t2i.tolist() == [[1, 1], [1, 0], [1, 1], [0, 1]]
    # ...while each image row marks only the last occurrence of the string (text_ids is overwritten).
    assert i2t.tolist() == [[0, 1, 1, 0], [0, 0, 1, 1]]


def test_recalls_on_a_hand_computed_case() -> None:
    # 2 images, 3 texts; text 0,1 -> image 0; text 2 -> image 1.
    t2i = torch.tensor([[1, 0], [1, 0], [0, 1]], dtype=torch.bool)
    i2t = t2i.T.clone()
    img = torch.eye(2)
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # text 1 is closer to the wrong image
    r = retrieval_recalls(txt, img, t2i, i2t, ks=(1, 2))
    assert r["t2i_R@1"] == pytest.approx(200 / 3)
    assert r["t2i_R@2"] == pytest.approx(100.0)
    # image 0's best text: ties between 0 (GT) and nothing else -> text 0 (score 1) -> hit; image 1 -> text 1
    # or 2 (tie at 1): topk picks the first, text 1, a miss at K=1.
    assert r["i2t_R@2"] == pytest.approx(100.0)
    assert r["MR"] == pytest.approx(sum(v for k, v in r.items() if k != "MR") / 4)


def test_recalls_match_a_slow_loop_like_the_released_calu_recall() -> None:
    torch.manual_seed(0)
    images = [f"{i}.jpg" for i in range(7)]
    captions = [[f"c{i}", f"c{(i * 3) % 5}"] for i in range(7)]
    texts, t2i, i2t = retrieval_ground_truth(images, captions)
    tf, imf = torch.randn(len(texts), 8), torch.randn(7, 8)
    got = retrieval_recalls(tf, imf, t2i, i2t)
    sims = (tf @ imf.T).numpy()
    for name, mat, gt in (("t2i", sims, t2i.numpy()), ("i2t", sims.T, i2t.numpy())):
        order = (-mat).argsort(axis=1)
        for k in (1, 5, 10):
            hits = [gt[q, order[q, :k]].any() for q in range(mat.shape[0])]
            assert got[f"{name}_R@{k}"] == pytest.approx(100 * sum(hits) / len(hits))


def test_retrieval_chance_matches_enumeration() -> None:
    t2i = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    i2t = t2i.T.clone()
    chance = retrieval_chance(t2i, i2t, ks=(1, 2))
    # caption 0 has 2 of 4 GT: P(hit@1) = 1/2, P(hit@2) = 1 - (2*1)/(4*3) = 5/6; caption 1: 1/4, 1/2.
    assert chance["t2i_R@1"] == pytest.approx(100 * (1 / 2 + 1 / 4) / 2)
    assert chance["t2i_R@2"] == pytest.approx(100 * (5 / 6 + 1 / 2) / 2)
    # brute force over all orders for i2t@2
    hits = []
    for row in i2t:
        for perm in itertools.permutations(range(2)):
            hits.append(bool(row[list(perm[:2])].any()))
    assert chance["i2t_R@2"] == pytest.approx(100 * sum(hits) / len(hits))


def test_zero_shot_prompt_ensemble_and_top1() -> None:
    prompts = torch.tensor([[[1.0, 0.0], [1.0, 0.2]], [[0.0, 1.0], [0.2, 1.0]]])  # (C=2, T=2, d=2)
    emb = class_embeddings(prompts)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2))
    images = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.0]])
    logits = zero_shot_logits(images, emb, 100.0)
    assert top1_accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(200 / 3)


def _module(**obj) -> M2EncoderLitModule:
    arch = M2EncoderConfig(
        embed_dim=32, num_heads=4, ffn_dim=64, num_layers=1, num_vl_layers=1, out_dim=16, vocab_size=40,
        image_size=16, patch_size=8, max_text_positions=12, decoder_layers=1,
    )  # fmt: skip
    return M2EncoderLitModule(arch=arch, objectives=ObjectiveConfig(**obj))


def test_single_process_itc_equals_open_clip_clip_loss() -> None:
    open_clip_loss = pytest.importorskip("open_clip.loss")
    torch.manual_seed(0)
    module = _module(itc_levels=["vl"])
    img = {"cls_vlffn_feats": F.normalize(torch.randn(6, 16), dim=-1)}
    txt = {"cls_vlffn_feats": F.normalize(torch.randn(6, 16), dim=-1)}
    ours = module._itc(img, txt)["vl"]
    scale = module.model.logit_vl_scale.exp()
    ref = open_clip_loss.ClipLoss(local_loss=True, gather_with_grad=True)(
        img["cls_vlffn_feats"], txt["cls_vlffn_feats"], scale
    )
    assert torch.allclose(ours, ref, atol=1e-5)


def test_buffer_mode_adds_the_previous_steps_features_as_negatives() -> None:
    torch.manual_seed(0)
    module = _module(itc_levels=["vl"])
    module.gba = GBAConfig(mode="buffer", accumulate_steps=2)
    from common.contrastive import FeatureBuffer

    module.buffers = {"vl": FeatureBuffer(module._buffer_depth)}
    a = [F.normalize(torch.randn(4, 16), dim=-1) for _ in range(4)]
    module._itc({"cls_vlffn_feats": a[0]}, {"cls_vlffn_feats": a[1]})
    loss = module._itc({"cls_vlffn_feats": a[2]}, {"cls_vlffn_feats": a[3]})["vl"]
    s = module.model.logit_vl_scale.exp()
    logits_i2t = s * a[2] @ torch.cat([a[3], a[1]]).T
    logits_t2i = s * a[3] @ torch.cat([a[2], a[0]]).T
    target = torch.arange(4)
    expected = (F.cross_entropy(logits_i2t, target) + F.cross_entropy(logits_t2i, target)) / 2
    assert torch.allclose(loss, expected, atol=1e-5)


def test_whole_word_mask_masks_every_token_of_a_chosen_word_and_never_specials() -> None:
    torch.manual_seed(0)
    module = _module(cmlm_mask_prob=0.5)
    module._mask_id = 39
    ids = torch.tensor([[30, 5, 6, 7, 8, 9, 31, 31]])
    masks = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
    starts = torch.tensor([[0, 1, 0, 1, 0, 1, 0, 0]], dtype=torch.bool)  # words: (5,6) (7,8) (9)
    for _ in range(20):
        masked, labels = module.whole_word_mask(ids, masks, starts)
        sel = labels[0] != -100
        assert not sel[0] and not sel[6] and not sel[7]
        assert sel[1] == sel[2] and sel[3] == sel[4]
        assert torch.equal(masked[0][sel], torch.full((int(sel.sum()),), 39))
        assert torch.equal(labels[0][sel], ids[0][sel])


def test_patch_mask_count_and_normalised_patches() -> None:
    module = _module(cmim_num_masked=3)
    mask = module.random_patch_mask(5, torch.device("cpu"))
    assert mask.shape == (5, 4) and (mask.sum(1) == 3).all()
    patches = module.patchify(torch.randn(2, 3, 16, 16))
    assert patches.shape == (2, 4, 192)
    assert torch.allclose(patches.mean(-1), torch.zeros(2, 4), atol=1e-5)


def test_stage2_losses_are_finite_and_backpropagate() -> None:
    torch.manual_seed(0)
    module = _module(cmlm_weight=1.0, cmim_weight=1.0, cmim_num_masked=2)
    module._mask_id = 39
    batch = {
        "image": torch.randn(3, 3, 16, 16),
        "text_ids": torch.randint(0, 30, (3, 6)),
        "text_masks": torch.ones(3, 6, dtype=torch.long),
        "text_word_starts": torch.ones(3, 6, dtype=torch.bool),
    }
    img = module.model.encode_image(batch["image"])
    txt = module.model.encode_text(batch["text_ids"], batch["text_masks"])
    module.log = lambda *a, **k: None
    losses = module._stage2(batch, img, txt)
    assert set(losses) == {"cmlm", "cmim"}
    sum(losses.values()).backward()
    assert module.model.cmim_decoder.head.weight.grad is not None


def test_bad_gba_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="gba.mode"):
        M2EncoderLitModule(arch=M2EncoderConfig(embed_dim=32, num_heads=4), gba=GBAConfig(mode="magic"))


def test_accumulate_mode_gives_the_full_batch_itc_gradient() -> None:
    # GradCache over K micro-batches must reproduce the exact gradient of ITC on the whole batch.
    torch.manual_seed(0)
    module = _module(itc_levels=["vl", "backbone"])
    module.gba = GBAConfig(mode="accumulate", accumulate_steps=2)
    batch = {
        "image": torch.randn(4, 3, 16, 16),
        "text_ids": torch.randint(4, 40, (4, 6)),
        "text_masks": torch.ones(4, 6, dtype=torch.long),
    }
    params = [p for p in module.parameters() if p.requires_grad]
    img, txt = (
        module.model.encode_image(batch["image"]),
        module.model.encode_text(batch["text_ids"], batch["text_masks"]),
    )
    expected = torch.autograd.grad(sum(module._itc(img, txt).values()), params, allow_unused=True)

    opt = torch.optim.SGD(params, lr=0.0)  # step() leaves the weights as they are
    module.optimizers = lambda: opt
    module.lr_schedulers = lambda: None
    module.manual_backward = lambda loss: loss.backward()
    module._log_comm = lambda *args: None
    module._loss_feature_bytes = lambda rows: 0
    module.log = lambda *args, **kwargs: None
    module._accumulate_step(batch)
    checked = 0
    for p, g in zip(params, expected, strict=True):
        if g is None:
            assert p.grad is None or not p.grad.any()
            continue
        assert torch.allclose(p.grad, g, atol=1e-5, rtol=1e-4)
        checked += 1
    assert checked > 10
