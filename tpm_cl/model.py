"""The DMAE + TPM-CL text-video retrieval model (arXiv 2309.11082; ``shared/specs/tpm_cl.md`` §2-3).

A CLIP dual encoder (open_clip's ``CLIP`` class, so OpenAI/open_clip/CLIP4Clip checkpoints map by name under
the ``clip.`` prefix) gives contextual, projected word tokens ``w_1..w_L`` with the sentence embedding ``c``
(the EOT token), and per-frame image embeddings ``f_1..f_N``. The frames go through CLIP4Clip's ``seqTransf``
temporal header (learned frame positions, a masked CLIP residual transformer, a residual add) or ``meanP``
(identity). All tokens are L2-normalised before the interaction:

* ``ti``: the DMAE token-wise similarity of :func:`tpm_cl.losses.token_similarity` on the words;
* ``att_ti`` (the default, the MSR-VTT script's setting): ``(sim_sent + sim_words) / 2``, where ``sim_sent``
  runs the same routine with the single token ``c``;
* ``wti``: learned softmax weights over tokens and frames (``wti_arch`` 1: Linear, 2: 2-layer MLP).

TPM-CL (training only, matched pairs): two :class:`CrossWeightPredictor` (``LinearXWeightPredictor`` of the
code) give word weights ``a^t`` (queries: the frames) and frame weights ``a^v`` (query: ``c``); the importance
selector masks the top-weighted words/frames; three triplets require each full pair to beat its partially
masked version by the margin ``m``.

Plain PyTorch, no Lightning. :func:`load_clip_weights` maps released CLIP weights onto :class:`TPMCLModel`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import Transformer
from torch import Tensor, nn

from tpm_cl.losses import importance_keep_mask, partial_margin_loss, token_similarity

log = logging.getLogger(__name__)

INTERACTIONS = ("ti", "att_ti", "wti")
TEMPORAL = ("seqTransf", "meanP")
PARTIAL_TYPES = (-1, 2, 3, 4)


@dataclass
class TPMCLConfig:
    """Sizes and switches of the model; ``configs/paper.yaml`` gives every value with its source.

    The CLIP fields are open_clip's ``vision_cfg``/``text_cfg`` (ViT-B/32: ``open_clip/model_configs/
    ViT-B-32.json``). ``num_frames`` and ``max_words`` are linked to the data module's values by the CLI; they
    fix the padded lengths of the TPM-CL weight predictors (spec §2), so they stay equal in train and test.
    """

    embed_dim: int = 512
    image_size: int = 224
    patch_size: int = 32
    vision_width: int = 768
    vision_layers: int = 12
    vision_head_width: int = 64
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12
    quick_gelu: bool = True
    num_frames: int = 12
    max_words: int = 32
    temporal: str = "seqTransf"
    temporal_layers: int = 4
    interaction: str = "att_ti"
    wti_arch: int = 1
    use_twm: bool = True
    with_nfc: bool = True
    nfc_weight: float = 0.5
    partial_type: int = 4
    rho: float = 0.6
    tpm_margin: float = 0.6
    always_mask_top1: bool = False

    def __post_init__(self) -> None:
        if self.interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {self.interaction!r}")
        if self.temporal not in TEMPORAL:
            raise ValueError(f"temporal must be one of {TEMPORAL}, got {self.temporal!r}")
        if self.partial_type not in PARTIAL_TYPES:
            raise ValueError(f"partial_type must be one of {PARTIAL_TYPES}, got {self.partial_type}")
        if self.max_words > self.context_length:
            raise ValueError(f"max_words {self.max_words} exceeds context_length {self.context_length}")
        if self.wti_arch not in (1, 2):
            raise ValueError(f"wti_arch must be 1 or 2, got {self.wti_arch}")


def build_clip(cfg: TPMCLConfig) -> CLIP:
    """open_clip's CLIP with the config's sizes (random init; weights come from :func:`load_clip_weights`)."""
    vision = dict(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        width=cfg.vision_width,
        layers=cfg.vision_layers,
        head_width=cfg.vision_head_width,
    )
    text = dict(
        context_length=cfg.context_length,
        vocab_size=cfg.vocab_size,
        width=cfg.text_width,
        heads=cfg.text_heads,
        layers=cfg.text_layers,
    )
    return CLIP(cfg.embed_dim, vision, text, quick_gelu=cfg.quick_gelu)


class TemporalTransformer(nn.Module):
    """CLIP4Clip's ``seqTransf``: frame positions, a masked CLIP transformer (D/64 heads), residual add."""

    def __init__(self, width: int, layers: int, max_frames: int) -> None:
        super().__init__()
        self.heads = max(1, width // 64)
        self.frame_position_embeddings = nn.Embedding(max_frames, width)
        self.transformer = Transformer(width, layers, self.heads)

    def forward(self, frames: Tensor, mask: Tensor) -> Tensor:
        """``frames`` ``(B, F, D)``, ``mask`` ``(B, F)`` (1 on real frames) -> ``(B, F, D)``."""
        b, f, _ = frames.shape
        pos = self.frame_position_embeddings(torch.arange(f, device=frames.device))
        # additive key-padding mask for every head: (B * heads, F, F)
        key_pad = torch.zeros(b, 1, 1, f, dtype=frames.dtype, device=frames.device)
        key_pad = key_pad.masked_fill(mask[:, None, None, :] <= 0, float("-inf"))
        attn = key_pad.expand(b, self.heads, f, f).reshape(b * self.heads, f, f)
        return self.transformer(frames + pos[None], attn_mask=attn) + frames


class CrossWeightPredictor(nn.Module):
    """``LinearXWeightPredictor`` (spec §2): weights over ``n_k`` keys given a query sequence of ``n_q``.

    Linear ``n_q -> n_k`` along the sequence axis, concatenation with the keys on channels (``(n_k, 2D)``),
    LayerNorm over the whole slab, Linear ``2D -> D/2`` (no bias), GELU, Linear ``D/2 -> 1`` (no bias),
    sigmoid, zero on padded keys, normalised to sum 1.
    """

    def __init__(self, dim: int, n_query: int, n_key: int) -> None:
        super().__init__()
        self.n_query, self.n_key = n_query, n_key
        self.seq_proj = nn.Linear(n_query, n_key)
        self.norm = nn.LayerNorm([n_key, 2 * dim])
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, dim // 2, bias=False), nn.GELU(), nn.Linear(dim // 2, 1, bias=False)
        )

    def forward(self, query: Tensor, keys: Tensor, key_mask: Tensor) -> Tensor:
        """``query`` ``(B, n_q, D)``, ``keys`` ``(B, n_k, D)``, ``key_mask`` ``(B, n_k)`` -> ``(B, n_k)``."""
        if query.shape[1] != self.n_query or keys.shape[1] != self.n_key:
            raise ValueError(
                f"weight predictor built for {self.n_query} queries x {self.n_key} keys, got "
                f"{query.shape[1]} x {keys.shape[1]}: keep max_words and num_frames equal in train and test"
            )
        q = self.seq_proj(query.transpose(1, 2)).transpose(1, 2)  # (B, n_k, D)
        x = self.norm(torch.cat([q, keys], dim=-1))  # (B, n_k, 2D)
        w = torch.sigmoid(self.mlp(x)[..., 0]) * key_mask.to(x.dtype)
        return w / w.sum(-1, keepdim=True).clamp_min(1e-6)


