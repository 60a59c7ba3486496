"""TSGSV objectives (spec §3, from ``tsgv/models/losses`` and the localizer of the official code).

* :func:`soft_labels`: Gaussian start / end / relevance targets in feature-step units.
* :func:`focal_bce`: ``|sigmoid(z) - y|^gamma * BCE(z, y)`` with the modulation detached.
* :func:`span_loss`: the three channels averaged over valid positions, weighted 0.5 / 0.5 / 1.0 and summed.
* :func:`tsgsv_loss`: the TwinNet KD total
  ``(1 - w) L(z_main, y) + L(z_twin, y) + w L(z_main, sg(sigmoid(z_twin)))``
  or the ``twinnet`` feature-matching variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CHANNEL_WEIGHTS = (0.5, 0.5, 1.0)
SIGMA_RATIOS = (0.25, 0.25, 0.21)


def soft_labels(steps: Tensor, start: Tensor, end: Tensor, min_span: float = 1e-3) -> Tensor:
    """Gaussian targets ``(..., Ms, 3)`` at the step indices ``steps (..., Ms)``.

    Args:
        steps: step index of every position (float or int).
        start, end: the moment in step units (``time / duration * (T - 1)``), shape ``(...,)``.
        min_span: floor on the span so that a zero-length moment stays finite.
    """
    steps = steps.float()
    s, e = start.float()[..., None], end.float()[..., None]
    span = (e - s).clamp(min=min_span)
    centres = (s, e, 0.5 * (s + e))
    out = [torch.exp(-((steps - c) ** 2) / (2 * (r * span) ** 2)) for c, r in zip(centres, SIGMA_RATIOS)]
    return torch.stack(out, dim=-1)


def focal_bce(logits: Tensor, target: Tensor, gamma: float = 3.0) -> Tensor:
    """Element-wise focal-modulated BCE with logits; the factor ``|p - y|^gamma`` carries no gradient."""
    mod = (logits.detach().sigmoid() - target).abs().pow(gamma)
    return mod * F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def span_loss(
    logits: Tensor,
    target: Tensor,
    valid: Tensor,
    gamma: float = 3.0,
    weights: tuple[float, float, float] = CHANNEL_WEIGHTS,
) -> Tensor:
    """Sum over channels of the weighted focal BCE averaged over valid positions.

    Args:
        logits, target: ``(B, Ms, 3)``.
        valid: ``(B, Ms)`` positions that hold a real step.
    """
    per = focal_bce(logits, target, gamma)  # (B, Ms, 3)
    m = valid.unsqueeze(-1).to(per.dtype)
    mean = (per * m).sum((0, 1)) / m.sum().clamp(min=1)  # (3,)
    return (mean * mean.new_tensor(weights)).sum()


def tsgsv_loss(
    out: dict[str, Tensor],
    target: Tensor,
    valid: Tensor,
    kd_weight: float,
    tpn_type: str = "KD",
    gamma: float = 3.0,
) -> dict[str, Tensor]:
    """The training loss and its parts (spec §3 "Total").

    With no twin output (``future_usage: none``) it is ``L_span(z_main, y)``.
    """
    main = span_loss(out["logits"], target, valid, gamma)
    if "twin_logits" not in out:
        return {"loss": main, "loss_main": main}
    twin = span_loss(out["twin_logits"], target, valid, gamma)
    if tpn_type == "KD":
        kd = span_loss(out["logits"], out["twin_logits"].detach().sigmoid(), valid, gamma)
        loss = (1 - kd_weight) * main + twin + kd_weight * kd
    elif tpn_type == "twinnet":
        m = valid.unsqueeze(-1).to(out["feat"].dtype)
        diff = ((out["feat"] - out["twin_feat"].detach()) ** 2 * m).sum() / (m.sum() * out["feat"].shape[-1])
        kd = diff.clamp(min=0)
        loss = main + twin + kd_weight * kd
    else:
        raise ValueError(f"tpn_type must be 'KD' or 'twinnet', got {tpn_type!r}")
    return {"loss": loss, "loss_main": main, "loss_twin": twin, "loss_kd": kd}


def frames_from_seconds(t: Tensor | float, duration: Tensor | float, num_steps: Tensor | int) -> Tensor:
    """Seconds -> feature-step units: ``t / duration * (T - 1)`` (spec §3)."""
    return torch.as_tensor(t, dtype=torch.float32) / duration * (torch.as_tensor(num_steps) - 1)
