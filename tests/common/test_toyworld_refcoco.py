"""The toy-world RefCOCO and Pink-source writers: formats, boxes consistent with the scene, relations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.toyworld import generate
from common.toyworld.refcoco import RCOptions, place, relation


def test_relation_needs_a_clear_gap() -> None:
    assert relation([0, 0, 10, 10], [12, 0, 20, 10]) == "left of"
    assert relation([12, 0, 20, 10], [0, 0, 10, 10]) == "right of"
    assert relation([0, 0, 10, 10], [0, 12, 10, 20]) == "above"
    assert relation([0, 12, 10, 20], [0, 0, 10, 10]) == "below"
    assert relation([0, 0, 10, 10], [11, 0, 20, 10]) is None  # 1 px gap < 2


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="min-objects"):
        RCOptions(min_objects=3, max_objects=2)


def test_refcoco_writer_boxes_match_the_scene(tmp_path: Path) -> None:
    root = generate("refcoco", tmp_path / "rc", num=20, seed=0)
    inst = json.loads((root / "instances.json").read_text())
    refs = json.loads((root / "refs(unc).json").read_text())
    meta = json.loads((root / "toyworld.json").read_text())["images"]
    anns = {a["id"]: a for a in inst["annotations"]}
    assert {r["split"] for r in refs} <= {"train", "val", "test"} and len(refs) > 20
    for ref in refs:
        ann = anns[ref["ann_id"]]
        x, y, w, h = ann["bbox"]
        obj = next(
            o for o in meta[ref["image_id"]]["objects"] if ref["ann_id"] == ref["image_id"] * 100 + o["id"]
        )
        assert obj["bbox"] == [x, y, x + w, y + h] and ref["sentences"][0]["sent"] == obj["description"]
        image = np.asarray(Image.open(root / ref["file_name"]))
        assert image.shape == (64, 64, 3)
        # the object differs from the background inside its box
        assert image[y : y + h, x : x + w].std() > 0


def test_pink_writer_writes_splits_relations_and_llava_captions(tmp_path: Path) -> None:
    root = generate("pink_rc", tmp_path / "p", num=30, seed=1)
    rows = {
        s: [json.loads(x) for x in (root / f"{s}.jsonl").read_text().splitlines()]
        for s in ("train", "val", "test")
    }
    assert [len(rows[s]) for s in ("train", "val", "test")] == [24, 3, 3]
    for row in rows["train"]:
        assert 2 <= len(row["objects"]) <= 4
        boxes = {o["id"]: o["bbox"] for o in row["objects"]}
        for rel in row["relations"]:
            assert relation(boxes[rel["subject"]], boxes[rel["object"]]) == rel["predicate"]
    llava = json.loads((root / "llava_pretrain.json").read_text())
    assert len(llava) == 24 and llava[0]["conversations"][1]["from"] == "gpt"
    assert generate("pink_rc", tmp_path / "p", num=30, seed=1) == root  # cached: same spec kept


def test_position_captions_name_each_object_and_its_grid_place(tmp_path: Path) -> None:
    assert place([0, 0, 10, 10], 64) == "top left" and place([40, 25, 60, 38], 64) == "middle right"
    plain = generate("pink_rc", tmp_path / "a", num=10, seed=2)
    pos = generate("pink_rc", tmp_path / "b", num=10, seed=2, position_captions=True)
    rows_a = [json.loads(x) for x in (plain / "train.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (pos / "train.jsonl").read_text().splitlines()]
    for a, b in zip(rows_a, rows_b, strict=True):
        assert a["objects"] == b["objects"] and a["relations"] == b["relations"]  # same scenes and boxes
        assert b["caption"] == " ".join(
            f"the {o['name']} is at the {place(o['bbox'], 64)}." for o in b["objects"]
        )
    llava = json.loads((pos / "llava_pretrain.json").read_text())
    assert llava[0]["conversations"][1]["value"] == rows_b[0]["caption"]


def test_grid_positions_put_each_object_in_its_own_cell_centre(tmp_path: Path) -> None:
    root = generate("pink_rc", tmp_path / "g", num=20, seed=3, grid_positions=8)
    for line in (root / "train.jsonl").read_text().splitlines():
        objects = json.loads(line)["objects"]
        assert 2 <= len(objects) <= 4
        for o in objects:  # each object's box is centred within a pixel of its cell's middle
            cx = (o["bbox"][0] + o["bbox"][2]) / 2
            if 0 < o["bbox"][0] and o["bbox"][2] < 64:  # not clipped at the border
                assert abs(cx % 8 - 4.5) <= 1.5, o
    with pytest.raises(ValueError, match="grid-positions"):
        RCOptions(grid_positions=-1)


def test_train_single_fraction_thins_the_train_split_only(tmp_path: Path) -> None:
    base = generate("pink_rc", tmp_path / "a", num=30, seed=4)
    cur = generate("pink_rc", tmp_path / "b", num=30, seed=4, train_single_fraction=1.0)
    counts = lambda root, split: [  # noqa: E731
        len(json.loads(x)["objects"]) for x in (root / f"{split}.jsonl").read_text().splitlines()
    ]
    assert set(counts(cur, "train")) == {1}
    assert min(counts(base, "train")) >= 2
    for split in ("val", "test"):  # evaluation images keep 2-4 objects, the same scenes as without the option
        assert counts(cur, split) == counts(base, split) and min(counts(cur, split)) >= 2
    with pytest.raises(ValueError, match="train-single-fraction"):
        RCOptions(train_single_fraction=1.5)
