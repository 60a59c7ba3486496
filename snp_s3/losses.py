"""SNP-S3's objectives (spec §3): MIL-NCE as coded, MoCo-MIL, LVWM scores and the gather with gradient.

* :func:`mil_nce` follows the released code (UniVL's ``MILNCELoss``): on ``S`` (M x M, M = B·P, positives
  the block-diagonal ``1_{PxP}``), row ``r`` concatenates column ``r`` of ``S`` with row ``r`` of ``S`` whose
  positives are set to -1e12; ``l_r = -log sum_pos softmax(row r)``; the loss averages rows ``b·P + P//2``.
  No temperature. With P = 1: ``l_b = -log(e^{s_bb} / (sum_j e^{s_jb} + sum_{j!=b} e^{s_bj}))``.
* :func:`mil_nce_text_clips` is MIL-NCE of texts (B) against clips (B·P): the text rows are repeated P times
  (as the code repeats each caption per clip), so that ``S`` is square.
* :func:`moco_loss`: ``mean[LSE([pos; neg]/T) - LSE(pos/T)]`` with several positives per query.
* :func:`lvwm_scores`: ``s_{i,j,p} = LSE_k <w_{i,k}, v_{j,p}>`` over the K chosen words of caption i.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def mil_nce(sim: Tensor, clips_per_video: int) -> Tensor:
    """MIL-NCE as coded (module docstring). ``sim`` (M, M) with M = B·P; row/column ``b·P + p``."""
    m = sim.shape[0]
    p = clips_per_video
    if sim.shape != (m, m) or m % p:
        raise ValueError(f"sim must be square with a multiple of {p} rows, got {tuple(sim.shape)}")
    blocks = torch.arange(m, device=sim.device) // p
    pos = blocks[:, None] == blocks[None, :]  # (M, M)
    from_text = sim.masked_fill(pos, -1e12)
    rows = torch.cat([sim.t(), from_text], dim=1)  # (M, 2M)
    logp = rows.log_softmax(dim=1)
    pos2 = torch.cat([pos, torch.zeros_like(pos)], dim=1)
    per_row = -torch.logsumexp(logp.masked_fill(~pos2, float("-inf")), dim=1)  # (M,)
    return per_row[torch.arange(m // p, device=sim.device) * p + p // 2].mean()


def mil_nce_text_clips(sim_tc: Tensor, clips_per_video: int) -> Tensor:
    """MIL-NCE of B texts against B·P clips: ``sim_tc`` (B, B·P), text b's positives = video b's clips."""
    return mil_nce(sim_tc.repeat_interleave(clips_per_video, dim=0), clips_per_video)


def moco_loss(pos: Tensor, neg: Tensor, temperature: float) -> Tensor:
    """``mean_q [LSE([pos_q; neg_q]/T) - LSE(pos_q/T)]``; ``pos`` (Q, K_pos), ``neg`` (Q, K_neg)."""
    all_ = torch.cat([pos, neg], dim=1) / temperature
    return (torch.logsumexp(all_, dim=1) - torch.logsumexp(pos / temperature, dim=1)).mean()


def lvwm_scores(words: Tensor, clips: Tensor) -> Tensor:
    """``words`` (B_t, K, D) unnormalised word vectors, ``clips`` (B_v, P, D) -> (B_t, B_v·P) scores."""
    s = torch.einsum("ikd,jpd->ijpk", words, clips)  # (B_t, B_v, P, K)
    return torch.logsumexp(s, dim=-1).flatten(1)


def masked_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Vocabulary cross-entropy at labelled positions (-1 = ignore); 0 when nothing is labelled."""
    if not bool((labels >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=-1)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


# Adapted from tpm_cl/losses.py (gather_with_grad)
def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` over ranks keeping the gradient to the local rows (identity on one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` over ranks (MoCo keys: all ranks' keys are enqueued)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)
