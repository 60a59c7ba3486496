"""``python -m snp_s3.train fit|validate|test --config snp_s3/configs/paper.yaml [--config ...]``."""

from lightning.pytorch.cli import LightningArgumentParser

from common.cli import ProjectCLI
from snp_s3.data import SNPS3DataModule
from snp_s3.module import SNPS3LitModule


class SNPS3CLI(ProjectCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.task", "model.task")  # stated once: the stage (pretrain/retrieval/qa)


def main(args: list[str] | None = None) -> SNPS3CLI:
    return SNPS3CLI(SNPS3LitModule, SNPS3DataModule, paper="snp_s3", args=args)


if __name__ == "__main__":
    main()
