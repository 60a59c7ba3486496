"""Triton kernels for the tiled bidirectional InfoNCE of :mod:`common.contrastive`.

Both kernels follow the tile loop of the PyTorch path (see :func:`common.contrastive._torch_lse_stats` and
``_torch_lse_grads``) with the logits ``S = a @ b.T`` never leaving registers:

* ``lse_stats``: one sweep gives the row log-sum-exp (over all columns) and the column log-sum-exp (over all
  rows). Each program owns a set of column tiles (``pid, pid + P, ...``) and walks all row tiles: the column
  statistics stay in registers (online max and rescaled sum, as in FlashAttention, Dao et al. 2022,
  arXiv 2205.14135), the row statistics are merged into the program's own row of a ``(P, m)`` buffer that the
  host reduces with one ``logsumexp``. Memory is ``O(P m)``, linear in the batch.
* ``lse_grads``: the same ownership; per tile it recomputes ``S``, forms
  ``G = w_row exp(S - row_lse) + w_col exp(S - col_lse)`` and adds ``G.T @ a`` to the program's own column
  gradient rows (no race) and ``G @ b`` to the row gradients with atomic adds, as FlashAttention-2 does for
  dQ (Dao, 2023, arXiv 2307.08691). So the matrix is multiplied once forward and three times backward
  (recompute, two gradient products).

fp32 inputs use IEEE fp32 products (``input_precision="ieee"``) so that results agree with the PyTorch path to
fp32 rounding; bf16/fp16 inputs use the tensor cores with fp32 accumulation. The kernels also run on CPU
tensors under ``TRITON_INTERPRET=1``, which is how the tests check them without a GPU.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["lse_grads", "lse_stats"]


@triton.jit
def _lse_fwd_kernel(
    a_ptr,
    b_ptr,
    rowbuf_ptr,
    col_ptr,
    M,
    N,
    D,
    stride_a,
    stride_b,
    NUM_PROGRAMS,
    NEED_COL: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    num_col_tiles = tl.cdiv(N, BLOCK_N)
    for col_tile in range(pid, num_col_tiles, NUM_PROGRAMS):
        offs_n = col_tile * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        col_max = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        col_sum = tl.zeros((BLOCK_N,), tl.float32)
        for row0 in range(0, M, BLOCK_M):
            offs_m = row0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < M
            s = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
            for k0 in range(0, D, BLOCK_D):
                offs_k = k0 + tl.arange(0, BLOCK_D)
                mask_k = offs_k < D
                a = tl.load(
                    a_ptr + offs_m[:, None] * stride_a + offs_k[None, :],
                    mask=mask_m[:, None] & mask_k[None, :],
                    other=0.0,
                )
                b = tl.load(
                    b_ptr + offs_n[:, None] * stride_b + offs_k[None, :],
                    mask=mask_n[:, None] & mask_k[None, :],
                    other=0.0,
                )
                s = tl.dot(a, tl.trans(b), acc=s, input_precision=PRECISION)
            s = tl.where(mask_m[:, None] & mask_n[None, :], s, float("-inf"))

            # Padded rows have max -inf; shifting them by 0 keeps the arithmetic finite (they are not stored).
            tile_max = tl.where(mask_m, tl.max(s, 1), 0.0)
            tile_lse = tile_max + tl.log(tl.sum(tl.exp(s - tile_max[:, None]), 1))
            row_ptrs = rowbuf_ptr + pid * M + offs_m
            prev = tl.load(row_ptrs, mask=mask_m, other=float("-inf"))
            hi = tl.maximum(prev, tile_lse)
            tl.store(row_ptrs, hi + tl.log(tl.exp(prev - hi) + tl.exp(tile_lse - hi)), mask=mask_m)

            if NEED_COL:
                new_max = tl.where(mask_n, tl.maximum(col_max, tl.max(s, 0)), 0.0)
                col_sum = col_sum * tl.exp(col_max - new_max) + tl.sum(tl.exp(s - new_max[None, :]), 0)
                col_max = new_max
        if NEED_COL:
            tl.store(col_ptr + offs_n, col_max + tl.log(col_sum), mask=mask_n)


@triton.jit
def _lse_bwd_kernel(
    a_ptr,
    b_ptr,
    row_lse_ptr,
    col_lse_ptr,
    row_w_ptr,
    col_w_ptr,
    ga_ptr,
    gb_ptr,
    col_dot_ptr,
    M,
    N,
    D,
    stride_a,
    stride_b,
    NUM_PROGRAMS,
    HAS_COL: tl.constexpr,
    NEED_B_GRAD: tl.constexpr,
    NEED_COL_DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    num_col_tiles = tl.cdiv(N, BLOCK_N)
    for col_tile in range(pid, num_col_tiles, NUM_PROGRAMS):
        offs_n = col_tile * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        if HAS_COL:
            c_lse = tl.load(col_lse_ptr + offs_n, mask=mask_n, other=float("inf"))
            c_w = tl.load(col_w_ptr + offs_n, mask=mask_n, other=0.0)
        col_dot = tl.zeros((BLOCK_N,), tl.float32)
        for row0 in range(0, M, BLOCK_M):
            offs_m = row0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < M
            r_lse = tl.load(row_lse_ptr + offs_m, mask=mask_m, other=float("inf"))
            r_w = tl.load(row_w_ptr + offs_m, mask=mask_m, other=0.0)
            s = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
            for k0 in range(0, D, BLOCK_D):
                offs_k = k0 + tl.arange(0, BLOCK_D)
                mask_k = offs_k < D
                a = tl.load(
                    a_ptr + offs_m[:, None] * stride_a + offs_k[None, :],
                    mask=mask_m[:, None] & mask_k[None, :],
                    other=0.0,
                )
                b = tl.load(
                    b_ptr + offs_n[:, None] * stride_b + offs_k[None, :],
                    mask=mask_n[:, None] & mask_k[None, :],
                    other=0.0,
                )
                s = tl.dot(a, tl.trans(b), acc=s, input_precision=PRECISION)
            g = tl.exp(s - r_lse[:, None]) * r_w[:, None]
            if HAS_COL:
                e_col = tl.exp(s - c_lse[None, :])
                if NEED_COL_DOT:
                    col_dot += tl.sum(e_col * s, 0)
                g += e_col * c_w[None, :]
            g = tl.where(mask_m[:, None] & mask_n[None, :], g, 0.0)

            for k0 in range(0, D, BLOCK_D):
                offs_k = k0 + tl.arange(0, BLOCK_D)
                mask_k = offs_k < D
                b = tl.load(
                    b_ptr + offs_n[:, None] * stride_b + offs_k[None, :],
                    mask=mask_n[:, None] & mask_k[None, :],
                    other=0.0,
                )
                da = tl.dot(g.to(b.dtype), b, input_precision=PRECISION)  # (BLOCK_M, BLOCK_D)
                tl.atomic_add(
                    ga_ptr + offs_m[:, None] * D + offs_k[None, :], da, mask=mask_m[:, None] & mask_k[None, :]
                )
                if NEED_B_GRAD:
                    a = tl.load(
                        a_ptr + offs_m[:, None] * stride_a + offs_k[None, :],
                        mask=mask_m[:, None] & mask_k[None, :],
                        other=0.0,
                    )
                    db = tl.dot(tl.trans(g).to(a.dtype), a, input_precision=PRECISION)  # (BLOCK_N, BLOCK_D)
                    # This program owns these columns: a plain read-add-write is race-free.
                    gb_ptrs = gb_ptr + offs_n[:, None] * D + offs_k[None, :]
                    gb_mask = mask_n[:, None] & mask_k[None, :]
                    tl.store(gb_ptrs, tl.load(gb_ptrs, mask=gb_mask, other=0.0) + db, mask=gb_mask)
        if NEED_COL_DOT:
            tl.store(col_dot_ptr + offs_n, col_dot, mask=mask_n)


def _config(
    a: Tensor, n: int, block_m: int | None, block_n: int | None, block_d: int | None, programs: int | None
):
    # 64 x 64 logit tiles with 32-wide feature slices keep a program's registers small for any feature size.
    block_m = block_m or 64
    block_n = block_n or 64
    block_d = block_d or 32
    tiles = math.ceil(n / block_n)
    if programs is None:
        sms = torch.cuda.get_device_properties(a.device).multi_processor_count if a.is_cuda else 4
        programs = 4 * sms
    precision = "ieee" if a.dtype == torch.float32 else "tf32"
    return block_m, block_n, block_d, max(1, min(tiles, programs)), precision


def lse_stats(
    a: Tensor,
    b: Tensor,
    need_col: bool = True,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
    block_d: int | None = None,
    programs: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Row and (optionally) column log-sum-exp of ``a @ b.T`` (fp32), as
    ``common.contrastive._torch_lse_stats``.

    Args:
        a: ``(m, d)`` rows, already multiplied by the logit scale.
        b: ``(n, d)`` columns, same dtype as ``a``.
        need_col: also return the column statistics.
        block_m, block_n, block_d, programs: tile sizes and program count (defaults for GPUs).
    """
    a, b = a.contiguous(), b.contiguous()
    m, d = a.shape
    n = b.shape[0]
    block_m, block_n, block_d, programs, precision = _config(a, n, block_m, block_n, block_d, programs)
    rowbuf = torch.full((programs, m), -math.inf, device=a.device, dtype=torch.float32)
    col = torch.empty((n if need_col else 1,), device=a.device, dtype=torch.float32)
    _lse_fwd_kernel[(programs,)](
        a, b, rowbuf, col, m, n, d, a.stride(0), b.stride(0), programs,
        NEED_COL=need_col, PRECISION=precision, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
    )  # fmt: skip
    return torch.logsumexp(rowbuf, 0), (col if need_col else None)


