"""``make data-m2_encoder``: where to get M2-Encoder's evaluation data, and its preparation (spec section 4).

Without options it prints where each dataset comes from. Options:

* ``--toy``: write the toy-world dataset of ``tiny.yaml`` (images, EN/ZH jsonl, scene zero-shot files).
* ``--karpathy JSON --out FILE``: build a retrieval test jsonl (``{"image", "caption": [5 captions]}``) from
  Karpathy's ``dataset_flickr30k.json`` / ``dataset_coco.json`` test split (the shipped Flickr30K file has one
  caption per image, spec quirk 2).
* ``--imagenet VAL_DIR``: write ``imagenet_val.jsonl`` (``{"image", "label"}``, classes in sorted folder
  order)
  and OpenAI CLIP's English class names and 80 templates (from ``open_clip``) into ``--root``.
* ``--filter IN --out FILE``: BM-6B's two cleaning filters: drop captions shorter than 5 characters and
  images with an aspect ratio above 3 (caption rewriting is out of scope).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SOURCES = """M2-Encoder evaluation data (put files under data/m2_encoder/, see configs/paper.yaml):
  COCO / Flickr30K Karpathy test: images from cocodataset.org and the Flickr30K site; captions from Karpathy's
    dataset_coco.json / dataset_flickr30k.json -> --karpathy JSON --out FILE
  COCO-CN test and Flickr30K-CN test: alipay/Ant-Multi-Modal-Framework prj/M2_Encoder/data/*.jsonl
  ImageNet val (ILSVRC2012, image-net.org) -> --imagenet VAL_DIR; ImageNet-CN class names and templates:
    Chinese-CLIP (OFA-Sys/Chinese-CLIP, cn_clip imagenet prompts) -> imagenet_{classnames,templates}_zh.txt
  Tokenizer: vlmo/tokenizer/sp.model of the same repository -> checkpoints/m2_encoder/sp.model
  Weights: ModelScope M2Cognition/M2-Encoder (0.4B), M2_Encoder_Large (1B), M2_Encoder_Huge (10B)"""


def karpathy_to_jsonl(path: str, out: str, split: str = "test") -> int:
    data = json.loads(Path(path).read_text())
    lines = []
    for img in data["images"]:
        if img.get("split") != split:
            continue
        folder = img.get("filepath", "")
        caps = [s["raw"].strip() for s in img["sentences"]]
        lines.append(json.dumps({"image": str(Path(folder) / img["filename"]), "caption": caps}))
    Path(out).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def imagenet_files(val_dir: str, root: str) -> int:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    classes = sorted(p.name for p in Path(val_dir).iterdir() if p.is_dir())
    if len(classes) != len(IMAGENET_CLASSNAMES):
        raise ValueError(
            f"{val_dir}: expected {len(IMAGENET_CLASSNAMES)} class folders, found {len(classes)}"
        )
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"image": str(p.resolve()), "label": i})
        for i, c in enumerate(classes)
        for p in sorted((Path(val_dir) / c).iterdir())
    ]
    (out / "imagenet_val.jsonl").write_text("".join(line + "\n" for line in lines))
    (out / "imagenet_classnames_en.txt").write_text("".join(c + "\n" for c in IMAGENET_CLASSNAMES))
    templates = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    (out / "imagenet_templates_en.txt").write_text("".join(t + "\n" for t in templates))
    return len(lines)


def filter_pairs(path: str, out: str, image_root: str = ".") -> tuple[int, int]:
    from PIL import Image

    from m2_encoder.data import read_imagetext_jsonl

    kept = []
    records = read_imagetext_jsonl(path)
    for r in records:
        caps = [c for c in r["caption"] if len(c.strip()) >= 5]
        if not caps:
            continue
        with Image.open(Path(image_root) / r["image"]) as im:
            w, h = im.size
        if max(w, h) / max(1, min(w, h)) > 3:
            continue
        kept.append(json.dumps({"image": r["image"], "caption": caps}, ensure_ascii=False))
    Path(out).write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len(kept), len(records)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="M2-Encoder data: sources and preparation")
    parser.add_argument("--root", default="data/m2_encoder")
    parser.add_argument("--toy", action="store_true")
    parser.add_argument("--karpathy")
    parser.add_argument("--imagenet")
    parser.add_argument("--filter")
    parser.add_argument("--image-root", default=".")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    print(SOURCES)
    if args.toy:
        from m2_encoder.data import M2EncoderDataModule

        dm = M2EncoderDataModule(max_text_len=24, image_size=64, toy_num=1000)
        dm.prepare_data()
        print(f"toy world written to {dm.root}")
    if args.karpathy:
        print(f"{karpathy_to_jsonl(args.karpathy, args.out)} test images written to {args.out}")
    if args.imagenet:
        print(f"{imagenet_files(args.imagenet, args.root)} ImageNet val images listed in {args.root}")
    if args.filter:
        kept, total = filter_pairs(args.filter, args.out, args.image_root)
        print(f"kept {kept} of {total} pairs -> {args.out}")


if __name__ == "__main__":
    main()
