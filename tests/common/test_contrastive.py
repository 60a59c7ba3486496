"""Single-process tests of common.contrastive against a materialised loss and open_clip's ClipLoss."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from common.contrastive import (
    FeatureBuffer,
    GradCacheContrastive,
    GroupedContrastiveLoss,
    auto_chunk_size,
    clip_loss,
    split_batch,
)


def _load_open_clip_loss():
    """open_clip's ``loss.py`` alone: it imports only torch; the full package takes ~10 s to import."""
    package = importlib.util.find_spec("open_clip")
    if package is None:
        pytest.skip("open_clip is not installed", allow_module_level=True)
    path = Path(next(iter(package.submodule_search_locations))) / "loss.py"
    spec = importlib.util.spec_from_file_location("_open_clip_loss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ClipLoss = _load_open_clip_loss().ClipLoss


def reference_local_losses(images, texts, scale, local_batch, extra_images=None, extra_texts=None):
    """Per-rank losses of open_clip's local_loss semantics, materialised, for a group batch ``(W b, d)``.

    Rank r's image rows are scored against [all texts; extra texts] and its text rows against
    [all images; extra images]; the positives are the rows' own partners.
    """
    text_cols = texts if extra_texts is None else torch.cat([texts, extra_texts])
    image_cols = images if extra_images is None else torch.cat([images, extra_images])
    losses = []
    for rank in range(images.shape[0] // local_batch):
        rows = slice(rank * local_batch, (rank + 1) * local_batch)
        labels = torch.arange(local_batch) + rank * local_batch
        loss_i = F.cross_entropy(scale * images[rows] @ text_cols.T, labels)
        loss_t = F.cross_entropy(scale * texts[rows] @ image_cols.T, labels)
        losses.append((loss_i + loss_t) / 2)
    return losses


def _features(n, d, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=gen, dtype=dtype), dim=-1)
    y = F.normalize(x + 0.7 * torch.randn(n, d, generator=gen, dtype=dtype), dim=-1)
    return x.requires_grad_(), y.requires_grad_()


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def _assert_close(actual, expected, rtol=1e-5, atol=0.0):
    """Max-abs error within ``rtol`` of the largest reference entry (plus ``atol`` near 0)."""
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= rtol * scale + atol, (actual, expected)


@pytest.mark.parametrize("n,d,chunk", [(1, 4, None), (7, 5, 3), (64, 16, 64), (100, 32, 17), (100, 32, None)])
def test_clip_loss_matches_materialised_reference_in_value_and_gradients(n, d, chunk):
    x, y = _features(n, d, seed=n)
    scale = torch.tensor(14.0, requires_grad=True)
    loss = clip_loss(x, y, scale, chunk_size=chunk)
    (ref,) = reference_local_losses(x.double(), y.double(), scale.double(), n)
    # fp32 rounding of log-sum-exps near 3 is about 1e-6 absolute; matters only for n = 1, where the loss is 0
    _assert_close(loss.double(), ref.detach(), atol=2e-6)
    for got, want in zip(_grads(loss, x, y, scale), _grads(ref, x, y, scale)):
        _assert_close(got, want, atol=2e-6 if n == 1 else 0.0)


@pytest.mark.parametrize("scale_value", [1.0, 30.0, 100.0])
def test_clip_loss_equals_open_clip_clip_loss(scale_value):
    x, y = _features(48, 24, seed=1)
    scale = torch.tensor(scale_value, requires_grad=True)
    loss = clip_loss(x, y, scale, chunk_size=16)
    ref = ClipLoss()(x, y, scale)
    _assert_close(loss, ref.detach())
    for got, want in zip(_grads(loss, x, y, scale), _grads(ref, x, y, scale)):
        _assert_close(got, want)


def test_gradient_reaches_the_parameter_behind_an_exponentiated_scale():
    x, y = _features(20, 8, seed=2)
    log_scale = torch.tensor(2.5, requires_grad=True)
    (got,) = _grads(clip_loss(x, y, log_scale.exp().clamp(max=100), chunk_size=7), log_scale)
    (want,) = _grads(ClipLoss()(x, y, log_scale.exp().clamp(max=100)), log_scale)
    assert got.abs() > 0
    _assert_close(got, want)


def test_gradcheck_in_float64_at_tiny_size():
    x, y = _features(5, 3, seed=3, dtype=torch.float64)
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, s: clip_loss(a, b, s, chunk_size=2), (x, y, scale))


