"""Exact, memory-flat, grouped contrastive (InfoNCE) losses for image-text and video-text training.

What it implements, and where each part comes from:

* The bidirectional InfoNCE of CLIP (Radford et al., 2021, arXiv 2103.00020): the mean of the image-to-text
  and text-to-image cross-entropies with the positives on the diagonal. ``logit_scale`` is already
  exponentiated, as in open_clip.
* The distributed semantics of open_clip's ``ClipLoss(local_loss=True, gather_with_grad=True)``
  (``open_clip/loss.py``): rank ``r`` holding local rows ``x_r, y_r`` (``b`` each) computes
  ``L_r = 1/2 [CE(s x_r Y^T, idx_r) + CE(s y_r X^T, idx_r)]`` against the gathered ``X, Y`` (``W b`` rows),
  and the gradient that reaches rank ``r``'s features is the sum over all ranks' losses (open_clip's
  all-gather backward sums the column gradients). Values and gradients (features and ``logit_scale``) here are
  the same, per rank.
* Tiling with log-sum-exp statistics, after Inf-CL (Wang et al., 2024, arXiv 2410.17243), but bidirectional in
  one sweep: the forward pass keeps only the row and column log-sum-exp vectors of ``S = s X Y^T`` and the
  backward pass recomputes each tile. One sweep gives both directions, so the matrix is multiplied once
  forward and, per tile, once to recompute plus twice for the two gradient products backward. No ``N x N`` or
  ``b x N`` tensor is ever held; the largest temporary is a ``chunk x chunk`` tile.
* Collaborative distributed evaluation: rank ``r`` only scores its own image rows against the gathered text
  columns, ``S[rows_r, :]``. The text-to-image log-sum-exp of every column is a log-sum-exp over the ranks'
  partial column statistics, reduced with two all-reduces of ``W b`` floats; so only the text features are
  gathered (open_clip gathers both) and each rank multiplies a ``b x W b`` strip once (open_clip twice).
* Grouped gathering and batch accumulation (GBA-ITC) of M2-Encoder (Guo et al., 2024, arXiv 2401.15896, Fig.
  on GBA-ITC; ``shared/specs/m2_encoder.md`` section 3): :class:`GroupedContrastiveLoss` gathers only inside
  consecutive groups of ranks (a node); ``extra_image_features`` / ``extra_text_features`` append detached
  columns from earlier steps (the spec's ``buffer`` mode, held by :class:`FeatureBuffer`); and
  :class:`GradCacheContrastive` implements the ``accumulate`` mode with the GradCache recipe (Gao et al.,
  2021, arXiv 2101.06983): no-grad forward of k micro-batches, loss over their union, re-forward with the
  cached feature gradients.

``logit_bias`` (SigLIP-style, a single number) is accepted for API compatibility with open_clip. A constant
added to every logit cancels in each softmax cross-entropy, so it changes neither the value nor any gradient;
its own gradient is exactly zero (open_clip returns a rounding-level number).

Backends: on CUDA with Triton installed the tiles run in the fused kernels of
:mod:`common.kernels.contrastive_triton`; otherwise (CPU, or no Triton) in the PyTorch tile loop below.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "CollectiveCounter",
    "FeatureBuffer",
    "GradCacheContrastive",
    "GroupedContrastiveLoss",
    "auto_chunk_size",
    "clip_loss",
    "count_collectives",
    "split_batch",
]

# ------------------------------------------------------------------------------------------------------------
# Collectives, with a byte counter for the benchmark
# ------------------------------------------------------------------------------------------------------------


@dataclass
class CollectiveCounter:
    """Bytes moved by the loss's collectives while a :func:`count_collectives` block is open.

    ``calls`` holds ``(op, payload_bytes, group_size)`` per collective, where the payload is the full tensor a
    ring algorithm moves: the gathered output of an all-gather, the input of a reduce-scatter or all-reduce.
    ``sent_bytes_per_rank`` applies the ring algorithm's cost per rank: ``(W-1)/W`` of the payload for an
    all-gather or a reduce-scatter, ``2 (W-1)/W`` for an all-reduce.
    """

    calls: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def payload_bytes(self) -> int:
        return sum(nbytes for _, nbytes, _ in self.calls)

    @property
    def sent_bytes_per_rank(self) -> float:
        total = 0.0
        for op, nbytes, world in self.calls:
            factor = 2.0 if op == "all_reduce" else 1.0
            total += factor * (world - 1) / world * nbytes
        return total


_COUNTERS: list[CollectiveCounter] = []


@contextmanager
def count_collectives() -> Iterator[CollectiveCounter]:
    """Count the bytes of every collective the losses and :class:`FeatureBuffer` issue inside the block."""
    counter = CollectiveCounter()
    _COUNTERS.append(counter)
    try:
        yield counter
    finally:
        _COUNTERS.remove(counter)


def _record(op: str, tensor: Tensor, world: int) -> None:
    for counter in _COUNTERS:
        counter.calls.append((op, tensor.numel() * tensor.element_size(), world))


# torch 2.14 renamed the tensor collectives; keep working on both names.
_all_gather_single = getattr(dist, "all_gather_single", None) or getattr(dist, "all_gather_into_tensor", None)
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or getattr(
    dist, "reduce_scatter_tensor", None
)


class _Comm:
    """The process group a loss gathers in: rank and size in it, and byte-counted collectives."""

    def __init__(self, group: Any | None) -> None:
        self.group = group
        self.active = group is not None
        self.rank = dist.get_rank(group) if self.active else 0
        self.world = dist.get_world_size(group) if self.active else 1

    def all_gather(self, tensor: Tensor) -> Tensor:
        if self.world == 1:
            return tensor
        tensor = tensor.contiguous()
        out = tensor.new_empty((self.world * tensor.shape[0], *tensor.shape[1:]))
        _record("all_gather", out, self.world)
        _all_gather_single(out, tensor, group=self.group)
        return out

    def all_reduce(self, tensor: Tensor, op: Any = None) -> Tensor:
        if self.world > 1:
            _record("all_reduce", tensor, self.world)
            dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM, group=self.group)
        return tensor

    def reduce_scatter(self, tensor: Tensor) -> Tensor:
        if self.world == 1:
            return tensor
        tensor = tensor.contiguous()
        out = tensor.new_empty((tensor.shape[0] // self.world, *tensor.shape[1:]))
        _record("reduce_scatter", tensor, self.world)
        _reduce_scatter_single(out, tensor, group=self.group)
        return out


def _default_group() -> Any | None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


# ------------------------------------------------------------------------------------------------------------
# Tile backends: S = a @ b.T with `a` pre-multiplied by the logit scale
# ------------------------------------------------------------------------------------------------------------

_CPU_CHUNK = 512
_CUDA_CHUNK = 4096


def auto_chunk_size(num_rows: int, num_cols: int, device: torch.device | str = "cpu") -> int:
    """The tile edge used when ``chunk_size=None``.

    Rule: 512 on CPU and 4096 on CUDA (PyTorch path; the Triton kernels pick their own blocks), capped by the
    larger matrix side. A 512 x 512 fp32 tile is 1 MiB and each pass reuses two tile buffers, so the loss's
    own memory is a few MiB beside the ``(b, d)`` gradients it must return; ``512 x d`` by ``d x 512``
    products still run at the BLAS library's speed (``benchmarks/results/contrastive.md`` has the tile-size
    sweep: 1024 is as fast and 1024 and 2048 cost more memory).
    """
    base = _CUDA_CHUNK if torch.device(device).type == "cuda" else _CPU_CHUNK
    return max(1, min(base, max(num_rows, num_cols)))


def _acc_dtype(tensor: Tensor) -> torch.dtype:
    """Statistics and gradients accumulate in fp32, or in fp64 for fp64 inputs (gradcheck)."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _torch_lse_stats(
    a: Tensor, b: Tensor, scale: Tensor, chunk: int, need_col: bool
) -> tuple[Tensor, Tensor | None]:
    """Row log-sum-exp (over all of ``b``) and column log-sum-exp (over all of ``a``) of ``scale a @ b.T``."""
    m, n = a.shape[0], b.shape[0]
    acc = _acc_dtype(a)
    row = torch.full((m,), -math.inf, device=a.device, dtype=acc)
    col = torch.full((n,), -math.inf, device=a.device, dtype=acc) if need_col else None
    # Two tile buffers reused by every tile: the allocator never sees a quadratic request.
    tile = a.new_empty((min(chunk, m), min(chunk, n)), dtype=acc)
    work = torch.empty_like(tile)
    for i0 in range(0, m, chunk):
        a_i = (a[i0 : i0 + chunk] * scale.to(a.dtype)).to(acc)  # (c, d): scaling rows is cheaper than tiles
        row_i = row[i0 : i0 + chunk]
        for j0 in range(0, n, chunk):
            b_j = b[j0 : j0 + chunk].to(acc)
            s = torch.mm(a_i, b_j.T, out=tile[: a_i.shape[0], : b_j.shape[0]])
            e = work[: s.shape[0], : s.shape[1]]
            peak = s.amax(1, keepdim=True)
            tile_lse = torch.sub(s, peak, out=e).exp_().sum(1).log_().add_(peak[:, 0])
            torch.logaddexp(row_i, tile_lse, out=row_i)
            if col is not None:
                col_j = col[j0 : j0 + chunk]
                peak = s.amax(0, keepdim=True)
                tile_lse = torch.sub(s, peak, out=e).exp_().sum(0).log_().add_(peak[0])
                torch.logaddexp(col_j, tile_lse, out=col_j)
    return row, col


