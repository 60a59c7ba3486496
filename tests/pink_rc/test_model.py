"""Pink model: adapters (identity at init, merged == unmerged), image slot, trainable sets, row mask, keys."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from pink_rc.model import AdapterLayer, PinkModel, load_pink_checkpoint, ours_to_released, released_to_ours

from .conftest import tiny_config

IM = 41  # <im_patch> id after growing 40 -> 44 rows
P = 16  # (32 / 8) ** 2 patches


def _inputs(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 40, (b, 30), generator=g)
    ids[:, 3 : 3 + P] = IM
    return ids, torch.ones_like(ids), torch.randn(b, 3, 32, 32, generator=g)


def _model(seed: int = 0, **kw: object) -> PinkModel:
    torch.manual_seed(seed)
    return PinkModel(tiny_config(**kw), vocab_size=44, num_orig_tokens=40)


def _randomise_adapters(m: PinkModel) -> None:
    for a in m.adapters.values():
        torch.nn.init.normal_(a.up.weight, std=0.5)
        torch.nn.init.normal_(a.up.bias, std=0.5)
        torch.nn.init.normal_(a.down.bias, std=0.5)


def test_adapter_starts_as_identity_and_has_the_spec_shapes() -> None:
    a = AdapterLayer(16, rank=8, dropout=0.1)
    x = torch.randn(3, 5, 16)
    assert torch.equal(a(x), x)
    assert a.down.weight.shape == (8, 16) and a.up.weight.shape == (16, 8)
    assert a.down.weight.abs().sum() > 0


def test_adapters_sit_in_every_llm_layer_and_the_used_vision_layers() -> None:
    m = _model()
    # 3 CLIP blocks, features from hidden_states[-2] (block 2's output): blocks 0 and 1 get adapters
    assert sorted(m.adapters) == ["llm_0", "llm_1", "vision_0", "vision_1"]
    assert "vision_0" not in _model(adapters_vision=False).adapters


def test_fresh_adapters_leave_the_output_unchanged() -> None:
    with_ad, without = _model(0), _model(0, adapters_llm=False, adapters_vision=False)
    without.load_state_dict({k: v for k, v in with_ad.state_dict().items() if not k.startswith("adapters.")})
    ids, mask, px = _inputs()
    with_ad.eval(), without.eval()
    assert torch.allclose(with_ad(ids, mask, px, IM).logits, without(ids, mask, px, IM).logits, atol=1e-6)


def test_adapters_change_the_output_and_merged_equals_unmerged() -> None:
    m = _model()
    ids, mask, px = _inputs()
    m.eval()
    base = m(ids, mask, px, IM).logits
    _randomise_adapters(m)
    unmerged = m(ids, mask, px, IM).logits
    assert not torch.allclose(base, unmerged, atol=1e-3)
    merged_model = copy.deepcopy(m)
    merged_model.merge_adapters()
    assert isinstance(merged_model.adapters["llm_0"], torch.nn.Linear)
    assert torch.allclose(merged_model(ids, mask, px, IM).logits, unmerged, atol=1e-5)


def test_image_patches_replace_the_placeholder_run() -> None:
    m = _model().eval()
    ids, _, px = _inputs()
    emb = m.embed(ids, px, IM)
    assert torch.allclose(emb[:, 3 : 3 + P], m.image_features(px))
    assert torch.equal(emb[:, :3], m.llm.get_input_embeddings()(ids[:, :3]))
    bad = ids.clone()
    bad[0, 3] = 5
    with pytest.raises(ValueError, match="16 <im_patch>"):
        m.embed(bad, px, IM)
    gap = ids.clone()
    gap[:, 3], gap[:, 25] = 5, IM
    with pytest.raises(ValueError, match="contiguous"):
        m.embed(gap, px, IM)


def test_new_rows_start_at_the_mean_of_the_old_rows() -> None:
    m = _model()
    w = m.llm.get_input_embeddings().weight
    assert torch.allclose(w[40:], w[:40].mean(0, keepdim=True).expand(4, -1))


def test_trainable_sets_per_stage() -> None:
    m = _model()
    names = lambda: {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    m.set_trainable(1)
    assert names() == {"projector"}
    m.set_trainable(2)
    assert names() == {"projector", "adapters", "llm"}
    trainable_llm = {n for n, p in m.llm.named_parameters() if p.requires_grad}
    assert trainable_llm == {"model.embed_tokens.weight", "lm_head.weight"}
    m.set_trainable(2, train_vision=True)  # toy diagnostic: the whole CLIP tower too
    assert names() == {"projector", "adapters", "llm", "vision"}
    m.set_trainable(0)
    assert names() == {"vision"}


def test_row_mask_equals_pink_copy_back_of_the_original_rows() -> None:
    ids, mask, px = _inputs()
    ids[:, 25] = 42  # a marker token, so new rows get gradient
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.set_trainable(2)
    b._grad_hooks[0].remove(), b._grad_hooks[1].remove()  # b: plain gradients + copy-back (Pink's way)
    orig = {k: v.clone() for k, v in b.state_dict().items() if "embed_tokens" in k or "lm_head" in k}
    for m in (a, b):
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
        m(ids, mask, px, IM, labels=ids).loss.backward()
        opt.step()
    with torch.no_grad():
        for k, v in orig.items():
            b.state_dict()[k][:40] = v[:40]
    for k in orig:
        assert torch.allclose(a.state_dict()[k], b.state_dict()[k], atol=1e-6)
    assert not torch.allclose(a.state_dict()["llm.lm_head.weight"][40:], orig["llm.lm_head.weight"][40:])


def test_greedy_generation_with_cache_matches_a_slow_loop() -> None:
    m = _model().eval()
    _randomise_adapters(m)
    ids, mask, px = _inputs()
    ids[1, :2], mask[1, :2] = 0, 0  # left padding on the second prompt
    fast = m.generate(ids, mask, px, IM, eos_id=3, max_new_tokens=6)
    for row in range(2):
        seq, msk = ids[row : row + 1], mask[row : row + 1]
        for t in range(fast.shape[1]):
            nxt = m(seq, msk, px[row : row + 1], IM).logits[0, -1].argmax()
            assert int(nxt) == int(fast[row, t]) or int(fast[row, t - 1]) == 3
            if int(nxt) == 3:
                break
            seq, msk = torch.cat([seq, nxt.view(1, 1)], 1), torch.cat([msk, msk[:, :1]], 1)


def test_released_layout_round_trip_loads_with_no_missing_keys(tmp_path: Path) -> None:
    src = _model(1)
    _randomise_adapters(src)
    src.set_trainable(2)
    state = {ours_to_released(k): v for k, v in src.trainable_state_dict().items()}
    assert "model.mm_projector.weight" in state and "model.layers.0.adapter_attn.down.weight" in state
    assert any(k.startswith("model.vision_tower.vision_tower.") and "adapter_attn" in k for k in state)
    torch.save(state, tmp_path / "saved_parameters.pth")
    dst = _model(2)
    new = ("adapters", "projector")
    base = {k: v for k, v in src.state_dict().items() if not k.startswith(new)}
    dst.load_state_dict(base | {k: v for k, v in dst.state_dict().items() if k.startswith(new)})
    loaded = load_pink_checkpoint(dst, tmp_path / "saved_parameters.pth")
    assert sorted(released_to_ours(k) for k in state) == loaded
    ids, mask, px = _inputs()
    src.eval(), dst.eval()
    assert torch.allclose(src(ids, mask, px, IM).logits, dst(ids, mask, px, IM).logits, atol=1e-6)


def test_missing_or_mismatched_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    m = _model()
    with pytest.raises(FileNotFoundError, match="Pink checkpoint not found"):
        load_pink_checkpoint(m, tmp_path / "nope.pth")
    torch.save({"model.mm_projector.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="shape"):
        load_pink_checkpoint(m, tmp_path / "bad.pth")
    with pytest.raises(KeyError):
        released_to_ours("vision_tower.weird")


def test_toy_sincos_position_code_is_set_on_a_random_init_tower() -> None:
    from pink_rc.model import PinkConfig, _build_vision, sincos_grid

    vis = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32
    )
    vis["patch_size"] = 8
    tower = _build_vision(PinkConfig(vision_config=vis, toy_pos_sincos=0.5))
    emb = getattr(tower, "vision_model", tower).embeddings.position_embedding.weight.detach()
    code = sincos_grid(4, 32)
    assert code.shape == (16, 32) and torch.allclose(emb[1:], 0.5 * code) and float(emb[0].abs().sum()) == 0
    assert len({tuple(r.tolist()) for r in code}) == 16  # every patch has its own code
