"""Train or evaluate M2-Encoder: ``python -m m2_encoder.train fit|validate|test --config ...``."""

from common.cli import ProjectCLI
from m2_encoder.data import M2EncoderDataModule
from m2_encoder.module import M2EncoderLitModule


def main(args: list[str] | None = None) -> None:
    ProjectCLI(M2EncoderLitModule, M2EncoderDataModule, paper="m2_encoder", args=args)


if __name__ == "__main__":
    main()