def _torch_lse_grads(
    a: Tensor,
    b: Tensor,
    scale: Tensor,
    row_lse: Tensor,
    col_lse: Tensor | None,
    row_weight: Tensor,
    col_weight: Tensor | None,
    chunk: int,
    need_b_grad: bool,
    need_col_dot: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Products with ``G = row_weight_i exp(S - row_lse_i) + col_weight_j exp(S - col_lse_j)``.

    With ``S = scale a @ b.T``, returns ``G @ b`` (m, d), ``G.T @ (scale a)`` (n, d) when ``need_b_grad``,
    and ``sum_i exp(S_ij - col_lse_j) S_ij`` (n,) when ``need_col_dot`` (the per-column part of the
    ``logit_scale`` gradient). Columns without a column term carry ``col_weight = 0`` and ``col_lse = +inf``.
    """
    m, n, d = a.shape[0], b.shape[0], a.shape[1]
    acc = _acc_dtype(a)
    ga = torch.zeros((m, d), device=a.device, dtype=acc)
    gb = torch.zeros((n, d), device=a.device, dtype=acc) if need_b_grad else None
    col_dot = torch.zeros((n,), device=a.device, dtype=acc) if need_col_dot else None
    has_col = col_lse is not None and col_weight is not None
    tile = a.new_empty((min(chunk, m), min(chunk, n)), dtype=acc)
    work = torch.empty_like(tile) if has_col else None
    for i0 in range(0, m, chunk):
        a_i = a[i0 : i0 + chunk].to(acc) * scale
        row_i = row_lse[i0 : i0 + chunk, None]
        w_i = row_weight[i0 : i0 + chunk, None]
        for j0 in range(0, n, chunk):
            b_j = b[j0 : j0 + chunk].to(acc)
            s = torch.mm(a_i, b_j.T, out=tile[: a_i.shape[0], : b_j.shape[0]])  # (c, c) recomputed tile
            if has_col:
                e_col = torch.sub(
                    s, col_lse[None, j0 : j0 + chunk], out=work[: s.shape[0], : s.shape[1]]
                ).exp_()
                if col_dot is not None:
                    col_dot[j0 : j0 + chunk] += (e_col * s).sum(0)
                e_col.mul_(col_weight[None, j0 : j0 + chunk])
            g = s.sub_(row_i).exp_().mul_(w_i)  # reuses the tile's storage
            if has_col:
                g.add_(e_col)
            ga[i0 : i0 + chunk].addmm_(g, b_j)
            if gb is not None:
                gb[j0 : j0 + chunk].addmm_(g.T, a_i)
    return ga, gb, col_dot


def _use_triton(tensor: Tensor) -> bool:
    if not tensor.is_cuda:
        return False
    from common.kernels import triton_available

    return triton_available()


def _lse_stats(
    a: Tensor, b: Tensor, scale: Tensor, chunk: int, need_col: bool
) -> tuple[Tensor, Tensor | None]:
    if _use_triton(a):
        from common.kernels.contrastive_triton import lse_stats

        return lse_stats(a * scale.to(a.dtype), b, need_col=need_col)
    return _torch_lse_stats(a, b, scale, chunk, need_col)


def _lse_grads(
    a: Tensor, b: Tensor, scale: Tensor, *args: Any
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    if _use_triton(a):
        from common.kernels.contrastive_triton import lse_grads

        row_lse, col_lse, row_weight, col_weight, _chunk, need_b_grad, need_col_dot = args
        a = a * scale.to(a.dtype)
        return lse_grads(a, b, row_lse, col_lse, row_weight, col_weight, need_b_grad, need_col_dot)
    return _torch_lse_grads(a, b, scale, *args)


# ------------------------------------------------------------------------------------------------------------
# The autograd function
# ------------------------------------------------------------------------------------------------------------


class _TiledClipLoss(torch.autograd.Function):
    """Rank-local InfoNCE of open_clip's ``local_loss=True`` semantics, tiled; see the module docstring.

    Notation: ``b`` local rows, ``W`` ranks in the group, ``n = W b`` group columns, ``e`` extra columns.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        y: Tensor,
        scale: Tensor,
        x_extra: Tensor | None,
        y_extra: Tensor | None,
        comm: _Comm,
        chunk: int | None,
    ) -> Tensor:
        b = x.shape[0]
        s = scale.detach().reshape(()).to(_acc_dtype(x))
        y_all = comm.all_gather(y.detach())  # (n, d)
        n = y_all.shape[0]
        off = comm.rank * b
        chunk = chunk or auto_chunk_size(b, n + (0 if y_extra is None else y_extra.shape[0]), x.device)

        row_lse, col_part = _lse_stats(x, y_all, s, chunk, need_col=True)
        if y_extra is not None:
            row_lse = torch.logaddexp(row_lse, _lse_stats(x, y_extra, s, chunk, need_col=False)[0])
        if x_extra is not None:
            # Own texts also score the extra images; fold them in before the ranks' statistics are combined,
            # so the reduced column statistics already hold every text's full normaliser.
            own = col_part[off : off + b]
            torch.logaddexp(own, _lse_stats(y, x_extra, s, chunk, need_col=False)[0], out=own)
        col_lse = _reduce_lse(col_part, comm)  # (n,)

        pos = torch.bmm(x.to(s.dtype)[:, None, :], y.to(s.dtype)[:, :, None]).reshape(b) * s  # (b,) positives
        loss = 0.5 * ((row_lse - pos).mean() + (col_lse[off : off + b] - pos).mean())

        ctx.save_for_backward(x, y, scale, y_all, row_lse, col_lse, x_extra, y_extra)
        ctx.comm, ctx.chunk, ctx.off = comm, chunk, off
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, y, scale, y_all, row_lse, col_lse, x_extra, y_extra = ctx.saved_tensors
        comm, chunk, off = ctx.comm, ctx.chunk, ctx.off
        b = x.shape[0]
        need_x, need_y, need_s = ctx.needs_input_grad[:3]
        s = scale.detach().reshape(()).to(_acc_dtype(x))
        g = grad.detach().reshape(()).to(s.dtype)
        # Column terms belong to the columns' owners, whose upstream gradients may differ from ours.
        g_all = comm.all_gather(g.reshape(1))  # (W,)
        row_w = (g / (2 * b)).expand(b)
        col_w = (g_all / (2 * b)).repeat_interleave(b)  # (n,)
        need_col_dot = need_s and comm.world > 1
        ga, gb, col_dot = _lse_grads(
            x, y_all, s, row_lse, col_lse, row_w, col_w, chunk, need_y or need_s, need_col_dot
        )
        if y_extra is not None:
            ga.add_(_lse_grads(x, y_extra, s, row_lse, None, row_w, None, chunk, False, False)[0])
        ga_text = None
        if x_extra is not None:
            own_lse = col_lse[off : off + b]
            ga_text = _lse_grads(y, x_extra, s, own_lse, None, row_w, None, chunk, False, False)[0]

        # The (b, d) results are finished in place: no further feature-sized temporaries.
        dx = dy = ds = None
        xf, yf = x.to(s.dtype), y.to(s.dtype)
        pos_coef = -(g / b) * s  # the positive pair's logit appears in both directions
        if need_y or need_s:
            # One reduce-scatter returns both the column gradients and, for the scale, the per-column dots.
            payload = gb if col_dot is None else torch.cat([gb, col_dot[:, None]], 1)
            own = comm.reduce_scatter(payload)  # (b, d [+1])
        if need_s:
            # d(sum G o S)/ds = sum_i x_i . (G Y)_i over the strip; in a group, the column terms of other
            # ranks' texts are swapped for the column terms of our own texts, which the reduce-scatter
            # brought back.
            strip = torch.dot(xf.reshape(-1), ga.reshape(-1))
            if col_dot is not None:
                strip = strip - (col_w * col_dot).sum() / s + (g / (2 * b)) * own[:, -1].sum() / s
            if ga_text is not None:
                strip = strip + torch.dot(yf.reshape(-1), ga_text.reshape(-1))
            pairs = torch.dot(xf.reshape(-1), yf.reshape(-1))
            ds = (strip - (g / b) * pairs).reshape(scale.shape).to(scale.dtype)
        if need_y:
            gy = own[:, : y.shape[1]].addcmul_(xf, pos_coef)
            if ga_text is not None:
                gy.addcmul_(ga_text, s)
            dy = gy.to(y.dtype)
        if need_x:
            dx = ga.mul_(s).addcmul_(yf, pos_coef).to(x.dtype)
        return dx, dy, ds, None, None, None, None


