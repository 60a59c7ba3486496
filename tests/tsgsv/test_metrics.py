"""Evaluation protocol on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np

from tsgsv.metrics import (
    calibrated_ap,
    evaluate,
    moments_from_scores,
    nms,
    positive_steps,
    random_proposal_recall,
    recall_at,
    sparse_proposal_mask,
    temporal_iou,
)


def test_calibrated_ap_hand_computed() -> None:
    # ranking: pos, neg, pos, neg, neg, neg ; r = 4 / 2 = 2
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    pos = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    # k=1: 1/(1+0) = 1 ; k=3: 2/(2 + 1/2) = 0.8
    assert math.isclose(calibrated_ap(scores, pos), (1 + 0.8) / 2)
    assert calibrated_ap(scores, np.zeros(6, dtype=bool)) == 1.0
    assert calibrated_ap(-scores, pos) < 0.5


def test_positive_steps_extended_and_strict() -> None:
    assert np.nonzero(positive_steps(12, 4.0, 6.0, 1.0))[0].tolist() == [2, 3, 4, 5, 6, 7, 8]
    assert np.nonzero(positive_steps(12, 4.0, 6.0, 0.0))[0].tolist() == [4, 5, 6]
    assert np.nonzero(positive_steps(5, 0.5, 3.0, 1.0))[0].tolist() == [0, 1, 2, 3, 4]


def test_sparse_mask_matches_2dtan_for_64_clips() -> None:
    m = sparse_proposal_mask(64, 4)
    # 2D-TAN [15, 8, 8, 8]: lengths 1..16 at every start; 17..31 offsets with stride 2 at even starts; ...
    assert m[3, 3] and m[5, 20] and m[4, 21] and not m[5, 22] and not m[4, 20] and m[0, 63]
    assert not m[1, 63] and not m[10, 5]
    dense = sum(64 - off for off in range(16))
    assert m[np.triu_indices(64)].sum() > dense
    assert sparse_proposal_mask(8, 4).sum() == 8 + 7 + 3 + 1  # [1, 1, 1, 1]: offsets 1, 3, 7 (stride 1, 2, 4)


def test_temporal_iou_and_nms() -> None:
    a = np.array([[0.0, 2.0], [1.0, 3.0], [5.0, 6.0]])
    iou = temporal_iou(a, np.array([[0.0, 2.0]]))[:, 0]
    assert np.allclose(iou, [1.0, 1 / 3, 0.0])
    keep = nms(a, np.array([0.9, 0.8, 0.7]), threshold=0.4, top_k=5)
    assert keep.tolist() == [0, 1, 2]
    keep = nms(a, np.array([0.9, 0.8, 0.7]), threshold=0.3, top_k=5)
    assert keep.tolist() == [0, 2]


def test_recall_strict_iou_threshold() -> None:
    ranked = [np.array([[0.0, 2.0], [0.0, 4.0]])]
    gt = [(0.0, 4.0)]
    assert recall_at(ranked, gt, 1, 0.5) == 0.0  # IoU exactly 0.5 is not a hit
    assert recall_at(ranked, gt, 1, 0.3) == 1.0
    assert recall_at(ranked, gt, 2, 0.7) == 1.0


def test_moments_from_peaked_scores() -> None:
    t = 41  # steps 0..40 over 40 s: step k is k seconds; dense proposals up to 10 steps long
    ps, pe = np.full(t, 0.01), np.full(t, 0.01)
    ps[3], pe[7] = 0.9, 0.8
    moments, scores = moments_from_scores(ps, pe, 40.0, top_k=1)
    assert np.allclose(moments[0], [3.0, 7.0]) and math.isclose(scores[0], 0.72)


def test_random_proposal_recall_counts_proposals() -> None:
    # 8 steps over 7 s (step k at k s); groups 4 -> counts [1, 1, 1, 1]: offsets 1 (7 starts),
    # 3 (starts 0, 2, 4), 7 (start 0): 11 positive-length proposals; only [0, 3] has IoU > 0.5 with [0, 3].
    assert math.isclose(random_proposal_recall([8], [7.0], [(0.0, 3.0)], 0.5), 1 / 11)
    m = np.triu(sparse_proposal_mask(8, 4), 1)
    assert m.sum() == 11


def test_evaluate_perfect_scores() -> None:
    t, d = 41, 40.0
    sc = np.full((t, 3), 0.01)
    sc[5, 0], sc[12, 1] = 1.0, 1.0
    sc[5:13, 2] = 0.9
    sc[:5, 2] = 0.001  # extended positives before the moment rank below every negative
    out = evaluate([sc], [d], [(5.0, 12.0)])
    assert out["R@1_IoU0.7"] == 1.0 and out["end_err"] == 0.0
    assert out["mcAP_strict"] == 1.0 and out["mcAP_ext"] < 1.0
    assert out["R@1_IoU0.5_random"] < 0.2
