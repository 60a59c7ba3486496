"""TPMCLLitModule: NegNCE (or InfoNCE) + TPM-CL training and the retrieval evaluation (spec §3, §5).

Training: frames are normalised on the device (``common.video.preprocess_clip``), texts and videos encoded,
the features gathered across ranks with gradients (:func:`tpm_cl.losses.gather_with_grad`) so that S is the
global-batch similarity, and ``L = L_NegNCE + tpm_weight · L_TPM`` (TPM-CL on the local matched pairs).

Evaluation: all texts and videos of the split are encoded, S ``(T, V)`` is computed in blocks, and
:func:`tpm_cl.metrics.retrieval_metrics` gives ``t2v_*``/``v2t_*`` (and ``fam_t2v_*`` on toy families). With
``dual_softmax_eval`` the dual-softmax re-ranked figures are logged under ``dsl_*``, never in the headline.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from common.video import preprocess_clip
from tpm_cl.losses import dual_softmax, gather_with_grad, infonce_loss, negnce_loss
from tpm_cl.metrics import retrieval_metrics
from tpm_cl.model import TextFeatures, TPMCLConfig, TPMCLModel, VideoFeatures, load_clip_weights

LOSS_TYPES = ("negnce", "infonce")


class TPMCLLitModule(LightningModule):
    """DMAE + NegNCE + TPM-CL retrieval (see the module docstring).

    Args:
        config: the model's sizes and switches (:class:`TPMCLConfig`).
        loss_type: ``negnce`` (the paper) or ``infonce`` (the ablation arm).
        logit_scale: the fixed scale of both losses (100 in the code).
        hard_weight: NegNCE's weight on the hard-negative term (0.5). hard_margin: its margin (0).
        tpm_weight: weight of the TPM-CL loss (1).
        lr: learning rate of the new modules. clip_lr_coef: CLIP's lr is ``lr · clip_lr_coef``.
        weight_decay: AdamW weight decay (not on biases, norms, embeddings). betas: AdamW betas.
        warmup_proportion: linear warm-up share of the steps, then cosine decay.
        pretrained: CLIP weights: a local file or an open_clip tag (``openai``); None = random init.
        pretrained_arch: open_clip model name for a tag (``ViT-B-32``, ``ViT-B-16``).
        eval_block: texts per block when S is computed in evaluation.
        dual_softmax_eval: also report dual-softmax re-ranked metrics (``dsl_*``).
        cpu_threads: intra-op threads on CPU (None: torch's default). On a shared 2-core machine one thread
            ran a toy step about 5x faster than two (OpenMP contention).
    """

    headline_metric = "val/t2v_R@1"

    def __init__(
        self,
        config: TPMCLConfig = TPMCLConfig(),  # noqa: B008 (a frozen default; jsonargparse nests its fields)
        loss_type: str = "negnce",
        logit_scale: float = 100.0,
        hard_weight: float = 0.5,
        hard_margin: float = 0.0,
        tpm_weight: float = 1.0,
        lr: float = 1e-4,
        clip_lr_coef: float = 1e-3,
        weight_decay: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_proportion: float = 0.1,
        pretrained: str | None = None,
        pretrained_arch: str = "ViT-B-32",
        eval_block: int = 256,
        dual_softmax_eval: bool = False,
        cpu_threads: int | None = None,
    ) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        # a private copy of the default; a checkpoint's hparams hold the config as a dict
        config = TPMCLConfig(**(config if isinstance(config, dict) else asdict(config)))
        # evaluation-time switches stay out of the checkpoint's hparams, so `test --ckpt_path ... --model.<x>`
        # can change them (LightningCLI re-applies a checkpoint's hparams over the command line)
        self.save_hyperparameters(ignore=["config", "eval_block", "dual_softmax_eval", "cpu_threads"])
        self.eval_block, self.dual_softmax_eval, self.cpu_threads = eval_block, dual_softmax_eval, cpu_threads
        self.hparams["config"] = asdict(config)
        self.config = config
        self.model = TPMCLModel(config)
        self.chance_level: float | None = None
        self._eval: dict[str, list] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(self.cpu_threads)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        for name in ("val_set", "test_set"):
            ds = getattr(dm, name, None)
            if ds is not None and len(ds):
                self.chance_level = 100.0 / len(ds)  # t2v R@1 (percent) of a random ranking
                break
        if stage == "fit" and self.hparams.pretrained:
            load_clip_weights(self.model, self.hparams.pretrained, self.hparams.pretrained_arch)

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        size = self.config.image_size
        batch["video"] = preprocess_clip(batch["video"], size=size, crop_size=size)  # (B, F, 3, S, S)
        return batch

    # ------------------------------------------------------------------ training
    def _encode(self, batch: dict[str, Tensor]) -> tuple[TextFeatures, VideoFeatures]:
        text = self.model.encode_text(batch["text_ids"], batch["text_weight"])
        video = self.model.encode_video(batch["video"], batch["video_mask"].to(batch["video"].dtype))
        return text, video

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        hp = self.hparams
        text, video = self._encode(batch)
        text_all = TextFeatures(*(gather_with_grad(t) for t in (text.words, text.weight, text.sentence)))
        video_all = VideoFeatures(*(gather_with_grad(t) for t in (video.frames, video.tokens, video.mask)))
        sim = self.model.similarity(text_all, video_all)  # (B_global, B_global)
        if hp.loss_type == "negnce":
            loss_nce = negnce_loss(sim, hp.logit_scale, hp.hard_weight, hp.hard_margin)
        else:
            loss_nce = infonce_loss(sim, hp.logit_scale)
        loss_tpm, parts = self.model.tpm_loss(text, video)
        loss = loss_nce + hp.tpm_weight * loss_tpm
        with torch.no_grad():
            diag = sim.diagonal()
            hard = (sim > diag[:, None]) | (sim > diag[None, :])
            hard_frac = hard.float().sum() / max(sim.numel() - sim.shape[0], 1)
        bs = sim.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/loss_nce", loss_nce, batch_size=bs)
        self.log("train/loss_tpm", loss_tpm, batch_size=bs)
        self.log("train/hard_fraction", hard_frac, batch_size=bs)
        self.log("train/global_batch", float(bs), batch_size=bs)
        for name, value in parts.items():
            self.log(f"train/loss_{name}", value, batch_size=bs)
        return loss

    def on_train_epoch_end(self) -> None:
        # undecodable videos replaced by black clips so far (counted in this process; with DataLoader workers
        # each worker counts its own and logs a warning per file)
        train_set = getattr(getattr(self.trainer, "datamodule", None), "train_set", None)
        if train_set is not None:
            self.log("train/bad_videos", float(train_set.clips.bad))

    # ------------------------------------------------------------------ evaluation
    def _eval_start(self) -> None:
        self._eval = {k: [] for k in ("words", "weight", "sentence", "tokens", "mask", "t2v", "family")}
        self._num_videos = 0

    @torch.no_grad()
    def _eval_step(self, batch: dict[str, Tensor]) -> None:
        text, video = self._encode(batch)
        e = self._eval
        e["words"].append(text.words.float().cpu())
        e["weight"].append(text.weight.float().cpu())
        e["sentence"].append(text.sentence.float().cpu())
        e["tokens"].append(video.tokens.float().cpu())
        e["mask"].append(video.mask.float().cpu())
        e["t2v"].append(batch["text_to_video"].cpu() + self._num_videos)
        e["family"].append(batch["family"].cpu())
        self._num_videos += batch["video"].shape[0]

    @torch.no_grad()
    def similarity_matrix(self, text: TextFeatures, video: VideoFeatures) -> Tensor:
        """S ``(T, V)`` in blocks of ``eval_block`` texts, on the module's device, returned on the CPU."""
        dev = self.device
        video = VideoFeatures(video.tokens.to(dev), video.tokens.to(dev), video.mask.to(dev))
        rows = []
        for s in range(0, text.words.shape[0], self.eval_block):
            block = TextFeatures(*(t[s : s + self.eval_block].to(dev) for t in vars(text).values()))
            rows.append(self.model.similarity(block, video).float().cpu())
        return torch.cat(rows)

    def _eval_end(self, prefix: str) -> dict[str, float]:
        e = self._eval
        if not e.get("words"):
            return {}
        text = TextFeatures(torch.cat(e["words"]), torch.cat(e["weight"]), torch.cat(e["sentence"]))
        tokens = torch.cat(e["tokens"])
        video = VideoFeatures(tokens, tokens, torch.cat(e["mask"]))
        sim = self.similarity_matrix(text, video)
        t2v, vfam = torch.cat(e["t2v"]), torch.cat(e["family"])
        fam = (vfam[t2v], vfam) if bool((vfam >= 0).all()) else (None, None)
        metrics = retrieval_metrics(sim, t2v, *fam)
        if self.dual_softmax_eval:
            dsl_t2v = retrieval_metrics(dual_softmax(sim), t2v)
            dsl_v2t = retrieval_metrics(dual_softmax(sim.t()).t(), t2v)
            metrics.update({f"dsl_{k}": v for k, v in dsl_t2v.items() if k.startswith("t2v")})
            metrics.update({f"dsl_{k}": v for k, v in dsl_v2t.items() if k.startswith("v2t")})
        out = {f"{prefix}/{k}": v for k, v in metrics.items()}
        # every rank evaluated the whole split (no distributed sampler), so the values agree
        self.log_dict(out, prog_bar=False, rank_zero_only=False, sync_dist=False)
        self.log(f"{prefix}/t2v_R@1_bar", out[f"{prefix}/t2v_R@1"], prog_bar=True, logger=False)
        self._eval = {}
        return out

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            is_clip = name.startswith("clip.")
            no_decay = p.ndim < 2 or "embedding" in name or name.endswith(".bias")
            groups.setdefault((is_clip, no_decay), []).append(p)
        params = [
            {
                "params": ps,
                "lr": hp.lr * (hp.clip_lr_coef if is_clip else 1.0),
                "weight_decay": 0.0 if no_decay else hp.weight_decay,
            }
            for (is_clip, no_decay), ps in groups.items()
        ]
        opt = torch.optim.AdamW(params, lr=hp.lr, betas=tuple(hp.betas))
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(hp.warmup_proportion * total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
