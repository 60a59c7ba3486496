"""Apply a trained M2-Encoder to your own image and texts: ``make predict-m2_encoder CKPT=... ARGS="..."``.

``python -m m2_encoder.predict --ckpt RUN/checkpoints/x.ckpt --image photo.png --texts "a red circle" "海滩"``
prints the softmax over the texts (``exp(logit_vl_scale) * cos``) and writes the image beside a bar chart of
the scores (``--png``, default ``prediction.png``). The tokenizer and image size come from the checkpoint's
saved datamodule settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="M2-Encoder: score texts against an image")
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--texts", nargs="+", required=True)
    parser.add_argument("--png", default="prediction.png")
    args = parser.parse_args(argv)

    from PIL import Image

    from m2_encoder.data import image_transform
    from m2_encoder.module import M2EncoderLitModule
    from m2_encoder.tokenizer import BilingualTokenizer

    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)  # our own Lightning checkpoint
    module = M2EncoderLitModule.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    dh = ckpt.get("datamodule_hyper_parameters", {})
    sp = Path(dh.get("tokenizer_model", "sp_toy.model"))
    sp = sp if sp.is_absolute() else Path(dh.get("root", ".")) / sp
    tok = BilingualTokenizer(sp, dh.get("max_text_len", 52), dh.get("eos_id"), dh.get("cls_id"))
    with Image.open(args.image) as im:
        pil = im.convert("RGB")
    image = image_transform(module.arch.image_size, train=False)(pil)[None]
    batch = tok(args.texts)
    with torch.no_grad():
        img, txt = module.model(image, batch["text_ids"], batch["text_masks"])
        scale = module.model.logit_vl_scale.exp().clamp(max=100)
        probs = (scale * img @ txt.T).softmax(-1)[0]
    for text, p in sorted(zip(args.texts, probs.tolist()), key=lambda x: -x[1]):
        print(f"{p:6.3f}  {text}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "DejaVu Sans"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.5), gridspec_kw={"width_ratios": [1, 1.6]})
    ax0.imshow(pil)
    ax0.axis("off")
    ax1.barh(range(len(args.texts)), probs.numpy())
    ax1.set_yticks(range(len(args.texts)), [t[:40] for t in args.texts])
    ax1.invert_yaxis()
    ax1.set_xlabel("p(text | image)")
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
