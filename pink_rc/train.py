"""``python -m pink_rc.train fit|validate|test --config pink_rc/configs/paper.yaml [--config ...]``."""

from lightning.pytorch.cli import LightningArgumentParser

from common.cli import ProjectCLI
from pink_rc.data import PinkDataModule
from pink_rc.module import PinkLitModule


def vision_geometry(config: object, key: str) -> int:
    vis = dict(config["vision_config"] if hasattr(config, "__getitem__") else config.vision_config)
    size, patch = vis.get("image_size", 224), vis.get("patch_size", 14)  # CLIP ViT-L/14 at 224 (spec §2)
    return size if key == "image_size" else (size // patch) ** 2


class PinkCLI(ProjectCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("model.stage", "data.stage")
        for key in ("image_size", "num_patches"):
            parser.link_arguments(
                "model.config", f"data.{key}", compute_fn=lambda c, k=key: vision_geometry(c, k)
            )


def main(args: list[str] | None = None) -> PinkCLI:
    return PinkCLI(PinkLitModule, PinkDataModule, paper="pink_rc", args=args)


if __name__ == "__main__":
    main()
