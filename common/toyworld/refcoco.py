"""Toy-world writers for referential comprehension (Pink, arXiv 2310.00582): RefCOCO and Pink-style sources.

Writers register themselves with :func:`common.toyworld.writers.register_writer` when this module is imported
(``common/toyworld/__init__.py`` imports it).

* ``refcoco``: the layout of ``lichengunc/refer``: ``images/*.png``, COCO-style ``instances.json``
  (``bbox`` is ``[x, y, w, h]``) and ``refs(unc).json``, the safe JSON form of the official pickle
  ``refs(unc).p`` (a list of ``{ref_id, ann_id, image_id, split, sentences: [{sent_id, sent, raw, tokens}],
  category_id, file_name}``).
* ``pink_rc``: the region-level sources Pink's RC task sampler reads (Visual Genome style, one image a line):
  ``{train,val}.jsonl`` lines ``{id, image, width, height, objects: [{id, bbox xyxy, category, name,
  description}], relations: [{subject, predicate, object}], caption}``, plus LLaVA's caption format for
  stage 1, ``llava_pretrain.json`` (``[{id, image, conversations: [{from: human|gpt, value}]}]``).

Relations use the predicates ``left of``, ``right of``, ``above``, ``below`` and hold only with a clear gap
between the two boxes. Both writers save ``toyworld.json`` with each image's scene, boxes and expressions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from common.toyworld.language import caption, refer
from common.toyworld.scene import Scene, object_boxes, render_image, sample_scene
from common.toyworld.writers import META_FILE, WriteContext, _check_common, register_writer, write_json

PREDICATES = ("left of", "right of", "above", "below")
SPLITS = ("train", "val", "test")


@dataclass
class RCOptions:
    """Options of the ``refcoco`` and ``pink_rc`` writers."""

    size: int = field(default=64, metadata={"help": "image side in pixels (even)"})
    min_objects: int = field(default=2, metadata={"help": "fewest objects per image"})
    max_objects: int = field(default=4, metadata={"help": "most objects per image"})
    large_prob: float = field(
        default=0.8, metadata={"help": "probability that an object is large (resampled scenes favour large)"}
    )
    val_fraction: float = field(default=0.1, metadata={"help": "fraction of images in the val split"})
    test_fraction: float = field(default=0.1, metadata={"help": "fraction of images in the test split"})
    relation_gap: int = field(default=2, metadata={"help": "pixels between boxes for a relation to hold"})
    grid_positions: int = field(
        default=0,
        metadata={
            "help": "> 0: snap every object's centre to the middle of a cell of this many pixels (e.g. the "
            "ViT patch), one object a cell, so a box follows from the cell and the size (toy grounding aid)"
        },
    )
    train_single_fraction: float = field(
        default=0.0,
        metadata={
            "help": "fraction of train-split images drawn with a single object (a localisation curriculum "
            "for a model learning from scratch; val and test keep min_objects..max_objects)"
        },
    )
    position_captions: bool = field(
        default=False,
        metadata={
            "help": "captions name every object with its place on a 3x3 grid ('the red star is at the top "
            "left.'), so a caption-trained tower and projector learn where things are (toy grounding aid)"
        },
    )

    def __post_init__(self) -> None:
        _check_common(self)
        if self.grid_positions < 0 or self.grid_positions > self.size // 2:
            raise ValueError(f"--grid-positions must be in [0, size / 2], got {self.grid_positions}")
        if not 0.0 <= self.train_single_fraction <= 1.0:
            raise ValueError(f"--train-single-fraction must be in [0, 1], got {self.train_single_fraction}")
        if not 0.0 <= self.large_prob <= 1.0:
            raise ValueError(f"--large-prob must be in [0, 1], got {self.large_prob}")
        if not (
            0 <= self.val_fraction and 0 <= self.test_fraction and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError("--val-fraction and --test-fraction must be >= 0 and sum below 1")


def split_of(i: int, num: int, opts: RCOptions) -> str:
    """``train``, ``val`` or ``test``: the last images go to test, the ones before them to val."""
    n_test, n_val = round(num * opts.test_fraction), round(num * opts.val_fraction)
    if i >= num - n_test:
        return "test"
    return "val" if i >= num - n_test - n_val else "train"


def snap_to_grid(scene: Scene, size: int, cell: int) -> bool:
    """Move each object's centre pixel to the middle of its ``cell``-pixel grid cell (in place).

    Returns False when two objects land in the same cell.
    """
    cells = set()
    for obj in scene.objects:
        px = [cell * (min(int(v * size), size - 1) // cell) + cell // 2 for v in (obj.x, obj.y)]
        obj.x, obj.y = ((p + 0.5) / size for p in px)
        cells.add(tuple(px))
    return len(cells) == len(scene.objects)


def sample_rc_scene(
    rng: np.random.Generator, opts: RCOptions, tries: int = 64, single: bool = False
) -> Scene:
    """A still scene; drawn again (up to ``tries``) while a small object loses a ``large_prob`` coin toss.

    With ``grid_positions`` the centres are snapped to the grid, and scenes with two objects in one cell
    are drawn again as well. ``single``: one object, whatever ``min_objects``/``max_objects`` say.
    """
    num = (1, 1) if single else (opts.min_objects, opts.max_objects)
    scene = sample_scene(rng, num_objects=num, num_events=0, num_frames=1)
    for _ in range(tries):
        ok = all(o.size == "large" or rng.random() >= opts.large_prob for o in scene.objects)
        if opts.grid_positions:
            ok = snap_to_grid(scene, opts.size, opts.grid_positions) and ok
        if ok:
            break
        scene = sample_scene(rng, num_objects=num, num_events=0, num_frames=1)
    return scene


def relation(a: list[int], b: list[int], gap: int = 2) -> str | None:
    """The predicate that holds for box ``a`` relative to box ``b`` (xyxy pixels), or None.

    Horizontal relations win over vertical ones; a relation needs a gap of at least ``gap`` pixels.
    """
    if a[2] + gap <= b[0]:
        return "left of"
    if b[2] + gap <= a[0]:
        return "right of"
    if a[3] + gap <= b[1]:
        return "above"
    if b[3] + gap <= a[1]:
        return "below"
    return None


ROWS = ("top", "middle", "bottom")
COLS = ("left", "centre", "right")


def place(box: list[int], size: int) -> str:
    """The 3x3-grid place of a box's centre: ``top left`` ... ``middle centre`` ... ``bottom right``."""
    cx, cy = (box[0] + box[2]) / 2 / size, (box[1] + box[3]) / 2 / size
    return f"{ROWS[min(int(cy * 3), 2)]} {COLS[min(int(cx * 3), 2)]}"


