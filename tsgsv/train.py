"""``python -m tsgsv.train fit|validate|test --config tsgsv/configs/paper.yaml [--config ...]``."""

from lightning.pytorch.cli import LightningArgumentParser

from common.cli import ProjectCLI
from tsgsv.data import TSGSVDataModule
from tsgsv.module import TSGSVLitModule


class TSGSVCLI(ProjectCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        # stated once, in data: the memory sizes cut the windows and size the model (spec §2)
        for key in ("long_mem", "short_mem", "future_mem", "max_sent_len"):
            parser.link_arguments(f"data.{key}", f"model.config.{key}")


def main(args: list[str] | None = None) -> TSGSVCLI:
    return TSGSVCLI(TSGSVLitModule, TSGSVDataModule, paper="tsgsv", args=args)


if __name__ == "__main__":
    main()
