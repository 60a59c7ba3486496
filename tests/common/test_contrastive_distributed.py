"""common.contrastive under torch.distributed: 2 and 4 gloo processes on CPU, against open_clip and a
materialised per-group reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.contrastive import (
    FeatureBuffer,
    GradCacheContrastive,
    GroupedContrastiveLoss,
    clip_loss,
    count_collectives,
    split_batch,
)
from tests.common.test_contrastive import ClipLoss, _DualEncoder, reference_local_losses
from tests.distributed import run_distributed

LOCAL, DIM = 6, 8


def _global_features(world, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(world * LOCAL, DIM, generator=gen), dim=-1)
    y = F.normalize(x + 0.8 * torch.randn(world * LOCAL, DIM, generator=gen), dim=-1)
    return x, y


def _to_numpy(obj):
    """Tensors cannot cross the result queue once the worker has exited; arrays can."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().numpy().copy()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    return obj


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


def _loss_and_grads(fn, x, y, scale):
    loss = fn(x, y, scale)
    return [loss.detach(), *torch.autograd.grad(loss, (x, y, scale))]


def _compare_worker(rank, world):
    """Returns {case: (ours, reference)} lists of [loss, dx, dy, dscale] for this rank."""
    x_all, y_all = _global_features(world)
    rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
    weight = float(rank + 1)  # a different upstream gradient on every rank
    out = {}

    x, y, s = _leaves(x_all[rows], y_all[rows], torch.tensor(12.0))
    ours = _loss_and_grads(lambda a, b, c: weight * clip_loss(a, b, c, chunk_size=4), x, y, s)
    peer = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world)
    ref = _loss_and_grads(lambda a, b, c: weight * peer(a, b, c), x, y, s)
    out["clip_loss_vs_open_clip"] = (ours, ref)

    grouped = GroupedContrastiveLoss(group_size=None, chunk_size=5)
    out["grouped_all_ranks_vs_clip_loss"] = (
        _loss_and_grads(lambda a, b, c: weight * grouped(a, b, c), x, y, s),
        ours,
    )

    # Groups of 2 with extra (buffered) columns, against the materialised per-group losses in float64.
    group, local_rank = rank // 2, rank % 2
    gen = torch.Generator().manual_seed(100 + group)  # the same buffer on both ranks of a group
    extra_x = F.normalize(torch.randn(9, DIM, generator=gen), dim=-1)
    extra_y = F.normalize(torch.randn(7, DIM, generator=gen), dim=-1)
    grouped2 = GroupedContrastiveLoss(group_size=2, chunk_size=4)
    ours = _loss_and_grads(
        lambda a, b, c: weight * grouped2(a, b, c, extra_image_features=extra_x, extra_text_features=extra_y),
        x,
        y,
        s,
    )
    group_rows = slice(2 * group * LOCAL, 2 * (group + 1) * LOCAL)
    gx, gy, gs = _leaves(x_all[group_rows].double(), y_all[group_rows].double(), torch.tensor(12.0).double())
    losses = reference_local_losses(gx, gy, gs, LOCAL, extra_x.double(), extra_y.double())
    total = sum((2 * group + r + 1) * loss for r, loss in enumerate(losses))
    dgx, dgy = torch.autograd.grad(total, (gx, gy), retain_graph=True)
    (dgs,) = torch.autograd.grad(weight * losses[local_rank], gs)
    own = slice(local_rank * LOCAL, (local_rank + 1) * LOCAL)
    ref = [weight * losses[local_rank].detach(), dgx[own], dgy[own], dgs]
    out["grouped2_extras_vs_materialised"] = (ours, [t.float() for t in ref])

    # Collective bytes: only the text features travel forward (b x d per rank, gathered in the group).
    with count_collectives() as counter_global:
        clip_loss(x, y, s).backward()
    with count_collectives() as counter_grouped:
        grouped2(x, y, s).backward()
    gathers = [c for c in counter_grouped.calls if c[0] == "all_gather" and c[1] == 2 * LOCAL * DIM * 4]
    out["bytes"] = (counter_global.payload_bytes, counter_grouped.payload_bytes, len(gathers))

    buffer = FeatureBuffer(depth=1)
    buffer.push(x_all[rows], y_all[rows], grouped2.process_group)
    out["buffer"] = (buffer.features()[0], x_all[group_rows])

    # Errors are raised on every rank (the batch-size check is itself collective), so no rank hangs.
    out["errors"] = [_error(lambda: GroupedContrastiveLoss(group_size=3)(x, y, s))]
    uneven = LOCAL + (rank == 0)
    out["errors"].append(_error(lambda: clip_loss(x_all[:uneven], y_all[:uneven], s)))
    return _to_numpy(out)


def _error(fn):
    try:
        fn()
    except ValueError as err:
        return str(err)
    return None


@pytest.mark.parametrize("world", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_distributed_loss_and_gradients_match_open_clip_and_grouped_reference(world):
    results = run_distributed(_compare_worker, world)
    for rank, out in enumerate(results):
        for case in (
            "clip_loss_vs_open_clip",
            "grouped_all_ranks_vs_clip_loss",
            "grouped2_extras_vs_materialised",
        ):
            ours, ref = out[case]
            for name, got, want in zip(("loss", "dx", "dy", "dscale"), ours, ref):
                err = abs(got - want).max() / abs(want).max()
                assert err <= 1e-5, (world, rank, case, name, err)
        global_bytes, grouped_bytes, grouped_gathers = out["bytes"]
        assert grouped_gathers == 1
        assert grouped_bytes < global_bytes if world > 2 else grouped_bytes == global_bytes
        np.testing.assert_allclose(*out["buffer"])
        assert f"does not divide the world size {world}" in out["errors"][0]
        assert "same local batch size" in out["errors"][1]


def _grad_cache_worker(rank, world):
    torch.manual_seed(0)
    model = _DualEncoder().eval()  # identical weights on every rank
    gen = torch.Generator().manual_seed(10 + rank)
    batch = {"image": torch.randn(8, 6, generator=gen), "text": torch.randn(8, 5, generator=gen)}
    loss_fn = GroupedContrastiveLoss(group_size=2, chunk_size=3)

    image, text = model.encode(batch)
    ref_loss = loss_fn(image, text, model.log_scale.exp())
    ref_loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    loss = GradCacheContrastive(loss_fn).step(model.encode, split_batch(batch, 4), model.log_scale.exp())
    return _to_numpy(([loss, *[p.grad for p in model.parameters()]], [ref_loss.detach(), *ref]))


def test_grad_cache_under_two_processes_equals_the_big_batch():
    for ours, ref in run_distributed(_grad_cache_worker, 2):
        for got, want in zip(ours, ref):
            assert abs(got - want).max() <= 1e-5 * abs(want).max()
