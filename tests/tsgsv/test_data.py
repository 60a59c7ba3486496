"""Readers of the ActivityNet Captions, TACoS and MAD formats, windows, labels, the toy chain."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tsgsv.data import (
    EvalQueries,
    FeatureStore,
    Query,
    TrainWindows,
    TSGSVDataModule,
    balanced_windows,
    collate,
    convert_anet_captions,
    convert_mad,
    convert_tacos,
    read_queries,
)


def _h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as h5:
        for k, v in arrays.items():
            h5.create_dataset(k, data=v)
    return path


def test_anet_captions_reader_official_layout(tmp_path: Path) -> None:
    ann = {"v_a": {"duration": 10.0, "timestamps": [[1.0, 4.0], [5.0, 12.0]], "sentences": ["x.", " y. "]},
           "v_nofeat": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["z"]}}  # fmt: skip
    (tmp_path / "val_1.json").write_text(json.dumps(ann))
    feats = _h5(tmp_path / "v.hdf5", {"v_a": np.zeros((80, 3), np.float32)})
    repo = convert_anet_captions(tmp_path / "val_1.json", feats, tmp_path / "val.json")
    assert list(repo) == ["v_a"]
    assert repo["v_a"]["duration_frame"] == 80 and repo["v_a"]["anno_ids"] == ["v_a_0", "v_a_1"]
    assert repo["v_a"]["sentences"] == ["x.", "y."]
    qs = read_queries(tmp_path / "val.json", min_video_len=70)
    assert [(q.start, q.end) for q in qs] == [(1.0, 4.0), (5.0, 10.0)]  # clipped to the duration
    assert read_queries(tmp_path / "val.json", min_video_len=80) == []  # <= 80 steps dropped


def test_anet_reader_names_bad_entry(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text(json.dumps({"v_b": {"duration": 3.0, "sentences": ["a"]}}))
    with pytest.raises(ValueError, match="v_b.*timestamps"):
        convert_anet_captions(tmp_path / "train.json")
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        convert_anet_captions(tmp_path / "nothere.json")


def test_tacos_2dtan_reader(tmp_path: Path) -> None:
    ann = {"s13-d21.avi": {"num_frames": 300, "fps": 30.0, "timestamps": [[30, 90]], "sentences": ["cut"]}}
    (tmp_path / "train.json").write_text(json.dumps(ann))
    repo = convert_tacos(tmp_path / "train.json")
    assert repo == {
        "s13-d21": {"duration": 10.0, "duration_frame": -1, "timestamps": [[1.0, 3.0]],
                    "sentences": ["cut"], "anno_ids": ["s13-d21_0"]}
    }  # fmt: skip


def test_mad_reader_groups_by_movie(tmp_path: Path) -> None:
    ann = {
        "11": {"movie": "m1", "sentence": "He runs.", "ext_timestamps": [2.0, 4.5], "movie_duration": 100.0},
        "12": {
            "movie": "m1",
            "sentence": "She sits.",
            "ext_timestamps": [50.0, 52.0],
            "movie_duration": 100.0,
        },
        "13": {"movie": "m2", "sentence": "Rain.", "ext_timestamps": [1.0, 2.0], "movie_duration": 20.0},
    }
    (tmp_path / "MAD_val.json").write_text(json.dumps(ann))
    repo = convert_mad(tmp_path / "MAD_val.json", fps=5.0)
    assert repo["m1"]["anno_ids"] == ["11", "12"] and repo["m1"]["duration_frame"] == 500
    assert repo["m2"]["timestamps"] == [[1.0, 2.0]]


def _fixture(tmp_path: Path, t: int = 40) -> tuple[list[Query], FeatureStore, FeatureStore]:
    video = np.arange(t, dtype=np.float32)[:, None].repeat(3, 1)
    vs = FeatureStore(_h5(tmp_path / "v.hdf5", {"v": video}))
    ss = FeatureStore(_h5(tmp_path / "s.hdf5", {"q0": np.ones((6, 2), np.float32)}))
    return [Query("v", "q0", "s", float(t - 1), t, 10.0, 14.0)], vs, ss


def test_train_windows_tile_video_and_labels_peak_on_boundaries(tmp_path: Path) -> None:
    queries, vs, ss = _fixture(tmp_path)
    ds = TrainWindows(queries, vs, ss, long_mem=8, short_mem=4, future_mem=6, max_sent_len=5)
    assert len(ds) == 10  # ceil(40 / 4) windows
    torch.manual_seed(0)
    item = ds[2]
    steps = item["short"][:, 0]
    assert item["short_mask"].all() and torch.equal(steps, torch.arange(steps[0], steps[0] + 4).float())
    assert 8 <= steps[0] <= 11  # window 2 starts at 8 + phase
    assert torch.equal(item["long"][:, 0], torch.arange(steps[0] - 8, steps[0]).float())
    assert item["sent_len"] == 5 and item["sent"].shape == (5, 2)
    # duration = T - 1 so seconds == steps: the start label peaks at step 10
    k = (steps == 10).nonzero()
    if len(k):
        assert item["labels"][k[0, 0], 0] == pytest.approx(1.0)
    batch = collate([ds[0], ds[1]], max_sent_len=7)
    assert batch["sent"].shape == (2, 7, 2) and batch["labels"].shape == (2, 4, 3)


def test_balanced_windows_keep_near_and_subsample_far() -> None:
    q = Query("v", "a", "s", 999.0, 1000, 500.0, 508.0)  # span 8 steps
    ks = balanced_windows(q, 8, 2.0, 21.0, np.random.default_rng(0))
    near = [k for k in range(125) if 8 * k + 7 >= 484 and 8 * k <= 524]
    assert set(near) <= set(ks)
    assert len(ks) == len(near) + 21


def test_eval_queries_and_collate_pad_videos(tmp_path: Path) -> None:
    queries, vs, ss = _fixture(tmp_path)
    ds = EvalQueries(queries, vs, ss, max_sent_len=4)
    short = dict(ds[0], video=ds[0]["video"][:30])
    batch = collate([ds[0], short], max_sent_len=4)
    assert batch["video"].shape == (2, 40, 3) and batch["video_mask"].sum(1).tolist() == [40, 30]
    assert batch["gt"].tolist() == [[10.0, 14.0], [10.0, 14.0]]


def test_feature_store_errors_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.hdf5"):
        FeatureStore(tmp_path / "missing.hdf5")
    store = FeatureStore(_h5(tmp_path / "a.hdf5", {"x": np.zeros((2, 2))}))
    with pytest.raises(KeyError, match="'y'"):
        store["y"]


TINY_TOY = {
    "toy": True, "toy_num": 8, "toy_options": {"num_frames": 32, "size": 32, "val_fraction": 0.25},
    "toy_features": {"video_dim": 8, "frame_size": 16, "sent_dim": 6, "lm": "random"},
    "sentence_features": "random_language_tokens_features_{split}.hdf5",
    "long_mem": 8, "short_mem": 4, "future_mem": 8, "min_video_len": 24, "batch_size": 2,
}  # fmt: skip


def test_toy_chain_writes_real_formats_and_is_cached(tmp_path: Path) -> None:
    dm = TSGSVDataModule(root=str(tmp_path / "toy"), **TINY_TOY)
    dm.prepare_data()
    root = tmp_path / "toy"
    for name in ("train.json", "val.json", "test.json", "video_features.hdf5", "raw/val_1.json"):
        assert (root / name).is_file(), name
    with h5py.File(root / "video_features.hdf5") as h5:
        assert h5["v_toy000000"].shape == (32, 8)
    mtime = (root / "video_features.hdf5").stat().st_mtime
    dm.prepare_data()
    assert (root / "video_features.hdf5").stat().st_mtime == mtime
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["long"].shape == (2, 8, 8) and batch["future"].shape == (2, 8, 8)
    assert batch["sent"].shape[-1] == 6
    assert next(iter(dm.val_dataloader()))["video"].shape[1:] == (32, 8)


def test_tiny_cnn_motion_features_are_causal_frame_differences() -> None:
    from tsgsv.scripts.extract_features import TinyCNN

    enc = TinyCNN(dim=8, seed=0)
    frames = torch.randn(5, 3, 16, 16)
    frames[2] = frames[1]
    full = enc(frames)
    assert full.shape == (5, 8) and torch.allclose(full[0], torch.zeros(8))  # nothing changed yet
    assert torch.allclose(full[2, 4:], torch.zeros(4), atol=1e-6)  # no change from frame 1 to 2
    assert torch.allclose(full[2, :4], full[1, :4], atol=1e-6)  # same change since frame 0
    enc.reset()
    split = torch.cat([enc(frames[:3]), enc(frames[3:])])  # state carried across calls
    assert torch.allclose(split, full, atol=1e-6)


def test_extraction_skips_undecodable_video_and_resumes(tmp_path: Path) -> None:
    from common.toyworld import generate
    from tsgsv.scripts.extract_features import TinyCNN, extract_video_features

    raw = generate("anet_captions", tmp_path / "raw", num=2, seed=0, num_frames=8, size=16)
    videos = {p.stem: p for p in sorted((raw / "videos").glob("*.mp4"))}
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    videos["bad"] = tmp_path / "bad.mp4"
    out = tmp_path / "v.hdf5"
    assert extract_video_features(videos, out, TinyCNN(8), size=16, progress=False) == 2
    with h5py.File(out) as h5:
        assert sorted(h5) == ["v_toy000000", "v_toy000001"] and h5["v_toy000000"].shape == (8, 8)
    assert (
        extract_video_features(videos, out, TinyCNN(8), size=16, progress=False) == 0
    )  # resumed: nothing new


def test_bert_token_features_second_to_last_layer(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from tsgsv.scripts.extract_features import bert_text

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "red", "circle", "grows", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=16)  # fmt: skip
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(tmp_path)
    feats = bert_text(str(tmp_path), "cpu", max_len=20)("the red circle grows.")
    assert feats.shape == (7, 8)  # [CLS] the red circle grows . [SEP]
