"""Pink's multimodal LLM (arXiv 2310.00582, §3; spec §2): CLIP ViT, one linear projector, Llama, adapters.

* The vision tower (``CLIPVisionModel``) is read at ``hidden_states[select_layer]`` (-2: the output of the
  second-to-last block), CLS dropped, giving ``(B, P, Dv)`` patch features.
* One ``Linear(Dv -> D)`` projects them into the LLM; the ``P`` embeddings of the ``<im_patch>`` run in the
  prompt are replaced by the projected patches (the run must be contiguous and of length ``P``).
* :class:`AdapterLayer` (``y = x + W_up Dropout(W_down x)``, rank 8, zero-initialised ``W_up``) sits after the
  pre-attention norm of every Llama layer and of every CLIP layer up to the selected one. Adapters attach by
  forward hooks on the norms, so the backbone keeps Hugging Face's parameter names and its checkpoints load
  unchanged. A merged adapter (``I + W_up W_down``, one dense layer) gives the same outputs.
* New tokens (``<im_patch>`` and the 12 markers) get input and output rows initialised to the mean of the
  existing rows; only these rows learn (a gradient mask, spec quirk 3).
* :class:`ToyClipHead` is the toy-only stage 0: a bag-of-words text encoder for contrastive pretraining of the
  tiny vision tower (a stand-in for CLIP's own pretraining).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IM_PATCH = "<im_patch>"
MARKERS = (
    "<des>",
    "</des>",
    "<loc>",
    "</loc>",
    "<rel>",
    "</rel>",
    "<cls>",
    "</cls>",
    "<qes>",
    "</qes>",
    "<opt>",
    "</opt>",
)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class PinkConfig:
    """Sizes and sources of the Pink model (spec §2).

    Args:
        llm: hub id or local path of the Llama checkpoint, or None for a random init from ``llm_config``.
        llm_config: ``LlamaConfig`` keyword arguments (used for a random init, ignored when ``llm`` is set).
        vision: hub id or local path of the CLIP checkpoint, or None for a random init from ``vision_config``.
        vision_config: ``CLIPVisionConfig`` keyword arguments for a random init.
        select_layer: hidden-state index of the patch features (-2).
        adapter_rank: bottleneck width of the adapters (8).
        adapter_dropout: dropout inside the adapters (0.1).
        adapters_llm: adapters in every Llama layer.
        adapters_vision: adapters in the CLIP layers up to ``select_layer``.
        toy_clip_dim: embedding width of the toy stage-0 CLIP head (0: no head).
        toy_pos_sincos: toy only (random-init tower): > 0 starts the ViT position embeddings as a 2-D
            sin-cos grid code of this amplitude instead of N(0, 0.02) noise, so patch features say where
            the patch is (0: CLIP's init).
    """

    llm: str | None = None
    llm_config: dict[str, Any] = field(default_factory=dict)
    vision: str | None = None
    vision_config: dict[str, Any] = field(default_factory=dict)
    select_layer: int = -2
    adapter_rank: int = 8
    adapter_dropout: float = 0.1
    adapters_llm: bool = True
    adapters_vision: bool = True
    toy_clip_dim: int = 0
    toy_pos_sincos: float = 0.0


class AdapterLayer(nn.Module):
    """Residual bottleneck adapter ``y = x + W_up Dropout(W_down x)`` (no non-linearity; spec §2).

    ``W_down`` is Xavier-uniform, ``W_up`` and both biases are zero: the adapter starts as the identity.
    """

    def __init__(self, dim: int, rank: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.dropout(self.down(x.to(self.down.weight.dtype)))).to(x.dtype)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """The equal dense layer without dropout: ``W = I + W_up W_down``, ``b = W_up b_d + b_u``."""
        dim = self.down.in_features
        lin = nn.Linear(dim, dim).to(self.down.weight)
        lin.weight.copy_(torch.eye(dim).to(lin.weight) + self.up.weight @ self.down.weight)
        lin.bias.copy_(self.up.weight @ self.down.bias + self.up.bias)
        return lin


class ToyClipHead(nn.Module):
    """Toy stage 0: mean-of-word-embeddings text encoder and projections for a CLIP loss on captions."""

    def __init__(self, vocab_size: int, vision_width: int, dim: int) -> None:
        super().__init__()
        self.text = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
        self.text_proj = nn.Linear(dim, dim)
        self.image_proj = nn.Linear(vision_width, dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), CLIP's init

    def forward(self, pooled: torch.Tensor, text_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.normalize(self.image_proj(pooled), dim=-1)  # (B, E)
        txt = F.normalize(self.text_proj(self.text(text_ids)), dim=-1)  # (B, E)
        return img, txt


def vision_layers(vision: nn.Module) -> nn.ModuleList:
    """The encoder blocks of a ``CLIPVisionModel`` (flat in transformers 5, under ``vision_model`` before)."""
    inner = getattr(vision, "vision_model", vision)
    return inner.encoder.layers


def _build_llm(cfg: PinkConfig) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.llm is None:
        return LlamaForCausalLM(LlamaConfig(**cfg.llm_config))
    return LlamaForCausalLM.from_pretrained(cfg.llm, torch_dtype=torch.bfloat16)


def sincos_grid(grid: int, dim: int) -> torch.Tensor:
    """``(grid * grid, dim)`` 2-D sin-cos code (MAE's): half the channels code the row, half the column."""
    quarter = dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1))
    pos = torch.arange(grid, dtype=torch.float32)
    one = torch.outer(pos, freqs)  # (grid, quarter)
    one = torch.cat([one.sin(), one.cos()], 1)  # (grid, 2 quarter)
    rows = one[:, None].expand(grid, grid, -1).reshape(grid * grid, -1)
    cols = one[None].expand(grid, grid, -1).reshape(grid * grid, -1)
    code = torch.cat([rows, cols], 1)
    return F.pad(code, (0, dim - code.shape[1]))


