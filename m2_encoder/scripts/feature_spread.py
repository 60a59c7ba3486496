"""Check a checkpoint for representation collapse: how alike the ITC features of unrelated inputs are.

Encodes ``--num`` random-noise images and random token sequences (seeded) and prints, per feature level, the
smallest pairwise cosine among the images, among the texts, and the mean image-text cosine. Values near 1
everywhere mean every input maps to one direction (the collapse seen in GBA ``buffer`` mode, see README).

Usage: ``python -m m2_encoder.scripts.feature_spread runs/m2_encoder/<exp>/<run>/checkpoints/<ckpt>.ckpt``
"""

from __future__ import annotations

import argparse

import torch

from m2_encoder.module import M2EncoderLitModule


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--num", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    module = M2EncoderLitModule.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    arch = module.arch
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.num, 3, arch.image_size, arch.image_size, generator=gen)
    ids = torch.randint(5, arch.vocab_size, (args.num, 12), generator=gen)
    with torch.no_grad():
        img = module.model.encode_image(images)
        txt = module.model.encode_text(ids, torch.ones_like(ids))
    for key in ("cls_feats", "cls_vlffn_feats"):
        a, b = img[key], txt[key]
        print(
            f"{key}: min image-image cos {(a @ a.T).min():.5f}, min text-text cos {(b @ b.T).min():.5f}, "
            f"mean image-text cos {(a @ b.T).mean():.5f}"
        )


if __name__ == "__main__":
    main()