def _reduce_lse(partial: Tensor, comm: _Comm) -> Tensor:
    """Elementwise log-sum-exp over ranks of per-rank partial log-sum-exps (two all-reduces)."""
    if comm.world == 1:
        return partial
    peak = comm.all_reduce(partial.clone(), dist.ReduceOp.MAX)
    total = comm.all_reduce(torch.exp(partial - peak))
    return peak + torch.log(total)


# ------------------------------------------------------------------------------------------------------------
# Public functional API
# ------------------------------------------------------------------------------------------------------------


def _check_2d(name: str, tensor: Any) -> None:
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch, dim), got shape {tuple(tensor.shape)}")


def _validate(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | None,
    extra_image_features: Tensor | None,
    extra_text_features: Tensor | None,
) -> Tensor:
    _check_2d("image_features", image_features)
    _check_2d("text_features", text_features)
    if image_features.shape != text_features.shape:
        raise ValueError(
            "image_features and text_features must have the same shape (one positive pair per row), got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    if image_features.shape[0] == 0:
        raise ValueError("the local batch is empty")
    dim = image_features.shape[1]
    for name, extra in (
        ("extra_image_features", extra_image_features),
        ("extra_text_features", extra_text_features),
    ):
        if extra is not None:
            _check_2d(name, extra)
            if extra.shape[1] != dim:
                raise ValueError(f"{name} has feature size {extra.shape[1]}, the batch has {dim}")
    if not isinstance(logit_scale, Tensor):
        logit_scale = torch.tensor(float(logit_scale), device=image_features.device)
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must hold one number, got shape {tuple(logit_scale.shape)}")
    if logit_bias is not None and (not isinstance(logit_bias, Tensor) or logit_bias.numel() != 1):
        raise ValueError("logit_bias must be a tensor holding one number (a constant added to every logit)")
    return logit_scale


def _check_equal_local_batches(batch: int, comm: _Comm, device: torch.device) -> None:
    if comm.world == 1:
        return
    sizes = comm.all_gather(torch.tensor([batch], device=device, dtype=torch.int64)).tolist()
    if len(set(sizes)) != 1:
        raise ValueError(
            f"every rank of a contrastive group must hold the same local batch size (rank i's rows are the "
            f"i-th block of the gathered batch); got {sizes} across the {comm.world} ranks of the group"
        )


def _loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | None,
    chunk_size: int | None,
    group: Any | None,
    extra_image_features: Tensor | None,
    extra_text_features: Tensor | None,
) -> Tensor:
    scale = _validate(
        image_features, text_features, logit_scale, logit_bias, extra_image_features, extra_text_features
    )
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    comm = _Comm(group)
    _check_equal_local_batches(image_features.shape[0], comm, image_features.device)
    x_extra = None if extra_image_features is None else extra_image_features.detach().to(image_features.dtype)
    y_extra = None if extra_text_features is None else extra_text_features.detach().to(text_features.dtype)
    loss = _TiledClipLoss.apply(image_features, text_features, scale, x_extra, y_extra, comm, chunk_size)
    if logit_bias is not None:
        # The bias cancels in every cross-entropy; keep it in the graph with its exact (zero) gradient.
        loss = loss + 0.0 * logit_bias.sum()
    return loss


