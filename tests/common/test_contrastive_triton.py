"""The Triton kernels of common.kernels.contrastive_triton against the PyTorch tile loop.

On CPU the kernels run under the Triton interpreter. ``TRITON_INTERPRET`` is read when Triton is first
imported, and another test may already have imported it here, so the check runs in a fresh subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from common.kernels import triton_available

ROOT = Path(__file__).resolve().parents[2]

_INTERPRETER_CHECK = textwrap.dedent(
    """
    import warnings
    warnings.simplefilter("ignore")  # masked lanes of the padded tiles compute log(0); they are never stored
    import torch
    from common.contrastive import _torch_lse_grads, _torch_lse_stats
    from common.kernels.contrastive_triton import lse_grads, lse_stats

    def rel(got, want):
        return ((got - want).abs().max() / want.abs().max()).item()

    torch.manual_seed(0)
    blocks = dict(block_m=16, block_n=16, block_d=16)
    for m, n, d, programs in [(37, 53, 40, 2), (16, 16, 16, 1), (5, 70, 24, 3)]:
        a, b = 3.0 * torch.randn(m, d), torch.randn(n, d)
        one = torch.tensor(1.0)  # the kernels take rows already multiplied by the scale
        row, col = _torch_lse_stats(a, b, one, 16, True)
        row_k, col_k = lse_stats(a, b, True, programs=programs, **blocks)
        assert rel(row_k, row) < 1e-5 and rel(col_k, col) < 1e-5, (rel(row_k, row), rel(col_k, col))
        row_only, none = lse_stats(a, b, False, programs=programs, **blocks)
        assert none is None and rel(row_only, row) < 1e-5

        row_w, col_w = torch.rand(m), torch.rand(n)
        col_w[-3:] = 0.0
        col = col.clone()
        col[-3:] = float("inf")  # columns without a column term, as the loss passes extra columns
        want = _torch_lse_grads(a, b, one, row, col, row_w, col_w, 16, True, True)
        got = lse_grads(a, b, row, col, row_w, col_w, True, True, programs=programs, **blocks)
        for name, g, w in zip(("G @ b", "G.T @ a", "column dots"), got, want):
            assert rel(g, w) < 1e-5, (m, n, d, name, rel(g, w))
        ga, gb, dots = lse_grads(a, b, row, None, row_w, None, False, False, programs=programs, **blocks)
        assert gb is None and dots is None
        assert rel(ga, _torch_lse_grads(a, b, one, row, None, row_w, None, 16, False, False)[0]) < 1e-5
    print("ok")
    """
)


@pytest.mark.skipif(not triton_available(), reason="triton is not importable")
def test_triton_kernels_match_the_pytorch_path_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _INTERPRETER_CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_path_matches_pytorch_path_at_scale_on_cuda(dtype):
    from common.contrastive import clip_loss

    n, d = 8192, 512
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, d, device="cuda", generator=gen), dim=-1)
    y = torch.nn.functional.normalize(x + 0.5 * torch.randn(n, d, device="cuda", generator=gen), dim=-1)
    results = []
    for force_torch in (False, True):
        xi = x.to(dtype).requires_grad_()
        yi = y.to(dtype).requires_grad_()
        scale = torch.tensor(50.0, device="cuda", requires_grad=True)
        if force_torch:  # the PyTorch tile loop on the same GPU, as the reference
            import common.contrastive as module

            original = module._use_triton
            module._use_triton = lambda tensor: False
            try:
                loss = clip_loss(xi, yi, scale)
                loss.backward()
            finally:
                module._use_triton = original
        else:
            loss = clip_loss(xi, yi, scale)
            loss.backward()
        results.append([loss.detach().float(), xi.grad.float(), yi.grad.float(), scale.grad.float()])
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for got, want in zip(*results):
        assert ((got - want).abs().max() / want.abs().max()).item() < tol
