"""``python -m tpm_cl.train fit|validate|test --config tpm_cl/configs/paper.yaml [--config ...]``."""

from lightning.pytorch.cli import LightningArgumentParser

from common.cli import ProjectCLI
from tpm_cl.data import TPMCLDataModule
from tpm_cl.module import TPMCLLitModule


class TPMCLCLI(ProjectCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        # stated once, in data: the padded lengths fix the TPM-CL predictors' shapes (spec §2)
        for key in ("num_frames", "max_words", "image_size"):
            parser.link_arguments(f"data.{key}", f"model.config.{key}")


def main(args: list[str] | None = None) -> TPMCLCLI:
    return TPMCLCLI(TPMCLLitModule, TPMCLDataModule, paper="tpm_cl", args=args)


if __name__ == "__main__":
    main()
