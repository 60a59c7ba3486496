"""M2-Encoder: a BEiT-3 Multiway Transformer dual encoder with a shared VL stack and two ITC head pairs.

Follows ``shared/specs/m2_encoder.md`` section 2 and the released inference code (alipay/Ant-Multi-Modal-
Framework ``prj/M2_Encoder/vlmo``, a trimmed VLMo with a vendored torchscale BEiT-3):

* Every layer of :class:`MultiwayEncoder` holds two experts (A = vision, B = language) of each of the
  attention q/k/v/out projections, the attention sub-LN, both pre-LNs and the FFN (with its sub-LN). A *split
  position* routes the tokens: ``-1`` sends all to A, ``0`` all to B, ``k`` the first ``k`` to A and the rest
  to B (:class:`Multiway`).
* Sub-LN / MAGNETO: pre-LN plus an inner LN before ``out_proj`` and before ``fc2``; ``fc1``, ``fc2``,
  ``out_proj`` and ``v_proj`` are multiplied by ``sqrt(log 2N)`` at init (N = the stack's depth).
* :class:`BEiT3Backbone` (N layers, learned multiway position tables starting at index 2 as in fairseq) is
  the encoder; ``backbone_vl`` (3 layers, no positions) is the shared VL encoder, run with split ``-1``.
* ITC heads: ``itc_{image,text}_proj`` on the backbone CLS and ``itc_vl_{image,text}_proj`` on the VL CLS
  (bias-free linear layers), with the temperatures ``logit_scale`` / ``logit_vl_scale``.
* Stage-2 decoders (reconstructed, spec section 2): CMLM (queries = masked text, keys/values = full image) and
  CMIM (queries = masked image, keys/values = full text), blocks of self-attention, cross-attention and FFN.

Parameter names mirror the released checkpoint (``backbone.encoder.layers.0.self_attn.q_proj.A.weight``...),
so :func:`convert_released_state_dict` only strips wrappers, drops the visual tokenizer and resizes the patch
position table.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

log = logging.getLogger(__name__)


@dataclass
class M2EncoderConfig:
    """Sizes of the M2-Encoder model (defaults: the released "0.4B", ``configs/Encoder_0.4B.json``).

    Args:
        embed_dim: width D.
        num_heads: attention heads.
        ffn_dim: FFN hidden width.
        num_layers: backbone depth (``encoder_layers``).
        num_vl_layers: depth of the shared VL stack (``beit3_vl_layers``).
        out_dim: ITC embedding size (``out_embed_dim``).
        vocab_size: rows of the text embedding table.
        image_size: input side in pixels.
        patch_size: patch side in pixels.
        max_text_positions: rows of the text position table (torchscale ``max_source_positions``).
        layernorm_eps: LayerNorm epsilon.
        dropout: dropout of attention outputs and FFNs.
        decoder_layers: blocks per stage-2 decoder (0 builds none).
        decoder_heads: heads of the decoders (None: D / 64).
        cmim_target: ``pixel`` (MSE on normalised patches) or ``beit2`` (CE over visual-token ids).
        beit2_codebook_size: BEiT-v2 codebook size for the ``beit2`` target.
        checkpoint_activations: recompute each layer in the backward pass (activation checkpointing).
    """

    embed_dim: int = 768
    num_heads: int = 12
    ffn_dim: int = 3072
    num_layers: int = 9
    num_vl_layers: int = 3
    out_dim: int = 768
    vocab_size: int = 115244
    image_size: int = 224
    patch_size: int = 16
    max_text_positions: int = 1024
    layernorm_eps: float = 1e-5
    dropout: float = 0.0
    decoder_layers: int = 2
    decoder_heads: int | None = None
    cmim_target: str = "pixel"
    beit2_codebook_size: int = 8192
    checkpoint_activations: bool = False

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.cmim_target not in ("pixel", "beit2"):
            raise ValueError(f"cmim_target must be 'pixel' or 'beit2', got {self.cmim_target!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# ------------------------------------------------------------------------------------------ multiway layers


class Multiway(nn.Module):
    """Two copies of a module: ``A`` (vision) and ``B`` (language), routed by a split position.

    ``split = -1``: all tokens to A; ``0``: all to B; ``k > 0``: tokens ``[:k]`` to A, ``[k:]`` to B (along
    ``dim``, the sequence axis).
    """

    def __init__(self, make: type[nn.Module] | object, *args: object, dim: int = 1, **kwargs: object) -> None:
        super().__init__()
        self.A = make(*args, **kwargs)
        self.B = make(*args, **kwargs)
        self.dim = dim

    def forward(self, x: Tensor, split: int) -> Tensor:
        if split == -1:
            return self.A(x)
        if split == 0:
            return self.B(x)
        a, b = torch.split(x, [split, x.size(self.dim) - split], dim=self.dim)
        return torch.cat([self.A(a), self.B(b)], dim=self.dim)


class FeedForward(nn.Module):
    """fc1 -> GELU -> sub-LN -> fc2 (torchscale ``FeedForwardNetwork`` with ``subln=True``)."""

    def __init__(self, dim: int, hidden: int, eps: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.ffn_layernorm(F.gelu(self.fc1(x)))))


class MultiwayAttention(nn.Module):
    """Self-attention with multiway q/k/v/out projections and a multiway sub-LN before ``out_proj``."""

    def __init__(self, dim: int, num_heads: int, eps: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = Multiway(nn.Linear, dim, dim)
        self.k_proj = Multiway(nn.Linear, dim, dim)
        self.v_proj = Multiway(nn.Linear, dim, dim)
        self.out_proj = Multiway(nn.Linear, dim, dim)
        self.inner_attn_ln = Multiway(nn.LayerNorm, dim, eps=eps)
        self.dropout = dropout

    def forward(self, x: Tensor, split: int, padding_mask: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        q, k, v = (
            proj(x, split).view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )  # (B, H, N, d/H)
        mask = None if padding_mask is None else ~padding_mask[:, None, None, :]  # True = attend
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.out_proj(self.inner_attn_ln(out, split), split)


class MultiwayEncoderLayer(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))`` then ``x + ffn(LN(x))``, every part multiway."""

    def __init__(self, cfg: M2EncoderConfig) -> None:
        super().__init__()
        d, eps = cfg.embed_dim, cfg.layernorm_eps
        self.self_attn = MultiwayAttention(d, cfg.num_heads, eps, cfg.dropout)
        self.self_attn_layer_norm = Multiway(nn.LayerNorm, d, eps=eps)
        self.ffn = Multiway(FeedForward, d, cfg.ffn_dim, eps, cfg.dropout)
        self.final_layer_norm = Multiway(nn.LayerNorm, d, eps=eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, split: int, padding_mask: Tensor | None = None) -> Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x, split), split, padding_mask))
        return x + self.ffn(self.final_layer_norm(x, split), split)