def clip_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | None = None,
    *,
    chunk_size: int | None = None,
    process_group: Any | None = None,
    extra_image_features: Tensor | None = None,
    extra_text_features: Tensor | None = None,
) -> Tensor:
    """Bidirectional InfoNCE (CLIP), exact, tiled and memory-flat.

    Single process: ``1/2 [CE(s X Y^T, I) + CE(s Y X^T, I)]`` with the positives on the diagonal. Under
    ``torch.distributed`` (``process_group`` or, when None and a group with more than one rank is initialised,
    the default group): rank ``r`` scores its own rows against all gathered columns, with the value and the
    gradients of ``open_clip.loss.ClipLoss(local_loss=True, gather_with_grad=True)``, per rank.

    Args:
        image_features: ``(b, d)`` local image (or video) embeddings, usually L2-normalised.
        text_features: ``(b, d)`` local text embeddings; row ``i`` is the positive of image row ``i``.
        logit_scale: the temperature's inverse, already exponentiated (a tensor, may require grad).
        logit_bias: optional single-number bias added to every logit; it cancels (see the module docstring).
        chunk_size: tile edge; None picks :func:`auto_chunk_size`. Does not change the result beyond rounding.
        process_group: the ranks to gather in; every rank of it must hold the same local batch size.
        extra_image_features: ``(e, d)`` detached image columns from earlier steps, extra negatives for the
            local texts (GBA-ITC ``buffer`` mode). Every rank of the group must pass the same ones.
        extra_text_features: ``(e', d)`` detached text columns, extra negatives for the local images.

    Returns:
        The scalar loss of this rank.

    Raises:
        ValueError: non-2-D inputs, mismatched shapes, unequal local batch sizes inside the group, a
            ``logit_scale``/``logit_bias`` that is not a single number, or a bad ``chunk_size``.
    """
    group = process_group if process_group is not None else _default_group()
    return _loss(
        image_features,
        text_features,
        logit_scale,
        logit_bias,
        chunk_size,
        group,
        extra_image_features,
        extra_text_features,
    )


