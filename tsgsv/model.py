"""TSGSV streaming grounding model with the language-guided compressor and the TwinNet branch.

Follows ``shared/specs/tsgsv.md`` §2, itself read from the official code (SCZwangxiao/TSGVs-MM2023,
``tsgv/models/interactors/tpn_streaming.py``, ``predictors/dot_product_tpn_streaming.py``,
``sentence_encoders/rnn.py``). At step ``t`` the model sees a *short memory* (the last ``M_s`` steps, where it
predicts), a *long memory* (the ``M_l`` steps before it, compressed into a few tokens guided by the
query) and, in training only, a *future memory* (the next ``M_f`` steps) that the TwinNet branch reads and
distils into the causal stream. Window positions outside the video are zero and masked (``False`` in masks).

Shapes: ``B`` windows, ``Ml``/``Ms``/``Mf`` memory lengths, ``D`` feature dims, ``L`` sentence tokens,
``h`` hidden size, ``n`` compressed tokens. Logits are ``(B, Ms, 3)`` with channels start / end / relevance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEG = -1e4  # finite "minus infinity": a fully padded memory gives uniform weights over zeros, not NaN


@dataclass
class TSGSVConfig:
    """Sizes of the TSGSV model (defaults: the ActivityNet recipe, spec §2 table).

    Attributes:
        video_dim: input video feature size (C3D 500 for ActivityNet).
        sent_dim: input token feature size (BERT 768).
        hidden: model width h.
        short_mem, long_mem, future_mem: M_s, M_l, M_f in feature steps.
        compressor_tokens: tokens of each chained compressor stage.
        dec_layers: main decoder layers L_dec.
        heads, ffn, dropout: transformer heads, feed-forward width, dropout.
        gru_layers, gru_dropout: the bidirectional GRU sentence encoder.
        gate_dropout: the final dropout of the compressor gates.
        video_proj, sent_proj: use the Linear-LN-GELU input projection (False for MAD's CLIP features).
        future_usage: ``TemporalPincer`` (TwinNet branch) or ``none`` (causal stream only).
        sent_pool: ``padded_mean`` (code parity: divide by the padded length) or ``masked_mean``.
        max_sent_len: padded sentence length (20 in the code).
        sent_mask_off_by_one: reproduce the code's mask that counts index == length as valid.
        logit_scale: the head's cosine scale (16).
    """

    video_dim: int = 500
    sent_dim: int = 768
    hidden: int = 1024
    short_mem: int = 8
    long_mem: int = 64
    future_mem: int = 64
    compressor_tokens: list[int] = field(default_factory=lambda: [16, 16])
    dec_layers: int = 2
    heads: int = 8
    ffn: int = 1024
    dropout: float = 0.5
    gru_layers: int = 2
    gru_dropout: float = 0.5
    gate_dropout: float = 0.4
    video_proj: bool = True
    sent_proj: bool = True
    future_usage: str = "TemporalPincer"
    sent_pool: str = "padded_mean"
    max_sent_len: int = 20
    sent_mask_off_by_one: bool = False
    logit_scale: float = 16.0

    def __post_init__(self) -> None:
        if self.future_usage not in ("TemporalPincer", "none"):
            raise ValueError(f"future_usage must be 'TemporalPincer' or 'none', got {self.future_usage!r}")
        if self.sent_pool not in ("padded_mean", "masked_mean"):
            raise ValueError(f"sent_pool must be 'padded_mean' or 'masked_mean', got {self.sent_pool!r}")
        if not self.compressor_tokens:
            raise ValueError("compressor_tokens needs at least one stage")
        if not self.video_proj and self.video_dim != self.hidden:
            raise ValueError(
                f"video_proj=False needs video_dim == hidden, got {self.video_dim}, {self.hidden}"
            )
        if not self.sent_proj and self.sent_dim != self.hidden:
            raise ValueError(f"sent_proj=False needs sent_dim == hidden, got {self.sent_dim}, {self.hidden}")


def _proj(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.GELU())


class VideoEncoder(nn.Module):
    """Linear -> LN -> GELU per step (identity for MAD), padding zeroed afterwards."""

    def __init__(self, cfg: TSGSVConfig) -> None:
        super().__init__()
        self.proj = _proj(cfg.video_dim, cfg.hidden) if cfg.video_proj else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.proj(x) * mask.unsqueeze(-1).to(x.dtype)  # (B, T, h)


def sentence_mask(lengths: Tensor, max_len: int, off_by_one: bool = False) -> Tensor:
    """``(B, max_len)`` valid-token mask; ``off_by_one``: the code's ``index <= length`` (spec §6 #1)."""
    idx = torch.arange(max_len, device=lengths.device)[None]
    lim = lengths[:, None] + (1 if off_by_one else 0)
    return idx < lim


def pool_sentence(q: Tensor, mask: Tensor, mode: str) -> Tensor:
    """Mean of the token features: over the padded length (code parity) or over the valid tokens."""
    q = q * mask.unsqueeze(-1).to(q.dtype)
    if mode == "padded_mean":
        return q.sum(1) / q.shape[1]
    return q.sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(q.dtype)


class SentenceEncoder(nn.Module):
    """Linear -> LN -> GELU, then a 2-layer bidirectional GRU on packed sequences, directions averaged."""

    def __init__(self, cfg: TSGSVConfig) -> None:
        super().__init__()
        self.proj = _proj(cfg.sent_dim, cfg.hidden) if cfg.sent_proj else nn.Identity()
        self.gru = nn.GRU(
            cfg.hidden,
            cfg.hidden,
            num_layers=cfg.gru_layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.gru_dropout if cfg.gru_layers > 1 else 0.0,
        )
        self.hidden = cfg.hidden

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``tokens (B, L, Ds)``, ``lengths (B,)`` -> ``Q (B, L, h)`` (zeros past each length)."""
        x = self.proj(tokens)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        return 0.5 * (out[..., : self.hidden] + out[..., self.hidden :])


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to a sequence, then dropout."""

    def __init__(self, dim: int, max_len: int, dropout: float) -> None:
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
        self.register_buffer("pe", pe, persistent=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(x + self.pe[: x.shape[1]].to(x.dtype))


class Gate(nn.Module):
    """Linear(h,2h) -> GELU -> Dropout -> Linear(2h,1) -> tanh -> GELU -> Dropout(0.4): one scalar."""

    def __init__(self, hidden: int, dropout: float, gate_dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, 2 * hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, 1),
            nn.Tanh(),
            nn.GELU(),
            nn.Dropout(gate_dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, 1)


class MultimodalTokenLearner(nn.Module):
    """One compressor stage: memory ``X (B, T, h)`` -> ``n`` tokens guided by the query (spec §2)."""

    def __init__(self, hidden: int, num_tokens: int, dropout: float, gate_dropout: float) -> None:
        super().__init__()
        self.visual = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_tokens),
            nn.Dropout(dropout),
        )
        self.drop_x = nn.Dropout(dropout)
        self.drop_q = nn.Dropout(dropout)
        self.w_x = nn.Linear(hidden, hidden)
        self.w_q = nn.Linear(hidden, hidden, bias=False)
        self.w_a = nn.Linear(hidden, num_tokens, bias=False)
        self.gate_v = Gate(hidden, dropout, gate_dropout)
        self.gate_q = Gate(hidden, dropout, gate_dropout)
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)

    def forward(self, x: Tensor, mask: Tensor, q_bar: Tensor) -> Tensor:
        """``x (B, T, h)``, ``mask (B, T)``, ``q_bar (B, h)`` -> ``(B, n, h)``."""
        pad = (~mask).unsqueeze(-1)  # (B, T, 1)
        a = self.visual(x).masked_fill(pad, NEG).softmax(dim=1)  # (B, T, n)
        z_v = torch.einsum("btn,bth->bnh", a, x)
        e = self.w_a(torch.tanh(self.w_x(self.drop_x(x)) + self.w_q(self.drop_q(q_bar)).unsqueeze(1)))
        b = e.masked_fill(pad, NEG).softmax(dim=1)  # (B, T, n)
        z_q = torch.einsum("btn,bth->bnh", b, x)
        m = mask.unsqueeze(-1).to(x.dtype)
        x_mean = (x * m).sum(1) / m.sum(1).clamp(min=1)
        g_v = self.gate_v(x_mean).unsqueeze(-1)  # (B, 1, 1)
        g_q = self.gate_q(q_bar).unsqueeze(-1)
        return self.norm(g_v * z_v + g_q * z_q)


