"""M2EncoderLitModule: ITC at two depths with GBA-ITC, the stage-2 CMLM/CMIM objectives, bilingual evaluation.

Objectives (spec section 3): ``L = L_ITC + alpha * L_CMIM + beta * L_CMLM``.

* ITC: bidirectional InfoNCE through ``common.contrastive``'s :class:`GroupedContrastiveLoss`, summed over the
  levels in ``itc_levels`` (``vl``: VL CLS with ``logit_vl_scale``; ``backbone``: backbone CLS with
  ``logit_scale``); temperatures ``exp(scale)`` clamped at 100.
* GBA-ITC: ranks are grouped by node (``gba.aggregate_nodes`` nodes per group, -1 = all; a node has
  ``gba.ranks_per_node`` ranks, default the trainer's local device count). ``gba.mode: buffer`` keeps the
  group's features of the last ``accumulate_steps - 1`` steps (detached, :class:`FeatureBuffer`) as extra
  negatives, stepping every step; ``gba.mode: accumulate`` splits each batch into ``accumulate_steps``
  micro-batches with :class:`GradCacheContrastive` (manual optimisation, ITC only).
* Each step logs the loss's collective bytes, forward and backward (``count_collectives``:
  ``train/itc_gathered_bytes``, the inter-"node" part ``train/itc_internode_bytes``) and the features the
  loss holds (``train/itc_loss_feature_bytes``; on CUDA also ``train/itc_peak_mem_bytes``).
* CMLM: whole-word masking of the text (``cmlm_mask_prob``), CE at masked positions from the image-to-text
  decoder. CMIM: ``cmim_num_masked`` random patches replaced by the mask token, MSE on normalised pixels of
  the masked patches (``pixel``) or CE over BEiT-v2 codes given in the batch as ``image_codes`` (``beit2``).

Evaluation (spec section 5): retrieval R@1/5/10 both ways and their mean per language
(``val/mean_recall_{en,zh}``), and zero-shot top-1 with prompt ensembles (``val/zs_top1_{en,zh}``).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.contrastive import (
    FeatureBuffer,
    GradCacheContrastive,
    GroupedContrastiveLoss,
    count_collectives,
    split_batch,
)
from m2_encoder.metrics import (
    class_embeddings,
    retrieval_chance,
    retrieval_ground_truth,
    retrieval_recalls,
    top1_accuracy,
    zero_shot_logits,
)
from m2_encoder.model import M2Encoder, M2EncoderConfig, load_released_checkpoint, parameter_counts

ITC_LEVELS = {"vl": ("cls_vlffn_feats", "logit_vl_scale"), "backbone": ("cls_feats", "logit_scale")}


@dataclass
class GBAConfig:
    """GBA-ITC settings (spec section 3).

    Args:
        mode: ``buffer`` (detached features of earlier steps) or ``accumulate`` (GradCache micro-batches).
        aggregate_nodes: nodes per ITC group; -1 = all nodes (conventional global ITC).
        ranks_per_node: ranks of one node; None = the trainer's devices per node.
        accumulate_steps: K, the group batches each row is contrasted against (1 = no accumulation). In
            ``accumulate`` mode the loader's batch is split into K micro-batches, so give the loader K times
            the micro-batch (``data.batch_size``) to contrast K group batches per optimizer step.
        clip_grad_norm: gradient-norm clipping in ``accumulate`` mode, which optimises manually (Lightning
            rejects ``trainer.gradient_clip_val`` there: set it to null and put the value here).
    """

    mode: str = "buffer"
    aggregate_nodes: int = -1
    ranks_per_node: int | None = None
    accumulate_steps: int = 1
    clip_grad_norm: float | None = None


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay (DEVIATION: the paper gives no optimiser settings)."""

    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 2000
    min_lr_ratio: float = 0.0


@dataclass
class ObjectiveConfig:
    """Loss weights and masking (reconstructed; spec section 3)."""

    itc_levels: list[str] = field(default_factory=lambda: ["vl", "backbone"])
    cmlm_weight: float = 0.0
    cmim_weight: float = 0.0
    cmlm_mask_prob: float = 0.5
    cmim_num_masked: int = 80


