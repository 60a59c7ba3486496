"""SNP-S3's shared network (spec §2): one BERT for the text pass and the cross-modal pass, clip tokens, heads.

* Visual backbone (``backbone``): torchvision ResNet-50 with frozen BN (``r50``), timm PVTv2 (``pvt_v2``; b2
  dims by default), torchvision's Video Swin (``videoswin``; the code's Swin-S-like dims or the paper's "B"),
  or a small two-stage conv stem (``conv``, the tiny config). A frame's grid is projected to the BERT width by
  a 1x1 conv only when the channel counts differ, then averaged over h x w: **one token per clip**.
* Level-1 features: ``img_fc`` (Linear-ReLU-Linear) on the clip tokens, L2-normalised per clip, and the BERT
  pooler's ``tanh(W h_CLS)`` of the text pass, L2-normalised.
* Shared BERT: the text pass is ``[CLS] w [SEP] pad`` with token type 0; the cross pass feeds the *same*
  ``embeddings`` and ``encoder`` modules with the text (type 0, positions 0..L-1) followed by the clip tokens
  as ``inputs_embeds`` plus an embedded ``[SEP]`` (type 1, positions restarting at 0), with an additive
  -10000 padding mask; its output is ``cross_pooler(h_0)``, a separate copy of the pooler.
* Heads: ``similarity_dense`` (level-2 score), two MLM heads (cross and text) whose decoders are tied to the
  word embeddings, ITM (768 -> 2) and the VideoQA classifier.
* ``fusion: p3e`` builds the paper's "three-fusion" baseline instead (spec §2, reconstructed): a separate
  fusion encoder of ``p3e_layers`` layers reads the text encoder's output followed by the clip tokens.

The BERT is written here in plain PyTorch with Hugging Face's parameter names (``embeddings.word_embeddings``,
``encoder.layer.N.attention.self.query``, ``pooler.dense``...), so ``bert-base-uncased`` loads key for key
(:func:`load_bert_weights`) and the attention probabilities needed by attentive masking are at hand.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BACKBONES = ("r50", "pvt_v2", "videoswin", "conv")


@dataclass
class SNPS3Config:
    """Sizes of the shared network. Defaults are bert-base-uncased and PVTv2-b2 (spec §2)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    init_std: float = 0.02
    layer_norm_eps: float = 1e-12
    sep_id: int = 102
    backbone: str = "pvt_v2"
    frozen_bn: bool = True
    pvt_depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    pvt_dims: list[int] = field(default_factory=lambda: [64, 128, 320, 512])
    pvt_heads: list[int] = field(default_factory=lambda: [1, 2, 5, 8])
    pvt_sr_ratios: list[int] = field(default_factory=lambda: [8, 4, 2, 1])
    pvt_mlp_ratios: list[float] = field(default_factory=lambda: [8.0, 8.0, 4.0, 4.0])
    videoswin_variant: str = "code"
    conv_dims: list[int] = field(default_factory=lambda: [32, 64])
    img_fc_dim: int = 768
    similarity_hidden: int = 1536
    num_answers: int = 0
    fusion: str = "shared"
    p3e_layers: int = 6

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.fusion not in ("shared", "p3e"):
            raise ValueError(f"fusion must be shared or p3e, got {self.fusion!r}")
        if self.img_fc_dim != self.hidden_size:
            raise ValueError("img_fc_dim must equal hidden_size: LVWM scores BERT word vectors against clips")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )


# --------------------------------------------------------------------------------------------- BERT
class BertEmbeddings(nn.Module):
    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.max_position, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(
        self, input_ids: Tensor | None = None, token_type: int = 0, inputs_embeds: Tensor | None = None
    ) -> Tensor:
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, L, D)
        pos = torch.arange(x.shape[1], device=x.device)  # positions restart at 0 for each part (§6 #11)
        types = torch.full_like(pos, token_type)
        x = x + self.position_embeddings(pos)[None] + self.token_type_embeddings(types)[None]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.heads, self.head_dim = c.num_heads, c.hidden_size // c.num_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, mask_add: Tensor) -> tuple[Tensor, Tensor]:
        b, n, _ = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, d)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + mask_add  # (B, H, N, N)
        probs = scores.softmax(-1)
        out = (self.dropout(probs) @ v).transpose(1, 2).reshape(b, n, -1)
        return out, probs


class BertSelfOutput(nn.Module):
    def __init__(self, c: SNPS3Config, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c, c.hidden_size)


class BertIntermediate(nn.Module):
    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.intermediate_size)

    def forward(self, x: Tensor, mask_add: Tensor) -> tuple[Tensor, Tensor]:
        a, probs = self.attention.self(x, mask_add)
        x = self.attention.output(a, x)
        return self.output(self.intermediate(x), x), probs