def test_gradcheck_with_extra_columns_in_float64():
    x, y = _features(4, 3, seed=4, dtype=torch.float64)
    ex, ey = (t.detach() for t in _features(3, 3, seed=5, dtype=torch.float64))
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)

    def fn(a, b, s):
        return clip_loss(a, b, s, chunk_size=3, extra_image_features=ex, extra_text_features=ey[:2])

    assert torch.autograd.gradcheck(fn, (x, y, scale))


def test_logit_bias_cancels_value_unchanged_and_gradient_zero():
    x, y = _features(16, 8, seed=6)
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-7.5, requires_grad=True)
    with_bias = clip_loss(x, y, scale, bias, chunk_size=5)
    without = clip_loss(x, y, scale, chunk_size=5)
    open_clip_value = ClipLoss()(x, y, scale, bias)
    _assert_close(with_bias, without.detach())
    _assert_close(with_bias, open_clip_value.detach())
    (bias_grad,) = _grads(with_bias, bias)
    assert bias_grad == 0
    (open_clip_bias_grad,) = _grads(open_clip_value, bias)
    assert open_clip_bias_grad.abs() < 1e-5  # the peer library agrees up to rounding


def test_grouped_loss_equals_clip_loss_when_single_process():
    x, y = _features(30, 12, seed=7)
    scale = torch.tensor(20.0, requires_grad=True)
    grouped = GroupedContrastiveLoss(group_size=None, chunk_size=8)(x, y, scale)
    plain = clip_loss(x, y, scale)
    _assert_close(grouped, plain.detach())
    for got, want in zip(_grads(grouped, x, y, scale), _grads(plain, x, y, scale)):
        _assert_close(got, want)


def test_extra_columns_match_materialised_reference_and_get_no_gradient():
    x, y = _features(12, 8, seed=8)
    ex, ey = _features(20, 8, seed=9)
    scale = torch.tensor(25.0, requires_grad=True)
    loss = GroupedContrastiveLoss(chunk_size=5)(x, y, scale, extra_image_features=ex, extra_text_features=ey)
    (ref,) = reference_local_losses(x, y, scale, 12, ex.detach(), ey.detach())
    _assert_close(loss, ref.detach())
    for got, want in zip(_grads(loss, x, y, scale), _grads(ref, x, y, scale)):
        _assert_close(got, want)
    loss = GroupedContrastiveLoss()(x, y, scale, extra_image_features=ex, extra_text_features=ey)
    loss.backward()
    assert ex.grad is None and ey.grad is None


