"""SNPS3LitModule: the six pretraining terms, retrieval and VideoQA fine-tuning, and the evaluation protocols.

Pretraining (spec §3, ``task: pretrain``), each term weighted by ``loss_weights`` (0 turns it off; the code
sums them with weight 1):

1. ``itc``: level-1 MoCo-MIL (``with_moco``; momentum encoders and queues built in ``configure_model``), or
   MIL-NCE on the all-gathered cosines without MoCo;
2. ``gvtm``: level-2 MIL-NCE (P = 1) over all local B x B (caption, video) cross scores; in pretraining the
   fused caption is the *masked* one (spec §6 #5);
3. ``mlm``: masking loss on the cross pass (labels from MSSM or random masking in the data; replaced by
   attentive masking in a batch with probability ``attentive_prob``);
4. ``text_mlm``: the second head on the text pass, of the raw caption by default (``text_mlm_input``, §6 #4);
5. ``itm``: (masked caption, its video) against (another video's raw caption, the same video), 1:1;
6. ``lvwm``: 3 significant words of the raw caption, last-layer vectors, LSE over words, MIL-NCE on clips.

Retrieval fine-tuning (``task: retrieval``) uses ``itc`` + ``gvtm`` on the raw caption. VideoQA (``task: qa``)
is cross-entropy over the top-K answers on the cross pooled output. Evaluation: ``l1`` (cosine,
log-sum-exp over clips) and ``l2`` (the cross score of every text-video pair) retrieval metrics, the headline
``val/t2v_R@1`` being ``l2``'s; multiple choice scores the options with ``similarity_dense`` (argmax);
VideoQA top-1 accuracy.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from common.video import preprocess_clip
from snp_s3.losses import (
    gather_no_grad,
    gather_with_grad,
    lvwm_scores,
    masked_lm_loss,
    mil_nce,
    mil_nce_text_clips,
    moco_loss,
)
from snp_s3.masking import attention_importance, attentive_mask
from snp_s3.metrics import accuracy, retrieval_metrics
from snp_s3.model import SNPS3Config, SNPS3Model, load_bert_weights, load_visual_weights, momentum_copy

log = logging.getLogger(__name__)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LOSSES = ("itc", "gvtm", "mlm", "text_mlm", "itm", "lvwm")


class SNPS3LitModule(LightningModule):
    """SNP-S3 training and evaluation (module docstring).

    Args:
        config: the network sizes. task: ``pretrain`` | ``retrieval`` | ``qa`` (linked from the data).
        loss_weights: weight of each term of :data:`LOSSES` (0: off).
        with_moco / moco_momentum / queue_size / moco_temperature: level-1 MoCo (on, 0.9999, 16384, 0.05).
        attentive_prob: probability of attentive masking per batch (0.5, §6 #3). text_mlm_input: raw | masked.
        lvwm_normalize: L2-normalise LVWM word vectors (off in the code, §6 #12).
        lr, weight_decay, betas, warmup_steps, warmup_start: AdamW with linear warm-up from ``warmup_start``
            x lr; milestones / gamma: step decay (x0.1). No weight decay on biases and LayerNorms.
        pretrained_bert / pretrained_visual: released weights (path or local hub folder; None: random).
        init_from: a previous stage's Lightning checkpoint (matching weights are loaded; new heads random).
        eval_chunk: texts per chunk of the exhaustive l2 scoring. cpu_threads: torch threads (None: default).
    """

    def __init__(
        self,
        config: SNPS3Config,
        task: str = "pretrain",
        loss_weights: dict[str, float] | None = None,
        with_moco: bool = True,
        moco_momentum: float = 0.9999,
        queue_size: int = 16384,
        moco_temperature: float = 0.05,
        attentive_prob: float = 0.5,
        text_mlm_input: str = "raw",
        lvwm_normalize: bool = False,
        lr: float = 5e-5,
        weight_decay: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_steps: int = 2000,
        warmup_start: float = 0.1,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        pretrained_bert: str | None = None,
        pretrained_visual: str | None = None,
        init_from: str | None = None,
        eval_chunk: int = 5,
        cpu_threads: int | None = None,
    ) -> None:
        super().__init__()
        if task not in ("pretrain", "retrieval", "qa"):
            raise ValueError(f"task must be pretrain, retrieval or qa, got {task!r}")
        if text_mlm_input not in ("raw", "masked"):
            raise ValueError(f"text_mlm_input must be raw or masked, got {text_mlm_input!r}")
        weights = {k: 1.0 for k in LOSSES}
        unknown = set(loss_weights or {}) - set(LOSSES)
        if unknown:
            raise ValueError(f"unknown loss_weights {sorted(unknown)}; known: {LOSSES}")
        weights.update(loss_weights or {})
        self.save_hyperparameters()
        self.weights = weights
        self.model = SNPS3Model(config)
        self.headline_metric = "val/qa_acc" if task == "qa" else "val/t2v_R@1"
        self.chance_level: float | None = None
        self._eval: dict[str, list] = {}

    # -- setup
    def configure_model(self) -> None:
        if self.hparams.with_moco and not hasattr(self, "bert_m"):
            # Spec §6 #10: built here, before DDP wraps the module, and outside the optimiser.
            self.visual_m = momentum_copy(self.model.visual)
            self.img_fc_m = momentum_copy(self.model.img_fc)
            self.bert_m = momentum_copy(self.model.bert)
            d, k = self.model.config.img_fc_dim, self.hparams.queue_size
            self.register_buffer("queue_t", F.normalize(torch.randn(k, d), dim=1), persistent=True)
            self.register_buffer("queue_v", F.normalize(torch.randn(k, d), dim=1), persistent=True)
            self.register_buffer("ptr_t", torch.zeros((), dtype=torch.long), persistent=True)
            self.register_buffer("ptr_v", torch.zeros((), dtype=torch.long), persistent=True)
        # Lightning calls configure_model after setup: weights are loaded here, once the key encoders exist.
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        if fitting and not getattr(self, "_loaded", False):
            self._load_weights()
            self._loaded = True

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads:
            torch.set_num_threads(self.hparams.cpu_threads)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "codec"):
            c = self.model.config
            if dm.codec.vocab_size > c.vocab_size or dm.codec.sep_id != c.sep_id:
                raise ValueError(
                    f"tokenizer ({dm.codec.vocab_size} ids, [SEP]={dm.codec.sep_id}) does not fit the model "
                    f"(vocab_size={c.vocab_size}, sep_id={c.sep_id})"
                )
            self.mask_id = dm.codec.mask_id
            if self.hparams.task == "qa":
                if dm.num_answers > c.num_answers:
                    raise ValueError(f"{dm.num_answers} answers but config.num_answers={c.num_answers}")
                self.chance_level = 100.0 / max(dm.num_answers, 1)
            else:
                self.chance_level = 100.0 / max(len(dm.test_clips), 1)

    def _load_weights(self) -> None:
        hp = self.hparams
        if hp.pretrained_bert:
            missing = load_bert_weights(self.model, hp.pretrained_bert)
            if missing:
                raise ValueError(
                    f"{hp.pretrained_bert}: BERT keys missing from the checkpoint: {missing[:5]}"
                )
        if hp.pretrained_visual:
            missing = load_visual_weights(self.model, hp.pretrained_visual)
            log.info(
                "visual weights from %s; %d backbone keys not in the file", hp.pretrained_visual, len(missing)
            )
        if hp.init_from:
            state = torch.load(hp.init_from, map_location="cpu", weights_only=True)["state_dict"]
            own = self.state_dict()
            keep = {
                k: v for k, v in state.items() if k in own and own[k].shape == v.shape and "queue" not in k
            }
            self.load_state_dict(keep, strict=False)
            log.info("init_from %s: %d of %d tensors loaded", hp.init_from, len(keep), len(own))
        if hp.with_moco and (hp.pretrained_bert or hp.pretrained_visual or hp.init_from):
            self.visual_m.load_state_dict(self.model.visual.state_dict())
            self.img_fc_m.load_state_dict(self.model.img_fc.state_dict())
            self.bert_m.load_state_dict(self.model.bert.state_dict())

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        if "video" in batch and batch["video"].dtype == torch.uint8:
            batch["video"] = preprocess_clip(batch["video"], mean=IMAGENET_MEAN, std=IMAGENET_STD)
        return batch

    # -- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.hparams.task == "qa":
            clips = self.model.encode_video(batch["video"])
            logits = self.model.qa_logits(batch["text_ids"], batch["text_mask"], clips)
            loss = F.cross_entropy(logits, batch["label"], ignore_index=-1)
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/qa_acc", accuracy(logits.argmax(-1), batch["label"]))
            return loss
        losses = self._pretrain_losses(batch)
        total = sum(self.weights[k] * v for k, v in losses.items())
        for k, v in losses.items():
            self.log(f"train/loss_{k}", v)
        self.log("train/loss", total, prog_bar=True)
        return total

    def _pretrain_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        w, m, hp = self.weights, self.model, self.hparams
        pretrain = hp.task == "pretrain"
        ids, mask = batch["text_ids"], batch["text_mask"]
        clips = m.encode_video(batch["video"])  # (B, P, D)
        p = clips.shape[1]
        v = m.video_feature(clips)  # (B, P, D)
        attentive = pretrain and w["mlm"] + w["text_mlm"] > 0 and torch.rand(()) < hp.attentive_prob
        hidden, t, att = m.text_pass(ids, mask, output_attentions=bool(attentive))
        masked, labels = batch.get("masked_ids", ids), batch.get("mlm_labels")
        if attentive:
            imp = attention_importance(att, batch["maskable"])
            masked, labels = attentive_mask(ids, batch["maskable"], imp, self.mask_id)
        out: dict[str, Tensor] = {}
        if w["itc"] > 0:
            out["itc"] = self._itc(batch, t, v) if hp.with_moco else self._mil_itc(t, v, p)
        if w["gvtm"] > 0:
            fuse = masked if pretrain else ids
            out["gvtm"] = mil_nce(m.all_pair_scores(fuse, mask, clips, hp.eval_chunk), 1)
        if not pretrain:
            return out
        if w["mlm"] > 0 or w["itm"] > 0:
            h_cross, pooled = m.cross(masked, mask, clips)
            if w["mlm"] > 0:
                logits = m.cross_mlm(h_cross[:, : ids.shape[1]])  # (B, L, V)
                out["mlm"] = masked_lm_loss(logits, labels)
                self._log_mlm_acc(logits, labels)
            if w["itm"] > 0:
                _, neg_pooled = m.cross(batch["neg_ids"], batch["neg_mask"], clips)
                logits = m.itm_head(torch.cat([pooled, neg_pooled]))  # (2B, 2)
                target = torch.cat([torch.ones_like(ids[:, 0]), torch.zeros_like(ids[:, 0])])
                out["itm"] = F.cross_entropy(logits, target)
        if w["text_mlm"] > 0:
            h_text = hidden if hp.text_mlm_input == "raw" else m.text_pass(masked, mask)[0]
            out["text_mlm"] = masked_lm_loss(m.text_mlm(h_text), labels)
        if w["lvwm"] > 0:
            words = hidden.gather(
                1, batch["word_pos"][..., None].expand(-1, -1, hidden.shape[-1])
            )  # (B, K, D)
            if hp.lvwm_normalize:
                words = F.normalize(words, dim=-1)
            s = lvwm_scores(gather_with_grad(words), gather_with_grad(v))  # (B_all, B_all*P)
            out["lvwm"] = mil_nce_text_clips(s, p)
        return out

    def _log_mlm_acc(self, logits: Tensor, labels: Tensor) -> None:
        sel = labels >= 0
        if bool(sel.any()):
            self.log("train/mlm_acc", (logits.argmax(-1)[sel] == labels[sel]).float().mean() * 100)

    def _mil_itc(self, t: Tensor, v: Tensor, p: int) -> Tensor:
        t_all, v_all = gather_with_grad(t), gather_with_grad(v)  # (B_all, D), (B_all, P, D)
        return mil_nce_text_clips(t_all @ v_all.flatten(0, 1).t(), p)

    def _itc(self, batch: dict[str, Tensor], t: Tensor, v: Tensor) -> Tensor:
        with torch.no_grad():
            self._momentum_update()
            k_t = F.normalize(self.bert_m(batch["text_ids"], batch["text_mask"])[1], dim=-1)  # (B, D)
            k_v = F.normalize(self.img_fc_m(self.visual_m(batch["video"])), dim=-1)  # (B, P, D)
        temp = self.hparams.moco_temperature
        b, p, d = v.shape
        vq = v.flatten(0, 1)  # (B*P, D)
        pos_v = (vq * k_t.repeat_interleave(p, 0)).sum(-1, keepdim=True)  # (B*P, 1)
        loss_v = moco_loss(pos_v, vq @ self.queue_t.clone().t(), temp)  # the queue changes below
        pos_t = torch.einsum("bd,bpd->bp", t, k_v)  # (B, P)
        loss_t = moco_loss(pos_t, t @ self.queue_v.clone().t(), temp)
        self._enqueue(gather_no_grad(k_t), gather_no_grad(k_v.flatten(0, 1)))
        return 0.5 * (loss_t + loss_v)

    @torch.no_grad()
    def _momentum_update(self) -> None:
        mom = self.hparams.moco_momentum
        pairs = (
            (self.visual_m, self.model.visual),
            (self.img_fc_m, self.model.img_fc),
            (self.bert_m, self.model.bert),
        )
        for km, qm in pairs:
            for pk, pq in zip(km.parameters(), qm.parameters()):
                pk.mul_(mom).add_(pq.detach(), alpha=1 - mom)

    @torch.no_grad()
    def _enqueue(self, k_t: Tensor, k_v: Tensor) -> None:
        # Text keys (B_all) and clip keys (B_all * P) each go in their own ring buffer.
        for q, ptr, k in ((self.queue_t, self.ptr_t, k_t), (self.queue_v, self.ptr_v, k_v)):
            idx = (torch.arange(k.shape[0], device=q.device) + ptr) % q.shape[0]
            q[idx] = k.to(q.dtype)
            ptr.fill_(int((ptr + k.shape[0]) % q.shape[0]))

    # -- evaluation
    def _eval_start(self) -> None:
        self._eval = {"ret": [], "mc": [], "qa": []}

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    @torch.no_grad()
    def _eval_step(self, batch: dict[str, Tensor]) -> None:
        m = self.model
        clips = m.encode_video(batch["video"])
        if "option_ids" in batch:
            b, o, length = batch["option_ids"].shape
            scores = m.pair_score(
                batch["option_ids"].flatten(0, 1),
                batch["option_mask"].flatten(0, 1),
                clips.repeat_interleave(o, 0),
            ).view(b, o)
            self._eval["mc"].append((batch["index"].cpu(), scores.argmax(-1).cpu(), batch["answer"].cpu()))
        elif "label" in batch:
            pred = m.qa_logits(batch["text_ids"], batch["text_mask"], clips).argmax(-1)
            self._eval["qa"].append((batch["index"].cpu(), pred.cpu(), batch["label"].cpu()))
        else:
            t2v = batch["text_to_video"]
            fam = batch.get("family", torch.full_like(batch["index"], -1))
            ids, mask = batch["text_ids"], batch["text_mask"]
            entry = (batch["index"].cpu(), clips.cpu(), ids.cpu(), mask.cpu(), t2v.cpu(), fam.cpu())
            self._eval["ret"].append(entry)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch)

    def _gathered(self, key: str) -> list:
        items = self._eval[key]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list = [None] * dist.get_world_size()
            dist.all_gather_object(parts, items)
            items = [x for part in parts for x in part]
        return items

    @torch.no_grad()
    def _eval_end(self, split: str) -> None:
        metrics: dict[str, float] = {}
        ret = self._gathered("ret")
        if ret:
            metrics.update(self._retrieval_metrics(ret))
        for key, name in (("mc", "mc_acc"), ("qa", "qa_acc")):
            rows = self._gathered(key)
            if rows:
                seen: dict[int, tuple[int, int]] = {}
                for idx, pred, target in rows:
                    for i, pr, tg in zip(idx.tolist(), pred.tolist(), target.tolist()):
                        seen[i] = (pr, tg)  # DDP pads with repeats: each sample once
                pred, target = (torch.tensor(x) for x in zip(*seen.values()))
                metrics[name] = accuracy(pred, target)
        if self.hparams.task != "qa" and self.chance_level is not None:
            metrics["t2v_chance"] = self.chance_level
        for k, val in metrics.items():
            self.log(f"{split}/{k}", val, prog_bar=k in ("t2v_R@1", "mc_acc", "qa_acc"), rank_zero_only=False,
                     sync_dist=False)  # fmt: skip

    def _retrieval_metrics(self, ret: list) -> dict[str, float]:
        by_video: dict[int, tuple] = {}
        for idx, clips, ids, mask, t2v, fam in ret:
            for j, i in enumerate(idx.tolist()):
                sel = t2v == j
                by_video[i] = (clips[j], ids[sel], mask[sel], fam[j])
        order = sorted(by_video)
        dev = self.device
        clips = torch.stack([by_video[i][0] for i in order]).to(dev)  # (V, P, D)
        ids = torch.cat([by_video[i][1] for i in order]).to(dev)
        mask = torch.cat([by_video[i][2] for i in order]).to(dev)
        t2v = torch.cat([torch.full((len(by_video[i][1]),), n) for n, i in enumerate(order)]).to(dev)
        m = self.model
        t = m.text_pass(ids, mask)[1]  # (T, D)
        v = m.video_feature(clips)  # (V, P, D)
        l1 = torch.logsumexp(torch.einsum("td,vpd->tvp", t, v), dim=-1)  # (T, V)
        l2 = m.all_pair_scores(ids, mask, clips, chunk=max(1, 4096 // max(len(order), 1)))
        family = torch.stack([by_video[i][3] for i in order]).to(dev)  # (V,)
        out = retrieval_metrics(l2, t2v, video_family=family)
        out.update(retrieval_metrics(l1, t2v, prefix="l1_", video_family=family))
        self.chance_level = 100.0 / len(order)
        return out

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "bad_files", 0):
            log.warning("%d undecodable files replaced so far", dm.bad_files)
            self.log("val/bad_files", float(dm.bad_files))

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # -- optimisation
    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, prm in self.named_parameters():
            if not prm.requires_grad or name.startswith(("visual_m.", "img_fc_m.", "bert_m.")):
                continue
            (no_decay if prm.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(prm)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr, betas=tuple(hp.betas),
        )  # fmt: skip
        milestones = list(hp.milestones or [])

        def schedule(step: int) -> float:
            if step < hp.warmup_steps:
                return hp.warmup_start + (1 - hp.warmup_start) * step / max(hp.warmup_steps, 1)
            return hp.gamma ** sum(step >= s for s in milestones)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
