"""TSGSV evaluation protocol (spec §5, from ``tsgv/core/evaluation/tsgv_evaluation.py``).

* :func:`calibrated_ap`: per-query calibrated AP of the relevance track; :func:`mcap` averages it over
  queries, with positives either the moment extended by one span on each side (``ext``, the code's
  default) or the moment itself (``strict``).
* :func:`moments_from_scores`: streaming start / end tracks -> ranked moments: optional median filter and
  resampling, 2D-TAN sparse proposals scored ``p_s(i) * p_e(j)``, NMS.
* :func:`recall_at`: R@N, IoU=M with the strict ``IoU > M`` hit rule; :func:`random_proposal_recall`: the
  expected R@1 of a uniformly random proposal from the same proposal set (the chance baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def positive_steps(num_steps: int, start: float, end: float, extension: float = 1.0) -> np.ndarray:
    """Boolean ``(T,)``: steps inside ``[s - ext*l, e + ext*l]`` (step units, clipped to the video)."""
    span = end - start
    t = np.arange(num_steps)
    return (t >= start - extension * span) & (t <= end + extension * span)


def calibrated_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    """Calibrated AP: mean over positives of ``TP_k / (TP_k + FP_k / r)``, ``r = #neg / #pos``.

    A query without positives counts as 1; with no negatives every precision is 1.
    """
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0:
        return 1.0
    if n_neg == 0:
        return 1.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hit = positives[order]
    tp = np.cumsum(hit)
    fp = np.cumsum(~hit)
    r = n_neg / n_pos
    cprec = tp / (tp + fp / r)
    return float(cprec[hit].mean())


def mcap(relevance: Sequence[np.ndarray], moments: Sequence[tuple[float, float]], extension: float) -> float:
    """Mean calibrated AP over queries; ``moments`` in step units."""
    aps = [calibrated_ap(r, positive_steps(len(r), s, e, extension)) for r, (s, e) in zip(relevance, moments)]
    return float(np.mean(aps)) if aps else 0.0


def sparse_proposal_mask(n: int, groups: int = 4) -> np.ndarray:
    """2D-TAN sparse proposal map ``(n, n)``: ``[i, j]`` kept for start ``i <= j`` (diagonal included).

    ``groups`` pooling groups of counts ``[n/groups - 1, n/(2 groups), ...]`` (``[15, 8, 8, 8]``
    for ``n = 64``, 2D-TAN's ActivityNet setting): dense spans up to
    ``n/groups``, then strides 2, 4, ... for longer spans.
    """
    counts = [max(n // groups - 1, 0)] + [max(n // (2 * groups), 1)] * (groups - 1)
    mask = np.zeros((n, n), dtype=bool)
    mask[np.arange(n), np.arange(n)] = True
    stride, offset = 1, 0
    for c in counts:
        for _ in range(c):
            offset += stride
            starts = np.arange(0, n - offset, stride)
            mask[starts, starts + offset] = True
        stride *= 2
    return mask


def temporal_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of moments ``a (N, 2)`` with ``b (M, 2)`` -> ``(N, M)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    union = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(moments: np.ndarray, scores: np.ndarray, threshold: float, top_k: int) -> np.ndarray:
    """Greedy NMS: indices of kept moments, best first, at most ``top_k``."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for rank, i in enumerate(order):
        if suppressed[rank]:
            continue
        keep.append(int(i))
        if len(keep) >= top_k:
            break
        rest = order[rank + 1 :]
        suppressed[rank + 1 :] |= temporal_iou(moments[i : i + 1], moments[rest])[0] > threshold
    return np.asarray(keep, dtype=np.int64)


def median_filter3(x: np.ndarray) -> np.ndarray:
    """Median filter of window 3 with edge replication."""
    p = np.concatenate([x[:1], x, x[-1:]])
    return np.median(np.stack([p[:-2], p[1:-1], p[2:]]), axis=0)


def proposals(num_steps: int, duration: float, groups: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse proposals ``(P, 2)`` in seconds, their start and end steps (step t at ``t / (T-1) * dur``)."""
    # A proposal joins two step instants, so it needs i < j to have a length (2D-TAN's one-clip diagonal
    # proposals have a length because its clips are bins; here they would be empty).
    i, j = np.nonzero(np.triu(sparse_proposal_mask(num_steps, groups), 1))
    scale = duration / max(num_steps - 1, 1)
    return np.stack([i * scale, j * scale], axis=1), i, j


def moments_from_scores(
    p_start: np.ndarray,
    p_end: np.ndarray,
    duration: float,
    top_k: int = 5,
    stride: int = 4,
    max_points: int = 128,
    groups: int = 4,
    nms_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked moments (seconds) and their scores from per-step start and end probabilities.

    Longer tracks than ``max_points`` are median-filtered and linearly resampled to
    ``max(max_points, T // stride)`` points (spec §5 step 1).
    """
    p_start, p_end = np.asarray(p_start, dtype=np.float64), np.asarray(p_end, dtype=np.float64)
    t = len(p_start)
    if t > max_points:
        n = max(max_points, t // stride)
        grid = np.linspace(0, t - 1, n)
        p_start = np.interp(grid, np.arange(t), median_filter3(p_start))
        p_end = np.interp(grid, np.arange(t), median_filter3(p_end))
    moments, i, j = proposals(len(p_start), duration, groups)
    scores = p_start[i] * p_end[j]
    keep = nms(moments, scores, nms_threshold, top_k)
    return moments[keep], scores[keep]


def recall_at(ranked: Sequence[np.ndarray], gts: Sequence[tuple[float, float]], n: int, iou: float) -> float:
    """R@n, IoU=m: the fraction of queries with a hit (IoU > m, strictly) among the top ``n`` moments."""
    hits = []
    for moments, gt in zip(ranked, gts):
        top = np.asarray(moments)[:n]
        ious = temporal_iou(top, np.asarray([gt])) if len(top) else np.zeros((0, 1))
        hits.append(bool((ious > iou).any()))
    return float(np.mean(hits)) if hits else 0.0


def random_proposal_recall(
    num_steps: Sequence[int], durations: Sequence[float], gts: Sequence[tuple[float, float]], iou: float,
    max_points: int = 128, stride: int = 4, groups: int = 4,
) -> float:  # fmt: skip
    """Expected R@1 of one proposal drawn uniformly from the same sparse proposal set, per query."""
    rates = []
    for t, d, gt in zip(num_steps, durations, gts):
        n = max(max_points, t // stride) if t > max_points else t
        props, _, _ = proposals(n, d, groups)
        rates.append(float((temporal_iou(props, np.asarray([gt]))[:, 0] > iou).mean()))
    return float(np.mean(rates)) if rates else 0.0


def evaluate(
    scores: Sequence[np.ndarray],
    durations: Sequence[float],
    gts: Sequence[tuple[float, float]],
    recalls: Sequence[int] = (1, 5),
    ious: Sequence[float] = (0.3, 0.5, 0.7),
    stride: int = 4,
    groups: int = 4,
    nms_threshold: float = 0.5,
    max_points: int = 128,
) -> dict[str, float]:
    """All metrics from per-query streaming scores ``(T, 3)`` (start, end, relevance probabilities).

    Args:
        scores: per query, ``(T, 3)``.
        durations: seconds per query's video.
        gts: ground-truth moments in seconds.

    Returns:
        ``R@{n}_IoU{m}``, ``R@1_IoU{m}_random``, ``mcAP`` (= ``mcAP_ext``, the code's protocol),
        ``mcAP_strict``, ``end_err`` and ``start_err`` (mean absolute top-1 boundary error, seconds).
    """
    ranked, steps_gt = [], []
    for sc, d, (s, e) in zip(scores, durations, gts):
        t = len(sc)
        moments, _ = moments_from_scores(
            sc[:, 0], sc[:, 1], d, max(recalls), stride, max_points, groups, nms_threshold
        )
        ranked.append(moments)
        scale = (t - 1) / d if d > 0 else 0.0
        steps_gt.append((s * scale, e * scale))
    out: dict[str, float] = {}
    for n in recalls:
        for m in ious:
            out[f"R@{n}_IoU{m}"] = recall_at(ranked, gts, n, m)
    for m in ious:
        out[f"R@1_IoU{m}_random"] = random_proposal_recall(
            [len(s) for s in scores], durations, gts, m, max_points, stride, groups
        )
    rel = [sc[:, 2] for sc in scores]
    out["mcAP_ext"] = mcap(rel, steps_gt, 1.0)
    out["mcAP_strict"] = mcap(rel, steps_gt, 0.0)
    out["mcAP"] = out["mcAP_ext"]
    top1 = np.asarray([r[0] for r in ranked]) if ranked else np.zeros((0, 2))
    g = np.asarray(gts, dtype=np.float64).reshape(-1, 2)
    out["end_err"] = float(np.abs(top1[:, 1] - g[:, 1]).mean()) if len(g) else 0.0
    out["start_err"] = float(np.abs(top1[:, 0] - g[:, 0]).mean()) if len(g) else 0.0
    return out
