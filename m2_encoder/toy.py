"""The toy world for M2-Encoder (spec section 8): bilingual image-text pairs and a scene-classification split.

:func:`prepare_toy` writes (or keeps) ``common.toyworld``'s ``imagetext`` dataset under ``root`` and, beside
it, the zero-shot split over the toy world's scene classes in this project's zero-shot format: the test
images with their scene index (``zeroshot_scene_test.jsonl``), the class names in English and Chinese from the
toy lexicon (``classnames_{en,zh}.txt``) and a few prompt templates per language (``templates_{en,zh}.txt``).
"""

from __future__ import annotations

import json
from pathlib import Path

from common.toyworld import SCENES, generate
from common.toyworld.language import word_for

TEMPLATES = {
    "en": ["a photo of the {}.", "it takes place in the {}.", "there is something in the {}.", "{}"],
    "zh": ["一张{}的图片。", "场景是{}。", "在{}里，有一个东西。", "{}"],
}


def scene_classnames(lang: str) -> list[str]:
    """The toy lexicon's first word for each scene class, in :data:`SCENES` order."""
    return [word_for(f"scene:{s}", lang)[0] for s in SCENES]


def prepare_toy(
    root: str | Path, num: int, seed: int, vocab_size: int = 1000, num_test: int | None = None
) -> Path:
    """Write the toy image-text dataset and its zero-shot files under ``root`` (kept when up to date).

    ``num_test`` test images (the last ones; None: the writer's default fifth of ``num``); the rest train.
    """
    root = Path(root)
    options = {}
    if num_test is not None:
        if not 0 < num_test < num:
            raise ValueError(f"num_test must be in (0, {num}), got {num_test}")
        options["test_fraction"] = num_test / num
    generate("imagetext", out=root, num=num, seed=seed, **options)
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
