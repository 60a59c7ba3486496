"""``make data-pink_rc``: where Pink's datasets come from, and the one conversion they need.

Prints where to download each source (spec §4) and converts RefCOCO/RefCOCO+/RefCOCOg's
``refs(<split_by>).p`` (a pickle, the only form ``lichengunc/refer`` ships) into ``refs(<split_by>).json``
once, so that nothing is unpickled at training or evaluation time. Only the ``refs(*).p`` files under
``--refer-root`` are unpickled, once, here.

``python -m pink_rc.scripts.prepare_data [--refer-root data/pink_rc/refer]``
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

SOURCES = """\
Pink's data (spec §4); put each under data/pink_rc/ (or point the config at it):
  stage 1   LLaVA-CC3M-Pretrain-595K (chat.json + images)
            huggingface.co/datasets/liuhaotian/LLaVA-CC3M-Pretrain-595K
  stage 2   Pink SFT sources (VG RC tasks, LLaVA-Instruct, VQAv2 jsonl, A-OKVQA,
            Flickr30k Entities in Shikra's jsonl)
            huggingface.co/datasets/SY-Xuan/Pink_sft
            Visual Genome images: homes.cs.washington.edu/~ranjay/visualgenome
            COCO 2014/2017 images: cocodataset.org
            Flickr30k images: shannon.cs.illinois.edu/DenotationGraph
  bootstrap Objects365 (objects365.org) -> python -m pink_rc.scripts.bootstrap
  REC eval  RefCOCO/RefCOCO+/RefCOCOg from github.com/lichengunc/refer
            (refs(unc).p, refs(umd).p, instances.json)
            + COCO train2014 images; not HF re-exports (issue #12). Converted below.
"""


def convert_refs(folder: Path) -> list[Path]:
    """Write ``refs(X).json`` beside every ``refs(X).p`` in ``folder`` (kept if already converted)."""
    written = []
    for src in sorted(folder.glob("refs(*).p")):
        dst = src.with_suffix(".json")
        if dst.is_file():
            continue
        with open(src, "rb") as f:
            refs = pickle.load(
                f
            )  # the one sanctioned unpickling: official RefCOCO annotations, converted once
        dst.write_text(json.dumps(refs))
        written.append(dst)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--refer-root", default="data/pink_rc/refer", help="folder with refcoco/, refcoco+/, refcocog/"
    )
    args = p.parse_args(argv)
    print(SOURCES)
    root = Path(args.refer_root)
    folders = [d for d in sorted(root.glob("*")) if d.is_dir()] if root.is_dir() else []
    if not folders:
        print(f"no RefCOCO folders under {root.resolve()}: download them (see above), then run again")
    for d in folders:
        for out in convert_refs(d):
            print(f"converted {out}")


if __name__ == "__main__":
    main()