def position_caption(objects: list[dict[str, Any]], size: int) -> str:
    """``the red star is at the top left. the green square is at the bottom right.``"""
    return " ".join(f"the {o['name']} is at the {place(o['bbox'], size)}." for o in objects)


def annotate(scene: Scene, rng: np.random.Generator, opts: RCOptions) -> dict[str, Any]:
    """Boxes, names, referring expressions, relations and a caption of one still scene."""
    boxes, visible = object_boxes(scene, opts.size)
    objects = []
    for k, obj in enumerate(scene.objects):
        if not visible[k]:
            continue
        ref = refer(scene, k, rng, "en")
        objects.append(
            {
                "id": k,
                "bbox": [int(v) for v in boxes[k]],
                "category": obj.shape,
                "name": f"{obj.colour} {obj.shape}",
                "description": ref.text if ref is not None else None,
            }
        )
    relations = []
    for a in objects:
        for b in objects:
            if a["id"] != b["id"] and (pred := relation(a["bbox"], b["bbox"], opts.relation_gap)):
                relations.append({"subject": a["id"], "predicate": pred, "object": b["id"]})
    text = caption(scene, rng, "en", "image").text
    if opts.position_captions:
        text = position_caption(objects, opts.size)
    return {"objects": objects, "relations": relations, "caption": text}