def _build_vision(cfg: PinkConfig) -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if cfg.vision is None:
        vision = CLIPVisionModel(CLIPVisionConfig(**cfg.vision_config))
        if cfg.toy_pos_sincos > 0:
            emb = getattr(vision, "vision_model", vision).embeddings.position_embedding.weight
            grid = vision.config.image_size // vision.config.patch_size
            with torch.no_grad():
                emb[1:] = cfg.toy_pos_sincos * sincos_grid(grid, emb.shape[1])
                emb[0] = 0.0  # CLS
        return vision
    return CLIPVisionModel.from_pretrained(cfg.vision, torch_dtype=torch.bfloat16)


class PinkModel(nn.Module):
    """Vision tower, projector, Llama, adapters and the trainable new-token rows (spec §2)."""

    def __init__(
        self, cfg: PinkConfig, vocab_size: int | None = None, num_orig_tokens: int | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = _build_vision(cfg)
        self.llm = _build_llm(cfg)
        vcfg, lcfg = self.vision.config, self.llm.config
        self.num_patches = (vcfg.image_size // vcfg.patch_size) ** 2
        self.projector = nn.Linear(vcfg.hidden_size, lcfg.hidden_size)
        self.num_orig_tokens = num_orig_tokens or lcfg.vocab_size
        if vocab_size is not None and vocab_size != lcfg.vocab_size:
            self.resize_token_embeddings(vocab_size)
        self.adapters = nn.ModuleDict()
        n_vis = len(vision_layers(self.vision))
        used_vis = n_vis + 1 + cfg.select_layer if cfg.select_layer < 0 else cfg.select_layer
        if cfg.adapters_vision:
            for i in range(used_vis):  # blocks above the selected layer get no adapter
                self.adapters[f"vision_{i}"] = AdapterLayer(
                    vcfg.hidden_size, cfg.adapter_rank, cfg.adapter_dropout
                )
        if cfg.adapters_llm:
            for i in range(lcfg.num_hidden_layers):
                self.adapters[f"llm_{i}"] = AdapterLayer(
                    lcfg.hidden_size, cfg.adapter_rank, cfg.adapter_dropout
                )
        self._hooks = []
        for name in self.adapters:
            kind, idx = name.split("_")
            if kind == "vision":
                norm = vision_layers(self.vision)[int(idx)].layer_norm1
            else:
                norm = self.llm.model.layers[int(idx)].input_layernorm
            self._hooks.append(norm.register_forward_hook(self._adapter_hook(name)))
        self.toy_clip = (
            ToyClipHead(self.llm.config.vocab_size, vcfg.hidden_size, cfg.toy_clip_dim)
            if cfg.toy_clip_dim
            else None
        )
        self._grad_hooks: list[Any] = []

    def _adapter_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            return self.adapters[name](output)

        return hook

    @torch.no_grad()
    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow the input and output embeddings; new rows start at the mean of the existing rows (spec §2)."""
        old = self.llm.get_input_embeddings().weight.shape[0]
        self.llm.resize_token_embeddings(vocab_size, mean_resizing=False)
        if vocab_size > old:
            for w in (self.llm.get_input_embeddings().weight, self.llm.get_output_embeddings().weight):
                w[old:] = w[:old].mean(0, keepdim=True)

    @torch.no_grad()
    def merge_adapters(self) -> None:
        """Replace each adapter by its merged dense layer (inference only: dropout is gone)."""
        for name in list(self.adapters):
            module = self.adapters[name]
            if isinstance(module, AdapterLayer):
                self.adapters[name] = module.merged()

    def set_trainable(self, stage: int, train_llm: bool = False, train_vision: bool = False) -> None:
        """Stage 0: vision tower, toy CLIP head. Stage 1: projector. Stage 2: projector, adapters, new rows.

        ``train_llm`` / ``train_vision`` (toy only) also train every Llama / CLIP weight in stage 2.
        """
        for h in self._grad_hooks:
            h.remove()
        self._grad_hooks = []
        self.requires_grad_(False)
        if stage == 0:
            self.vision.requires_grad_(True)
            if self.toy_clip is not None:
                self.toy_clip.requires_grad_(True)
            return
        self.projector.requires_grad_(True)
        if stage == 1:
            return
        self.adapters.requires_grad_(True)
        if train_vision:
            self.vision.requires_grad_(True)
        if train_llm:
            self.llm.requires_grad_(True)
            return
        for w in (self.llm.get_input_embeddings().weight, self.llm.get_output_embeddings().weight):
            w.requires_grad_(True)
            self._grad_hooks.append(w.register_hook(self._row_mask))

    def _row_mask(self, grad: torch.Tensor) -> torch.Tensor:
        # Only the new token rows learn: the same effect as Pink's copy-back of the original rows (quirk 3).
        mask = torch.zeros(grad.shape[0], 1, dtype=grad.dtype, device=grad.device)
        mask[self.num_orig_tokens :] = 1
        return grad * mask

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors plus the full embedding and output rows (Pink's ``saved_parameters.pth``)."""
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        keep |= {"llm.model.embed_tokens.weight", "llm.lm_head.weight"}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in keep}

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> projected patch features ``(B, P, D)`` from ``hidden_states[select_layer]``."""
        out = self.vision(pixel_values=pixel_values, output_hidden_states=True)
        feats = out.hidden_states[self.cfg.select_layer][:, 1:]  # (B, P, Dv), CLS dropped
        return self.projector(feats.to(self.projector.weight.dtype))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, im_patch_id: int) -> torch.Tensor:
        """Token embeddings with the ``<im_patch>`` run of each sequence replaced by its image's patches."""
        embeds = self.llm.get_input_embeddings()(input_ids)  # (B, L, D)
        feats = self.image_features(pixel_values).to(embeds.dtype)  # (B, P, D)
        is_patch = input_ids == im_patch_id
        counts = is_patch.sum(1)
        if not bool((counts == self.num_patches).all()):
            raise ValueError(
                f"each sequence needs {self.num_patches} {IM_PATCH} tokens, got {counts.tolist()}"
            )
        first = is_patch.float().argmax(1)
        pos = first[:, None] + torch.arange(self.num_patches, device=input_ids.device)[None]  # (B, P)
        if not bool(is_patch.gather(1, pos).all()):
            raise ValueError(f"the {IM_PATCH} tokens must be one contiguous run")
        return embeds.masked_scatter(is_patch[..., None], feats.reshape(-1, feats.shape[-1]))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        im_patch_id: int,
        labels: torch.Tensor | None = None,
    ) -> Any:
        """Causal-LM outputs (``loss`` when ``labels`` is given: next-token CE on the answer tokens)."""
        embeds = self.embed(input_ids, pixel_values, im_patch_id)
        position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        return self.llm(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        im_patch_id: int,
        eos_id: int,
        max_new_tokens: int = 32,
    ) -> torch.Tensor:
        """Greedy decoding (``num_beams 1``) of left-padded prompts; returns ``(B, <=max_new_tokens)`` ids."""
        embeds = self.embed(input_ids, pixel_values, im_patch_id)
        mask = attention_mask.long()
        position_ids = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=True)
        past = out.past_key_values
        next_pos = position_ids[:, -1:] + 1
        tokens, done = [], torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        logits = out.logits[:, -1]
        for _ in range(max_new_tokens):
            nxt = logits.argmax(-1).masked_fill(done, eos_id)
            tokens.append(nxt)
            done |= nxt == eos_id
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = self.llm(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=next_pos,
                past_key_values=past,
                use_cache=True,
            )
            past, next_pos, logits = out.past_key_values, next_pos + 1, out.logits[:, -1]
        return torch.stack(tokens, 1)


