"""pink_rc scripts: self-consistent bootstrapping (filter, resume, summary), the RefCOCO pickle conversion."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

from pink_rc.metrics import format_box
from pink_rc.scripts.bootstrap import qualifying, run
from pink_rc.scripts.prepare_data import convert_refs

IMAGES = [
    {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
    {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100},
    {"id": 3, "file_name": "c.jpg", "width": 200, "height": 100},
]
ANNS = [
    {
        "id": 10,
        "image_id": 1,
        "bbox": [0, 0, 100, 50],
        "area": 5000,
        "category_id": 1,
    },  # grounded back exactly
    {
        "id": 11,
        "image_id": 1,
        "bbox": [100, 50, 100, 50],
        "area": 5000,
        "category_id": 1,
    },  # grounded elsewhere
    {"id": 12, "image_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "category_id": 1},  # too small
    {"id": 20, "image_id": 2, "bbox": [0, 0, 100, 50], "area": 5000, "category_id": 1, "ignore": 1},
    {"id": 30, "image_id": 3, "bbox": [50, 25, 100, 50], "area": 5000, "category_id": 1},  # format error
]


def _fake_model(calls: list[str]):
    """Describes a box by its coordinates; grounds 'obj x0' back to the first box, 'garbage' to nothing."""

    def ask(image: str, question: str) -> str:
        calls.append(question)
        if "<loc>" in question:
            return "garbage" if image == "c.jpg" else "object here"
        return format_box([0, 0, 100, 50], 200, 100) if image == "a.jpg" else "no box"

    return ask


def test_qualifying_objects_follow_the_skip_rules() -> None:
    assert [a["id"] for a in qualifying(ANNS[:3])] == [10, 11]
    assert qualifying(ANNS[3:4]) == []
    assert qualifying([ANNS[0]] * 16) == []  # more than 15 annotations


def test_bootstrap_keeps_only_self_consistent_pairs_with_the_gt_box(tmp_path: Path) -> None:
    ann = tmp_path / "o365.json"
    ann.write_text(
        json.dumps({"images": IMAGES, "annotations": ANNS, "categories": [{"id": 1, "name": "cup"}]})
    )
    calls: list[str] = []
    summary = run(_fake_model(calls), ann, tmp_path / "out.jsonl", progress=False)
    assert summary == {"images": 3, "images_kept": 1, "descriptions": 3, "descriptions_kept": 1}
    (rec,) = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rec["image_id"] == 1 and [p["object_id"] for p in rec["pred"]] == [10]
    assert rec["pred"][0]["bbox"] == [0, 0, 100, 50] and rec["pred"][0]["format_error"] == 0
    assert {a["category_name"] for a in rec["anno"]} == {"cup"}
    # resumable: a second run finds nothing left to do and asks nothing
    calls.clear()
    again = run(_fake_model(calls), ann, tmp_path / "out.jsonl", progress=False)
    assert again["images"] == 0 and calls == []


def test_bootstrap_threshold_uses_inclusive_iou_by_default(tmp_path: Path) -> None:
    # [0,0,100,50] vs GT [0,0,100,100]: plain IoU 0.5; inclusive (101 * 51) / (10000 + 5000 - 5151) = 0.523
    images = [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}]
    anns = [{"id": 1, "image_id": 1, "bbox": [0, 0, 100, 100], "area": 10000, "category_id": 1}]
    ann = tmp_path / "o.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns}))
    ask = lambda img, q: "d" if "<loc>" in q else format_box([0, 0, 100, 50], 200, 100)  # noqa: E731

    def kept(name: str, **kw: object) -> int:
        return run(ask, ann, tmp_path / name, progress=False, **kw)["descriptions_kept"]

    assert kept("a.jsonl") == 1 and kept("b.jsonl", iou_mode="plain") == 1  # >= 0.5 keeps
    assert kept("c.jsonl", iou_threshold=0.515) == 1  # inclusive 0.523
    assert kept("d.jsonl", iou_threshold=0.515, iou_mode="plain") == 0
    assert kept("e.jsonl", iou_threshold=0.53) == 0


def test_refs_pickle_is_converted_once_to_json(tmp_path: Path) -> None:
    refs = [
        {"ref_id": 0, "ann_id": 1, "image_id": 2, "split": "val", "sentences": [{"sent_id": 0, "sent": "x"}]}
    ]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs))
    assert [p.name for p in convert_refs(tmp_path)] == ["refs(unc).json"]
    assert json.loads((tmp_path / "refs(unc).json").read_text()) == refs
    assert convert_refs(tmp_path) == []
    assert re.search("refs", (tmp_path / "refs(unc).json").name)


def test_grounding_probe_trains_and_scores_both_splits(tmp_path: Path) -> None:
    from pink_rc.scripts.grounding_probe import main

    root = str(tmp_path / "probe")
    args = ["--root", root, "--num", "12", "--min-objects", "1", "--max-objects", "2", "--batch-size", "2"]
    out = main([*args, "--steps", "3", "--every", "2", "--turns", "2", "--caption-steps", "1"])
    assert sorted(out) == [2, 3]  # every --every steps and at the end
    assert all(0.0 <= v <= 1.0 and 0.0 <= t <= 1.0 for v, t in out.values())
    assert (Path(root) / "val.jsonl").exists() and (Path(root + "_refcoco") / "refs(unc).json").exists()


def test_ablation_gives_each_seed_its_own_run_folders(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import os

    from common.cli import RUN_VERSION_ENV
    from pink_rc.scripts import ablation

    seen = []

    def fake_stage(stage: int, extra: list[str], init_from: str | None, exp: str) -> str:
        seen.append((exp, os.environ.get(RUN_VERSION_ENV)))
        seed = extra[extra.index("--seed_everything") + 1]
        os.environ.setdefault(RUN_VERSION_ENV, f"s{seed}")  # what the CLI does on its first run
        return f"{exp}.ckpt"

    monkeypatch.setattr(ablation, "run_stage", fake_stage)
    monkeypatch.setenv(RUN_VERSION_ENV, "stale")
    for seed in (0, 1):
        ablation.run_seed(seed, [], "abl")
    assert [e for e, _ in seen] == ["abl-s0", "abl-s0", "abl-vision_adapters", "abl-frozen_vit"] + [
        "abl-s1", "abl-s1", "abl-vision_adapters", "abl-frozen_vit"
    ]  # fmt: skip
    assert [v for _, v in seen] == [None, "s0", "s0", "s0", None, "s1", "s1", "s1"]
    for seed, rec in ((0, 0.1), (1, 0.3)):  # the summary reads the last validation of every seed's folder
        for arm in ablation.ARMS:
            run = tmp_path / "pink_rc" / f"abl-{arm}" / f"s{seed}"
            run.mkdir(parents=True)
            header = "step," + ",".join(ablation.KEYS)
            (run / "metrics.csv").write_text(f"{header}\n1,{rec},0.5,0.7,0.0,0.4\n2,,,,,\n")
    table = ablation.summarise(tmp_path, "abl")
    assert "| vision_adapters | 2 | 0.200 ± 0.141 (0.10, 0.30) |" in table


def test_expression_kind_names_what_a_toy_expression_refers_by() -> None:
    from pink_rc.scripts.grounding_probe import expression_kind

    assert expression_kind("Where is <des>the red object</des>?") == "colour"
    assert expression_kind("Locate <des>the cross</des> in the image.") == "shape"
    assert expression_kind("Give the bounding box of <des>the big blue star</des>.") == "colour+shape"
    assert expression_kind("Where is <des>the small object</des>?") == "other"


def test_probe_diagnostics_run_and_oracle_words_mark_the_covered_patches(tmp_path: Path) -> None:
    import torch

    from pink_rc.scripts.grounding_probe import main, oracle_word_ids, question_first_prompt

    root = str(tmp_path / "probe")
    args = ["--root", root, "--num", "12", "--batch-size", "2", "--steps", "2", "--every", "2"]
    out = main(
        [*args, "--prompt", "question-first", "--oracle-words", "--hidden", "32", "--init-range", "0.1"]
    )
    assert sorted(out) == [2]

    class Tok:  # word -> id stand-in
        def convert_tokens_to_ids(self, words: list[str]) -> list[int]:
            return [{"red": 5, "star": 7, "blue": 6, "circle": 8}[w] for w in words]

    rec = {
        "objects": [
            {"name": "red star", "bbox": [0, 0, 15, 7]},
            {"name": "blue circle", "bbox": [60, 60, 63, 63]},
        ]
    }
    ids = oracle_word_ids(Tok(), rec)
    # patch centres (4, 4) and (12, 4) lie in the red star's box; (60, 60) is the last patch's centre
    assert ids[0].tolist() == [5, 7] and ids[1].tolist() == [5, 7] and ids[63].tolist() == [6, 8]
    assert int((ids >= 0).all(1).sum()) == 3 and torch.equal(ids[2], torch.tensor([-1, -1]))

    from pink_rc.scripts.grounding_probe import toy_data

    tok = toy_data(root, 12, {"min_objects": 2, "max_objects": 4, "large_prob": 0.8}).tokenizer
    prompt = question_first_prompt(tok, "Where is <des>the red star</des>?", 4)
    im = tok.convert_tokens_to_ids("<im_patch>")
    first = prompt.index(im)
    assert prompt[first : first + 4] == [im] * 4 and im not in prompt[first + 4 :]
    assert tok.convert_tokens_to_ids("<des>") in prompt[:first]  # the question comes before the image
