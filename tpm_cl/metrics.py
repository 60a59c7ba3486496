"""Retrieval metrics of the text-video protocol (CLIP4Clip's ``compute_metrics``; spec §5).

For every query the rank of its ground truth is ``1 + #{negatives scoring >= the best positive}``: a query
with several correct candidates (a video's captions in video-to-text) is ranked by its best positive, as in
CLIP4Clip's multi-sentence evaluation, and ties count against the query (a constant similarity gives the worst
rank, never a lucky one). From the ranks: R@K (% of queries ranked <= K), MdR (median rank) and MnR (mean).
"""

from __future__ import annotations

import torch
from torch import Tensor


def ranks_from_similarity(sim: Tensor, positive: Tensor, candidate: Tensor | None = None) -> Tensor:
    """1-based rank of the best positive of each query.

    Args:
        sim: ``(Q, C)`` scores, queries by candidates.
        positive: ``(Q, C)`` bool, the correct candidates of each query (at least one per query).
        candidate: ``(Q, C)`` bool, the candidates each query is ranked among (default: all); used for the
            family-hard protocol, where a query competes only with its own family.

    Returns:
        ``(Q,)`` long ranks.
    """
    if sim.shape != positive.shape:
        raise ValueError(f"sim {tuple(sim.shape)} and positive {tuple(positive.shape)} differ in shape")
    positive = positive.bool()
    if not bool(positive.any(dim=1).all()):
        raise ValueError("every query needs at least one positive candidate")
    if candidate is None:
        candidate = torch.ones_like(positive)
    sim = sim.float()
    best_pos = sim.masked_fill(~positive, float("-inf")).max(dim=1).values  # (Q,)
    negatives = candidate.bool() & ~positive
    return 1 + (negatives & (sim >= best_pos[:, None])).sum(dim=1)


def rank_metrics(ranks: Tensor, prefix: str = "") -> dict[str, float]:
    """R@1/5/10 (percent), MdR and MnR of 1-based ranks, under keys ``<prefix>R@1`` ... ``<prefix>MnR``."""
    r = ranks.double()
    out = {f"{prefix}R@{k}": float((r <= k).double().mean() * 100) for k in (1, 5, 10)}
    out[f"{prefix}MdR"] = float(r.quantile(0.5))  # numpy.median: the mean of the two middle ranks
    out[f"{prefix}MnR"] = float(r.mean())
    return out


def retrieval_metrics(
    sim: Tensor, text_to_video: Tensor, text_family: Tensor | None = None, video_family: Tensor | None = None
) -> dict[str, float]:
    """Text-to-video and video-to-text metrics of a ``(T, V)`` text-by-video similarity.

    Args:
        sim: ``(T, V)`` similarity; row ``i`` is text ``i``.
        text_to_video: ``(T,)`` the index of each text's video (several texts may share a video).
        text_family, video_family: optional family ids; adds ``fam_t2v_R@1`` etc., where each text is ranked
            only among the videos of its own family (the family-hard split).

    Returns:
        ``t2v_R@1 .. t2v_MnR``, ``v2t_R@1 .. v2t_MnR`` (and ``fam_t2v_*``); R@K in percent.
    """
    t2v_pos = text_to_video[:, None] == torch.arange(sim.shape[1], device=sim.device)[None, :]  # (T, V)
    out = rank_metrics(ranks_from_similarity(sim, t2v_pos), "t2v_")
    has_text = t2v_pos.any(dim=0)  # videos without a caption are candidates only, never queries
    out.update(rank_metrics(ranks_from_similarity(sim.t()[has_text], t2v_pos.t()[has_text]), "v2t_"))
    if text_family is not None and video_family is not None:
        same = text_family[:, None] == video_family[None, :]
        out.update(rank_metrics(ranks_from_similarity(sim, t2v_pos, same), "fam_t2v_"))
    return out