# Pink's released ``saved_parameters.pth`` (LLaVA-style names) -> this module's names.
# DEVIATION (reconstructed): the projector name ``model.mm_projector`` is LLaVA's; the adapter names inside
# the released file (``adapter_attn.{down,up}``) are our reconstruction of the official layout.
def released_to_ours(key: str) -> str:
    """Map one key of the released checkpoint layout onto :class:`PinkModel`'s names."""
    import re

    if key.startswith("model.mm_projector."):
        return "projector." + key[len("model.mm_projector.") :]
    m = re.match(r"model\.layers\.(\d+)\.adapter_attn\.(down|up)\.(weight|bias)$", key)
    if m:
        return f"adapters.llm_{m[1]}.{m[2]}.{m[3]}"
    m = re.match(
        r"model\.vision_tower\.vision_tower\.vision_model\.encoder\.layers\.(\d+)\.adapter_attn\.(down|up)\.(weight|bias)$",
        key,
    )
    if m:
        return f"adapters.vision_{m[1]}.{m[2]}.{m[3]}"
    if key.startswith("model.vision_tower.vision_tower."):
        return "vision." + key[len("model.vision_tower.vision_tower.") :]
    if key.startswith("model.") or key.startswith("lm_head."):
        return "llm." + key
    raise KeyError(f"unexpected key in the Pink checkpoint: {key!r}")