class BertEncoder(nn.Module):
    def __init__(self, c: SNPS3Config, num_layers: int | None = None) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(num_layers or c.num_layers))

    def forward(
        self, x: Tensor, mask: Tensor, output_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """``x`` (B, N, D), ``mask`` (B, N) 1 on real tokens -> the last layer and per-layer attention."""
        mask_add = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0  # (B, 1, 1, N)
        attentions = []
        for layer in self.layer:
            x, probs = layer(x, mask_add)
            if output_attentions:
                attentions.append(probs)
        return x, attentions


class BertPooler(nn.Module):
    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """Embeddings + encoder + pooler with Hugging Face's parameter names."""

    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c)

    def forward(
        self, ids: Tensor, mask: Tensor, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        hidden, att = self.encoder(self.embeddings(ids, 0), mask, output_attentions)
        return hidden, self.pooler(hidden), att


class BertLMPredictionHead(nn.Module):
    """``BertOnlyMLMHead.predictions``: transform (dense, GELU, LayerNorm) then the tied decoder."""

    def __init__(self, c: SNPS3Config, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        h = self.transform.LayerNorm(F.gelu(self.transform.dense(h)))
        return self.decoder(h) + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, c: SNPS3Config, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(c, word_embeddings)

    def forward(self, h: Tensor) -> Tensor:
        return self.predictions(h)


# ----------------------------------------------------------------------------------------- backbones
class ConvStem(nn.Module):
    """A small pyramid CNN (tiny config): a stride-4 patch conv, then stride-2 conv stages."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for i, d in enumerate(dims):
            k, s = (4, 4) if i == 0 else (3, 2)
            layers += [nn.Conv2d(prev, d, k, s, padding=0 if i == 0 else 1), nn.BatchNorm2d(d), nn.GELU()]
            layers += [nn.Conv2d(d, d, 3, 1, 1), nn.BatchNorm2d(d), nn.GELU()]
            prev = d
        self.body = nn.Sequential(*layers)
        self.out_channels = prev

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ResNet50Trunk(nn.Module):
    """torchvision ResNet-50 without pooling and classifier; BN frozen (FrozenBatchNorm2d) as in the code."""

    def __init__(self, frozen_bn: bool = True) -> None:
        super().__init__()
        from torchvision.models import resnet50
        from torchvision.ops.misc import FrozenBatchNorm2d

        net = resnet50(weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
        self.body = nn.Sequential(*list(net.children())[:-2])
        self.out_channels = 2048

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class PVTv2Trunk(nn.Module):
    """timm's PyramidVisionTransformerV2 (b2 dims by default); returns the last stage's grid."""

    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        from timm.models.pvt_v2 import PyramidVisionTransformerV2

        self.net = PyramidVisionTransformerV2(
            num_classes=0,
            depths=tuple(c.pvt_depths),
            embed_dims=tuple(c.pvt_dims),
            num_heads=tuple(c.pvt_heads),
            sr_ratios=tuple(c.pvt_sr_ratios),
            mlp_ratios=tuple(c.pvt_mlp_ratios),
        )
        self.out_channels = c.pvt_dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net.forward_features(x)


class VideoSwinTrunk(nn.Module):
    """torchvision SwinTransformer3d with temporal patch 1 (the code keeps T; spec §2), whole clips in."""

    VARIANTS = {"code": (96, [3, 6, 12, 24]), "base": (128, [4, 8, 16, 32])}

    def __init__(self, variant: str = "code") -> None:
        super().__init__()
        from torchvision.models.video.swin_transformer import SwinTransformer3d

        if variant not in self.VARIANTS:
            raise ValueError(f"videoswin_variant must be code or base, got {variant!r}")
        dim, heads = self.VARIANTS[variant]
        self.net = SwinTransformer3d(
            patch_size=[1, 4, 4], embed_dim=dim, depths=[2, 2, 18, 2], num_heads=heads,
            window_size=[8, 7, 7], stochastic_depth_prob=0.2, num_classes=0,
        )  # fmt: skip
        self.out_channels = dim * 8

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, T, 3, H, W) -> (B, T, C, h, w)."""
        y = self.net.features(self.net.patch_embed(x.transpose(1, 2)))  # (B, T, h, w, C)
        return self.net.norm(y).permute(0, 1, 4, 2, 3)


class VisualEncoder(nn.Module):
    """Frames -> one token per clip (B, P, D): backbone grid, 1x1 projection on a channel mismatch, mean."""

    def __init__(self, c: SNPS3Config) -> None:
        super().__init__()
        self.video_input = c.backbone == "videoswin"
        if c.backbone == "r50":
            self.backbone: nn.Module = ResNet50Trunk(c.frozen_bn)
        elif c.backbone == "pvt_v2":
            self.backbone = PVTv2Trunk(c)
        elif c.backbone == "videoswin":
            self.backbone = VideoSwinTrunk(c.videoswin_variant)
        else:
            self.backbone = ConvStem(c.conv_dims)
        ch = self.backbone.out_channels
        # Spec §6 #6 (fix): project only on a real channel mismatch, and initialise the projection.
        self.img_proj = nn.Conv2d(ch, c.hidden_size, 1) if ch != c.hidden_size else nn.Identity()

    def forward(self, frames: Tensor) -> Tensor:
        b, p = frames.shape[:2]
        if self.video_input:
            grid = self.backbone(frames).flatten(0, 1)  # (B*P, C, h, w)
        else:
            grid = self.backbone(frames.flatten(0, 1))  # (B*P, C, h, w)
        return self.img_proj(grid).mean(dim=(2, 3)).view(b, p, -1)  # (B, P, D)


# ---------------------------------------------------------------------------------------------- model
class SNPS3Model(nn.Module):
    """The shared network with its heads (module docstring). Plain PyTorch; losses live in ``losses.py``."""

    def __init__(self, config: SNPS3Config) -> None:
        super().__init__()
        c = self.config = config
        self.visual = VisualEncoder(c)
        self.img_fc = nn.Sequential(
            nn.Linear(c.hidden_size, c.img_fc_dim), nn.ReLU(), nn.Linear(c.img_fc_dim, c.img_fc_dim)
        )
        self.bert = BertModel(c)
        self.cross_pooler = BertPooler(c)
        self.fusion_encoder = BertEncoder(c, c.p3e_layers) if c.fusion == "p3e" else None
        self.similarity_dense = nn.Sequential(
            nn.Dropout(0.1), nn.Linear(c.hidden_size, c.similarity_hidden), nn.ReLU(),
            nn.Linear(c.similarity_hidden, 1),
        )  # fmt: skip
        self.cross_mlm = BertOnlyMLMHead(c, self.bert.embeddings.word_embeddings)
        self.text_mlm = BertOnlyMLMHead(c, self.bert.embeddings.word_embeddings)
        self.itm_head = nn.Linear(c.hidden_size, 2)
        self.qa_head = nn.Linear(c.hidden_size, c.num_answers) if c.num_answers > 0 else None
        self.apply(lambda mod: self._init_weights(mod, c.init_std))
        self.cross_pooler.load_state_dict(self.bert.pooler.state_dict())

    @staticmethod
    def _init_weights(m: nn.Module, std: float) -> None:
        # BERT's initializer_range (0.02) by default.
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # -- level 1
    def encode_video(self, frames: Tensor) -> Tensor:
        """Normalised frames (B, P, 3, H, W) -> clip tokens (B, P, D)."""
        return self.visual(frames)

    def video_feature(self, clips: Tensor) -> Tensor:
        """Level-1 clip features, L2-normalised per clip (B, P, D)."""
        return F.normalize(self.img_fc(clips), dim=-1)

    def text_pass(
        self, ids: Tensor, mask: Tensor, output_attentions: bool = False
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The text-only pass: last hidden (B, L, D), normalised pooled feature (B, D), attentions."""
        hidden, pooled, att = self.bert(ids, mask, output_attentions)
        return hidden, F.normalize(pooled, dim=-1), att

    # -- level 2
    def cross(self, ids: Tensor, mask: Tensor, clips: Tensor) -> tuple[Tensor, Tensor]:
        """The cross pass of (text i, clips i): hidden (B, L+P+1, D) and ``cross_pooler(h_0)`` (B, D)."""
        emb = self.bert.embeddings
        b = clips.shape[0]
        sep = emb.word_embeddings(torch.full((b, 1), self.config.sep_id, device=clips.device))
        visual = emb(inputs_embeds=torch.cat([clips, sep], dim=1), token_type=1)  # (B, P+1, D)
        vmask = torch.ones(visual.shape[:2], dtype=mask.dtype, device=mask.device)
        if self.fusion_encoder is None:
            x = torch.cat([emb(ids, 0), visual], dim=1)
            hidden, _ = self.bert.encoder(x, torch.cat([mask, vmask], dim=1))
        else:  # P3E: text encoder output, then a separate fusion encoder
            text_hidden, _ = self.bert.encoder(emb(ids, 0), mask)
            x = torch.cat([text_hidden, visual], dim=1)
            hidden, _ = self.fusion_encoder(x, torch.cat([mask, vmask], dim=1))
        return hidden, self.cross_pooler(hidden)

    def pair_score(self, ids: Tensor, mask: Tensor, clips: Tensor) -> Tensor:
        """Level-2 score of each (text i, clips i) pair (B,)."""
        return self.similarity_dense(self.cross(ids, mask, clips)[1]).squeeze(-1)

    def all_pair_scores(self, ids: Tensor, mask: Tensor, clips: Tensor, chunk: int = 5) -> Tensor:
        """``s_ij`` for every text i (N_t, L) and clip set j (N_v, P, D), in text chunks (N_t, N_v)."""
        nt, nv = ids.shape[0], clips.shape[0]
        rows = []
        for s in range(0, nt, chunk):
            i, m = ids[s : s + chunk], mask[s : s + chunk]
            k = i.shape[0]
            sc = self.pair_score(
                i.repeat_interleave(nv, 0), m.repeat_interleave(nv, 0), clips.repeat(k, 1, 1)
            )  # (k*N_v,)
            rows.append(sc.view(k, nv))
        return torch.cat(rows)

    def qa_logits(self, ids: Tensor, mask: Tensor, clips: Tensor) -> Tensor:
        if self.qa_head is None:
            raise ValueError("the model has no QA head: set config.num_answers > 0")
        return self.qa_head(self.cross(ids, mask, clips)[1])


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy for MoCo keys (built in ``configure_model``, outside the optimiser)."""
    k = copy.deepcopy(module)
    for p in k.parameters():
        p.requires_grad_(False)
    return k


# -------------------------------------------------------------------------------------- checkpoints
def bert_key_map(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a released BERT checkpoint (``bert-base-uncased``'s ``pytorch_model.bin`` / ``model.safetensors``)
    onto :class:`BertModel` and the text MLM head: strip ``bert.``, rename old ``gamma``/``beta`` LayerNorm
    names, map ``cls.predictions.*`` to the MLM heads; NSP and position-id buffers are dropped."""
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k.startswith("bert."):
            k = k[5:]
        if k.startswith("cls.predictions."):
            rest = k[len("cls.predictions.") :]
            if rest.startswith("decoder."):
                continue  # tied to the word embeddings
            out[f"text_mlm.predictions.{rest}"] = v
            out[f"cross_mlm.predictions.{rest}"] = v
            continue
        if k.startswith(("cls.", "embeddings.position_ids")):
            continue
        out[f"bert.{k}"] = v
    return out


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A checkpoint file (safetensors, or a tensor-only torch file loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.exists() and len(path.parts) <= 2 and not str(path).startswith((".", "/")):
        path = _from_hub(str(path))
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found at {path} (looked for the file, or model.safetensors / "
            "pytorch_model.bin inside the folder); download them or set the path to null for random init"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _from_hub(repo_id: str) -> Path:
    """A hub id (``bert-base-uncased``, ``timm/pvt_v2_b2.in1k``) from the local Hugging Face cache or hub."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.safetensors", "*.bin", "*.json", "*.txt"]))
    except Exception as exc:  # offline and not cached, or no such repo
        raise FileNotFoundError(
            f"pretrained weights not found: {repo_id!r} is not a local path and could not be fetched from"
            f" the Hugging Face hub or its cache ({type(exc).__name__}); download it or set the path to null"
        ) from exc


def load_bert_weights(model: SNPS3Model, path: str | Path) -> list[str]:
    """Load released BERT weights into the shared BERT (and copy its pooler to ``cross_pooler``).

    Returns the model's BERT keys the file did not provide (empty for a full checkpoint).

    Raises:
        ValueError: on a shape mismatch (e.g. a vocabulary size other than the config's), naming the key.
    """
    mapped = bert_key_map(read_state_dict(path))
    own = model.state_dict()
    for k, v in mapped.items():
        if k not in own:
            raise ValueError(f"{path}: unexpected key {k} for the SNP-S3 BERT")
        if own[k].shape != v.shape:
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the model {tuple(own[k].shape)}")
    model.load_state_dict(mapped, strict=False)
    model.cross_pooler.load_state_dict(model.bert.pooler.state_dict())
    wanted = [k for k in own if k.startswith("bert.")]
    return [k for k in wanted if k not in mapped]


def load_visual_weights(model: SNPS3Model, path: str | Path) -> list[str]:
    """Load ImageNet/Kinetics backbone weights (timm / torchvision layout) into the visual backbone.

    Classifier keys (``head.``, ``fc.``) are dropped; returns the backbone keys the file did not provide.
    """
    state = read_state_dict(path)
    target = model.visual.backbone
    own = target.state_dict()
    prefix = next(iter(own)).split(".")[0] + "."  # body. / net.
    mapped = {}
    for k, v in state.items():
        if k.startswith(("head.", "fc.")):
            continue
        key = k if k.startswith(prefix) else prefix + k
        if prefix == "body.":  # torchvision resnet names -> the Sequential's indices
            names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
            first, _, rest = k.partition(".")
            if first in names:
                key = f"body.{names.index(first)}.{rest}"
        if key in own and own[key].shape == v.shape:
            mapped[key] = v
    target.load_state_dict(mapped, strict=False)
    return [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
