"""PinkLitModule: the three training stages, greedy-decoding evaluation and the RC metrics (spec §2-§5).

* stage 0 (toy only): CLIP loss between the tiny vision tower and a bag-of-words caption encoder.
* stage 1: captions, projector only (lr 2e-3, cosine, 3 % warm-up, no weight decay).
* stage 2: RC instruction tasks; projector, adapters and the new token rows (lr 5e-4, cosine, 5 % warm-up,
  weight decay 0.02; no decay on the embedding matrices, whose original rows must not move).
* validation/test: greedy generation on REC, counting and relation prompts. Keys: ``val/rec_acc@0.5`` (IoU
  strictly above 0.5, format errors wrong), ``val/format_error_rate`` (REC outputs that do not hold exactly 4
  numbers), ``val/count_acc``, ``val/relation_acc``, and the baselines ``val/rec_random_box_acc`` and
  ``val/count_majority_acc``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from lightning.pytorch import LightningModule

from common.contrastive import clip_loss
from pink_rc.metrics import iou, majority_baseline, parse_box, parse_count, random_box_baseline
from pink_rc.model import IM_PATCH, PinkConfig, PinkModel, load_pink_checkpoint

PREDICATES = ("left of", "right of", "above", "below")


class PinkLitModule(LightningModule):
    """Pink in Lightning.

    Args:
        config: the model's sizes and weight sources.
        stage: 0, 1 or 2 (see the module docstring).
        lr, warmup_ratio, weight_decay: AdamW with linear warm-up then cosine decay to 0 (per step).
        init_from: a previous stage's Lightning checkpoint whose matching weights start this stage.
        pink_checkpoint: a released ``saved_parameters.pth`` merged onto the base weights.
        train_llm: toy only, train every Llama weight in stage 2 (a random-init LLM has nothing to adapt).
        train_vision: toy diagnostic only, train every CLIP weight in stage 2 (not Pink's recipe).
        max_new_tokens: greedy decoding budget in evaluation.
    """

    headline_metric = "val/rec_acc@0.5"

    def __init__(
        self,
        config: PinkConfig,
        stage: int = 2,
        lr: float = 5e-4,
        warmup_ratio: float = 0.05,
        weight_decay: float = 0.02,
        init_from: str | None = None,
        pink_checkpoint: str | None = None,
        train_llm: bool = False,
        train_vision: bool = False,
        max_new_tokens: int = 32,
        cpu_threads: int | None = None,
    ) -> None:
        super().__init__()
        if stage not in (0, 1, 2):
            raise ValueError(f"model.stage must be 0, 1 or 2, got {stage}")
        self.save_hyperparameters()
        self.config, self.stage = config, stage
        self.model: PinkModel | None = None
        self.tokenizer: Any = None
        self.chance_level = 0.0
        self._eval: dict[str, list[float]] = {}

    # ------------------------------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads:
            torch.set_num_threads(self.hparams.cpu_threads)
        dm = self.trainer.datamodule if self.trainer is not None else None
        if dm is not None and getattr(dm, "tokenizer", None) is not None:
            self.tokenizer = dm.tokenizer
            items = dm.eval_items.get(dm.hparams.val_split, [])
            rec = [x for x in items if x["task"] == "rec"]
            self.chance_level = random_box_baseline(
                [x["candidates"] for x in rec], [x["target"] for x in rec]
            )

    def configure_model(self) -> None:
        if self.model is not None:
            return
        tok = self.tokenizer
        if tok is None and self._trainer is None:
            return  # load_from_checkpoint: built in on_load_checkpoint from the saved tokenizer
        if tok is None:
            raise RuntimeError("PinkLitModule needs the DataModule's tokenizer (set in DataModule.setup)")
        cfg = self.config
        if cfg.llm is None:  # random init: the base vocabulary is the tokenizer's before the new tokens
            cfg = replace(cfg, llm_config={**cfg.llm_config, "vocab_size": tok.num_orig_tokens})
        self.model = PinkModel(cfg, vocab_size=len(tok), num_orig_tokens=tok.num_orig_tokens)
        if self.hparams.init_from:
            self._init_from(self.hparams.init_from)
        if self.hparams.pink_checkpoint:
            load_pink_checkpoint(self.model, self.hparams.pink_checkpoint)
        self.model.set_trainable(self.stage, self.hparams.train_llm, self.hparams.get("train_vision", False))

    def _init_from(self, path: str) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        ours = self.model.state_dict()
        load = {k: v for k, v in state.items() if k in ours and ours[k].shape == v.shape}
        if not any(k.startswith("vision.") for k in load):
            raise ValueError(f"{path}: no vision-tower weights match this model (wrong checkpoint or sizes?)")
        self.model.load_state_dict(load, strict=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokenizer_json"] = self.tokenizer.backend_tokenizer.to_str()
        checkpoint["num_orig_tokens"] = self.tokenizer.num_orig_tokens

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is None and "tokenizer_json" in checkpoint:
            from pink_rc.data import tokenizer_from_json

            self.tokenizer = tokenizer_from_json(checkpoint["tokenizer_json"], checkpoint["num_orig_tokens"])
        self.configure_model()

    @property
    def im_patch_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(IM_PATCH)

    # ------------------------------------------------------------------------------------------ train
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.stage == 0:
            vis = self.model.vision(pixel_values=batch["pixel_values"])
            img, txt = self.model.toy_clip(vis.pooler_output, batch["text_ids"])
            loss = clip_loss(img, txt, self.model.toy_clip.logit_scale.exp().clamp(max=100))
        else:
            out = self.model(
                batch["input_ids"],
                batch["attention_mask"],
                batch["pixel_values"],
                self.im_patch_id,
                batch["labels"],
            )
            loss = out.loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["pixel_values"].shape[0])
        return loss

    def on_train_epoch_start(self) -> None:
        ds = getattr(self.trainer.datamodule, "train_dataset", None)
        if ds is not None and hasattr(ds, "epoch"):
            ds.epoch = self.current_epoch

    # ------------------------------------------------------------------------------------------- eval
    def generate_text(self, batch: dict[str, Any]) -> list[str]:
        """Greedy answers of a left-padded prompt batch."""
        ids = self.model.generate(
            batch["input_ids"],
            batch["attention_mask"],
            batch["pixel_values"],
            self.im_patch_id,
            self.tokenizer.eos_token_id,
            self.hparams.max_new_tokens,
        )
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def _eval_step(self, batch: dict[str, Any]) -> None:
        if self.stage == 0:
            return
        texts = self.generate_text(batch)
        acc = self._eval
        for text, task, target, size, cands in zip(
            texts, batch["task"], batch["target"], batch["size"], batch["candidates"], strict=True
        ):
            if task == "rec":
                box, err = parse_box(text, *size)
                acc.setdefault("rec_hit", []).append(float(not err and iou(box, target) > 0.5))
                acc.setdefault("format_error", []).append(float(err))
                acc.setdefault("rec_random", []).append(random_box_baseline([cands], [target]))
            elif task == "count":
                acc.setdefault("count_hit", []).append(float(parse_count(text) == target))
                acc.setdefault("count_target", []).append(float(target))
            elif task == "relation":
                said = [p for p in PREDICATES if p in text.lower()]
                acc.setdefault("relation_hit", []).append(float(said[:1] == [target]))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def _eval_end(self, split: str) -> None:
        if self.stage == 0:
            return
        acc, self._eval = self._eval, {}
        sums: dict[str, float] = {}
        for key in ("rec_hit", "format_error", "rec_random", "count_hit", "relation_hit"):
            vals = acc.get(key, [])
            sums[key], sums[key + "_n"] = float(sum(vals)), float(len(vals))
        keys = sorted(sums)
        t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.device)
        t = self.trainer.strategy.reduce(t, reduce_op="sum") if self.trainer.world_size > 1 else t
        tot = dict(zip(keys, t.tolist(), strict=True))
        ratio = lambda k: tot[k] / tot[k + "_n"] if tot[k + "_n"] else 0.0  # noqa: E731
        logs = {
            f"{split}/rec_acc@0.5": ratio("rec_hit"),
            f"{split}/format_error_rate": ratio("format_error"),
            f"{split}/rec_random_box_acc": ratio("rec_random"),
            f"{split}/count_acc": ratio("count_hit"),
            f"{split}/relation_acc": ratio("relation_hit"),
            f"{split}/count_majority_acc": majority_baseline(acc.get("count_target", [])),
        }
        self.log_dict(logs, sync_dist=False, rank_zero_only=False)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # ------------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            # the embedding matrices carry frozen original rows: decoupled decay would move them
            (no_decay if ("embed_tokens" in name or "lm_head" in name or p.ndim < 2) else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.hparams.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=self.hparams.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = max(1, int(round(self.hparams.warmup_ratio * total)))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
