"""Evaluation metrics of M2-Encoder (spec section 5), exactly as the released ``eval_retrieval.py`` does them.

* :func:`retrieval_ground_truth`: the released ``get_data``: captions are lower-cased with curly quotes
  straightened; a caption string is ground truth for *every* image that has it (``txt2img``), while an image's
  row marks the *last* occurrence of each of its caption strings (``text_ids[cap]`` is overwritten).
* :func:`retrieval_recalls`: t2i R@K = % of captions with a ground-truth image in the top K; i2t R@K = % of
  images with any ground-truth caption in the top K; ``MR`` = the mean of the six recalls (K = 1, 5, 10).
* :func:`zero_shot_logits` / :func:`top1_accuracy`: class embeddings averaged over prompt templates (the
  normalised mean of the normalised prompt embeddings, as CLIP does), scored by cosine similarity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from m2_encoder.tokenizer import preprocess_text


def retrieval_ground_truth(
    images: Sequence[str], captions: Sequence[Sequence[str]]
) -> tuple[list[str], Tensor, Tensor]:
    """Flattened captions and the ground-truth matrices ``txt2img`` (T, I) and ``img2txt`` (I, T)."""
    img2txt: dict[str, list[str]] = defaultdict(list)
    txt2img: dict[str, list[str]] = defaultdict(list)
    texts: list[str] = []
    text_ids: dict[str, int] = {}
    image_ids: dict[str, int] = {}
    for i, (img, caps) in enumerate(zip(images, captions)):
        image_ids[img] = i
        for cap in caps:
            cap = preprocess_text(cap)
            img2txt[img].append(cap)
            txt2img[cap].append(img)
            texts.append(cap)
            text_ids[cap] = len(texts) - 1
    i2t = torch.zeros(len(images), len(texts), dtype=torch.bool)
    t2i = torch.zeros(len(texts), len(images), dtype=torch.bool)
    for i, img in enumerate(images):
        for cap in img2txt[img]:
            i2t[i, text_ids[cap]] = True
    for t, cap in enumerate(texts):
        for img in txt2img[cap]:
            t2i[t, image_ids[img]] = True
    return texts, t2i, i2t


def _recall_at(scores: Tensor, gt: Tensor, ks: Sequence[int]) -> list[float]:
    k_max = min(max(ks), scores.shape[1])
    top = scores.topk(k_max, dim=1).indices  # (Q, k_max)
    hits = gt.gather(1, top).cumsum(1) > 0  # (Q, k_max): a GT item within the first j+1
    return [100.0 * hits[:, min(k, k_max) - 1].float().mean().item() for k in ks]


def retrieval_recalls(
    text_feats: Tensor, image_feats: Tensor, txt2img: Tensor, img2txt: Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """R@K in both directions (percent) and ``MR``, the mean of the six recalls."""
    sims = text_feats.float() @ image_feats.float().T  # (T, I)
    out: dict[str, float] = {}
    for k, v in zip(ks, _recall_at(sims, txt2img, ks)):
        out[f"t2i_R@{k}"] = v
    for k, v in zip(ks, _recall_at(sims.T, img2txt, ks)):
        out[f"i2t_R@{k}"] = v
    out["MR"] = sum(out.values()) / len(out)
    return out


def class_embeddings(prompt_feats: Tensor) -> Tensor:
    """(C, T, d) unit prompt embeddings -> (C, d) unit class embeddings (template mean, renormalised)."""
    return F.normalize(F.normalize(prompt_feats.float(), dim=-1).mean(dim=1), dim=-1)


def zero_shot_logits(image_feats: Tensor, class_embeds: Tensor, logit_scale: float = 100.0) -> Tensor:
    """``exp(logit_scale) * cos`` (pass the exponentiated scale); softmax of it is the class posterior."""
    return logit_scale * F.normalize(image_feats.float(), dim=-1) @ class_embeds.T


def top1_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


def _p_hit(total: int, positives: Tensor, k: int) -> Tensor:
    """P(at least one of ``positives`` items among the top ``k`` of ``total`` in a uniformly random order)."""
    k = min(k, total)
    miss = torch.ones_like(positives, dtype=torch.float64)
    for j in range(k):  # prod_j (total - g - j) / (total - j)
        miss = miss * ((total - positives - j).clamp(min=0) / (total - j))
    return 1.0 - miss


def retrieval_chance(txt2img: Tensor, img2txt: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected recalls (percent) of random scores, for the same ground truth; ``MR`` their mean."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"t2i_R@{k}"] = 100.0 * _p_hit(txt2img.shape[1], txt2img.sum(1).double(), k).mean().item()
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * _p_hit(img2txt.shape[1], img2txt.sum(1).double(), k).mean().item()
    out["MR"] = sum(out.values()) / len(out)
    return out
