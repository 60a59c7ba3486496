"""TSGSVLitModule: the TwinNet KD objective, streaming evaluation and the FlatCosine schedule (spec §3-§5).

Training runs the main stream (and, with ``future_usage: TemporalPincer``, the TwinNet branch on the future
memory) on windows and minimises :func:`tsgsv.losses.tsgsv_loss`. Validation and test stream every query's
video through the causal main stream (:func:`tsgsv.model.offline_scores`, equal to
:class:`tsgsv.streaming.StreamingGrounder` step by step) and compute the official metrics from the per-step
scores (:func:`tsgsv.metrics.evaluate`): ``R@{1,5}_IoU{0.3,0.5,0.7}``, ``mcAP`` (= ``mcAP_ext``, the code's
extended positives), ``mcAP_strict``, ``end_err`` / ``start_err`` (seconds) and the random-proposal baseline
``R@1_IoU{m}_random`` on the same split.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule

from tsgsv.losses import tsgsv_loss
from tsgsv.metrics import evaluate
from tsgsv.model import TSGSVConfig, TSGSVModel, offline_scores


def flat_cosine(step: int, total: int, warmup: int, flat_until: float, start_factor: float = 0.1) -> float:
    """FlatCosine lr factor: linear warm-up from ``start_factor``, flat to ``flat_until * total``, cosine."""
    if warmup > 0 and step < warmup:
        return start_factor + (1 - start_factor) * step / warmup
    flat_end = max(int(flat_until * total), warmup)
    if step < flat_end:
        return 1.0
    rest = max(total - flat_end, 1)
    return 0.5 * (1 + math.cos(math.pi * min(step - flat_end, rest) / rest))


# The released checkpoints are mmcv ``state_dict``s of the whole localizer; its sub-modules are named after
# the code's registries. DEVIATION: the attribute names below are reconstructed from the code's module layout
# (spec §1), not read from a released file (none was available).
OFFICIAL_PREFIXES: dict[str, str] = {
    "sentence_encoder.": "sentence_encoder.",
    "interactor.video_encoder.": "video_encoder.",
    "interactor.pos_encoder.": "pos.",
    "interactor.token_learner.": "compressor.",
    "interactor.decoder.": "decoder.",
    "interactor.forward_decoder.": "twin_forward.",
    "interactor.inverted_decoder.": "twin_inverted.",
    "interactor.pincer_layer.": "pincer.",
    "predictor.": "head.",
    "future_predictor.": "twin_head.",
}


def map_official_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official (mmcv) state dict onto :class:`TSGSVModel`; our own layout passes through."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("model.")
        for src, dst in OFFICIAL_PREFIXES.items():
            if key.startswith(src):
                key = dst + key[len(src) :]
                break
        out[key] = value
    return out


def load_pretrained(model: TSGSVModel, path: str | Path) -> None:
    """Load a checkpoint (official layout, ours, or a Lightning ``.ckpt``); any mismatch is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path} (set model.pretrained to a file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = map_official_keys(state)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"{path}: checkpoint does not match the model: missing {result.missing_keys[:10]}, "
            f"unexpected {result.unexpected_keys[:10]}"
        )