class GroupedContrastiveLoss(nn.Module):
    """Grouped InfoNCE (M2-Encoder's Grouped-ITC): features are gathered only inside a group of ranks.

    Ranks form consecutive groups of ``group_size`` (ranks ``0..g-1``, ``g..2g-1``, ...; a group is meant to
    be one node, so the loss causes no inter-node traffic). Each rank contrasts its local rows against its
    group's batch, with the semantics of :func:`clip_loss` inside the group; ``group_size=None`` (or the
    world size) is exactly :func:`clip_loss` over all ranks. The sub-groups are created on the first
    distributed forward (every rank must call it, as for any ``new_group``).

    For GBA-ITC's ``buffer`` mode pass the detached group features of earlier steps as
    ``extra_image_features`` / ``extra_text_features`` (see :class:`FeatureBuffer`); for its ``accumulate``
    mode use :class:`GradCacheContrastive` with this module as the loss.

    Args:
        group_size: ranks per group; must divide the world size. None: all ranks.
        chunk_size: tile edge, as in :func:`clip_loss`.
    """

    def __init__(self, group_size: int | None = None, chunk_size: int | None = None) -> None:
        super().__init__()
        if group_size is not None and group_size < 1:
            raise ValueError(f"group_size must be positive, got {group_size}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.group_size = group_size
        self.chunk_size = chunk_size
        self._groups: dict[tuple[int, int], Any] = {}

    @property
    def process_group(self) -> Any | None:
        """The group this rank gathers in (None in a single process). Creates the sub-groups on first use."""
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        size = self.group_size or world
        if world % size:
            raise ValueError(f"group_size {size} does not divide the world size {world}")
        if world == 1:
            return None
        if size == world:
            return dist.group.WORLD
        key = (world, size)
        if key not in self._groups:
            self._groups[key], _ = dist.new_subgroups(group_size=size)
        return self._groups[key]

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor | float,
        logit_bias: Tensor | None = None,
        *,
        extra_image_features: Tensor | None = None,
        extra_text_features: Tensor | None = None,
    ) -> Tensor:
        """The loss of this rank; arguments as in :func:`clip_loss`."""
        return _loss(
            image_features,
            text_features,
            logit_scale,
            logit_bias,
            self.chunk_size,
            self.process_group,
            extra_image_features,
            extra_text_features,
        )

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, chunk_size={self.chunk_size}"


