"""Box text format, robust parsing and the RC metrics of Pink (spec §3 "Box text format", §5 Evaluation).

* Boxes are written ``[x0,y0,x1,y1]`` with coordinates divided by the original width and height, 3 decimals,
  no spaces; several boxes are joined by single spaces and sorted by area, ascending.
* Parsing takes the first 4 matches of ``digits.3digits`` and scales them by the original W and H; any other
  number of matches is a format error, scored as wrong (never an exception).
* REC accuracy is the share of IoU(pred, GT) strictly above 0.5 (quirk 5). The bootstrapping filter's IoU is
  pixel-inclusive by default (quirk 4): ``+1`` on the intersection's width and height, plain areas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Box = Sequence[float]
_NUM = re.compile(r"\d+\.\d{3}")
# Tokenizers that decode with spaces between digits ("0 . 1 2 3") are normalised before matching.
_SQUEEZE = re.compile(r"(?<=[\d.,\[\]])\s+(?=[\d.,\[\]])")


def format_box(box: Box, width: float, height: float) -> str:
    """``[x0,y0,x1,y1]`` normalised by the original size, 3 decimals, clamped to [0, 1], no spaces."""
    x0, y0, x1, y1 = box
    vals = [x0 / width, y0 / height, x1 / width, y1 / height]
    return "[" + ",".join(f"{min(max(v, 0.0), 1.0):.3f}" for v in vals) + "]"


def format_point(point: Sequence[float], width: float, height: float) -> str:
    """``[x,y]`` normalised, 3 decimals."""
    return f"[{point[0] / width:.3f},{point[1] / height:.3f}]"


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def format_boxes(
    boxes: Sequence[Box], width: float, height: float, names: Sequence[str] | None = None
) -> str:
    """Several boxes (optionally ``[box] name``) sorted by area ascending, joined by single spaces."""
    order = sorted(range(len(boxes)), key=lambda k: box_area(boxes[k]))
    parts = [format_box(boxes[k], width, height) + (f" {names[k]}" if names else "") for k in order]
    return " ".join(parts)


def _squeeze(text: str) -> str:
    return _SQUEEZE.sub("", text)


def parse_box(text: str, width: float, height: float) -> tuple[list[float], bool]:
    """The first box in ``text`` in pixels and whether the text is a format error (not exactly 4 numbers).

    A format error returns ``[0, 0, 1, 1]`` (the placeholder of Pink's bootstrapping) and ``True``.
    """
    nums = _NUM.findall(_squeeze(text))
    if len(nums) != 4:
        return [0.0, 0.0, 1.0, 1.0], True
    x0, y0, x1, y1 = (float(v) for v in nums)
    return [x0 * width, y0 * height, x1 * width, y1 * height], False


def parse_boxes(text: str, width: float, height: float) -> list[list[float]]:
    """All complete boxes in ``text`` (groups of 4 numbers inside brackets), in pixels."""
    out = []
    for group in re.findall(r"\[([^\[\]]*)\]", _squeeze(text)):
        nums = _NUM.findall(group)
        if len(nums) == 4:
            x0, y0, x1, y1 = (float(v) for v in nums)
            out.append([x0 * width, y0 * height, x1 * width, y1 * height])
    return out


def parse_count(text: str) -> int | None:
    """The first integer of ``text`` (digits may be space-separated), or None."""
    m = re.search(r"\d+(?: \d+)*", text)
    return int(m[0].replace(" ", "")) if m else None


def iou(a: Box, b: Box, inclusive: bool = False) -> float:
    """IoU of two xyxy boxes. ``inclusive``: Pink's filter IoU (+1 on the intersection sides, plain areas)."""
    add = 1.0 if inclusive else 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0]) + add
    ih = min(a[3], b[3]) - max(a[1], b[1]) + add
    inter = max(0.0, iw) * max(0.0, ih)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def rec_accuracy(preds: Sequence[Box | None], gts: Sequence[Box], threshold: float = 0.5) -> float:
    """Share of predictions with IoU strictly above ``threshold``; None (a format error) counts as wrong."""
    if not gts:
        return 0.0
    hits = sum(p is not None and iou(p, g) > threshold for p, g in zip(preds, gts, strict=True))
    return hits / len(gts)


def random_box_baseline(
    candidates: Sequence[Sequence[Box]], gts: Sequence[Box], threshold: float = 0.5
) -> float:
    """Expected REC accuracy of predicting a uniformly random ground-truth object box of the image."""
    if not gts:
        return 0.0
    per = [
        sum(iou(c, g) > threshold for c in cands) / len(cands)
        for cands, g in zip(candidates, gts, strict=True)
    ]
    return sum(per) / len(per)


def majority_baseline(values: Sequence[object]) -> float:
    """Accuracy of always answering the most frequent value."""
    if not values:
        return 0.0
    counts: dict[object, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts.values()) / len(values)


def normalize_answer(text: str) -> str:
    """Light VQA answer normalisation: lower case, strip punctuation and articles."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def vqa_soft_accuracy(pred: str, answers: Sequence[str]) -> float:
    """VQAv2 / OK-VQA soft accuracy: ``min(1, #humans that gave the answer / 3)``."""
    p = normalize_answer(pred)
    return min(1.0, sum(normalize_answer(a) == p for a in answers) / 3.0)


def gqa_scores(pred: str, answer: str) -> tuple[float, float]:
    """GQA (strict exact match, loose match accepting substring containment either way); quirk 7."""
    p, a = normalize_answer(pred), normalize_answer(answer)
    return float(p == a), float(bool(p) and (p in a or a in p))


def vsr_correct(pred: str, label: int) -> bool:
    """VSR: correct if "yes" appears and the label is 1, or "no" appears and the label is 0."""
    words = normalize_answer(pred).split()
    return ("yes" in words and label == 1) or ("no" in words and label == 0)