class TSGSVLitModule(LightningModule):
    """TSGSV training and streaming evaluation.

    Args:
        config: the model sizes.
        kd_weight: the KD weight w (0.4 ActivityNet, 0.2 TACoS and MAD).
        tpn_type: ``KD`` (distil the twin's probabilities) or ``twinnet`` (L2 feature matching).
        gamma: focal exponent (3).
        lr, weight_decay: AdamW.
        warmup_epochs: linear warm-up from 0.1x; ``flat_until``: end of the flat part (fraction of training).
        recalls, ious, nms_threshold, proposal_groups, score_stride, max_points: the evaluation protocol.
        eval_chunk: windows per forward pass in evaluation.
        pretrained: a checkpoint to start from (None: random init).
        cpu_threads: torch intra-op threads on CPU (1 is fastest for the tiny model on a shared 2-core CPU).
    """

    headline_metric = "val/R@1_IoU0.5"

    def __init__(
        self,
        config: TSGSVConfig = TSGSVConfig(),  # noqa: B008 (jsonargparse nests its fields)
        kd_weight: float = 0.4,
        tpn_type: str = "KD",
        gamma: float = 3.0,
        lr: float = 1e-5,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 4.0,
        flat_until: float = 0.4,
        recalls: list[int] | None = None,
        ious: list[float] | None = None,
        nms_threshold: float = 0.5,
        proposal_groups: int = 4,
        score_stride: int = 4,
        max_points: int = 128,
        eval_chunk: int = 1024,
        pretrained: str | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        if tpn_type not in ("KD", "twinnet"):
            raise ValueError(f"tpn_type must be KD or twinnet, got {tpn_type!r}")
        self.recalls = list(recalls or [1, 5])
        self.ious = list(ious or [0.3, 0.5, 0.7])
        self.model: TSGSVModel | None = None
        self.chance_level: float | None = None
        self._eval: list[dict[str, Any]] = []

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads:
            torch.set_num_threads(int(self.hparams.cpu_threads))

    def configure_model(self) -> None:
        if self.model is not None:
            return
        self.model = TSGSVModel(self.config)
        if self.hparams.pretrained:
            load_pretrained(self.model, self.hparams.pretrained)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        twin = self.model.has_twin
        return self.model(
            batch["long"], batch["long_mask"], batch["short"], batch["short_mask"],
            batch["sent"], batch["sent_len"],
            future=batch["future"] if twin else None, future_mask=batch["future_mask"] if twin else None,
        )  # fmt: skip

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self(batch)
        parts = tsgsv_loss(
            out, batch["labels"], batch["short_mask"], self.hparams.kd_weight, self.hparams.tpn_type,
            self.hparams.gamma,
        )  # fmt: skip
        bs = batch["short"].shape[0]
        for name, value in parts.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=bs)
        return parts["loss"]

    # ---------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, torch.Tensor]) -> None:
        scores = offline_scores(
            self.model, batch["video"], batch["video_mask"], batch["sent"], batch["sent_len"],
            self.hparams.eval_chunk,
        )  # fmt: skip
        for i in range(scores.shape[0]):
            t = int(batch["video_mask"][i].sum())
            self._eval.append(
                {
                    "index": int(batch["index"][i]),
                    "scores": scores[i, :t].float().cpu().numpy(),
                    "duration": float(batch["duration"][i]),
                    "gt": tuple(float(x) for x in batch["gt"][i]),
                }
            )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._eval = []

    on_test_epoch_start = on_validation_epoch_start

    def _gather(self) -> list[dict[str, Any]]:
        items = self._eval
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, items)
            items = [x for p in parts for x in p]
        unique = {x["index"]: x for x in items}  # the distributed sampler repeats samples to even out ranks
        return [unique[k] for k in sorted(unique)]

    def compute_metrics(self, items: list[dict[str, Any]]) -> dict[str, float]:
        return evaluate(
            [x["scores"] for x in items], [x["duration"] for x in items], [x["gt"] for x in items],
            self.recalls, self.ious, self.hparams.score_stride, self.hparams.proposal_groups,
            self.hparams.nms_threshold, self.hparams.max_points,
        )  # fmt: skip

    def _eval_end(self, split: str) -> None:
        items = self._gather()
        self._eval = []
        if not items:
            return
        metrics = self.compute_metrics(items)
        self.chance_level = metrics.get("R@1_IoU0.5_random")
        for k, v in metrics.items():
            self.log(f"{split}/{k}", float(v), prog_bar=k in ("R@1_IoU0.5", "mcAP"), sync_dist=False)
        self.log(f"{split}/num_queries", float(len(items)))

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # ---------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = int(round(self.hparams.warmup_epochs * total / epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: flat_cosine(s, total, warmup, self.hparams.flat_until)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def to_numpy_scores(scores: torch.Tensor) -> np.ndarray:
    """``(T, 3)`` probabilities as float64 numpy (for metrics and plots)."""
    return scores.detach().double().cpu().numpy()
