"""Model, losses and metrics of tpm_cl against slow loops, closed forms and hand-computed cases."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from common.contrastive import clip_loss
from tests.distributed import run_distributed
from tpm_cl.losses import (
    dual_softmax,
    gather_with_grad,
    importance_keep_mask,
    infonce_loss,
    negnce_loss,
    partial_margin_loss,
    token_similarity,
)
from tpm_cl.metrics import rank_metrics, ranks_from_similarity, retrieval_metrics
from tpm_cl.model import TPMCLConfig, TPMCLModel, load_clip_weights

TINY = TPMCLConfig(
    embed_dim=32,
    image_size=16,
    patch_size=8,
    vision_width=32,
    vision_layers=1,
    vision_head_width=16,
    context_length=12,
    vocab_size=49408,
    text_width=32,
    text_heads=2,
    text_layers=1,
    num_frames=4,
    max_words=8,
    temporal_layers=1,
)


# ------------------------------------------------------------------------------------------ slow references
def slow_token_similarity(words, weight, frames, fmask, with_nfc, nfc_weight=0.5):
    a_n, b_n = words.shape[0], frames.shape[0]
    out = torch.zeros(a_n, b_n, dtype=torch.float64)
    for a in range(a_n):
        toks = [t for t in range(words.shape[1]) if weight[a, t] > 0]
        for b in range(b_n):
            fr = [f for f in range(frames.shape[1]) if fmask[b, f] > 0]
            t2v, total_w = 0.0, 0.0
            for t in toks:
                sims = {f: float(words[a, t] @ frames[b, f]) for f in fr}
                f_star = max(fr, key=lambda f: sims[f])
                val = sims[f_star]
                if with_nfc and len(fr) > 1:
                    others = [g for g in fr if g != f_star]
                    f2 = max(others, key=lambda g: float(frames[b, f_star] @ frames[b, g]))
                    val += nfc_weight * float(frames[b, f_star] @ frames[b, f2]) * sims[f2]
                t2v += float(weight[a, t]) * val
                total_w += float(weight[a, t])
            t2v /= total_w
            v2t = sum(max(float(words[a, t] @ frames[b, f]) for t in toks) for f in fr) / len(fr)
            out[a, b] = (t2v + v2t) / 2
    return out


def slow_negnce(sim, scale=100.0, w=0.5):
    def one(s):
        n = s.shape[0]
        total, hard = 0.0, []
        for i in range(n):
            row = [math.exp(scale * float(s[i, j])) for j in range(n)]
            z = sum(row)
            p = [min(max(r / z, 1e-6), 1 - 1e-6) for r in row]
            total += -math.log(p[i])
            for j in range(n):
                if j != i and (s[i, j] > s[i, i] or s[i, j] > s[j, j]):
                    hard.append(-math.log(1 - p[j]))
        loss = total / n
        return loss + (w * sum(hard) / len(hard) if hard else 0.0)

    return (one(sim) + one(sim.t())) / 2


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


# ------------------------------------------------------------------------------------------ similarity
@pytest.mark.parametrize("with_nfc", [True, False])
def test_token_similarity_matches_slow_loop_with_padding(with_nfc: bool) -> None:
    words, frames = _unit(3, 5, 6, seed=1), _unit(4, 4, 6, seed=2)
    weight = torch.tensor([[1, 2, 2, 1, 0], [1, 1, 1, 0, 0], [1, 2, 1, 2, 1]], dtype=torch.float64)
    fmask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.float64)
    got = token_similarity(words, weight, frames, fmask, with_nfc=with_nfc)
    want = slow_token_similarity(words, weight, frames, fmask, with_nfc)
    torch.testing.assert_close(got, want)


def test_textual_cue_changes_the_score_and_wti_uniform_logits_equal_ti_without_cue() -> None:
    words, frames = _unit(2, 4, 6, seed=3), _unit(3, 3, 6, seed=4)
    ones = torch.ones(2, 4, dtype=torch.float64)
    cue = torch.tensor([[1, 2, 1, 2], [2, 2, 1, 1]], dtype=torch.float64)
    fmask = torch.ones(3, 3, dtype=torch.float64)
    plain = token_similarity(words, ones, frames, fmask, with_nfc=False)
    assert not torch.allclose(plain, token_similarity(words, cue, frames, fmask, with_nfc=False))
    wti = token_similarity(
        words,
        ones,
        frames,
        fmask,
        with_nfc=False,
        text_logits=torch.zeros(2, 4, dtype=torch.float64),
        video_logits=torch.zeros(3, 3, dtype=torch.float64),
    )
    torch.testing.assert_close(wti, plain)


# ------------------------------------------------------------------------------------------ losses
def test_negnce_matches_slow_loop_and_has_a_hard_set() -> None:
    sim = _unit(6, 8, seed=5) @ _unit(6, 8, seed=6).t() * 0.05
    assert (sim > sim.diagonal()[:, None]).any()  # H is not empty
    torch.testing.assert_close(negnce_loss(sim), torch.tensor(slow_negnce(sim), dtype=torch.float64))


def test_negnce_equals_infonce_when_no_negative_beats_a_positive() -> None:
    sim = torch.full((4, 4), 0.1, dtype=torch.float64) + 0.03 * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(negnce_loss(sim), infonce_loss(sim))


def test_infonce_on_dot_products_equals_common_clip_loss() -> None:
    x, y = _unit(5, 8, seed=7), _unit(5, 8, seed=8)
    torch.testing.assert_close(infonce_loss(y @ x.t(), scale=100.0), clip_loss(x, y, 100.0))


def test_importance_keep_mask_hand_cases() -> None:
    w = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    # row 0: sorted 0.5, 0.3 (cumsum 0.5 < 0.6 masks only the 0.5); row 1: top >= 0.6, nothing masked;
    # row 2: cumsums 0.25, 0.5 < 0.6 mask two tokens
    want = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    got = importance_keep_mask(w, 0.6)
    assert torch.equal(got[:2], want[:2])
    assert got[2].sum() == 2
    assert importance_keep_mask(w, 0.6, always_mask_top1=True)[1].tolist() == [0.0, 1.0, 1.0, 1.0]


def test_partial_margin_loss_closed_form() -> None:
    full, partial = torch.tensor([0.9, 0.5, 0.2]), torch.tensor([0.1, 0.4, 0.3])
    # max(0, 0.6 - 0.8) = 0, max(0, 0.6 - 0.1) = 0.5, max(0, 0.6 + 0.1) = 0.7
    torch.testing.assert_close(partial_margin_loss(full, partial, 0.6), torch.tensor(1.2 / 3))


def test_dual_softmax_damps_a_hub_video() -> None:
    sim = torch.tensor([[0.50, 0.49], [0.50, 0.10]])
    # raw: text 0 ranks video 0 first; video 0 is a hub (both texts like it), so re-ranking flips text 0
    assert sim[0].argmax() == 0
    assert dual_softmax(sim, 100.0)[0].argmax() == 1


def _gather_worker(rank: int, world: int) -> list[float]:
    x = _unit(4, 3, seed=10)[rank * 2 : rank * 2 + 2].clone().requires_grad_(True)
    full = gather_with_grad(x)
    loss = (full @ full.t()).pow(2).sum() + full[:, 0].sum()
    loss.backward()
    return x.grad.flatten().tolist()


@pytest.mark.slow  # two spawned gloo processes: ~20 s on a shared 2-core CPU
def test_gather_with_grad_gives_world_times_single_process_gradient() -> None:
    x = _unit(4, 3, seed=10).clone().requires_grad_(True)
    ((x @ x.t()).pow(2).sum() + x[:, 0].sum()).backward()
    got = torch.tensor(sum(run_distributed(_gather_worker, 2), []), dtype=torch.float64).view(4, 3)
    torch.testing.assert_close(got / 2, x.grad)


# ------------------------------------------------------------------------------------------ metrics
def test_ranks_and_metrics_on_a_hand_computed_case() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.2, 0.3], [0.1, 0.2, 0.3], [0.5, 0.5, 0.0]])
    text_to_video = torch.tensor([0, 1, 2, 1])
    pos = text_to_video[:, None] == torch.arange(3)[None]
    # text 0: rank 1; text 1: 0.8 and 0.3 beat 0.2 -> 3; text 2: rank 1; text 3: tie 0.5 counts against -> 2
    assert ranks_from_similarity(sim, pos).tolist() == [1, 3, 1, 2]
    m = retrieval_metrics(sim, text_to_video)
    assert m["t2v_R@1"] == 50.0 and m["t2v_R@5"] == 100.0
    assert m["t2v_MdR"] == 1.5 and m["t2v_MnR"] == 7 / 4
    # video 1's texts are 1 and 3 (best 0.5); in column 1 nothing beats 0.5 except a tie with... none -> 1
    # video 0: 0.9 best -> 1; video 2: text 2 has 0.3, text 1 has 0.3 (tie, against) and text 0 0.5 -> 3
    assert ranks_from_similarity(sim.t(), pos.t()).tolist() == [1, 1, 3]
    assert m["v2t_MdR"] == 1.0


def test_family_metric_ranks_only_within_the_family() -> None:
    sim = torch.tensor([[0.2, 0.9, 0.1, 0.0], [0.1, 0.2, 0.8, 0.3]])
    m = retrieval_metrics(sim, torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([0, 1, 1, 1]))
    # text 0's family holds only video 0 -> rank 1; text 1 competes with videos 1, 2, 3 -> rank 2
    assert m["fam_t2v_R@1"] == 50.0 and m["t2v_R@1"] == 0.0
    assert rank_metrics(torch.tensor([1, 2, 3, 20]))["R@10"] == 75.0


# ------------------------------------------------------------------------------------------ model
def _batch(cfg: TPMCLConfig, b: int = 3):
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(b, cfg.max_words, dtype=torch.long)
    weight = torch.zeros(b, cfg.max_words)
    for i in range(b):
        n = 3 + i
        ids[i, 0], ids[i, n + 1] = 49406, 49407
        ids[i, 1 : n + 1] = torch.randint(300, 1000, (n,), generator=g)
        weight[i, : n + 2] = 1
        weight[i, 1] = 2
    pixels = torch.randn(b, cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g)
    mask = torch.ones(b, cfg.num_frames)
    mask[0, -1] = 0
    return ids, weight, pixels, mask


@pytest.mark.parametrize("interaction", ["att_ti", "ti", "wti"])
def test_model_similarity_shapes_and_tpm_loss_backward(interaction: str) -> None:
    torch.manual_seed(0)
    cfg = replace(TINY, interaction=interaction)
    model = TPMCLModel(cfg)
    ids, weight, pixels, mask = _batch(cfg)
    text, video = model.encode_text(ids, weight), model.encode_video(pixels, mask)
    sim = model.similarity(text, video)
    assert sim.shape == (3, 3) and torch.isfinite(sim).all()
    loss, parts = model.tpm_loss(text, video)
    assert set(parts) == {"tpm_sent", "tpm_video", "tpm_text"}
    (negnce_loss(sim) + loss).backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert trainable and no_grad == []  # DDP needs every trainable parameter to get a gradient


def test_padding_does_not_change_the_text_features() -> None:
    torch.manual_seed(0)
    model = TPMCLModel(TINY).eval()
    ids, weight, _, _ = _batch(TINY)
    short = model.encode_text(ids[:, :7], weight[:, :7])
    long = model.encode_text(ids, weight)
    torch.testing.assert_close(short.sentence, long.sentence)


@pytest.mark.parametrize(("ptype", "keys"), [(-1, set()), (2, {"tpm_sent", "tpm_video"}), (3, {"tpm_text"})])
def test_partial_types_select_the_triplets(ptype: int, keys: set[str]) -> None:
    model = TPMCLModel(replace(TINY, partial_type=ptype))
    ids, weight, pixels, mask = _batch(TINY)
    _, parts = model.tpm_loss(model.encode_text(ids, weight), model.encode_video(pixels, mask))
    assert set(parts) == keys
    assert hasattr(model, "frame_predictor") == (ptype in (2, 4))


def test_weight_predictor_rejects_other_padded_lengths() -> None:
    model = TPMCLModel(TINY)
    with pytest.raises(ValueError, match="keep max_words and num_frames"):
        model.word_predictor(torch.zeros(1, 3, 32), torch.zeros(1, 8, 32), torch.ones(1, 8))


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("layout", ["openai", "clip4clip"])
def test_released_clip_layout_loads_with_no_missing_clip_keys(tmp_path: Path, layout: str) -> None:
    cfg = TINY
    released = open_clip.model.CLIP(
        cfg.embed_dim,
        dict(image_size=16, patch_size=8, width=32, layers=1, head_width=16),
        dict(context_length=12, vocab_size=49408, width=32, heads=2, layers=1),
        quick_gelu=True,
    )
    state = released.state_dict()
    if layout == "clip4clip":
        state = {f"module.clip.{k}": v for k, v in state.items()}
    else:
        state = {**state, "input_resolution": torch.tensor(16)}
    path = tmp_path / "clip.pt"
    torch.save(state, path)
    model = TPMCLModel(cfg)
    missing = load_clip_weights(model, path)
    assert not [k for k in missing if k.startswith("clip.")]
    assert not any(k.startswith("temporal.") for k in missing)  # CLIP4Clip's init from the text layers
    torch.testing.assert_close(model.clip.visual.conv1.weight, released.visual.conv1.weight)
    torch.testing.assert_close(
        model.temporal.transformer.resblocks[0].mlp.c_fc.weight,
        released.transformer.resblocks[0].mlp.c_fc.weight,
    )


def test_missing_or_mismatched_weights_are_clear_errors(tmp_path: Path) -> None:
    model = TPMCLModel(TINY)
    with pytest.raises(FileNotFoundError, match="not found at"):
        load_clip_weights(model, tmp_path / "nope.pt")
    state = {k: v for k, v in model.clip.state_dict().items() if k != "ln_final.weight"}
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(KeyError, match="missing"):
        load_clip_weights(model, tmp_path / "partial.pt")
    state = dict(model.clip.state_dict())
    state["ln_final.weight"] = torch.zeros(5)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_clip_weights(model, tmp_path / "bad.pt")