class _MaxNumel(TorchDispatchMode):
    """Records the largest tensor any aten op produces, forward and backward."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


def test_no_quadratic_tensor_is_materialised_forward_or_backward():
    n, d, chunk = 256, 8, 32
    x, y = _features(n, d, seed=10)
    scale = torch.tensor(10.0, requires_grad=True)
    with _MaxNumel() as tiled:
        clip_loss(x, y, scale, chunk_size=chunk).backward()
    with _MaxNumel() as materialised:
        ClipLoss()(x, y, scale).backward()
    assert materialised.largest >= n * n  # the recorder sees the open_clip logits
    assert tiled.largest <= max(chunk * chunk, n * d)


def test_auto_chunk_size_rule():
    assert auto_chunk_size(16384, 16384, "cpu") == 512
    assert auto_chunk_size(100, 300, "cpu") == 300
    assert auto_chunk_size(16384, 16384, "cuda") == 4096


@pytest.mark.parametrize(
    "image, text, message",
    [
        (torch.randn(4), torch.randn(4), "2-D"),
        (torch.randn(4, 3, 2), torch.randn(4, 3, 2), "2-D"),
        (torch.randn(4, 3), torch.randn(5, 3), "same shape"),
        (torch.randn(4, 3), torch.randn(4, 2), "same shape"),
    ],
)
def test_bad_feature_shapes_raise_value_error(image, text, message):
    with pytest.raises(ValueError, match=message):
        clip_loss(image, text, torch.tensor(1.0))


def test_other_bad_arguments_raise_value_error():
    x, y = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="one number"):
        clip_loss(x, y, torch.ones(2))
    with pytest.raises(ValueError, match="logit_bias"):
        clip_loss(x, y, torch.tensor(1.0), torch.zeros(4))
    with pytest.raises(ValueError, match="chunk_size"):
        clip_loss(x, y, torch.tensor(1.0), chunk_size=0)
    with pytest.raises(ValueError, match="feature size"):
        clip_loss(x, y, torch.tensor(1.0), extra_text_features=torch.randn(5, 2))
    with pytest.raises(ValueError, match="does not divide the world size"):
        GroupedContrastiveLoss(group_size=2)(x, y, torch.tensor(1.0))
    with pytest.raises(ValueError, match="group_size"):
        GroupedContrastiveLoss(group_size=0)
    with pytest.raises(ValueError, match="not divisible"):
        split_batch({"image": torch.randn(10, 3), "text": torch.randn(10, 2)}, 3)
    with pytest.raises(ValueError, match="share one batch size"):
        split_batch({"image": torch.randn(10, 3), "text": torch.randn(8, 2)}, 2)


def test_feature_buffer_keeps_the_newest_entries_first():
    buffer = FeatureBuffer(depth=2)
    assert buffer.features() == (None, None) and not buffer.is_full
    for step in range(3):
        buffer.push(torch.full((2, 3), float(step)), torch.full((2, 3), -float(step)))
    images, texts = buffer.features()
    assert buffer.is_full and len(buffer) == 2
    assert images[:, 0].tolist() == [2.0, 2.0, 1.0, 1.0]
    assert texts[:, 0].tolist() == [-2.0, -2.0, -1.0, -1.0]
    assert not images.requires_grad


class _DualEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 8))
        self.text = nn.Sequential(nn.Linear(5, 16), nn.GELU(), nn.Dropout(0.2), nn.Linear(16, 8))
        self.log_scale = nn.Parameter(torch.tensor(2.0))

    def encode(self, batch):
        return F.normalize(self.image(batch["image"]), dim=-1), F.normalize(self.text(batch["text"]), dim=-1)


@pytest.mark.parametrize("loss_fn", [None, GroupedContrastiveLoss(chunk_size=5)])
def test_grad_cache_gradients_equal_one_big_batch(loss_fn):
    torch.manual_seed(0)
    model = _DualEncoder()
    batch = {"image": torch.randn(12, 6), "text": torch.randn(12, 5)}
    micro_batches = split_batch(batch, 3)

    # Reference: the same micro-batches encoded with gradients in one graph (same RNG stream), one backward.
    torch.manual_seed(123)
    features = [model.encode(mb) for mb in micro_batches]
    images = torch.cat([f[0] for f in features])
    texts = torch.cat([f[1] for f in features])
    ref_loss = clip_loss(images, texts, model.log_scale.exp())
    ref_loss.backward()
    ref_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    torch.manual_seed(123)
    loss = GradCacheContrastive(loss_fn).step(model.encode, micro_batches, model.log_scale.exp())
    _assert_close(loss, ref_loss.detach())
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
        _assert_close(param.grad, ref_grads[name])
    # The RNG continues where the first (no-grad) pass left it, as after one big forward.
    torch.manual_seed(123)
    with torch.no_grad():
        [model.encode(mb) for mb in micro_batches]
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    model.zero_grad()
    GradCacheContrastive(loss_fn).step(model.encode, micro_batches, model.log_scale.exp())
    assert torch.rand(1) == expected_next


def test_grad_cache_uses_the_given_backward_callable():
    model = _DualEncoder().eval()
    batch = {"image": torch.randn(4, 6), "text": torch.randn(4, 5)}
    calls = []

    def backward(tensor):
        calls.append(tensor.detach())
        tensor.backward()

    GradCacheContrastive().step(model.encode, split_batch(batch, 2), model.log_scale.exp(), backward=backward)
    assert len(calls) == 2