@dataclass
class TextFeatures:
    """Encoded texts: L2-normalised words ``(B, L, D)``, DMAE weights ``(B, L)``, sentence ``(B, D)``."""

    words: Tensor
    weight: Tensor
    sentence: Tensor


@dataclass
class VideoFeatures:
    """Encoded videos: raw frame embeddings ``(B, F, D)``, L2-normalised tokens ``(B, F, D)``, mask."""

    frames: Tensor
    tokens: Tensor
    mask: Tensor


class TPMCLModel(nn.Module):
    """CLIP dual encoder with the DMAE interaction and the TPM-CL head (see the module docstring)."""

    def __init__(self, cfg: TPMCLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.clip = build_clip(cfg)
        # The logit scale is fixed at 100 in the loss (spec §2); frozen, so DDP never waits for its gradient.
        self.clip.logit_scale.requires_grad_(False)
        self.temporal = None
        if cfg.temporal == "seqTransf":
            self.temporal = TemporalTransformer(d, cfg.temporal_layers, cfg.num_frames)
        if cfg.interaction == "wti":
            if cfg.wti_arch == 1:
                self.text_weight_fc, self.video_weight_fc = nn.Linear(d, 1), nn.Linear(d, 1)
            else:
                self.text_weight_fc = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, 1))
                self.video_weight_fc = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, 1))
        if cfg.partial_type != -1:  # t^g needs the word weights in every TPM-CL variant
            self.word_predictor = CrossWeightPredictor(d, cfg.num_frames, cfg.max_words)
        if cfg.partial_type in (2, 4):
            self.frame_predictor = CrossWeightPredictor(d, 1, cfg.num_frames)
            # a^v acts only through the non-differentiable importance selector (v^g is unused, spec §6 #9),
            # so, as in the code, it never gets a gradient; frozen, so DDP need not look for unused parameters
            self.frame_predictor.requires_grad_(False)

    # ------------------------------------------------------------------ encoders
    def encode_text(self, ids: Tensor, weight: Tensor) -> TextFeatures:
        """``ids`` ``(B, L)`` CLIP BPE ids (0-padded, EOT = the largest id); ``weight`` ``(B, L)``: m_t."""
        clip = self.clip
        length = ids.shape[1]
        x = clip.token_embedding(ids) + clip.positional_embedding[:length]
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        x = clip.ln_final(x) @ clip.text_projection  # (B, L, D): every token projected
        sentence = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        if not self.cfg.use_twm:
            weight = (weight > 0).to(weight.dtype)
        return TextFeatures(F.normalize(x, dim=-1), weight, F.normalize(sentence, dim=-1))

    def encode_frames(self, pixels: Tensor) -> Tensor:
        """``pixels`` ``(B, F, C, H, W)`` normalised -> per-frame CLIP image embeddings ``(B, F, D)``."""
        b, f = pixels.shape[:2]
        return self.clip.encode_image(pixels.flatten(0, 1)).view(b, f, -1)

    def temporal_tokens(self, frames: Tensor, mask: Tensor) -> Tensor:
        """Temporal header then L2 normalisation, ``(B, F, D)``."""
        if self.temporal is not None:
            frames = self.temporal(frames, mask)
        return F.normalize(frames, dim=-1)

    def encode_video(self, pixels: Tensor, mask: Tensor) -> VideoFeatures:
        frames = self.encode_frames(pixels)
        return VideoFeatures(frames, self.temporal_tokens(frames, mask), mask)

    # ------------------------------------------------------------------ similarity
    def _query_similarity(self, query: Tensor, video: VideoFeatures) -> Tensor:
        """The interaction with one query vector per text: ``query`` ``(A, D)`` -> ``(A, B)``."""
        ones = torch.ones(query.shape[0], 1, dtype=query.dtype, device=query.device)
        cfg = self.cfg
        return token_similarity(
            query[:, None], ones, video.tokens, video.mask, with_nfc=cfg.with_nfc, nfc_weight=cfg.nfc_weight
        )

    def similarity(self, text: TextFeatures, video: VideoFeatures) -> Tensor:
        """S ``(A, B)`` of every text with every video (spec §3)."""
        cfg = self.cfg
        logits = {}
        if cfg.interaction == "wti":
            logits = dict(
                text_logits=self.text_weight_fc(text.words)[..., 0],
                video_logits=self.video_weight_fc(video.tokens)[..., 0],
            )
        words = token_similarity(
            text.words,
            text.weight,
            video.tokens,
            video.mask,
            with_nfc=cfg.with_nfc,
            nfc_weight=cfg.nfc_weight,
            **logits,
        )
        if cfg.interaction != "att_ti":
            return words
        return (self._query_similarity(text.sentence, video) + words) / 2

    # ------------------------------------------------------------------ TPM-CL
    def _pair_similarity(self, query: Tensor, video: VideoFeatures) -> Tensor:
        """s(query_i, V_i) of matched pairs, ``(B, D)`` -> ``(B,)`` (the diagonal of the single-query S)."""
        return self._query_similarity(query, video).diagonal()

    def tpm_loss(self, text: TextFeatures, video: VideoFeatures) -> tuple[Tensor, dict[str, Tensor]]:
        """TPM-CL's triplet partial-margin loss on matched pairs (spec §3).

        ``partial_type`` 4: triplets (1) s(c, V) vs s(c, V'), (2) s(t^g, V) vs s(t^g, V') and (3) s(t^g, V)
        vs s(t^g', V); 2: (1) + (2); 3: (3) only; -1: off.
        """
        cfg = self.cfg
        parts: dict[str, Tensor] = {}
        if cfg.partial_type == -1:
            return text.words.new_zeros(()), parts
        text_mask = (text.weight > 0).to(text.words.dtype)
        a_t = self.word_predictor(video.tokens, text.words, text_mask)  # (B, L)
        t_g = F.normalize(torch.einsum("bl,bld->bd", a_t, text.words), dim=-1)  # (B, D)
        s_full_tg = self._pair_similarity(t_g, video)
        if cfg.partial_type in (2, 4):
            a_v = self.frame_predictor(text.sentence[:, None], video.frames, video.mask)  # (B, F)
            keep_v = importance_keep_mask(a_v, cfg.rho, cfg.always_mask_top1)
            frames = video.frames * keep_v[..., None]  # masked frames re-run through the temporal header
            masked = VideoFeatures(frames, self.temporal_tokens(frames, video.mask), video.mask)
            parts["tpm_sent"] = partial_margin_loss(
                self._pair_similarity(text.sentence, video),
                self._pair_similarity(text.sentence, masked),
                cfg.tpm_margin,
            )
            parts["tpm_video"] = partial_margin_loss(
                s_full_tg, self._pair_similarity(t_g, masked), cfg.tpm_margin
            )
        if cfg.partial_type in (3, 4):
            keep_t = importance_keep_mask(a_t, cfg.rho, cfg.always_mask_top1)
            # the weights are not renormalised; the L2 normalisation makes their scale irrelevant
            t_g_masked = F.normalize(torch.einsum("bl,bld->bd", a_t * keep_t, text.words), dim=-1)
            parts["tpm_text"] = partial_margin_loss(
                s_full_tg, self._pair_similarity(t_g_masked, video), cfg.tpm_margin
            )
        return torch.stack(list(parts.values())).sum(), parts


