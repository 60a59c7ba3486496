"""The toy world for M2-Encoder (spec section 8): bilingual image-text pairs and a scene-classification split.

:func:`prepare_toy` writes (or keeps) ``common.toyworld``'s ``imagetext`` dataset under ``root`` and, beside
it, the zero-shot split over the toy world's scene classes in this project's zero-shot format: the test
images with their scene index (``zeroshot_scene_test.jsonl``), the class names in English and Chinese from the
toy lexicon (``classnames_{en,zh}.txt``) and a few prompt templates per language (``templates_{en,zh}.txt``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.toyworld import (
    SCENES,
    WriteContext,
    caption_pair,
    generate,
    labels,
    register_writer,
    render_image,
    sample_scene,
)
from common.toyworld.language import word_for

TEMPLATES = {
    "en": ["a photo of the {}.", "it takes place in the {}.", "there is something in the {}.", "{}"],
    "zh": ["一张{}的图片。", "场景是{}。", "在{}里，有一个东西。", "{}"],
}


def scene_classnames(lang: str) -> list[str]:
    """The toy lexicon's first word for each scene class, in :data:`SCENES` order."""
    return [word_for(f"scene:{s}", lang)[0] for s in SCENES]


@dataclass
class FullCaptionOptions:
    """Options of the ``m2_imagetext_full`` writer (the ``imagetext`` writer's, less the families)."""

    captions_per_image: int = field(default=3, metadata={"help": "captions per image and language"})
    size: int = field(default=64, metadata={"help": "image side in pixels (even)"})
    test_fraction: float = field(default=0.2, metadata={"help": "fraction of images in the test files"})
    min_objects: int = field(default=1, metadata={"help": "fewest objects per image"})
    max_objects: int = field(default=3, metadata={"help": "most objects per image"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= --min-objects <= --max-objects, got {self.min_objects}")


@register_writer(
    "m2_imagetext_full", FullCaptionOptions, help="imagetext with captions stating the full content"
)
def write_imagetext_full(ctx: WriteContext) -> None:
    """``imagetext``'s files and ``toyworld.json`` fields, but every caption states the scene and every
    object with its colour and size (``caption_pair(..., full=True)``; the phrasing still varies)."""
    from PIL import Image

    o: FullCaptionOptions = ctx.options
    (ctx.root / "images").mkdir()
    num_test = round(ctx.num * o.test_fraction)
    lines: dict[str, list[str]] = {f"{s}_{lang}": [] for s in ("train", "test") for lang in ("en", "zh")}
    meta = []
    for i in ctx.track(range(ctx.num)):
        scene = sample_scene(
            ctx.rng(i), num_objects=(o.min_objects, o.max_objects), num_events=0, num_frames=1
        )
        rel = f"images/{i:06d}.png"
        Image.fromarray(render_image(scene, o.size)).save(ctx.root / rel, format="PNG")
        rng = ctx.rng(i, 1)
        pairs = [caption_pair(scene, rng, medium="image", full=True) for _ in range(o.captions_per_image)]
        split = "test" if i >= ctx.num - num_test else "train"
        for lang, pick in (("en", 0), ("zh", 1)):
            record = {"image": rel, "caption": [p[pick].text for p in pairs]}
            lines[f"{split}_{lang}"].append(json.dumps(record, ensure_ascii=False))
        meta.append(
            {
                "image": rel,
                "split": split,
                "scene": scene.to_dict(),
                "labels": labels(scene),
                "captions": [
                    {"en": en.text, "zh": zh.text, "content": asdict(en.content)} for en, zh in pairs
                ],
            }
        )
    for key, rows in lines.items():
        (ctx.root / f"{key}.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    (ctx.root / "toyworld.json").write_text(
        json.dumps({"format": "m2_imagetext_full", "images": meta}, ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
    )


def prepare_toy(
    root: str | Path,
    num: int,
    seed: int,
    vocab_size: int = 1000,
    num_test: int | None = None,
    full_captions: bool = False,
) -> Path:
    """Write the toy image-text dataset and its zero-shot files under ``root`` (kept when up to date).

    ``num_test`` test images (the last ones; None: the writer's default fifth of ``num``); the rest train.
    ``full_captions``: every caption states the whole content (``m2_imagetext_full``), not a random part.
    """
    root = Path(root)
    options = {}
    if num_test is not None:
        if not 0 < num_test < num:
            raise ValueError(f"num_test must be in (0, {num}), got {num_test}")
        options["test_fraction"] = num_test / num
    generate("m2_imagetext_full" if full_captions else "imagetext", out=root, num=num, seed=seed, **options)
    meta = json.loads((root / "toyworld.json").read_text(encoding="utf-8"))
    lines = [
        json.dumps({"image": im["image"], "label": SCENES.index(im["scene"]["scene"])})
        for im in meta["images"]
        if im["split"] == "test"
    ]
    files = {"zeroshot_scene_test.jsonl": "".join(line + "\n" for line in lines)}
    for lang in ("en", "zh"):
        files[f"classnames_{lang}.txt"] = "".join(n + "\n" for n in scene_classnames(lang))
        files[f"templates_{lang}.txt"] = "".join(t + "\n" for t in TEMPLATES[lang])
    for name, text in files.items():
        path = root / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    return root
