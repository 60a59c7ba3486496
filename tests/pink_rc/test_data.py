"""Pink data: box text format and parser, metrics on hand-computed cases, task sampler, readers, prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pink_rc.data import (
    TASKS,
    build_tokenizer,
    chat_prompt,
    collate,
    conversation,
    in_quadrant,
    make_task,
    read_llava,
    read_pink_jsonl,
    read_refcoco,
    sample_task,
    with_answer,
)
from pink_rc.metrics import (
    format_box,
    format_boxes,
    gqa_scores,
    iou,
    majority_baseline,
    parse_box,
    parse_boxes,
    parse_count,
    random_box_baseline,
    rec_accuracy,
    vqa_soft_accuracy,
    vsr_correct,
)


def _obj(i: int, box: list[int], cat: str, name: str, desc: str | None) -> dict:
    return {"id": i, "bbox": box, "category": cat, "name": name, "description": desc}


RECORD = {
    "image": "x.png", "width": 200, "height": 100,
    "objects": [
        _obj(0, [10, 10, 30, 30], "circle", "red circle", "the red circle"),
        _obj(1, [100, 60, 180, 90], "square", "blue square", None),
        _obj(2, [150, 5, 160, 15], "circle", "green circle", "the top one"),
    ],
    "relations": [{"subject": 0, "predicate": "left of", "object": 1}],
}  # fmt: skip


def test_box_format_is_normalised_three_decimals_no_spaces() -> None:
    assert format_box([10, 20, 110, 70], 200, 100) == "[0.050,0.200,0.550,0.700]"
    assert format_box([-3, 0, 250, 100], 200, 100) == "[0.000,0.000,1.000,1.000]"


def test_several_boxes_are_sorted_by_area_ascending() -> None:
    big, small = [0, 0, 100, 100], [0, 0, 10, 10]
    assert format_boxes([big, small], 100, 100) == "[0.000,0.000,0.100,0.100] [0.000,0.000,1.000,1.000]"
    assert (
        format_boxes([big, small], 100, 100, ["a", "b"])
        == "[0.000,0.000,0.100,0.100] b [0.000,0.000,1.000,1.000] a"
    )


def test_parser_reads_boxes_back_in_pixels_even_with_spaced_digits() -> None:
    box, err = parse_box("[0.050,0.200,0.550,0.700]", 200, 100)
    assert not err and box == pytest.approx([10, 20, 110, 70])
    box, err = parse_box("it is at [ 0 . 0 5 0 , 0 . 2 0 0 , 0 . 5 5 0 , 0 . 7 0 0 ] .", 200, 100)
    assert not err and box == pytest.approx([10, 20, 110, 70])
    assert parse_boxes("[0.1,0.2] [0.000,0.000,0.500,0.500] x [0.100,0.100,0.200,0.200]", 10, 10) == [
        pytest.approx([0, 0, 5, 5]), pytest.approx([1, 1, 2, 2])
    ]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "",
        "N/A",
        "[0.100,0.200,0.300]",
        "[0.100,0.200,0.300,0.400,0.500]",
        "0.1,0.2,0.3,0.4",
        "\x00[[[",
        "9" * 500,
    ],
)
def test_malformed_outputs_are_counted_never_raise(text: str) -> None:
    box, err = parse_box(text, 64, 64)
    assert err and box == [0.0, 0.0, 1.0, 1.0]
    assert parse_boxes(text, 64, 64) == []


def test_parser_survives_random_garbage() -> None:
    rng = np.random.default_rng(0)
    alphabet = list("0123456789.,[] abc\n")
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 60))))
        parse_box(text, 64, 64), parse_boxes(text, 64, 64), parse_count(text)


def test_iou_and_rec_accuracy_on_hand_computed_cases() -> None:
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    # Pink's filter IoU: +1 on the intersection sides, plain areas: (6 * 11) / (100 + 100 - 66)
    assert iou([0, 0, 10, 10], [5, 0, 15, 10], inclusive=True) == pytest.approx(66 / 134)
    # exactly 0.5 is not a hit (strict >): boxes [0,0,10,10] and [0,0,10,20] -> 100/200
    assert rec_accuracy([[0, 0, 10, 20], None, [0, 0, 10, 10]], [[0, 0, 10, 10]] * 3) == pytest.approx(1 / 3)


def test_baselines_on_hand_computed_cases() -> None:
    cands = [[[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]]]
    assert random_box_baseline(cands, [[0, 0, 10, 10], [0, 0, 10, 10]]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert majority_baseline([1, 1, 2, 1, 3]) == pytest.approx(3 / 5)


def test_vqa_style_scores() -> None:
    assert vqa_soft_accuracy("Two", ["two", "2", "two", "two"]) == 1.0
    assert vqa_soft_accuracy("2", ["two", "2", "two"]) == pytest.approx(1 / 3)
    assert gqa_scores("the red car", "red car") == (1.0, 1.0)
    assert gqa_scores("car", "red car") == (0.0, 1.0)
    assert vsr_correct("Yes, it is.", 1) and not vsr_correct("No.", 1) and vsr_correct("no", 0)


def test_quadrant_is_strict_on_both_axes() -> None:
    anchor = [10, 10, 20, 20]  # centre (15, 15)
    assert in_quadrant([0, 0, 10, 10], anchor, "top-left")
    assert not in_quadrant([10, 0, 20, 10], anchor, "top-left")  # same x centre
    assert in_quadrant([20, 20, 30, 30], anchor, "bottom-right")


def test_each_task_gives_the_expected_answer_on_a_hand_made_image() -> None:
    rng = np.random.default_rng(0)
    q, a = make_task(RECORD, "Relation-1", rng)
    assert a == "Object1 is left of object2." and q.count("<loc>") == 2
    q, a = make_task(RECORD, "Relation-3", rng)
    assert "<rel>left of</rel>" in q and a == "red circle"
    q, a = make_task(RECORD, "Detection-2", rng)  # only circles have >= 2 instances
    assert a == "[0.750,0.050,0.800,0.150] [0.050,0.100,0.150,0.300]"
    for _ in range(20):
        q, a = make_task(RECORD, "VisualGrounding", rng)
        assert a in ("[0.050,0.100,0.150,0.300]", "[0.750,0.050,0.800,0.150]") and "<des>" in q
        q, a = make_task(RECORD, "Counting-1", rng)
        assert (a, "circle" in q) in (("2", True), ("1", False))


def test_sampler_covers_every_task_and_never_fails() -> None:
    rng = np.random.default_rng(1)
    seen = {sample_task(RECORD, rng, TASKS)[0] for _ in range(400)}
    assert seen == set(TASKS)
    lone = {**RECORD, "objects": RECORD["objects"][:1], "relations": []}
    for _ in range(50):
        sample_task(lone, rng, TASKS)


def test_tokenizer_splits_digits_and_keeps_markers_whole() -> None:
    tok = build_tokenizer(["the red circle"])
    toks = tok.tokenize("<des>the red circle</des> [0.125,0.500]")
    assert toks[:5] == ["<des>", "the", "red", "circle", "</des>"]
    assert toks[5:11] == ["[", "0", ".", "1", "2", "5"]
    assert tok.unk_token_id not in tok("Where is <loc>[0.125,0.5]</loc>?")["input_ids"]
    assert len(tok) == tok.num_orig_tokens + 13


def test_labels_supervise_only_the_answer_and_eos() -> None:
    tok = build_tokenizer(["red circle"])
    prompt = chat_prompt(tok, "Describe the region <loc>[0.100,0.100,0.200,0.200]</loc>.", num_patches=4)
    assert prompt.count(tok.convert_tokens_to_ids("<im_patch>")) == 4 and prompt[0] == tok.bos_token_id
    ids, labels = with_answer(tok, prompt, "red circle")
    assert labels[: len(prompt)] == [-100] * len(prompt)
    assert labels[len(prompt) :] == ids[len(prompt) :] and ids[-1] == tok.eos_token_id


def test_later_turns_supervise_only_their_answers() -> None:
    tok = build_tokenizer(["red circle blue star", "And this?"])
    prompt = chat_prompt(tok, "Name it.", num_patches=2)
    ids, labels = conversation(tok, prompt, "red circle", [("And this?", "blue star")])
    text = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
    assert text.split() == ["red", "circle", "</s>", "blue", "star", "</s>"]
    assert tok.decode(ids[len(prompt) :]).split() == (
        "red circle </s> <s> [ INST ] And this ? [ / INST ] blue star </s>".split()
    )


def test_collate_pads_left_for_generation() -> None:
    import torch

    items = [{"input_ids": [5, 6, 7], "pixel_values": torch.zeros(3, 2, 2), "task": "rec"},
             {"input_ids": [8], "pixel_values": torch.ones(3, 2, 2), "task": "count"}]  # fmt: skip
    out = collate(items, pad_id=0, left=True)
    assert out["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]] and out["task"] == ["rec", "count"]


def test_refcoco_reader_on_toy_data(toy_roots: tuple[Path, Path]) -> None:
    _, ref = toy_roots
    val = read_refcoco(ref, "val")
    assert val and all(s["bbox"] in s["boxes"] for s in val)
    assert set(val[0]) >= {"exp_id", "ref_id", "image_id", "sentence", "bbox", "width", "height"}


def test_readers_name_the_file_and_line_on_bad_input(tmp_path: Path, toy_roots: tuple[Path, Path]) -> None:
    pink, ref = toy_roots
    assert read_pink_jsonl(pink / "train.jsonl")[0]["objects"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a", "width": 1, "height": 1, "objects": []}\n{"image": 1\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_pink_jsonl(bad)
    bad.write_text('{"image": "a"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing key"):
        read_pink_jsonl(bad)
    (tmp_path / "ll.json").write_text(json.dumps([{"id": 1, "image": "a", "conversations": [{"from": "x"}]}]))
    with pytest.raises(ValueError, match="human|gpt"):
        read_llava(tmp_path / "ll.json")
    (tmp_path / "refs(unc).p").write_bytes(b"")
    (tmp_path / "instances.json").write_text((ref / "instances.json").read_text())
    with pytest.raises(FileNotFoundError, match="make data-pink_rc"):
        read_refcoco(tmp_path, "val")


def test_each_eval_split_draws_its_prompts_on_its_own(toy_roots: tuple[Path, Path]) -> None:
    """Val prompts must not depend on which split is read first (a set of split names used to decide, so
    they changed with the process's string-hash seed)."""
    from pink_rc.data import PinkDataModule

    pink, ref = toy_roots

    def items(val: str, test: str) -> dict[str, list[str]]:
        dm = PinkDataModule(stage=2, root=str(pink), refcoco_root=str(ref), val_split=val, test_split=test,
                            image_size=32, num_patches=16)  # fmt: skip
        dm.setup("fit")
        return {s: [x["instruction"] for x in v] for s, v in dm.eval_items.items()}

    both = items("val", "test")
    assert both["val"] == items("val", "val")["val"] and both["test"] == items("test", "test")["test"]
    assert both["val"] != both["test"]
