"""The project's LightningCLI: loggers, run folders, resolved config and git commit for every paper.

Every paper's ``train.py`` is a few lines around :class:`ProjectCLI`::

    from common.cli import ProjectCLI
    from m2_encoder.data import M2EncoderDataModule
    from m2_encoder.module import M2EncoderLitModule

    def main(args=None):
        ProjectCLI(M2EncoderLitModule, M2EncoderDataModule, paper="m2_encoder", args=args)

    if __name__ == "__main__":
        main()

What it adds to :class:`lightning.pytorch.cli.LightningCLI`:

* Runs live in ``runs/<paper>/<exp>/s<seed>-<timestamp>/``. ``<exp>`` is ``--exp`` when given, otherwise the
  stems of the ``--config`` files after ``paper.yaml`` joined by ``+`` (``tiny``, ``tiny+mlm_random``), or
  ``paper`` for the full recipe alone.
* Loggers, unless the config sets ``trainer.logger``: a CSV logger (read by ``make report``) and a Weights &
  Biases logger (project = paper, group = exp, name = ``<exp>-s<seed>``), offline unless ``WANDB_MODE=online``
  and left out when ``WANDB_MODE=disabled``. Offline runs upload later with
  ``wandb sync runs/<paper>/<exp>/*/wandb``.
* The resolved config is saved as ``config.yaml`` in the run folder and sent to W&B; ``run_info.json`` records
  the git commit, the command line, the seed, the headline metric and its chance level (a LightningModule
  declares them as ``headline_metric`` and ``chance_level`` attributes), the step count and the wall time.
* The process group is destroyed at teardown, so that gloo DDP runs on CPU exit cleanly.

Note for ``test``/``validate --ckpt_path``: LightningCLI re-applies the hyperparameters saved in the
checkpoint over the command line, so an evaluation-only switch given as ``--model.<flag>`` is silently
replaced by its saved value if it went through ``save_hyperparameters``. Keep such switches out of the saved
hyperparameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger

RUN_VERSION_ENV = "ANTMM_RUN_VERSION"


def git_commit(cwd: str | Path | None = None) -> str:
    """Return the HEAD commit of the repository (``+dirty`` when the work tree differs), or ``unknown``."""
    cwd = Path(cwd or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def experiment_name(config_paths: list[str | Path]) -> str:
    """Name a run after its overlays: the config stems after ``paper.yaml`` joined by ``+``."""
    stems = [Path(str(p)).stem for p in config_paths]
    overlays = [s for s in stems if s != "paper"]
    return "+".join(overlays) if overlays else "paper"


class DestroyProcessGroup(Callback):
    """Destroy the default process group when a run ends.

    Lightning leaves the group alive after ``fit``; with gloo on CPU the worker processes can then abort at
    exit with "terminate called without an active exception".
    """

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._destroy()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            dist.barrier()
        self._destroy()

    @staticmethod
    def _destroy() -> None:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


class RunInfo(SaveConfigCallback):
    """Save the resolved config, send it to W&B and keep ``run_info.json`` up to date in the run folder."""

    def __init__(self, *args: Any, paper: str = "", exp: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paper = paper
        self.exp = exp
        self._start = time.time()
        self._info_path: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # ``trainer.log_dir`` broadcasts under DDP, so every rank must ask for it, and not in ``save_config``,
        # which runs on rank zero only.
        self._info_path = Path(trainer.log_dir or ".") / "run_info.json"
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_hyperparams({"config": json.loads(config), "git_commit": git_commit()})
        self._start = time.time()
        self._write(trainer, pl_module, stage, status="running")

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str, status: str) -> None:
        if self._info_path is None or not trainer.is_global_zero:
            return
        chance = getattr(pl_module, "chance_level", None)
        info = {
            "paper": self.paper,
            "exp": self.exp,
            "seed": self.config.get("seed_everything"),
            "stage": stage,
            "status": status,
            "git_commit": git_commit(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "headline_metric": getattr(pl_module, "headline_metric", None),
            "chance_level": float(chance) if chance is not None else None,
            "global_step": trainer.global_step,
            "epochs": trainer.current_epoch,
            "wall_time_s": round(time.time() - self._start, 2),
            "world_size": trainer.world_size,
            "torch": torch.__version__,
        }
        self._info_path.parent.mkdir(parents=True, exist_ok=True)
        self._info_path.write_text(json.dumps(info, indent=2) + "\n")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "fit", status="running")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        interrupted = trainer.interrupted
        self._write(trainer, pl_module, stage, status="interrupted" if interrupted else "finished")


class ProjectCLI(LightningCLI):
    """LightningCLI with the project's run folders, loggers and run records (see the module docstring)."""

    def __init__(
        self,
        model_class: type[LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | None = None,
        *,
        paper: str,
        runs_dir: str | Path = "runs",
        **kwargs: Any,
    ) -> None:
        self.paper = paper
        self.runs_dir = Path(runs_dir)
        kwargs.setdefault("save_config_callback", RunInfo)
        trainer_defaults = dict(kwargs.pop("trainer_defaults", None) or {})
        callbacks = trainer_defaults.get("callbacks", [])
        trainer_defaults["callbacks"] = [*(callbacks if isinstance(callbacks, list) else [callbacks])]
        trainer_defaults["callbacks"].append(DestroyProcessGroup())
        super().__init__(model_class, datamodule_class, trainer_defaults=trainer_defaults, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--exp", type=str | None, default=None, help="Experiment name (default: overlays)."
        )
        parser.add_argument("--runs_dir", type=str | None, default=None, help="Root of run folders (runs/).")

    def _subconfig(self) -> Any:
        return self.config.get(str(self.subcommand), self.config)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self._subconfig()
        configs = cfg.get("config") or []
        exp = cfg.get("exp") or experiment_name([str(p) for p in configs])
        seed = cfg.get("seed_everything")
        runs_dir = Path(cfg.get("runs_dir") or self.runs_dir)
        self.save_config_kwargs = {**self.save_config_kwargs, "paper": self.paper, "exp": exp}
        if cfg.get("trainer", {}).get("logger") in (None, True):
            kwargs["logger"] = self._default_loggers(runs_dir, exp, seed)
        return super().instantiate_trainer(**kwargs)

    def _default_loggers(self, runs_dir: Path, exp: str, seed: Any) -> list[Logger]:
        # One version string for all DDP ranks: ranks launched later inherit it through the environment.
        version = os.environ.setdefault(RUN_VERSION_ENV, f"s{seed}-{time.strftime('%Y%m%d-%H%M%S')}")
        csv = CSVLogger(save_dir=str(runs_dir / self.paper), name=exp, version=version)
        loggers: list[Logger] = [csv]
        mode = os.environ.get("WANDB_MODE", "offline")
        if mode != "disabled":
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(
                WandbLogger(
                    project=self.paper,
                    group=exp,
                    name=f"{exp}-s{seed}",
                    save_dir=csv.log_dir,
                    offline=mode != "online",
                )
            )
        return loggers
