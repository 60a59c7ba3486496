"""The snp_s3 toy-world writers: MSRVTT-QA, MSR-VTT multiple choice and the WebVid-style corpus."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from common.toyworld import WRITERS, generate
from common.video import VideoReader


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writers_are_registered() -> None:
    assert {"msrvtt_qa", "msrvtt_mc", "webvid"} <= set(WRITERS)


def test_msrvtt_qa_official_json_and_jsonl_agree(tmp_path: Path) -> None:
    root = generate("msrvtt_qa", out=tmp_path / "qa", num=20, seed=0, top_k=5, num_frames=4, size=32)
    ans2label = json.loads((root / "ans2label.json").read_text())
    assert len(ans2label) == 5 and sorted(ans2label.values()) == list(range(5))
    train = json.loads((root / "train_qa.json").read_text())
    counts: dict[str, int] = {}
    for q in train:
        counts[q["answer"]] = counts.get(q["answer"], 0) + 1
    top = sorted(counts, key=lambda a: (-counts[a], a))[:5]
    assert set(ans2label) == set(top)  # the vocabulary is the top-k training answers
    for split in ("train", "val", "test"):
        official = json.loads((root / f"{split}_qa.json").read_text())
        lines = _jsonl(root / f"{split}.jsonl")
        assert len(official) == len(lines) > 0
        for q, line in zip(official, lines):
            assert line["caption"] == q["question"] and line["clip_name"] == f"video{q['video_id']}"
            assert line["label"] == ans2label.get(q["answer"], -1)
            assert (root / "videos" / f"{line['clip_name']}.mp4").is_file()
    test_videos = {q["video_id"] for q in json.loads((root / "test_qa.json").read_text())}
    assert test_videos == {16, 17, 18, 19}  # the last 20 %
    assert any(line["label"] == -1 for line in _jsonl(root / "train.jsonl"))  # OOV answers exist with k=5


@pytest.mark.parametrize("family_size", [1, 5])
def test_msrvtt_mc_has_one_true_caption_and_four_distractors(tmp_path: Path, family_size: int) -> None:
    root = generate("msrvtt_mc", out=tmp_path / "mc", num=10, seed=0, family_size=family_size, num_frames=4)
    meta = json.loads((root / "toyworld.json").read_text())["videos"]
    truth = {m["video_id"]: m["caption"].rstrip(".") for m in meta}
    lines = _jsonl(root / "mc_test.jsonl")
    assert len(lines) == 10
    answers = set()
    for line in lines:
        assert len(line["options"]) == 5 and len(set(line["options"])) == 5
        assert line["options"][int(line["answer"])] == truth[line["clip_name"]]
        answers.add(line["answer"])
        if family_size > 1:
            m = next(x for x in meta if x["video_id"] == line["clip_name"])
            others = [x for x in meta if x["family"] == m["family"] and x["video_id"] != m["video_id"]]
            assert sorted(x["video_id"] for x in others) == sorted(m["distractor_videos"])
    assert len(answers) > 1  # the true option's position is shuffled
    with VideoReader(root / "videos" / "video0.mp4") as r:
        assert r.num_frames == 4


def test_msrvtt_mc_rejects_a_family_size_other_than_the_option_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="family-size"):
        generate("msrvtt_mc", out=tmp_path / "x", num=10, family_size=3)


def test_webvid_csv_jsonl_and_cc3m_tsv(tmp_path: Path) -> None:
    root = generate("webvid", out=tmp_path / "wv", num=10, seed=0, image_fraction=0.2, num_frames=4,
                    videos_per_page=4)  # fmt: skip
    rows = list(csv.DictReader(open(root / "results_train.csv")))
    assert [list(r) for r in rows[:1]] == [["videoid", "contentUrl", "duration", "page_dir", "name"]]
    assert len(rows) == 8
    for r in rows:
        assert (root / "videos" / r["page_dir"] / f"{r['videoid']}.mp4").is_file()
    tsv = list(csv.reader(open(root / "cc3m_train.tsv"), delimiter="\t"))
    assert len(tsv) == 2 and all((root / rel).is_file() for _, rel in tsv)
    lines = _jsonl(root / "train.jsonl")
    assert [line["type"] for line in lines].count("image") == 2
    assert {line["caption"] for line in lines if line["type"] == "video"} == {r["name"] for r in rows}
    again = generate("webvid", out=tmp_path / "wv2", num=10, seed=0, image_fraction=0.2, num_frames=4,
                     videos_per_page=4)  # fmt: skip
    assert (again / "train.jsonl").read_bytes() == (root / "train.jsonl").read_bytes()