class Compressor(nn.Module):
    """Chained token-learner stages (e.g. 64 steps -> 16 -> 16 tokens)."""

    def __init__(self, cfg: TSGSVConfig) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            MultimodalTokenLearner(cfg.hidden, n, cfg.dropout, cfg.gate_dropout)
            for n in cfg.compressor_tokens
        )

    def forward(self, x: Tensor, mask: Tensor, q_bar: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x, mask, q_bar)
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return x


def causal_mask(valid: Tensor, heads: int) -> Tensor:
    """Boolean attention mask ``(B*heads, T, T)`` (True = blocked): causal, padded keys blocked.

    A position may always attend to itself, so a padded query never has every key blocked (no NaN).
    """
    t = valid.shape[1]
    eye = torch.eye(t, dtype=torch.bool, device=valid.device)
    allowed = torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()[None] & valid[:, None, :]
    allowed = allowed | eye[None]
    return (~allowed).repeat_interleave(heads, dim=0)


def full_mask(valid: Tensor, heads: int) -> Tensor:
    """Like :func:`causal_mask` but bidirectional."""
    t = valid.shape[1]
    eye = torch.eye(t, dtype=torch.bool, device=valid.device)
    allowed = valid[:, None, :].expand(-1, t, -1) | eye[None]
    return (~allowed).repeat_interleave(heads, dim=0)