class MultiwayEncoder(nn.Module):
    """A stack of multiway layers with a final multiway LN and MAGNETO init scaling.

    Args:
        cfg: model sizes.
        num_layers: depth N of this stack (the init scale is ``sqrt(log 2N)``).
        embed_positions: the multiway position tables, or None (the VL stack has none).
    """

    def __init__(
        self, cfg: M2EncoderConfig, num_layers: int, embed_positions: Multiway | None = None
    ) -> None:
        super().__init__()
        self.embed_positions = embed_positions
        self.layers = nn.ModuleList(MultiwayEncoderLayer(cfg) for _ in range(num_layers))
        self.layer_norm = Multiway(nn.LayerNorm, cfg.embed_dim, eps=cfg.layernorm_eps)
        self.checkpoint_activations = cfg.checkpoint_activations
        self.init_scale = math.sqrt(math.log(2 * num_layers))
        with torch.no_grad():
            for name, p in self.layers.named_parameters():
                if any(k in name for k in ("fc1", "fc2", "out_proj", "v_proj")):
                    p.mul_(self.init_scale)

    def forward(self, x: Tensor, split: int, padding_mask: Tensor | None = None) -> Tensor:
        """Encode token embeddings ``x`` (B, N, D); ``padding_mask`` (B, N) is True at padding."""
        if self.embed_positions is not None:
            x = x + self.embed_positions(_positions(x), split)
        if padding_mask is not None:
            x = x * (~padding_mask).unsqueeze(-1).to(x.dtype)
        for layer in self.layers:
            if self.checkpoint_activations and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, split, padding_mask, use_reentrant=False)
            else:
                x = layer(x, split, padding_mask)
        return self.layer_norm(x, split)


class _PositionTable(nn.Embedding):
    """Learned positions looked up with ids ``2..N+1`` (fairseq's offset, kept by torchscale)."""

    def forward(self, ids: Tensor) -> Tensor:  # (N,) ids -> (1, N, D)
        return F.embedding(ids, self.weight).unsqueeze(0)


