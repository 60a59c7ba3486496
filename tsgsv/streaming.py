"""True streaming inference for TSGSV: one feature step in, one (start, end, relevance) triple out.

:class:`StreamingGrounder` keeps only the last ``M_l + M_s`` raw feature steps (a ring of fixed size) and the
query's pooled encoding, so its state never grows with the stream; it never sees a step before it arrives. At
each step it runs the causal main stream on the current window and keeps the last short position, which is
exactly what the batched offline evaluation (:func:`tsgsv.model.offline_scores`) computes for that step
(tests/tsgsv/test_streaming.py checks both properties).

Example::

    grounder = StreamingGrounder(model, sent_tokens, sent_len)
    for feature in stream:                 # (D,) per step
        p_start, p_end, p_rel = grounder.step(feature).tolist()
"""

from __future__ import annotations

import torch
from torch import Tensor

from tsgsv.model import TSGSVModel


class StreamingGrounder:
    """Streams features through a trained :class:`TSGSVModel` for one query.

    Args:
        model: the model (put in eval mode here; the TwinNet branch is never run).
        sent: ``(L, Ds)`` token features of the query; ``sent_len``: its length.
    """

    def __init__(self, model: TSGSVModel, sent: Tensor, sent_len: int) -> None:
        self.model = model.eval()
        cfg = model.cfg
        self.long_mem, self.short_mem = cfg.long_mem, cfg.short_mem
        self.capacity = cfg.long_mem + cfg.short_mem
        self.sent = sent[None]
        self.sent_len = torch.tensor([int(sent_len)], device=sent.device)
        with torch.no_grad():
            _, self.q_bar = model.encode_sentence(self.sent, self.sent_len)
        self.buffer = torch.zeros(self.capacity, cfg.video_dim, device=sent.device, dtype=sent.dtype)
        self.filled = 0  # valid steps in the buffer (saturates at capacity)
        self.steps = 0

    @property
    def state_numel(self) -> int:
        """Elements held between steps: fixed, independent of the stream length."""
        return self.buffer.numel() + self.q_bar.numel()

    @torch.no_grad()
    def step(self, feature: Tensor) -> Tensor:
        """Consume one step ``(D,)``; return ``(3,)`` probabilities (start, end, relevance) for it."""
        self.buffer = torch.roll(self.buffer, -1, dims=0)
        self.buffer[-1] = feature.to(self.buffer.dtype)
        self.filled = min(self.filled + 1, self.capacity)
        self.steps += 1
        mask = torch.zeros(self.capacity, dtype=torch.bool, device=self.buffer.device)
        mask[self.capacity - self.filled :] = True
        long, short = self.buffer[None, : self.long_mem], self.buffer[None, self.long_mem :]
        out = self.model(
            long, mask[None, : self.long_mem], short, mask[None, self.long_mem :],
            self.sent, self.sent_len, q_bar=self.q_bar,
        )  # fmt: skip
        return out["logits"][0, -1].sigmoid()

    def run(self, features: Tensor) -> Tensor:
        """Stream ``(T, D)`` features step by step; ``(T, 3)`` scores."""
        return torch.stack([self.step(f) for f in features])