def ours_to_released(key: str) -> str:
    """Inverse of :func:`released_to_ours` (used to write checkpoints in the released layout)."""
    if key.startswith("projector."):
        return "model.mm_projector." + key[len("projector.") :]
    if key.startswith("adapters."):
        name, rest = key[len("adapters.") :].split(".", 1)
        kind, idx = name.split("_")
        if kind == "llm":
            return f"model.layers.{idx}.adapter_attn.{rest}"
        return f"model.vision_tower.vision_tower.vision_model.encoder.layers.{idx}.adapter_attn.{rest}"
    if key.startswith("vision."):
        return "model.vision_tower.vision_tower." + key[len("vision.") :]
    if key.startswith("llm."):
        return key[len("llm.") :]
    raise KeyError(key)


def load_pink_checkpoint(model: PinkModel, path: str | Path) -> list[str]:
    """Merge a released ``saved_parameters.pth`` into a model built on the base weights.

    Every key of the file must map onto the model with a matching shape; returns the loaded names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Pink checkpoint not found at {path.resolve()} (set model.config.model.pink_checkpoint)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    mapped = {}
    for key, value in state.items():
        name = released_to_ours(key)
        if name not in ours:
            raise KeyError(f"{path}: {key!r} maps to {name!r}, which the model does not have")
        if ours[name].shape != value.shape:
            raise ValueError(
                f"{path}: {key!r} has shape {tuple(value.shape)}, model expects {tuple(ours[name].shape)}"
            )
        mapped[name] = value
    model.load_state_dict(mapped, strict=False)
    return sorted(mapped)