def _render(ctx: WriteContext, i: int, opts: RCOptions) -> tuple[str, Scene, dict[str, Any]]:
    from PIL import Image

    rng = ctx.rng(i)
    frac = opts.train_single_fraction  # no draw at 0, so the default data stay as they were
    single = frac > 0 and split_of(i, ctx.num, opts) == "train" and rng.random() < frac
    scene = sample_rc_scene(rng, opts, single=single)
    rel = f"images/{i:06d}.png"
    Image.fromarray(render_image(scene, opts.size)).save(ctx.root / rel, format="PNG")
    return rel, scene, annotate(scene, ctx.rng(i, 1), opts)


@register_writer(
    "refcoco", RCOptions, help="RefCOCO (lichengunc/refer): instances.json, refs(unc).json, images"
)
def write_refcoco(ctx: WriteContext) -> None:
    """RefCOCO layout with one ref per uniquely described object; splits train/val/test."""
    o: RCOptions = ctx.options
    (ctx.root / "images").mkdir()
    images, annotations, refs, meta = [], [], [], []
    from common.toyworld.scene import SHAPES

    categories = [{"id": c + 1, "name": s, "supercategory": "shape"} for c, s in enumerate(SHAPES)]
    for i in ctx.track(range(ctx.num), total=ctx.num):
        rel, scene, ann = _render(ctx, i, o)
        split = split_of(i, ctx.num, o)
        images.append({"id": i, "file_name": rel, "width": o.size, "height": o.size})
        for obj in ann["objects"]:
            x0, y0, x1, y1 = obj["bbox"]
            ann_id = i * 100 + obj["id"]
            cat = SHAPES.index(obj["category"]) + 1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
            if obj["description"]:
                sent = obj["description"]
                refs.append(
                    {
                        "ref_id": len(refs),
                        "ann_id": ann_id,
                        "image_id": i,
                        "split": split,
                        "category_id": cat,
                        "file_name": rel,
                        "sentences": [
                            {"sent_id": len(refs), "sent": sent, "raw": sent, "tokens": sent.split()}
                        ],
                    }
                )
        meta.append({"image": rel, "split": split, "scene": scene.to_dict(), **ann})
    write_json(
        ctx.root / "instances.json", {"images": images, "annotations": annotations, "categories": categories}
    )
    write_json(ctx.root / "refs(unc).json", refs)
    write_json(ctx.root / META_FILE, {"format": "refcoco", "images": meta})


@register_writer(
    "pink_rc", RCOptions, help="Pink RC sources: VG-style {train,val,test}.jsonl, LLaVA captions"
)
def write_pink_rc(ctx: WriteContext) -> None:
    """Region-level jsonl per split and ``llava_pretrain.json`` captions of the train images."""
    o: RCOptions = ctx.options
    (ctx.root / "images").mkdir()
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    llava, meta = [], []
    for i in ctx.track(range(ctx.num), total=ctx.num):
        rel, scene, ann = _render(ctx, i, o)
        split = split_of(i, ctx.num, o)
        record = {"id": i, "image": rel, "width": o.size, "height": o.size, **ann}
        lines[split].append(json.dumps(record))
        if split == "train":
            llava.append(
                {
                    "id": f"{i:06d}",
                    "image": rel,
                    "conversations": [
                        {"from": "human", "value": "<image>\nDescribe the image briefly."},
                        {"from": "gpt", "value": ann["caption"]},
                    ],
                }
            )
        meta.append({"image": rel, "split": split, "scene": asdict(scene)})
    for split, rows in lines.items():
        (ctx.root / f"{split}.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    write_json(ctx.root / "llava_pretrain.json", llava)
    write_json(ctx.root / META_FILE, {"format": "pink_rc", "images": meta})
