"""Metrics of SNP-S3's protocols (spec §5): retrieval R@K / MdR / MnR / mean recall, QA and MC accuracy.

Retrieval (adapted from tpm_cl/metrics.py): the rank of a query is ``1 + #{negatives scoring >= its best
positive}`` (several ground truths allowed, ties count against the query). R@K is the % of queries ranked
<= K, MdR the median rank, MnR the mean, and mean recall ``(R@1 + R@5 + R@10) / 3``.
"""

from __future__ import annotations

import torch
from torch import Tensor


# Adapted from tpm_cl/metrics.py (ranks_from_similarity)
def ranks_from_similarity(sim: Tensor, positive: Tensor, candidate: Tensor | None = None) -> Tensor:
    """1-based rank of the best positive of each query; ``sim``/``positive``/``candidate`` (Q, C)."""
    if sim.shape != positive.shape:
        raise ValueError(f"sim {tuple(sim.shape)} and positive {tuple(positive.shape)} differ in shape")
    positive = positive.bool()
    if not bool(positive.any(dim=1).all()):
        raise ValueError("every query needs at least one positive candidate")
    if candidate is None:
        candidate = torch.ones_like(positive)
    sim = sim.float()
    best = sim.masked_fill(~positive, float("-inf")).max(dim=1).values
    return 1 + (candidate.bool() & ~positive & (sim >= best[:, None])).sum(dim=1)


def rank_metrics(ranks: Tensor, prefix: str = "") -> dict[str, float]:
    """R@1/5/10 (%), MdR, MnR and mean recall of 1-based ranks."""
    r = ranks.double()
    out = {f"{prefix}R@{k}": float((r <= k).double().mean() * 100) for k in (1, 5, 10)}
    out[f"{prefix}MdR"] = float(r.quantile(0.5))
    out[f"{prefix}MnR"] = float(r.mean())
    out[f"{prefix}mean_recall"] = (out[f"{prefix}R@1"] + out[f"{prefix}R@5"] + out[f"{prefix}R@10"]) / 3
    return out


def retrieval_metrics(
    sim: Tensor, text_to_video: Tensor, prefix: str = "", video_family: Tensor | None = None
) -> dict[str, float]:
    """``t2v_*`` and ``v2t_*`` metrics of a (T, V) similarity; ``text_to_video`` (T,) video of each text.

    With ``video_family`` (V,) (all >= 0, some family of 2+ videos), also ``fam_t2v_*``: each text ranked
    only among the videos of its own video's family (the one-attribute hard split: R@1 chance = 1 / size).
    """
    pos = text_to_video[:, None] == torch.arange(sim.shape[1], device=sim.device)[None, :]
    out = rank_metrics(ranks_from_similarity(sim, pos), f"{prefix}t2v_")
    has_text = pos.any(dim=0)
    out.update(rank_metrics(ranks_from_similarity(sim.t()[has_text], pos.t()[has_text]), f"{prefix}v2t_"))
    shared = video_family is not None and bool((video_family >= 0).all())
    if shared and int(torch.unique(video_family, return_counts=True)[1].max()) > 1:  # real families only
        same = video_family[text_to_video][:, None] == video_family[None, :]
        out.update(rank_metrics(ranks_from_similarity(sim, pos, same), f"{prefix}fam_t2v_"))
    return out


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Top-1 accuracy in %; a target of -1 (answer outside the vocabulary) is always wrong."""
    if pred.numel() == 0:
        return 0.0
    return float(((pred == target) & (target >= 0)).double().mean() * 100)
