"""Apply a Pink checkpoint to an image: ``make predict-pink_rc CKPT=... ARGS="--image x.png --refer .."``.

``--refer "the red star"`` asks the grounding question (VisualGrounding template 0) and draws the parsed box;
``--prompt "..."`` asks any instruction (markers such as ``<loc>[0.100,0.200,0.300,0.400]</loc>`` allowed) and
draws every box found in the answer. Prints the answer, the parsed boxes in pixels and the PNG path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pink_rc.data import TEMPLATES, ImageStore, chat_prompt, collate
from pink_rc.metrics import parse_boxes
from pink_rc.module import PinkLitModule


def load(ckpt: str | Path) -> PinkLitModule:
    """The LitModule of a Lightning checkpoint, with its tokenizer; raises if the file is missing."""
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"no checkpoint at {Path(ckpt).resolve()}")
    lit = PinkLitModule.load_from_checkpoint(
        str(ckpt), map_location="cpu", init_from=None, weights_only=False
    )
    return lit.eval()


def answer(lit: PinkLitModule, image: str | Path, instruction: str) -> str:
    """Greedy answer of one instruction about one image."""
    vcfg = lit.model.vision.config
    store = ImageStore(Path(image).parent, vcfg.image_size)
    ids = chat_prompt(lit.tokenizer, instruction, lit.model.num_patches)
    batch = collate(
        [{"input_ids": ids, "pixel_values": store(Path(image).name)}], lit.tokenizer.pad_token_id, True
    )
    with torch.no_grad():
        return lit.generate_text(batch)[0]


def draw(image: str | Path, boxes: list[list[float]], out: str | Path, label: str) -> None:
    """Save the image (upscaled 4x) with the boxes drawn on it."""
    from PIL import Image, ImageDraw

    im = Image.open(image).convert("RGB")
    scale = 4
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    d = ImageDraw.Draw(im)
    for b in boxes:
        d.rectangle([v * scale for v in b], outline=(255, 0, 0), width=2)
    d.text((2, 2), label[:60], fill=(255, 255, 255))
    im.save(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--image", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--refer", help="a referring expression to ground")
    group.add_argument("--prompt", help="any instruction")
    p.add_argument("--out", default=None, help="PNG path (default: <image>_pink.png)")
    args = p.parse_args(argv)
    lit = load(args.ckpt)
    instruction = args.prompt or TEMPLATES["VisualGrounding"][0].format(d=args.refer)
    text = answer(lit, args.image, instruction)
    from PIL import Image

    w, h = Image.open(args.image).size
    boxes = parse_boxes(text, w, h)
    out = args.out or str(Path(args.image).with_suffix("")) + "_pink.png"
    draw(args.image, boxes, out, args.refer or args.prompt)
    print(
        f"instruction: {instruction}\nanswer: {text}\nboxes (px): {[[round(v, 1) for v in b] for b in boxes]}"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
