"""Which caption tokens the masking and matching objectives use (spec §3, items 3 and 6).

* :func:`mssm_mask` (MSSM, ``IW_MLM``): ``n = floor(0.15 L)``, plus one when the fractional part is >= 0.3,
  positions drawn among the *significant* tokens; each chosen token is 80% ``[MASK]``, 10% a same-lemma
  variant of a random significant word, 10% kept. Fixes of the released code (spec §6): an empty same-lemma
  list keeps the original token (#1), and too few significant tokens are topped up with random other
  positions (#2).
* :func:`random_mask` (the MLM baseline, rows B1/B5/B9): each token with p = 0.15, 80/10/10 BERT rule.
* :func:`attentive_mask` (attentive masking; replaces the labels of a batch with ``attentive_prob``):
  importance = sum over layers of the head-mean of the attention each token *receives*, from the text pass of
  the raw caption; special and pad tokens get zero; ``k = max(floor(0.15 n), 1)`` positions drawn in
  proportion to importance + 1e-6; always ``[MASK]``.
* :func:`lvwm_positions` (LVWM): exactly ``K`` positions whose word rank is <= ``top_k``: without
  replacement when more qualify, with repeats when fewer; fallbacks all non-special positions, then 0..K-1.

Caption-level functions take the token ids of one caption and a ``random.Random``; labels use -1 = ignore.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from torch import Tensor


def num_to_mask(length: int, prob: float = 0.15) -> int:
    """``floor(p L)``, plus one when the fractional part of ``p L`` is >= 0.3 (the released rule)."""
    x = prob * length
    return int(math.floor(x)) + (1 if x - math.floor(x) >= 0.3 else 0)


def mssm_mask(
    ids: Sequence[int],
    maskable: Sequence[bool],
    significant: set[int],
    significant_list: Sequence[int],
    lemma_variants: dict[int, list[int]],
    mask_id: int,
    rng: random.Random,
    prob: float = 0.15,
) -> tuple[list[int], list[int]]:
    """MSSM masking of one caption. ``maskable``: False on special and pad tokens. Returns (ids, labels)."""
    out, labels = list(ids), [-1] * len(ids)
    content = [i for i, ok in enumerate(maskable) if ok]
    n = min(num_to_mask(len(content), prob), len(content))
    sig = [i for i in content if ids[i] in significant]
    if len(sig) >= n:
        chosen = rng.sample(sig, n)
    else:  # fix #2: top up with random non-significant positions
        rest = [i for i in content if ids[i] not in significant]
        chosen = sig + rng.sample(rest, n - len(sig))
    for i in chosen:
        labels[i] = ids[i]
        r = rng.random()
        if r < 0.8:
            out[i] = mask_id
        elif r < 0.9 and significant_list:
            word = rng.choice(list(significant_list))
            variants = lemma_variants.get(word) or []
            out[i] = rng.choice(variants) if variants else ids[i]  # fix #1: keep the original token
    return out, labels


def random_mask(
    ids: Sequence[int],
    maskable: Sequence[bool],
    mask_id: int,
    vocab_size: int,
    num_special: int,
    rng: random.Random,
    prob: float = 0.15,
) -> tuple[list[int], list[int]]:
    """BERT's random masking of one caption (the MLM baseline): ids below ``num_special`` are never drawn."""
    out, labels = list(ids), [-1] * len(ids)
    for i, ok in enumerate(maskable):
        if not ok or rng.random() >= prob:
            continue
        labels[i] = ids[i]
        r = rng.random()
        if r < 0.8:
            out[i] = mask_id
        elif r < 0.9:
            out[i] = rng.randrange(num_special, vocab_size)
    return out, labels


def attention_importance(attentions: Sequence[Tensor], maskable: Tensor) -> Tensor:
    """Attention received by each token, summed over layers and queries, averaged over heads (B, N).

    ``attentions``: per layer (B, H, N, N) probabilities (query, key); ``maskable`` (B, N) bool.
    """
    imp = sum(a.mean(dim=1).sum(dim=1) for a in attentions)  # (B, N)
    return imp * maskable.to(imp.dtype)


def attentive_mask(
    ids: Tensor, maskable: Tensor, importance: Tensor, mask_id: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Attentive masking of a batch: ``k = max(floor(0.15 n), 1)`` positions drawn ∝ importance + 1e-6."""
    out, labels = ids.clone(), torch.full_like(ids, -1)
    weights = (importance.detach().float().clamp_min(0) + 1e-6) * maskable.float()
    for b in range(ids.shape[0]):
        n = int(maskable[b].sum())
        if n == 0:
            continue
        k = max(int(0.15 * n), 1)
        pos = torch.multinomial(weights[b].cpu(), k, replacement=False, generator=generator).to(ids.device)
        labels[b, pos] = ids[b, pos]
        out[b, pos] = mask_id
    return out, labels


def lvwm_positions(
    ids: Sequence[int], maskable: Sequence[bool], rank: dict[int, int], top_k: int, k: int, rng: random.Random
) -> list[int]:
    """``k`` positions of significant words (rank <= ``top_k``) for LVWM (module docstring)."""
    content = [i for i, ok in enumerate(maskable) if ok]
    good = [i for i in content if rank.get(ids[i], 1 << 30) <= top_k]
    if not good:
        good = content
    if not good:
        return list(range(k))
    if len(good) >= k:
        return rng.sample(good, k)
    return [rng.choice(good) for _ in range(k)]
