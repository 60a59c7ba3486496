"""tpm_cl data: official-format readers, tokenizer and DMAE weights, caption drop, samplers, toy world."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from common.toyworld import generate
from tpm_cl.data import (
    EOT,
    SOT,
    CaptionDrop,
    CaptionTokenizer,
    EvalVideos,
    PosTagger,
    TPMCLDataModule,
    TrainPairs,
    UniqueVideoBatchSampler,
    collate_eval,
    convert_msvd_captions,
    read_activitynet,
    read_didemo,
    read_msrvtt,
    read_msvd,
)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "msrvtt"
    return generate("msrvtt", out=root, num=40, seed=0, family_size=4, num_frames=6, size=32)


def test_msrvtt_reader_splits_and_families(toy_root: Path) -> None:
    train, test = read_msrvtt(toy_root, "9k"), read_msrvtt(toy_root, "1k-A")
    assert len(train) == 36 and len(test) == 4
    assert all(len(it.captions) == 5 for it in train) and all(len(it.captions) == 1 for it in test)
    assert not {it.video_id for it in train} & {it.video_id for it in test}
    assert [it.family for it in test] == [9, 9, 9, 9]  # 1k-A = the last family of four
    assert all(it.path.is_file() for it in train + test)
    assert len(read_msrvtt(toy_root, "7k")) == 28


def test_msrvtt_reader_names_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video\nret0,msr0,video0\n")
    with pytest.raises(ValueError, match="MSRVTT_JSFUSION_test.csv:2"):
        read_msrvtt(tmp_path, "1k-A")
    with pytest.raises(ValueError, match="split must be"):
        read_msrvtt(tmp_path, "3k")


def test_msvd_pickle_conversion_and_reader(tmp_path: Path) -> None:
    caps = {"vidA": [["a", "man", "runs"], ["someone", "is", "running"]], "vidB": [["a", "cat"]]}
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps(caps))
    convert_msvd_captions(tmp_path / "raw-captions.pkl", tmp_path / "raw-captions.json")
    (tmp_path / "test_list.txt").write_text("vidA\nvidB\n")
    items = read_msvd(tmp_path, "test")
    assert [it.captions for it in items] == [["a man runs", "someone is running"], ["a cat"]]
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"x": Path("y")}))
    with pytest.raises(pickle.UnpicklingError, match="only plain containers"):
        convert_msvd_captions(tmp_path / "evil.pkl", tmp_path / "evil.json")


def test_didemo_and_activitynet_paragraphs(tmp_path: Path) -> None:
    didemo = [
        {"video": "v1.mp4", "times": [[2, 3], [2, 3]], "description": "then he sits."},
        {"video": "v1.mp4", "times": [[0, 1]], "description": "a man walks in."},
        {"video": "v2.mov", "times": [[0, 0]], "description": "a dog barks."},
    ]
    (tmp_path / "test_data.json").write_text(json.dumps(didemo))
    items = read_didemo(tmp_path, "test")
    assert [(it.video_id, it.captions) for it in items] == [
        ("v1.mp4", ["a man walks in. then he sits."]),
        ("v2.mov", ["a dog barks."]),
    ]
    anet = {"v_x": {"duration": 10.0, "timestamps": [[5, 9], [0, 4]], "sentences": [" Second.", "First."]}}
    (tmp_path / "val_1.json").write_text(json.dumps(anet))
    assert read_activitynet(tmp_path, "val_1")[0].captions == ["First. Second."]
    (tmp_path / "val_2.json").write_text(json.dumps({"v_y": {"duration": 1.0}}))
    with pytest.raises(ValueError, match="val_2.json: v_y needs sentences"):
        read_activitynet(tmp_path, "val_2")


def test_tokenizer_equals_clip_bpe_and_weights_content_words() -> None:
    tok = CaptionTokenizer(max_words=16, pos="lexicon")
    text = "the large red diamond changes to orange, at night"
    ids, weight = tok(text)
    want = [SOT, *SimpleTokenizer().encode(text), EOT]
    assert ids[: len(want)].tolist() == want and ids[len(want) :].eq(0).all()
    words = ["the", "large", "red", "diamond", "changes", "to", "orange,", "at", "night"]
    bpe = SimpleTokenizer()
    expected = [1.0]
    for w, content in zip(words, [0, 1, 1, 1, 1, 0, 1, 0, 1]):
        expected += [1.0 + content] * len(bpe.encode(w))
    expected.append(1.0)
    assert weight[: len(expected)].tolist() == expected and weight[len(expected) :].eq(0).all()
    short_ids, short_w = CaptionTokenizer(max_words=5)(text)
    assert short_ids[-1] == EOT and short_w.tolist() == [1.0, 1.0, 2.0, 2.0, 1.0]


def test_stopword_tagger_for_real_captions() -> None:
    assert PosTagger("stopwords").content(["a", "man", "is", "playing", "guitar"]) == [0, 1, 0, 1, 1]


def test_caption_drop_only_drops_low_tfidf_words() -> None:
    caps = ["a red circle moves", "a red circle grows", "a red square moves", "a circle"]
    drop = CaptionDrop()
    scores = drop.scores(caps)
    assert scores["a"] == 0.0 and max(scores.values()) == 1.0  # "a" is in every caption
    rng = random.Random(0)
    outs = {drop("a red circle grows", scores, rng) for _ in range(50)}
    assert outs == {"a red circle grows", "red circle grows"}


def test_sampler_unique_videos_all_pairs_and_family_neighbours() -> None:
    num_captions = [3] * 16 + [1] * 4
    families = [i // 4 for i in range(20)]
    sampler = UniqueVideoBatchSampler(num_captions, 4, families, 2, seed=1, num_replicas=1, rank=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5 + 4 + 4
    assert all(len({v for v, _ in b}) == len(b) == 4 for b in batches)
    every_pair = [(v, c) for v, n in enumerate(num_captions) for c in range(n)]
    assert sorted(p for b in batches for p in b) == every_pair
    pairs = sum(families[b[k][0]] == families[b[k + 1][0]] for b in batches for k in (0, 2))
    assert pairs == 2 * len(batches)  # chunks of two family members never straddle a batch of 4
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_sampler_splits_global_batches_across_ranks() -> None:
    per_rank = [list(UniqueVideoBatchSampler([2] * 12, 3, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 4
    for b0, b1 in zip(*per_rank):
        assert not {v for v, _ in b0} & {v for v, _ in b1}


def test_datasets_ship_uint8_clips_masks_and_multi_caption_batches(toy_root: Path, tmp_path: Path) -> None:
    tok = CaptionTokenizer(max_words=16)
    items = read_msrvtt(toy_root, "9k")
    pair = TrainPairs(items, tok, num_frames=8, image_size=32, caption_drop=True)[(3, 1)]
    assert pair["video"].dtype == torch.uint8 and pair["video"].shape == (8, 3, 32, 32)
    assert pair["video_mask"].tolist() == [1] * 6 + [0, 0]  # 6-frame videos are zero-padded to 8
    assert pair["family"] == 0
    batch = collate_eval([EvalVideos(items, tok, 4, 32)[i] for i in (0, 1)])
    assert batch["text_ids"].shape == (10, 16) and batch["text_to_video"].tolist() == [0] * 5 + [1] * 5
    broken = items[0].__class__("bad", tmp_path / "bad.mp4", ["a red circle"])
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    ds = EvalVideos([broken], tok, 4, 32)
    assert ds[0]["video"].sum() == 0 and ds.clips.bad == 1


def test_datamodule_generates_toy_data_and_builds_loaders(tmp_path: Path) -> None:
    dm = TPMCLDataModule(
        root=str(tmp_path / "toy"), toy=True, toy_num=20,
        toy_options={"family_size": 4, "num_frames": 4, "size": 32},
        num_frames=4, max_words=16, image_size=32, batch_size=4, eval_batch_size=2,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 4, 3, 32, 32) and batch["text_to_video"].tolist() == [0, 1, 2, 3]
    assert len(set(batch["video_index"].tolist())) == 4
    val = next(iter(dm.val_dataloader()))
    assert val["text_ids"].shape == (2, 16)