def lse_grads(
    a: Tensor,
    b: Tensor,
    row_lse: Tensor,
    col_lse: Tensor | None,
    row_weight: Tensor,
    col_weight: Tensor | None,
    need_b_grad: bool,
    need_col_dot: bool,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
    block_d: int | None = None,
    programs: int | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``G @ b``, ``G.T @ a`` and column dots, as ``common.contrastive._torch_lse_grads`` (fp32)."""
    a, b = a.contiguous(), b.contiguous()
    m, d = a.shape
    n = b.shape[0]
    block_m, block_n, block_d, programs, precision = _config(a, n, block_m, block_n, block_d, programs)
    has_col = col_lse is not None and col_weight is not None
    f32 = {"device": a.device, "dtype": torch.float32}
    ga = torch.zeros((m, d), **f32)
    gb = torch.zeros((n, d), **f32) if need_b_grad else torch.empty((1,), **f32)
    col_dot = torch.zeros((n,), **f32) if need_col_dot and has_col else torch.empty((1,), **f32)
    dummy = torch.empty((1,), **f32)
    _lse_bwd_kernel[(programs,)](
        a, b, row_lse.float().contiguous(),
        col_lse.float().contiguous() if has_col else dummy,
        row_weight.float().contiguous(),
        col_weight.float().contiguous() if has_col else dummy,
        ga, gb, col_dot, m, n, d, a.stride(0), b.stride(0), programs,
        HAS_COL=has_col, NEED_B_GRAD=need_b_grad, NEED_COL_DOT=need_col_dot and has_col, PRECISION=precision,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
    )  # fmt: skip
    return ga, (gb if need_b_grad else None), (col_dot if need_col_dot and has_col else None)
