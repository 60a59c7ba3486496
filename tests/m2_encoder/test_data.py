"""M2-Encoder data: jsonl readers, GLM-style tokenizer, language batch sampler, toy world files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from m2_encoder.data import (
    LanguageBatchSampler,
    M2EncoderDataModule,
    read_imagetext_jsonl,
    read_labels_jsonl,
    read_lines,
    shard,
)
from m2_encoder.tokenizer import BilingualTokenizer, encode_blanks, preprocess_text, train_sentencepiece
from m2_encoder.toy import prepare_toy, scene_classnames


def test_reads_the_released_jsonl_format_and_names_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "coco-cn_test.jsonl"
    good.write_text('{"image": "a.jpg", "caption": ["x", "y"]}\n\n{"image": "b.jpg", "caption": "z"}\n')
    assert read_imagetext_jsonl(good) == [
        {"image": "a.jpg", "caption": ["x", "y"]},
        {"image": "b.jpg", "caption": ["z"]},
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.jpg", "caption": ["x"]}\n{"img": "b.jpg"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_imagetext_jsonl(bad)
    with pytest.raises(FileNotFoundError):
        read_imagetext_jsonl(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"image": "a.jpg", "caption": ["x"]}\n{not json\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        read_imagetext_jsonl(broken)
    bad_labels = tmp_path / "bad_zs.jsonl"
    bad_labels.write_text('{"image": "a.jpg", "label": 1}\n\n{"image": "b.jpg"}\n')
    with pytest.raises(ValueError, match=r"bad_zs.jsonl:3: expected"):
        read_labels_jsonl(bad_labels)
    labels = tmp_path / "zs.jsonl"
    labels.write_text('{"image": "a.jpg", "label": 3}\n')
    assert read_labels_jsonl(labels) == [("a.jpg", 3)]
    tpl = tmp_path / "t.txt"
    tpl.write_text("a photo\n")
    with pytest.raises(ValueError, match="must contain"):
        read_lines(tpl, "templates")


def test_text_normalisation_and_blank_tokens() -> None:
    assert preprocess_text("A \u201cQuoted\u201d Dog") == 'a "quoted" dog'
    assert encode_blanks("a  b   c d") == "a<|blank_2|>b<|blank_3|>c d"


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> Path:
    texts = [
        "we can see a red circle in the snow.",
        "there is a big blue star.",
        "在雪地上，有一个红色的圆形。",
    ] * 20
    return train_sentencepiece(texts, tmp_path_factory.mktemp("sp") / "toy", vocab_size=60)


def test_tokenizer_layout_special_ids_and_left_truncation(sp_model: Path) -> None:
    tok = BilingualTokenizer(sp_model, max_text_len=6)
    n = tok.num_pieces
    assert (tok.eos_id, tok.cls_id, tok.mask_id, tok.pad_id) == (n, n + 2, n + 3, n)  # GLM's order
    pieces = tok.pieces("we can see a red circle in the snow.")
    ids, starts = tok.encode("we can see a red circle in the snow.")
    assert ids == [tok.cls_id, *pieces[-4:], tok.eos_id]  # the beginning is cut
    assert len(starts) == len(ids) and not starts[0] and not starts[-1]
    batch = tok(["there is a big blue star.", "在雪地上"])
    assert batch["text_ids"].shape == (2, 6)
    assert (batch["text_ids"][batch["text_masks"] == 0] == tok.pad_id).all()
    glm = BilingualTokenizer(sp_model, eos_id=50000, cls_id=50002)
    assert glm.encode("snow")[0][0] == 50002 and glm.encode("snow")[0][-1] == 50000 and glm.mask_id == 50003


def test_missing_sentencepiece_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sp.model"):
        BilingualTokenizer(tmp_path / "sp.model")


def test_language_batch_sampler_one_language_per_batch_and_disjoint_ranks() -> None:
    sizes = [40, 24]
    batches = [list(LanguageBatchSampler(sizes, 4, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(batches[0]) == len(batches[1]) == 64 // 8
    langs = set()
    for b0, b1 in zip(*batches):
        lang0 = 0 if max(b0) < 40 else 1
        assert all((i >= 40) == bool(lang0) for i in b0 + b1)  # both ranks draw the same language
        assert not set(b0) & set(b1)
        langs.add(lang0)
    assert langs == {0, 1}


def test_shard_covers_every_index() -> None:
    parts = [shard(7, r, 3) for r in range(3)]
    assert {i for p in parts for i in p} == set(range(7)) and {len(p) for p in parts} == {3}


@pytest.mark.parametrize("num", [30])
def test_toy_datamodule_writes_and_reads_the_real_formats(tmp_path: Path, num: int) -> None:
    dm = M2EncoderDataModule(
        root=str(tmp_path / "toy"),
        image_size=32,
        batch_size=4,
        max_text_len=16,
        toy_num=num,
        toy_vocab_size=200,
    )
    dm.prepare_data()
    for name in (
        "train_en.jsonl",
        "test_zh.jsonl",
        "zeroshot_scene_test.jsonl",
        "classnames_zh.txt",
        "sp_toy.model",
    ):
        assert (tmp_path / "toy" / name).is_file()
    assert read_lines(tmp_path / "toy" / "classnames_en.txt", "class names") == scene_classnames("en")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["lang"] in ("en", "zh")
    assert batch["text_ids"].shape == (4, 16) and batch["image"].min() >= -1.0
    assert (batch["text_ids"][:, 0] == dm.tokenizer.cls_id).all()
    assert dm.eval_alias["retrieval_en"] == dm.eval_alias["retrieval_zh"]  # toy EN/ZH share their images
    labels = [json.loads(line)["label"] for line in (tmp_path / "toy" / "zeroshot_scene_test.jsonl").open()]
    assert len(labels) == len(dm.retrieval_sets["en"].images) and max(labels) < 8
    loaders = dm.val_dataloader()
    eval_batch = next(iter(loaders[0]))
    assert torch.equal(eval_batch["index"], torch.arange(len(eval_batch["index"])))


def test_prepare_toy_num_test(tmp_path):
    root = prepare_toy(tmp_path / "toy", num=24, seed=0, num_test=5)
    n_test = len((root / "test_en.jsonl").read_text().splitlines())
    n_train = len((root / "train_zh.jsonl").read_text().splitlines())
    assert (n_test, n_train) == (5, 19)
    assert len((root / "zeroshot_scene_test.jsonl").read_text().splitlines()) == 5
    with pytest.raises(ValueError, match="num_test"):
        prepare_toy(tmp_path / "bad", num=24, seed=0, num_test=24)


def test_prepare_toy_full_captions_state_everything(tmp_path):
    from m2_encoder.scripts.caption_ceiling import fits

    root = prepare_toy(tmp_path / "full", num=12, seed=0, num_test=4, full_captions=True)
    meta = json.loads((root / "toyworld.json").read_text(encoding="utf-8"))
    assert [im["split"] for im in meta["images"]].count("test") == 4
    for im in meta["images"]:
        objs = im["scene"]["objects"]
        for cap in im["captions"]:
            content = cap["content"]
            assert content["scene"] == im["scene"]["scene"] and len(content["objects"]) == len(objs)
            assert all(m["colour"] is not None and m["size"] is not None for m in content["objects"])
            assert fits(content, im["scene"])
    recs = [json.loads(line) for line in (root / "test_zh.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(recs) == 4 and all(len(r["caption"]) == 3 for r in recs)
