"""Similarities and objectives of DMAE + NegNCE + TPM-CL (arXiv 2309.11082; ``shared/specs/tpm_cl.md`` §3).

* :func:`token_similarity`: DRL-style token-wise ("ti") interaction between words and frames with the two
  DMAE cues: the textual cue (``text_weight``: 2 for content words, 1 for other real tokens, 0 for padding,
  used as the averaging weight of the text-to-video side) and the visual cue (a matched frame borrows
  ``0.5 * cos(f*, f**) * s_{t,f**}`` from its most similar sibling frame ``f**``). With ``token_logits``
  (``wti``) the uniform averages are replaced by learned softmax weights.
* :func:`negnce_loss`: symmetric InfoNCE at a fixed scale of 100 plus ``0.5 * mean(-log(1 - P_ij))`` over the
  in-batch negatives that outscore a positive (the hard set ``H``).
* :func:`infonce_loss`: plain symmetric InfoNCE on a similarity matrix (the ablation arm).
* :func:`importance_keep_mask` and :func:`partial_margin_loss`: TPM-CL's importance selector (ρ = 0.6) and
  the hinge ``mean_i max(0, m - (s_full - s_partial))`` with m = 0.6.
* :func:`dual_softmax`: the optional inference-time re-ranking (reported separately, never in the headline).
* :func:`gather_with_grad`: all-gather whose backward sums the gradients of every rank's loss, so that the
  similarity matrix is built on the global batch with gradients (spec §3, "Batch and default").

Every function is checked against a slow per-element loop in ``tests/tpm_cl/test_model.py``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

NEG_INF = -1e4


def _masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    return torch.softmax(logits.masked_fill(mask <= 0, NEG_INF), dim=dim)


def token_similarity(
    text_tokens: Tensor,
    text_weight: Tensor,
    video_tokens: Tensor,
    video_mask: Tensor,
    *,
    with_nfc: bool = True,
    nfc_weight: float = 0.5,
    text_logits: Tensor | None = None,
    video_logits: Tensor | None = None,
) -> Tensor:
    """Token-wise similarity of every text with every video, ``(A, B)``.

    Args:
        text_tokens: ``(A, L, D)`` L2-normalised word tokens.
        text_weight: ``(A, L)`` DMAE textual weights m_t (0 on padding; all ones to switch the cue off).
        video_tokens: ``(B, F, D)`` L2-normalised frame tokens.
        video_mask: ``(B, F)`` 1 on real frames.
        with_nfc: apply the visual cue (sibling-frame bonus).
        nfc_weight: the bonus factor (0.5 in the code).
        text_logits: ``(A, L)`` optional ``wti`` token logits; softmax over real tokens replaces ``m_t``.
        video_logits: ``(B, F)`` optional ``wti`` frame logits; softmax over real frames replaces the mean.

    Returns:
        ``(A, B)``: ``(t2v + v2t) / 2`` with ``t2v = Σ_t w_t s̃_t`` and ``v2t = Σ_f u_f max_t s_{t,f}``.
    """
    text_mask = (text_weight > 0).to(text_tokens.dtype)  # the logits are masked with min(m_t, 1)
    vmask = video_mask.to(video_tokens.dtype)
    s = torch.einsum("ald,bfd->ablf", text_tokens, video_tokens)  # (A, B, L, F)
    s_frames = s.masked_fill(vmask[None, :, None, :] <= 0, NEG_INF)
    best, f_star = s_frames.max(dim=-1)  # (A, B, L)
    if with_nfc and video_tokens.shape[1] > 1:
        gram = torch.einsum("bfd,bgd->bfg", video_tokens, video_tokens)  # (B, F, F) frame-frame cosine
        eye = torch.eye(gram.shape[-1], dtype=torch.bool, device=gram.device)
        invalid = eye[None] | (vmask[:, None, :] <= 0)
        sibling = gram.masked_fill(invalid, NEG_INF).argmax(dim=-1)  # (B, F): f** for each f*
        sib_cos = gram.gather(-1, sibling[..., None])[..., 0]  # (B, F)
        b_idx = torch.arange(gram.shape[0], device=gram.device)[None, :, None]
        f2 = sibling[b_idx, f_star]  # (A, B, L)
        cos2 = sib_cos[b_idx, f_star]  # (A, B, L)
        s_f2 = s.gather(-1, f2[..., None])[..., 0]  # (A, B, L)
        # a video with a single real frame has no sibling
        has_sibling = (vmask.sum(-1) > 1).to(s.dtype)[None, :, None]
        best = best + nfc_weight * cos2 * s_f2 * has_sibling
    if text_logits is not None:
        w_text = _masked_softmax(text_logits, text_mask)  # (A, L)
    else:
        w_text = text_weight / text_weight.sum(-1, keepdim=True).clamp_min(1e-6)
    t2v = torch.einsum("abl,al->ab", best * text_mask[:, None, :], w_text)
    per_frame = s.masked_fill(text_mask[:, None, :, None] <= 0, NEG_INF).max(dim=2).values  # (A, B, F)
    if video_logits is not None:
        w_video = _masked_softmax(video_logits, vmask)  # (B, F)
    else:
        w_video = vmask / vmask.sum(-1, keepdim=True).clamp_min(1.0)
    v2t = torch.einsum("abf,bf->ab", per_frame * vmask[None], w_video)
    return (t2v + v2t) / 2


def infonce_loss(sim: Tensor, scale: float = 100.0) -> Tensor:
    """Symmetric InfoNCE on a ``(B, B)`` similarity with positives on the diagonal, at a fixed scale."""
    logits = scale * sim
    target = torch.arange(sim.shape[0], device=sim.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def _negnce_one_side(sim: Tensor, scale: float, hard_weight: float, margin: float) -> Tensor:
    prob = torch.softmax(scale * sim, dim=1).clamp(1e-6, 1 - 1e-6)
    loss = -torch.log(prob.diagonal()).mean()
    diag = sim.diagonal()
    off = ~torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    # (i, j) is hard when S_ij > S_ii or S_ij > S_jj (plus the margin, 0 in the code)
    hard = off & ((sim > diag[:, None] + margin) | (sim > diag[None, :] + margin))
    if hard.any():
        loss = loss + hard_weight * (-torch.log(1 - prob[hard])).mean()
    return loss


def negnce_loss(sim: Tensor, scale: float = 100.0, hard_weight: float = 0.5, margin: float = 0.0) -> Tensor:
    """NegNCE: ``½ [L(S) + L(Sᵀ)]``, ``L(S) = mean_i -log P_ii + w · mean_{(i,j)∈H} -log(1 - P_ij)``.

    ``P`` is the row softmax of ``scale · S`` clamped to ``[1e-6, 1 - 1e-6]``; ``H`` holds the off-diagonal
    pairs with ``S_ij > S_ii + margin`` or ``S_ij > S_jj + margin``; the second term is dropped when ``H`` is
    empty. Rows are texts, columns videos.
    """
    rows = _negnce_one_side(sim, scale, hard_weight, margin)
    return (rows + _negnce_one_side(sim.t(), scale, hard_weight, margin)) / 2


def importance_keep_mask(weights: Tensor, rho: float = 0.6, always_mask_top1: bool = False) -> Tensor:
    """TPM-CL's importance selector: 0 on the top tokens holding just under ``rho`` of the mass, else 1.

    Sort the weights in descending order; a token is masked when the inclusive cumulative sum at its position
    is ``< rho``. So when the top weight alone is ``>= rho`` nothing is masked (the code's edge case), unless
    ``always_mask_top1``.

    Args:
        weights: ``(..., N)`` non-negative weights summing to 1 over the last axis.
    """
    sorted_w, order = weights.sort(dim=-1, descending=True)
    drop_sorted = sorted_w.cumsum(dim=-1) < rho
    if always_mask_top1:
        drop_sorted[..., 0] = True
    keep = torch.ones_like(weights)
    return keep.scatter(-1, order, (~drop_sorted).to(weights.dtype))


def partial_margin_loss(full: Tensor, partial: Tensor, margin: float = 0.6) -> Tensor:
    """The triplet partial-margin hinge ``mean_i max(0, margin - (full_i - partial_i))``."""
    return F.relu(margin - (full - partial)).mean()


def dual_softmax(sim: Tensor, temperature: float = 100.0) -> Tensor:
    """Dual-softmax re-ranking (CAMoE): ``S ⊙ softmax(temperature · S)`` over the queries (dim 0).

    Rows are queries; each column's prior is a softmax over the rows, so a candidate that matches many
    queries is damped. Inference only, reported under its own keys.
    """
    return sim * torch.softmax(temperature * sim, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.size = rank, tensor.shape[0]
        out = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(out, tensor.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` (equal first dims) over all ranks, keeping the gradient path to local rows.

    The backward pass sums the gradients of all ranks' losses, so when every rank computes the same loss on
    the gathered batch and DDP averages the parameter gradients, the update equals one process holding the
    whole global batch. Without an initialised group of more than one rank it returns ``tensor``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