# ---------------------------------------------------------------------------------------------- weights
_META_KEYS = ("input_resolution", "context_length", "vocab_size")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file: safetensors, a ``torch.save`` state dict (``weights_only``), a Lightning
    checkpoint (its ``state_dict``) or OpenAI's TorchScript ``ViT-B-32.pt`` archive.

    Raises:
        FileNotFoundError: naming the path looked at.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CLIP weights not found at {path.resolve()}: give a local checkpoint (open_clip, OpenAI or "
            "CLIP4Clip layout) or the tag 'openai' with network/hub-cache access"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except RuntimeError:
        # OpenAI's release is a TorchScript archive (code is TorchScript, not pickled Python objects).
        obj = torch.jit.load(str(path), map_location="cpu").state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def map_clip_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a checkpoint onto :class:`TPMCLModel`'s names.

    Accepted layouts: OpenAI/open_clip CLIP (``visual.conv1.weight``, ``transformer.resblocks.0...``: prefixed
    with ``clip.``), CLIP4Clip/DRL (``clip.`` already), and this project's own (``model.`` from the
    LitModule). ``module.`` (DataParallel) is stripped; OpenAI's meta entries are dropped.
    """
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key in _META_KEYS:
            continue
        own = key.split(".")[0] in ("clip", "temporal", "word_predictor", "frame_predictor")
        own = own or key.startswith(("text_weight_fc", "video_weight_fc"))
        out[key if own else f"clip.{key}"] = value
    return out


def load_clip_weights(model: TPMCLModel, source: str | Path, arch: str = "ViT-B-32") -> list[str]:
    """Load released CLIP weights (or a full TPM-CL checkpoint) into ``model``; return the keys left at init.

    ``source`` is a local file (see :func:`read_state_dict`) or an open_clip pretrained tag such as
    ``"openai"`` (fetched through open_clip's hub cache for ``arch``). Every ``clip.*`` parameter must be
    found with a matching shape. When the checkpoint holds no temporal header, it is initialised as in
    CLIP4Clip (``modeling.py``): frame positions from the text positions, the layers from the first text
    layers.

    Raises:
        FileNotFoundError: a missing local file.
        KeyError, ValueError: missing, unexpected or mis-shaped keys.
    """
    if Path(str(source)).suffix or Path(str(source)).exists():
        state = read_state_dict(source)
    else:
        import open_clip

        state = open_clip.create_model(arch, pretrained=str(source)).state_dict()
    state = map_clip_keys(state)
    own = model.state_dict()
    if model.temporal is not None and not any(k.startswith("temporal.") for k in state):
        layers = len(model.temporal.transformer.resblocks)
        for key in own:
            if key.startswith("temporal.transformer.resblocks."):
                idx = int(key.split(".")[3])
                src = key.replace("temporal.", "clip.", 1)
                if idx < layers and src in state and state[src].shape == own[key].shape:
                    state[key] = state[src]
        pos = state.get("clip.positional_embedding")
        target = own["temporal.frame_position_embeddings.weight"]
        if pos is not None and pos.shape[1] == target.shape[1] and pos.shape[0] >= target.shape[0]:
            state["temporal.frame_position_embeddings.weight"] = pos[: target.shape[0]].clone()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise KeyError(f"{len(unexpected)} checkpoint keys have no place in the model, e.g. {unexpected[:5]}")
    bad = [k for k in state if state[k].shape != own[k].shape]
    if bad:
        shapes = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in bad[:5]]
        raise ValueError(f"shape mismatch (key, checkpoint, model) for {len(bad)} keys, e.g. {shapes}")
    missing = sorted(set(own) - set(state))
    missing_clip = [k for k in missing if k.startswith("clip.")]
    if missing_clip:
        raise KeyError(f"{len(missing_clip)} CLIP weights missing from {source}, e.g. {missing_clip[:5]}")
    model.load_state_dict(state, strict=False)
    log.info("loaded %d tensors from %s; %d keys keep their init", len(state), source, len(missing))
    return missing
