"""The ``anet_captions`` toy-world writer: official layout, one timed sentence per event, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.toyworld import generate
from common.toyworld.anet_captions import AnetCaptionsOptions, anet_split_of
from common.video import VideoReader


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("anet") / "toy"
    return generate("anet_captions", out, num=10, seed=3, num_frames=24, fps=2.0, size=64, val_fraction=0.2)


def test_layout_and_official_keys(dataset) -> None:
    seen = set()
    for split in ("train", "val_1", "val_2"):
        data = json.loads((dataset / f"{split}.json").read_text())
        for vid, item in data.items():
            assert vid.startswith("v_") and set(item) == {"duration", "timestamps", "sentences"}
            assert len(item["timestamps"]) == len(item["sentences"]) >= 1
            for s, e in item["timestamps"]:
                assert 0 < s < e <= item["duration"]
            assert (dataset / "videos" / f"{vid}.mp4").is_file()
            seen.add(vid)
    assert len(seen) == 10
    assert len(json.loads((dataset / "val_1.json").read_text())) == 2


def test_sentence_names_its_event_and_frames_change_in_window(dataset) -> None:
    meta = json.loads((dataset / "toyworld.json").read_text())["videos"]
    for v in meta[:4]:
        with VideoReader(dataset / "videos" / f"{v['video_id']}.mp4") as reader:
            frames = reader.get_frames(list(range(reader.num_frames))).float()
        for ev, sent in zip(v["events"], v["sentences"]):
            obj = v["scene"]["objects"][ev["object"]]
            assert obj["shape"] in sent["text"] and obj["colour"] in sent["text"]
            t0, t1 = ev["frames"]
            diff = (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3))  # change from frame t to t+1
            assert diff[t0 - 1 : t1 - 1].min() > 0  # every frame of the window differs from the one before


def test_low_jitter_gives_near_maximal_windows(dataset) -> None:
    meta = json.loads((dataset / "toyworld.json").read_text())["videos"]
    lengths = {}
    for v in meta:
        for ev in v["events"]:
            if ev["kind"] in ("grow", "shrink"):
                lengths.setdefault(ev["kind"], set()).add(ev["frames"][1] - ev["frames"][0])
    for ks in lengths.values():
        assert max(ks) - min(ks) <= 1


def test_deterministic(tmp_path) -> None:
    a = generate("anet_captions", tmp_path / "a", num=3, seed=1, num_frames=12, size=16)
    b = generate("anet_captions", tmp_path / "b", num=3, seed=1, num_frames=12, size=16)
    for name in ("train.json", "toyworld.json"):
        assert (a / name).read_text() == (b / name).read_text()


def test_split_assignment_and_option_errors() -> None:
    assert [anet_split_of(i, 10, 0.2) for i in range(10)] == ["train"] * 6 + ["val_1"] * 2 + ["val_2"] * 2
    with pytest.raises(ValueError, match="event-duration-jitter"):
        AnetCaptionsOptions(event_duration_jitter="none")
    with pytest.raises(ValueError, match="min-events"):
        AnetCaptionsOptions(min_events=0)
    assert np.isclose(AnetCaptionsOptions().num_frames / AnetCaptionsOptions().fps, 48.0)
