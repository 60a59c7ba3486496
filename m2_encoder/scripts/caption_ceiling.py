"""How ambiguous the toy retrieval test set is: for each test caption, the test images its content fits.

A caption states some facts (``toyworld.json``'s ``content``: maybe the scene, some objects with maybe their
colour and size). Every test image with that scene and with distinct objects matching every mentioned object
fits it equally well as far as the caption says. A model that scores all fitting images equally and breaks
ties at random reaches a text-to-image R@1 of (ground-truth images among them) / (fitting images): the
ceiling printed here (it ignores what a caption leaves out, which a model could still exploit a little).

Usage: ``python -m m2_encoder.scripts.caption_ceiling data/toy/m2_encoder_imagetext [--lang en]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

from m2_encoder.tokenizer import preprocess_text


def fits(content: dict[str, Any], scene: dict[str, Any]) -> bool:
    """Whether ``scene`` (a toyworld scene dict) agrees with every fact of caption ``content``."""
    if content["scene"] is not None and content["scene"] != scene["scene"]:
        return False
    objs, ments = scene["objects"], content["objects"]
    for perm in itertools.permutations(range(len(objs)), len(ments)):
        if all(
            objs[p]["shape"] == m["shape"]
            and m["colour"] in (None, objs[p]["colour"])
            and m["size"] in (None, objs[p]["size"])
            for p, m in zip(perm, ments)
        ):
            return True
    return False


def ceiling(meta: dict[str, Any], lang: str = "en") -> dict[str, float]:
    """Mean fitting test images per caption, share of captions with one, and the tie-break R@1 ceiling (%)."""
    test = [im for im in meta["images"] if im["split"] == "test"]
    caps_of = [{preprocess_text(c[lang]) for c in im["captions"]} for im in test]
    counts, r1 = [], []
    for im in test:
        for c in im["captions"]:
            n = sum(fits(c["content"], o["scene"]) for o in test)
            gt = sum(preprocess_text(c[lang]) in caps for caps in caps_of)
            counts.append(n)
            r1.append(min(1.0, gt / n))
    return {
        "captions": len(counts),
        "images": len(test),
        "mean_fitting": statistics.mean(counts),
        "share_unique": sum(n == 1 for n in counts) / len(counts),
        "t2i_R@1_ceiling": 100.0 * statistics.mean(r1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="toy imagetext dataset folder (with toyworld.json)")
    parser.add_argument("--lang", default="en", choices=["en", "zh"])
    args = parser.parse_args(argv)
    meta = json.loads((Path(args.root) / "toyworld.json").read_text(encoding="utf-8"))
    print(json.dumps(ceiling(meta, args.lang), indent=2))


if __name__ == "__main__":
    main()