def _positions(x: Tensor) -> Tensor:
    return torch.arange(2, x.size(1) + 2, device=x.device)


class _SplitPositions(Multiway):
    """The multiway pair of position tables, routed along the id axis (vision table A, text table B)."""

    def forward(self, ids: Tensor, split: int) -> Tensor:  # type: ignore[override]
        if split == -1:
            return self.A(ids)
        if split == 0:
            return self.B(ids)
        return torch.cat([self.A(ids[:split]), self.B(ids[split:] - split)], dim=1)


class VisionEmbedding(nn.Module):
    """Conv patch embedding with a CLS token and a mask token (for CMIM)."""

    def __init__(self, cfg: M2EncoderConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.num_patches = cfg.num_patches

    def num_position_embeddings(self) -> int:
        return self.num_patches + 1

    def forward(self, images: Tensor, masked_position: Tensor | None = None) -> Tensor:
        x = self.proj(images).flatten(2).transpose(1, 2)  # (B, P, D)
        if masked_position is not None:
            w = masked_position.unsqueeze(-1).to(x.dtype)  # (B, P, 1)
            x = x * (1 - w) + self.mask_token.expand_as(x) * w
        return torch.cat([self.cls_token.expand(x.size(0), -1, -1), x], dim=1)


class BEiT3Backbone(nn.Module):
    """torchscale BEiT-3: text and vision embeddings and the multiway encoder with split routing."""

    def __init__(self, cfg: M2EncoderConfig) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        nn.init.normal_(self.text_embed.weight, std=cfg.embed_dim**-0.5)
        self.vision_embed = VisionEmbedding(cfg)
        positions = _SplitPositions(_PositionTable, 1, cfg.embed_dim)
        positions.A = _PositionTable(self.vision_embed.num_position_embeddings() + 2, cfg.embed_dim)
        positions.B = _PositionTable(cfg.max_text_positions, cfg.embed_dim)
        self.encoder = MultiwayEncoder(cfg, cfg.num_layers, positions)

    def forward(
        self,
        text_ids: Tensor | None = None,
        images: Tensor | None = None,
        text_padding: Tensor | None = None,
        vision_masked_position: Tensor | None = None,
    ) -> Tensor:
        if images is None and text_ids is None:
            raise ValueError("pass text_ids, images or both")
        if text_ids is None:
            return self.encoder(self.vision_embed(images, vision_masked_position), split=-1)
        if images is None:
            return self.encoder(self.text_embed(text_ids), split=0, padding_mask=text_padding)
        vis = self.vision_embed(images, vision_masked_position)
        x = torch.cat([vis, self.text_embed(text_ids)], dim=1)
        mask = None
        if text_padding is not None:
            mask = torch.cat([text_padding.new_zeros(vis.shape[:2]), text_padding], dim=1)
        return self.encoder(x, split=vis.size(1), padding_mask=mask)


# ----------------------------------------------------------------------------------- stage-2 decoders


class CrossDecoderBlock(nn.Module):
    """Pre-LN block of self-attention, cross-attention (to the other modality) and FFN (reconstructed)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm_kv = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))

    def forward(
        self, q: Tensor, kv: Tensor, q_padding: Tensor | None = None, kv_padding: Tensor | None = None
    ) -> Tensor:
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, key_padding_mask=q_padding, need_weights=False)[0]
        kvn = self.norm_kv(kv)
        q = q + self.cross_attn(self.norm2(q), kvn, kvn, key_padding_mask=kv_padding, need_weights=False)[0]
        return q + self.mlp(self.norm3(q))


class CrossModalDecoder(nn.Module):
    """A stack of :class:`CrossDecoderBlock` and a linear prediction head."""

    def __init__(self, cfg: M2EncoderConfig, out_dim: int) -> None:
        super().__init__()
        heads = cfg.decoder_heads or max(1, cfg.embed_dim // 64)
        self.blocks = nn.ModuleList(
            CrossDecoderBlock(cfg.embed_dim, heads, cfg.ffn_dim, cfg.layernorm_eps)
            for _ in range(cfg.decoder_layers)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layernorm_eps)
        self.head = nn.Linear(cfg.embed_dim, out_dim)

    def forward(
        self, q: Tensor, kv: Tensor, q_padding: Tensor | None = None, kv_padding: Tensor | None = None
    ) -> Tensor:
        for block in self.blocks:
            q = block(q, kv, q_padding, kv_padding)
        return self.head(self.norm(q))


# ---------------------------------------------------------------------------------------------- model


class ITCHead(nn.Module):
    """Bias-free projection to the contrastive space (``vlmo/modules/heads.py``)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class Pooler(nn.Module):
    """Kept for checkpoint parity (``pooler.dense``); unused by the ITC path."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class M2Encoder(nn.Module):
    """The full M2-Encoder: backbone, shared VL stack, ITC heads, temperatures and stage-2 decoders."""

    def __init__(self, cfg: M2EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.backbone = BEiT3Backbone(cfg)
        self.backbone_vl = MultiwayEncoder(cfg, cfg.num_vl_layers) if cfg.num_vl_layers > 0 else None
        self.norm = nn.LayerNorm(d, eps=1e-6)  # present in the released model, unused at inference
        self.pooler = Pooler(d)
        self.itc_text_proj = ITCHead(d, cfg.out_dim)
        self.itc_image_proj = ITCHead(d, cfg.out_dim)
        self.itc_vl_text_proj = ITCHead(d, cfg.out_dim)
        self.itc_vl_image_proj = ITCHead(d, cfg.out_dim)
        for head in (self.pooler, self.itc_text_proj, self.itc_image_proj, self.itc_vl_text_proj):
            head.apply(_init_linear)
        self.itc_vl_image_proj.apply(_init_linear)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_vl_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if cfg.decoder_layers > 0:
            self.cmlm_decoder = CrossModalDecoder(cfg, cfg.vocab_size)
            mim_out = 3 * cfg.patch_size**2 if cfg.cmim_target == "pixel" else cfg.beit2_codebook_size
            self.cmim_decoder = CrossModalDecoder(cfg, mim_out)
        else:
            self.cmlm_decoder = self.cmim_decoder = None

    # --- encoders

    def _vl(self, hidden: Tensor, padding: Tensor | None) -> Tensor:
        if self.backbone_vl is None:
            return hidden
        return self.backbone_vl(hidden, split=-1, padding_mask=padding)

    def encode_image(self, images: Tensor, masked_position: Tensor | None = None) -> dict[str, Tensor]:
        """Image features: ``hidden`` (B, 1+P, D), unit ``cls_feats`` and ``cls_vlffn_feats`` (B, out)."""
        hidden = self.backbone(images=images, vision_masked_position=masked_position)
        vl = self._vl(hidden, None)
        return {
            "hidden": hidden,
            "cls_feats": F.normalize(self.itc_image_proj(hidden[:, 0]), dim=-1),
            "cls_vlffn_feats": F.normalize(self.itc_vl_image_proj(vl[:, 0]), dim=-1),
        }

    def encode_text(self, text_ids: Tensor, text_masks: Tensor) -> dict[str, Tensor]:
        """Text features from ids (B, L) and ``text_masks`` (B, L; 1 = token, 0 = padding)."""
        padding = text_masks == 0
        hidden = self.backbone(text_ids=text_ids, text_padding=padding)
        vl = self._vl(hidden, padding)
        return {
            "hidden": hidden,
            "cls_feats": F.normalize(self.itc_text_proj(hidden[:, 0]), dim=-1),
            "cls_vlffn_feats": F.normalize(self.itc_vl_text_proj(vl[:, 0]), dim=-1),
        }

    def forward(self, images: Tensor, text_ids: Tensor, text_masks: Tensor) -> tuple[Tensor, Tensor]:
        """Inference features: the unit VL CLS embeddings ``(image, text)`` used for retrieval."""
        return (
            self.encode_image(images)["cls_vlffn_feats"],
            self.encode_text(text_ids, text_masks)["cls_vlffn_feats"],
        )

    # --- stage-2 objectives

    def cmlm_logits(self, masked_text_hidden: Tensor, text_masks: Tensor, image_hidden: Tensor) -> Tensor:
        """Image-to-text decoder: (B, L, vocab) from masked-text queries over full-image keys/values."""
        if self.cmlm_decoder is None:
            raise RuntimeError("the model was built with decoder_layers=0; CMLM needs the decoders")
        return self.cmlm_decoder(masked_text_hidden, image_hidden, q_padding=text_masks == 0)

    def cmim_outputs(self, masked_image_hidden: Tensor, text_hidden: Tensor, text_masks: Tensor) -> Tensor:
        """Text-to-image decoder: per-patch predictions (B, P, out) over full-text keys/values."""
        if self.cmim_decoder is None:
            raise RuntimeError("the model was built with decoder_layers=0; CMIM needs the decoders")
        out = self.cmim_decoder(masked_image_hidden, text_hidden, kv_padding=text_masks == 0)
        return out[:, 1:]

    def inference_parameter_names(self) -> list[str]:
        """Parameters that the retrieval/zero-shot path reads (a released checkpoint must provide them).

        Leaves out the stage-2 decoders, the mask token, the unused ``pooler``/``norm`` and, spec quirk 4, the
        VL stack's B experts: the VL stack runs with split -1, so only its A experts are read.
        """
        skip = ("cmlm_decoder.", "cmim_decoder.", "pooler.", "norm.", "backbone.vision_embed.mask_token")
        return [
            n
            for n, _ in self.named_parameters()
            if not n.startswith(skip) and not (n.startswith("backbone_vl.") and ".B." in n)
        ]


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-0.02, b=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level child (spec quirk 3: the "0.4B" label vs the dims' estimate)."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


# --------------------------------------------------------------------------------------- checkpoints


def _resize_patch_positions(value: Tensor, num_visual_tokens: int) -> Tensor:
    """Area-interpolate the patch rows of the vision position table; keep its 3 leading rows.

    ``num_visual_tokens`` = patches + 1 (CLS); the table has ``num_visual_tokens + 2`` rows.
    """
    want = num_visual_tokens + 2
    if value.shape[0] == want:
        return value
    if value.shape[0] > want and math.isqrt(value.shape[0] - 3) ** 2 != value.shape[0] - 3:
        return value[:want]
    lead, patch = value[:3], value[3:].float()
    n, dim = patch.shape
    side, new_side = math.isqrt(n), math.isqrt(num_visual_tokens - 1)
    if side * side != n or new_side * new_side != num_visual_tokens - 1:
        raise ValueError(f"position table with {n} patch rows is not a square grid")
    grid = patch.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="area")
    return torch.cat([lead, grid.permute(0, 2, 3, 1).reshape(-1, dim).to(lead.dtype)])


POSITION_KEY = "backbone.encoder.embed_positions.A.weight"


def extract_state_dict(ckpt: Mapping[str, object]) -> tuple[dict[str, Tensor], str]:
    """The model's tensors from a released checkpoint: Lightning ``state_dict``, DeepSpeed ``module``,
    ``model``, or a raw dict (keys possibly prefixed ``_forward_module.``). Returns ``(state, layout)``."""
    for key in ("state_dict", "module", "model"):
        if key in ckpt and isinstance(ckpt[key], Mapping):
            state, layout = dict(ckpt[key]), key
            break
    else:
        state, layout = dict(ckpt), "raw"
    if any(k.startswith("_forward_module.") for k in state):
        state = {k.removeprefix("_forward_module."): v for k, v in state.items()}
        layout += "+_forward_module"
    return state, layout


def convert_released_state_dict(state: Mapping[str, Tensor], num_visual_tokens: int) -> dict[str, Tensor]:
    """Map released keys onto :class:`M2Encoder`: drop ``visual_tokenizer.*``, strip a Lightning ``model.``
    prefix if this project's module saved it, and resize the patch position table."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor) or "visual_tokenizer" in key:
            continue
        key = key.removeprefix("model.")
        if key == POSITION_KEY:
            value = _resize_patch_positions(value, num_visual_tokens)
        out[key] = value
    return out


def load_released_checkpoint(model: M2Encoder, path: str) -> tuple[list[str], list[str]]:
    """Load a released M2-Encoder checkpoint (``.ckpt``/``.pt``/``.safetensors``) into ``model``.

    Loads with ``strict=False`` and logs the key differences; returns ``(missing, unexpected)``.

    Raises:
        FileNotFoundError: when ``path`` does not exist (says where it looked).
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"M2-Encoder checkpoint not found at {p.resolve()}; download it from ModelScope "
            "(M2Cognition/M2-Encoder, M2_Encoder_Large, M2_Encoder_Huge) and set model.pretrained to its path"
        )
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        ckpt: Mapping[str, object] = load_file(str(p))
    else:
        ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    state, layout = extract_state_dict(ckpt)
    state = convert_released_state_dict(state, model.backbone.vision_embed.num_position_embeddings())
    missing, unexpected = model.load_state_dict(state, strict=False)
    log.info("loaded %s (%s layout): missing %s, unexpected %s", p, layout, missing, unexpected)
    return list(missing), list(unexpected)