def _decoder(cfg: TSGSVConfig, layers: int) -> nn.TransformerDecoder | None:
    if layers <= 0:
        return None
    layer = nn.TransformerDecoderLayer(
        cfg.hidden, cfg.heads, cfg.ffn, cfg.dropout, activation="gelu", batch_first=True, norm_first=False
    )
    return nn.TransformerDecoder(layer, layers)


class PincerLayer(nn.Module):
    """TwinNet's merge: self-attention + add&LN, cross-attention to ``[long; future]`` + add&LN, no FFN."""

    def __init__(self, cfg: TSGSVConfig) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(cfg.hidden, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(cfg.hidden, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(cfg.hidden)
        self.norm2 = nn.LayerNorm(cfg.hidden)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.drop2 = nn.Dropout(cfg.dropout)
        self.heads = cfg.heads

    def forward(self, x: Tensor, valid: Tensor, memory: Tensor) -> Tensor:
        a, _ = self.self_attn(x, x, x, attn_mask=full_mask(valid, self.heads), need_weights=False)
        x = self.norm1(x + self.drop1(a))
        c, _ = self.cross_attn(x, memory, memory, need_weights=False)
        return self.norm2(x + self.drop2(c))


class DotProductHead(nn.Module):
    """Start / end / relevance logits ``scale * cos(v_k(t), s_k)`` (spec §2 "Head")."""

    def __init__(self, hidden: int, scale: float) -> None:
        super().__init__()
        self.video = nn.Linear(hidden, 3 * hidden)
        self.sent = nn.Linear(hidden, 3 * hidden)
        self.scale = scale

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """``x (B, T, h)``, ``s (B, h)`` -> ``(B, T, 3)``."""
        v = F.normalize(self.video(x).unflatten(-1, (3, -1)), dim=-1)  # (B, T, 3, h)
        q = F.normalize(self.sent(s).unflatten(-1, (3, -1)), dim=-1)  # (B, 3, h)
        return self.scale * (v * q[:, None]).sum(-1)


class TSGSVModel(nn.Module):
    """The TSGSV streaming model: causal main stream plus the training-only TwinNet branch."""

    def __init__(self, cfg: TSGSVConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.video_encoder = VideoEncoder(cfg)
        self.sentence_encoder = SentenceEncoder(cfg)
        self.pos = PositionalEncoding(
            cfg.hidden, max(cfg.long_mem, cfg.short_mem + cfg.future_mem), cfg.dropout
        )
        self.compressor = Compressor(cfg)
        self.decoder = _decoder(cfg, cfg.dec_layers)
        self.head = DotProductHead(cfg.hidden, cfg.logit_scale)
        if cfg.future_usage == "TemporalPincer":
            self.twin_forward = _decoder(cfg, cfg.dec_layers - 1)
            self.twin_inverted = _decoder(cfg, cfg.dec_layers - 1)
            self.pincer = PincerLayer(cfg)
            self.twin_head = DotProductHead(cfg.hidden, cfg.logit_scale)

    @property
    def has_twin(self) -> bool:
        return self.cfg.future_usage == "TemporalPincer"

    def encode_sentence(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Token features -> ``(Q (B, L, h), pooled q_bar (B, h))``."""
        q = self.sentence_encoder(tokens, lengths)
        mask = sentence_mask(lengths, q.shape[1], self.cfg.sent_mask_off_by_one)
        return q, pool_sentence(q, mask, self.cfg.sent_pool)

    def _run_decoder(
        self, dec: nn.TransformerDecoder | None, x: Tensor, valid: Tensor, memory: Tensor
    ) -> Tensor:
        x = self.pos(x)
        if dec is None:
            return x
        return dec(x, memory, tgt_mask=causal_mask(valid, self.cfg.heads))

    def forward(
        self,
        long: Tensor,
        long_mask: Tensor,
        short: Tensor,
        short_mask: Tensor,
        sent: Tensor,
        sent_len: Tensor,
        future: Tensor | None = None,
        future_mask: Tensor | None = None,
        q_bar: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Predict at every short-memory position.

        Args:
            long: ``(B, Ml, D)`` raw video features before the short memory; ``long_mask (B, Ml)``.
            short: ``(B, Ms, D)``; ``short_mask (B, Ms)``.
            sent: ``(B, L, Ds)`` token features; ``sent_len (B,)``.
            future: ``(B, Mf, D)`` the steps after the short memory (TwinNet, training only); ``future_mask``.
            q_bar: a precomputed pooled sentence ``(B, h)`` (streaming: encode the query once).

        Returns:
            ``logits (B, Ms, 3)`` and ``feat (B, Ms, h)``; with the twin branch and a future also
            ``twin_logits`` and ``twin_feat``.
        """
        if q_bar is None:
            _, q_bar = self.encode_sentence(sent, sent_len)
        x_long = self.pos(self.video_encoder(long, long_mask))
        tokens = self.compressor(x_long, long_mask, q_bar)  # (B, n, h)
        x_short = self.video_encoder(short, short_mask)
        feat = self._run_decoder(self.decoder, x_short, short_mask, tokens)
        out = {"logits": self.head(feat, q_bar), "feat": feat}
        if self.has_twin and future is not None and future_mask is not None:
            # The future memory reversed in time, so its padding (past the video end) comes first.
            x_fut = self.pos(self.video_encoder(future.flip(1), future_mask.flip(1)))
            f_tokens = self.compressor(x_fut, future_mask.flip(1), q_bar)
            fwd = self._run_decoder(self.twin_forward, feat, short_mask, tokens)
            inv = self._run_decoder(self.twin_inverted, feat.flip(1), short_mask.flip(1), f_tokens)
            twin = self.pincer(fwd + inv.flip(1), short_mask, torch.cat([tokens, f_tokens], dim=1))
            out["twin_logits"] = self.twin_head(twin, q_bar)
            out["twin_feat"] = twin
        return out


def make_windows(
    video: Tensor, valid: Tensor, ends: Tensor, long_mem: int, short_mem: int, future_mem: int
) -> dict[str, Tensor]:
    """Cut streaming windows whose short memory ends at the steps ``ends``.

    Args:
        video: ``(T, D)`` features of one video; ``valid (T,)``.
        ends: ``(K,)`` last step of each short memory (may exceed ``T - 1``: those steps are padding).

    Returns:
        ``long (K, Ml, D)``, ``short (K, Ms, D)``, ``future (K, Mf, D)``, their masks and
        ``short_steps (K, Ms)`` (the step index of each short position, for labels).
    """
    t, d = video.shape
    before, after = long_mem + short_mem, future_mem
    padded = torch.cat([video.new_zeros(before, d), video, video.new_zeros(after + short_mem, d)])
    pmask = torch.cat([valid.new_zeros(before), valid, valid.new_zeros(after + short_mem)])
    offsets = torch.arange(-(long_mem + short_mem) + 1, future_mem + 1, device=video.device)  # (W,)
    steps = ends[:, None] + offsets[None]  # (K, W)
    idx = (steps + before).clamp(min=0, max=padded.shape[0] - 1)
    win, wmask = padded[idx], pmask[idx] & (steps >= 0) & (steps < t)
    return {
        "long": win[:, :long_mem],
        "long_mask": wmask[:, :long_mem],
        "short": win[:, long_mem : long_mem + short_mem],
        "short_mask": wmask[:, long_mem : long_mem + short_mem],
        "future": win[:, long_mem + short_mem :],
        "future_mask": wmask[:, long_mem + short_mem :],
        "short_steps": steps[:, long_mem : long_mem + short_mem],
    }


@torch.no_grad()
def offline_scores(
    model: TSGSVModel, video: Tensor, valid: Tensor, sent: Tensor, sent_len: Tensor, chunk: int = 512
) -> Tensor:
    """Batched evaluation: per-step probabilities ``(B, T, 3)`` from the last short position of every window.

    Args:
        video: ``(B, T, D)`` padded videos; ``valid (B, T)``.
        sent: ``(B, L, Ds)``; ``sent_len (B,)``.
        chunk: windows per forward pass.
    """
    cfg = model.cfg
    b, t, _ = video.shape
    _, q_bar = model.encode_sentence(sent, sent_len)
    out = video.new_zeros(b, t, 3)
    ends = torch.arange(t, device=video.device)
    for i in range(b):
        w = make_windows(video[i], valid[i], ends, cfg.long_mem, cfg.short_mem, 0)
        for j in range(0, t, chunk):
            sl = slice(j, j + chunk)
            k = w["long"][sl].shape[0]
            res = model(
                w["long"][sl], w["long_mask"][sl], w["short"][sl], w["short_mask"][sl],
                sent[i : i + 1].expand(k, -1, -1), sent_len[i : i + 1].expand(k),
                q_bar=q_bar[i : i + 1].expand(k, -1),
            )  # fmt: skip
            out[i, sl] = res["logits"][:, -1].sigmoid()
    return out