class M2EncoderLitModule(LightningModule):
    """M2-Encoder pretraining and bilingual zero-shot evaluation.

    Args:
        arch: model sizes.
        gba: GBA-ITC settings.
        objectives: loss weights and masking.
        optim: optimiser settings.
        pretrained: path of a released checkpoint to start from (None: random init).
        defer_init: build the model in ``configure_model`` (for FSDP at 10B) rather than in ``__init__``.
        eval_text_batch: texts per forward pass at evaluation.
        cpu_threads: intra-op threads on CPU (None: torch's default). One thread is several times faster than
            two on a shared 2-core machine, where spinning OpenMP workers contend with other processes.
    """

    headline_metric = "val/mean_recall_en"

    def __init__(
        self,
        arch: M2EncoderConfig | None = None,
        gba: GBAConfig | None = None,
        objectives: ObjectiveConfig | None = None,
        optim: OptimConfig | None = None,
        pretrained: str | None = None,
        defer_init: bool = False,
        eval_text_batch: int = 256,
        cpu_threads: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.arch = arch or M2EncoderConfig()
        self.gba = gba or GBAConfig()
        self.obj = objectives or ObjectiveConfig()
        self.optim = optim or OptimConfig()
        if self.gba.mode not in ("buffer", "accumulate"):
            raise ValueError(f"gba.mode must be 'buffer' or 'accumulate', got {self.gba.mode!r}")
        if self.gba.accumulate_steps < 1:
            raise ValueError("gba.accumulate_steps must be >= 1")
        bad = set(self.obj.itc_levels) - set(ITC_LEVELS)
        if bad or not self.obj.itc_levels:
            raise ValueError(f"itc_levels must be a non-empty subset of {sorted(ITC_LEVELS)}, got {bad}")
        if self.gba.mode == "accumulate" and (self.obj.cmlm_weight or self.obj.cmim_weight):
            raise ValueError("gba.mode=accumulate supports the ITC-only stage (set cmlm/cmim weights to 0)")
        self.automatic_optimization = self.gba.mode != "accumulate"
        self.model: M2Encoder | None = None if defer_init else M2Encoder(self.arch)
        self.itc_loss = GroupedContrastiveLoss(group_size=None)
        self.buffers = {lvl: FeatureBuffer(self._buffer_depth) for lvl in self.obj.itc_levels}
        self._comm_scope: ExitStack | None = None
        self._comm_pending: tuple[Any, int] | None = None
        self.chance_level: float | None = None
        self._eval_feats: dict[str, dict[int, Tensor]] = {}
        self._mask_id: int | None = None

    @property
    def _buffer_depth(self) -> int:
        return self.gba.accumulate_steps - 1 if self.gba.mode == "buffer" else 0

    # ----------------------------------------------------------------------------------- set-up

    def configure_model(self) -> None:
        if self.model is None:
            self.model = M2Encoder(self.arch)

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads:
            torch.set_num_threads(self.hparams.cpu_threads)
        self.configure_model()
        if self.hparams.pretrained:
            load_released_checkpoint(self.model, self.hparams.pretrained)
        world = self.trainer.world_size if self._trainer is not None else 1
        self.itc_loss.group_size = self._group_size(world)
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None and hasattr(dm, "tokenizer"):
            tok = dm.tokenizer
            if tok.vocab_size > self.arch.vocab_size:
                raise ValueError(
                    f"the tokenizer emits ids up to {tok.vocab_size - 1} but arch.vocab_size is "
                    f"{self.arch.vocab_size}"
                )
            self._mask_id = tok.mask_id
            dm.setup(stage)
            if "en" in dm.retrieval_sets:
                s = dm.retrieval_sets["en"]
                _, t2i, i2t = retrieval_ground_truth(s.images, s.captions)
                self.chance_level = retrieval_chance(t2i, i2t)["MR"]
        if self.global_rank == 0 and stage == "fit":
            counts = parameter_counts(self.model)
            self.print("parameters per module: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    def _group_size(self, world: int) -> int | None:
        if self.gba.aggregate_nodes < 0:
            return None
        per_node = self.gba.ranks_per_node
        if per_node is None:
            per_node = self.trainer.num_devices if self._trainer is not None else 1
        size = per_node * self.gba.aggregate_nodes
        return None if size >= world else size

    # ----------------------------------------------------------------------------------- losses

    def _scale(self, name: str) -> Tensor:
        return getattr(self.model, name).exp().clamp(max=100.0)

    def _itc(self, img: dict[str, Tensor], txt: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for lvl in self.obj.itc_levels:
            key, scale = ITC_LEVELS[lvl]
            extra_img, extra_txt = self.buffers[lvl].features()
            out[lvl] = self.itc_loss(
                img[key],
                txt[key],
                self._scale(scale),
                extra_image_features=extra_img,
                extra_text_features=extra_txt,
            )
            self.buffers[lvl].push(img[key], txt[key], self.itc_loss.process_group)
        return out

    def whole_word_mask(self, ids: Tensor, masks: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        """Mask whole words with probability ``cmlm_mask_prob``: ``(masked_ids, labels)`` (-100 = unmasked).

        A word is a word-start token and the non-start tokens after it; the specials are never masked.
        """
        words = torch.cumsum(starts.long(), dim=1)  # word number per token (0 before the first start)
        real = (masks == 1) & (words > 0)
        real[:, 0] = False
        eos = masks.sum(1) - 1
        real[torch.arange(ids.size(0)), eos] = False
        pick = torch.rand(ids.size(0), ids.size(1) + 1, device=ids.device) < self.obj.cmlm_mask_prob
        chosen = torch.gather(pick, 1, words) & real
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        masked = torch.where(
            chosen, torch.full_like(ids, self._mask_id if self._mask_id is not None else 0), ids
        )
        return masked, labels

    def random_patch_mask(self, batch_size: int, device: torch.device) -> Tensor:
        """(B, P) bool with exactly ``cmim_num_masked`` patches set per row (spec: 80 of 196)."""
        p = self.arch.num_patches
        k = min(self.obj.cmim_num_masked, p)
        idx = torch.rand(batch_size, p, device=device).argsort(dim=1)[:, :k]
        return torch.zeros(batch_size, p, dtype=torch.bool, device=device).scatter_(1, idx, True)

    def patchify(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, P, 3 * patch^2), each patch normalised to zero mean and unit variance."""
        p = self.arch.patch_size
        b, c, h, w = images.shape
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
        return (x - mean) / (var + 1e-6).sqrt()

    def _stage2(
        self, batch: dict[str, Any], img: dict[str, Tensor], txt: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        out = {}
        m = self.model
        if self.obj.cmlm_weight > 0:
            masked, labels = self.whole_word_mask(
                batch["text_ids"], batch["text_masks"], batch["text_word_starts"]
            )
            hidden = m.backbone(text_ids=masked, text_padding=batch["text_masks"] == 0)
            logits = m.cmlm_logits(hidden, batch["text_masks"], img["hidden"])
            out["cmlm"] = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            with torch.no_grad():
                sel = labels != -100
                acc = (
                    (logits.argmax(-1)[sel] == labels[sel]).float().mean()
                    if sel.any()
                    else logits.new_zeros(())
                )
            self.log("train/cmlm_acc", acc)
        if self.obj.cmim_weight > 0:
            images = batch["image"]
            pos = self.random_patch_mask(images.size(0), images.device)
            hidden = m.backbone(images=images, vision_masked_position=pos)
            pred = m.cmim_outputs(hidden, txt["hidden"], batch["text_masks"])  # (B, P, out)
            if self.arch.cmim_target == "pixel":
                target = self.patchify(images)
                out["cmim"] = F.mse_loss(pred[pos], target[pos])
            else:
                if "image_codes" not in batch:
                    raise KeyError(
                        "cmim_target=beit2 needs BEiT-v2 visual-token ids in the batch ('image_codes')"
                    )
                out["cmim"] = F.cross_entropy(pred[pos], batch["image_codes"][pos])
        return out

    # ----------------------------------------------------------------------------------- training

    def _internode_bytes(self, calls: list[tuple[str, int, int]]) -> float:
        per_node = self.gba.ranks_per_node or (self.trainer.num_devices if self._trainer is not None else 1)
        return float(sum(n for _, n, w in calls if w > per_node))

    def _log_comm(self, counter: Any, feature_bytes: int) -> None:
        self.log("train/itc_gathered_bytes", float(counter.payload_bytes), reduce_fx="mean")
        self.log("train/itc_sent_bytes_per_rank", float(counter.sent_bytes_per_rank))
        self.log("train/itc_internode_bytes", self._internode_bytes(counter.calls))
        self.log("train/itc_loss_feature_bytes", float(feature_bytes))

    def _loss_feature_bytes(self, local_rows: int) -> int:
        group = self.itc_loss.group_size or self.trainer.world_size
        micro = 1 if self.automatic_optimization else self.gba.accumulate_steps
        rows = local_rows * group * (1 + self._buffer_depth) * micro
        return rows * self.arch.out_dim * 4 * 2 * len(self.obj.itc_levels)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if not self.automatic_optimization:
            return self._accumulate_step(batch)
        m = self.model
        img = m.encode_image(batch["image"])
        txt = m.encode_text(batch["text_ids"], batch["text_masks"])
        cuda = batch["image"].is_cuda
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        # Counted until on_after_backward, so that the loss's backward collectives are included as they are
        # in accumulate mode (where GradCache runs both inside the step).
        self._comm_scope = ExitStack()
        counter = self._comm_scope.enter_context(count_collectives())
        itc = self._itc(img, txt)
        if cuda:
            self.log("train/itc_peak_mem_bytes", float(torch.cuda.max_memory_allocated() - base))
        loss = sum(itc.values())
        for lvl, v in itc.items():
            self.log(f"train/loss_itc_{lvl}", v)
        losses = self._stage2(batch, img, txt)
        if "cmlm" in losses:
            loss = loss + self.obj.cmlm_weight * losses["cmlm"]
            self.log("train/loss_cmlm", losses["cmlm"])
        if "cmim" in losses:
            loss = loss + self.obj.cmim_weight * losses["cmim"]
            self.log("train/loss_cmim", losses["cmim"])
        self._comm_pending = (counter, self._loss_feature_bytes(batch["image"].size(0)))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/logit_scale", self._scale("logit_vl_scale"))
        self.log("train/lang_zh", float(batch["lang"] == "zh"))
        return loss

    def on_after_backward(self) -> None:
        if self._comm_scope is not None:
            self._comm_scope.close()
            self._comm_scope = None
            self._log_comm(*self._comm_pending)

    def _accumulate_step(self, batch: dict[str, Any]) -> None:
        opt = self.optimizers()
        sched = self.lr_schedulers()
        opt.zero_grad()
        levels = self.obj.itc_levels
        dim = self.arch.out_dim

        def encode(mb: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            img = self.model.encode_image(mb["image"])
            txt = self.model.encode_text(mb["text_ids"], mb["text_masks"])
            keys = [ITC_LEVELS[lvl][0] for lvl in levels]
            return torch.cat([img[k] for k in keys], dim=1), torch.cat([txt[k] for k in keys], dim=1)

        def loss_fn(image: Tensor, text: Tensor, scales: Tensor, bias: Tensor | None = None) -> Tensor:
            total = image.new_zeros(())
            for j in range(len(levels)):
                sl = slice(j * dim, (j + 1) * dim)
                total = total + self.itc_loss(image[:, sl], text[:, sl], scales[j])
            return total

        scales = torch.stack([self._scale(ITC_LEVELS[lvl][1]) for lvl in levels])
        tensors = {k: batch[k] for k in ("image", "text_ids", "text_masks")}
        micro = split_batch(tensors, self.gba.accumulate_steps)
        with count_collectives() as counter:
            loss = GradCacheContrastive(loss_fn).step(encode, micro, scales, backward=self.manual_backward)
        if self.gba.clip_grad_norm is not None:
            self.clip_gradients(opt, self.gba.clip_grad_norm, gradient_clip_algorithm="norm")
        opt.step()
        if sched is not None:
            sched.step()
        self._log_comm(counter, self._loss_feature_bytes(micro[0]["image"].size(0)))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/logit_scale", self._scale("logit_vl_scale"))

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            skip = p.ndim < 2 or "embed_positions" in name or "cls_token" in name or "logit" in name
            (no_decay if skip else decay).append(p)
        o = self.optim
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warm = min(o.warmup_steps, max(1, total // 10)) if total < o.warmup_steps * 2 else o.warmup_steps

        def lr_at(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = min(1.0, (step - warm) / max(1, total - warm))
            return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----------------------------------------------------------------------------------- evaluation

    def on_validation_epoch_start(self) -> None:
        self._eval_feats = {}

    on_test_epoch_start = on_validation_epoch_start

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.trainer.datamodule.eval_names[dataloader_idx]
        feats = self.model.encode_image(batch["image"])["cls_vlffn_feats"]
        store = self._eval_feats.setdefault(name, {})
        for i, f in zip(batch["index"].tolist(), feats):
            store[i] = f.float()

    test_step = validation_step

    def _gather_rows(self, store: dict[int, Tensor], n: int) -> Tensor:
        idx = torch.tensor(sorted(store), device=self.device)
        feats = torch.stack([store[i] for i in sorted(store)])
        if self.trainer.world_size > 1:
            idx = self.all_gather(idx).reshape(-1)
            feats = self.all_gather(feats).reshape(-1, feats.size(-1))
        out = feats.new_zeros(n, feats.size(-1))
        out[idx] = feats
        return out

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> Tensor:
        """Unit VL text embeddings (N, out) of raw strings, in batches (every rank encodes all)."""
        tok = self.trainer.datamodule.tokenizer
        out = []
        for i in range(0, len(texts), self.hparams.eval_text_batch):
            b = tok(texts[i : i + self.hparams.eval_text_batch])
            out.append(
                self.model.encode_text(b["text_ids"].to(self.device), b["text_masks"].to(self.device))[
                    "cls_vlffn_feats"
                ].float()
            )
        return torch.cat(out)

    def _eval_epoch_end(self, split: str) -> None:
        dm = self.trainer.datamodule
        image_feats = {}
        for name in dm.eval_names:
            n = len(dm._eval_paths[name])
            image_feats[name] = self._gather_rows(self._eval_feats.get(name, {}), n)
        for lang, s in dm.retrieval_sets.items():
            texts, t2i, i2t = retrieval_ground_truth(s.images, s.captions)
            tf = self.encode_texts(texts)
            imgs = image_feats[dm.eval_alias[f"retrieval_{lang}"]]
            rec = retrieval_recalls(tf.cpu(), imgs.cpu(), t2i, i2t)
            for k, v in rec.items():
                key = "mean_recall" if k == "MR" else k
                self.log(
                    f"{split}/{key}_{lang}", v, prog_bar=key in ("mean_recall", "t2i_R@1"), sync_dist=False
                )
            self.log(f"{split}/t2i_R@1_chance_{lang}", retrieval_chance(t2i, i2t)["t2i_R@1"])
        zs = dm.zeroshot
        if zs is not None:
            imgs = image_feats[dm.eval_alias["zeroshot"]].cpu()
            labels = torch.tensor(zs.labels)
            for lang, names in zs.classnames.items():
                prompts = [t.replace("{}", c) for c in names for t in zs.templates[lang]]
                pf = self.encode_texts(prompts).cpu().reshape(len(names), len(zs.templates[lang]), -1)
                logits = zero_shot_logits(imgs, class_embeddings(pf), float(self._scale("logit_vl_scale")))
                self.log(f"{split}/zs_top1_{lang}", top1_accuracy(logits, labels), prog_bar=True)
            self.log(f"{split}/zs_chance", 100.0 / len(next(iter(zs.classnames.values()))))
        self._eval_feats = {}

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def on_train_epoch_start(self) -> None:
        for buf in self.buffers.values():
            buf.clear()