class FeatureBuffer:
    """FIFO of detached, group-gathered features from earlier steps (GBA-ITC ``buffer`` mode, MoCo-style).

    After each step, ``push`` gathers the step's local features inside the group (no gradient) and keeps the
    newest ``depth`` entries; ``features()`` returns them concatenated, newest first, to pass as
    ``extra_image_features`` / ``extra_text_features``. With ``depth = K - 1`` the current rows see
    ``K`` group batches of negatives, as in the spec's ``[Y_t; Y_{t-1..t-K+1}]``. ``is_full`` is M2-Encoder's
    ``accumulated_batches_reached``.

    Example::

        buffer = FeatureBuffer(depth=num_groups - 1)
        loss = grouped_loss(img, txt, scale, extra_image_features=buffer.features()[0],
                            extra_text_features=buffer.features()[1])
        buffer.push(img, txt, grouped_loss.process_group)

    Args:
        depth: how many earlier steps to keep (0 keeps none).
    """

    def __init__(self, depth: int) -> None:
        if depth < 0:
            raise ValueError(f"depth must be non-negative, got {depth}")
        self.depth = depth
        self._images: deque[Tensor] = deque(maxlen=depth or None)
        self._texts: deque[Tensor] = deque(maxlen=depth or None)

    def __len__(self) -> int:
        return len(self._images)

    @property
    def is_full(self) -> bool:
        return len(self) == self.depth

    def clear(self) -> None:
        self._images.clear()
        self._texts.clear()

    @torch.no_grad()
    def push(self, image_features: Tensor, text_features: Tensor, process_group: Any | None = None) -> None:
        """Gather this step's local features inside ``process_group`` and append them, dropping the oldest."""
        if self.depth == 0:
            return
        _check_2d("image_features", image_features)
        _check_2d("text_features", text_features)
        if self._images and image_features.shape[1] != self._images[0].shape[1]:
            raise ValueError("pushed features change the feature size of the buffer")
        comm = _Comm(process_group)
        self._images.appendleft(comm.all_gather(image_features.detach()).clone())
        self._texts.appendleft(comm.all_gather(text_features.detach()).clone())

    def features(self) -> tuple[Tensor | None, Tensor | None]:
        """``(images, texts)`` of all kept steps, newest first, or ``(None, None)`` when empty."""
        if not self._images:
            return None, None
        return torch.cat(list(self._images)), torch.cat(list(self._texts))


