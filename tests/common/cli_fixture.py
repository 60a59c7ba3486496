"""A miniature paper for testing ``common.cli``: a linear classifier on two Gaussian blobs.

Run as ``python -m tests.common.cli_fixture fit --config ...``; the module mirrors a paper's
``module.py``/``data.py``/``train.py`` trio in one file.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

from common.cli import ProjectCLI


class BlobsDataModule(LightningDataModule):
    """Two Gaussian blobs in ``dim`` dimensions; batches are ``(x, y)`` tuples."""

    def __init__(self, num_samples: int = 256, dim: int = 4, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        gen = torch.Generator().manual_seed(self.hparams.seed)
        y = torch.randint(0, 2, (self.hparams.num_samples,), generator=gen)
        x = torch.randn(self.hparams.num_samples, self.hparams.dim, generator=gen) + 2.0 * y[:, None]
        self.train_set = TensorDataset(x, y)
        self.val_set = TensorDataset(x[:64], y[:64])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size)


class BlobsLitModule(LightningModule):
    """Logistic regression with the project's metric keys."""

    headline_metric = "val/acc"
    chance_level = 0.5

    def __init__(self, dim: int = 4, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(dim, 2)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.linear(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        acc = (self.linear(x).argmax(-1) == y).float().mean()
        self.log("val/acc", acc, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main(args: list[str] | None = None) -> ProjectCLI:
    return ProjectCLI(BlobsLitModule, BlobsDataModule, paper="blobs", args=args)


if __name__ == "__main__":
    main()