# ------------------------------------------------------------------------------------------------------------
# GradCache-style batch accumulation
# ------------------------------------------------------------------------------------------------------------


def split_batch(batch: Any, num_micro_batches: int) -> list[Any]:
    """Split a tensor, or a dict/list/tuple of tensors sharing the first dimension, into equal micro-batches.

    Raises:
        ValueError: when the batch size is not divisible by ``num_micro_batches``.
    """
    if num_micro_batches < 1:
        raise ValueError(f"num_micro_batches must be positive, got {num_micro_batches}")
    sizes = set()

    def _size(obj: Any) -> None:
        if isinstance(obj, Tensor):
            sizes.add(obj.shape[0])
        elif isinstance(obj, Mapping):
            for value in obj.values():
                _size(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                _size(value)

    _size(batch)
    if len(sizes) != 1:
        raise ValueError(f"the batch's tensors must share one batch size, got {sorted(sizes)}")
    (size,) = sizes
    if size % num_micro_batches:
        raise ValueError(f"batch size {size} is not divisible into {num_micro_batches} equal micro-batches")
    step = size // num_micro_batches

    def _slice(obj: Any, k: int) -> Any:
        if isinstance(obj, Tensor):
            return obj[k * step : (k + 1) * step]
        if isinstance(obj, Mapping):
            return {key: _slice(value, k) for key, value in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(_slice(value, k) for value in obj)
        return obj

    return [_slice(batch, k) for k in range(num_micro_batches)]


def _rng_state(device_types: set[str]) -> tuple[Tensor, list[Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if "cuda" in device_types and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, list[Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


class GradCacheContrastive:
    """GradCache-style accumulation: the gradients of one big contrastive batch from k small forward passes.

    ``step`` (1) encodes every micro-batch without gradients, (2) computes the loss over the union of their
    features (rows in micro-batch order; under ``torch.distributed`` the union is this rank's local batch and
    the loss gathers as configured), (3) caches the gradients of that loss with respect to the features and
    ``logit_scale``, and (4) re-encodes each micro-batch with gradients and back-propagates the cached feature
    gradients (the RNG state of each micro-batch is replayed, so dropout masks match the first pass). The
    parameters' ``.grad`` then equal those of one forward and backward of the whole union; memory is that of
    one micro-batch's activations plus the features. Then step the optimiser yourself.

    Example (a LightningModule with manual optimisation; M2-Encoder's GBA-ITC ``accumulate`` mode)::

        def __init__(self, ...):
            super().__init__()
            self.automatic_optimization = False
            self.grad_cache = GradCacheContrastive(GroupedContrastiveLoss(group_size=8))

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            loss = self.grad_cache.step(
                lambda mb: (self.encode_image(mb["image"]), self.encode_text(mb["text"])),
                split_batch(batch, self.hparams.num_micro_batches),
                self.logit_scale.exp().clamp(max=100),
                backward=self.manual_backward,
            )
            opt.step()
            self.log("train/loss_itc", loss)

    Under DDP each ``backward`` call all-reduces the parameter gradients; the sum of those averages is the
    average of the sums, so the result is right, and wrapping all but the last re-forward in the strategy's
    ``no_sync`` only saves traffic.

    Args:
        loss_fn: ``loss_fn(image_features, text_features, logit_scale, logit_bias, **kwargs) -> Tensor``;
            default :func:`clip_loss`. A :class:`GroupedContrastiveLoss` instance fits.
    """

    def __init__(self, loss_fn: Callable[..., Tensor] | None = None) -> None:
        self.loss_fn = loss_fn if loss_fn is not None else clip_loss

    def step(
        self,
        encode: Callable[[Any], tuple[Tensor, Tensor]],
        micro_batches: Sequence[Any],
        logit_scale: Tensor | float,
        logit_bias: Tensor | None = None,
        *,
        backward: Callable[[Tensor], Any] | None = None,
        **loss_kwargs: Any,
    ) -> Tensor:
        """Accumulate the union's gradients into the parameters; return the union's loss (detached).

        Args:
            encode: maps one micro-batch to ``(image_features, text_features)``, each ``(m, d)``.
            micro_batches: the k micro-batches (see :func:`split_batch`).
            logit_scale: as in :func:`clip_loss`; its graph (e.g. ``param.exp()``) is back-propagated once.
            logit_bias: as in :func:`clip_loss`.
            backward: how to back-propagate a scalar; default ``Tensor.backward``. In Lightning pass
                ``self.manual_backward`` so precision plugins and strategies see every backward.
            **loss_kwargs: passed to ``loss_fn`` (e.g. ``extra_text_features``).
        """
        if len(micro_batches) == 0:
            raise ValueError("micro_batches is empty")
        backward = backward or Tensor.backward
        states, images, texts = [], [], []
        with torch.no_grad():
            for micro in micro_batches:
                states.append(_rng_state({"cuda"}))
                image, text = encode(micro)
                images.append(image)
                texts.append(text)
        after = _rng_state({"cuda"})
        sizes = [im.shape[0] for im in images]
        image_all = torch.cat(images).requires_grad_(True)
        text_all = torch.cat(texts).requires_grad_(True)

        loss = self.loss_fn(image_all, text_all, logit_scale, logit_bias, **loss_kwargs)
        graph_leaves = [t for t in (logit_scale, logit_bias) if isinstance(t, Tensor) and t.requires_grad]
        grads = torch.autograd.grad(
            loss, [image_all, text_all, *graph_leaves], retain_graph=bool(graph_leaves)
        )
        image_grads = grads[0].split(sizes)
        text_grads = grads[1].split(sizes)
        # The scale and bias surrogates ride on the first re-forward, so every backward call sees them once.
        surrogate_extra = None
        for leaf, leaf_grad in zip(graph_leaves, grads[2:]):
            term = (leaf * leaf_grad).sum()
            surrogate_extra = term if surrogate_extra is None else surrogate_extra + term

        for k, micro in enumerate(micro_batches):
            _set_rng_state(states[k])
            image, text = encode(micro)
            surrogate = (image * image_grads[k]).sum() + (text * text_grads[k]).sum()
            if k == 0 and surrogate_extra is not None:
                surrogate = surrogate + surrogate_extra
            backward(surrogate)
        _set_rng_state(after)
        return loss.detach()
