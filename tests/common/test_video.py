"""Tests for common/video.py: frame-exact decoding on every backend, robustness, sampling, preprocessing.

Frame exactness is checked without trusting any reader: every test clip shows its own frame index as
binary blocks (tests/common/video_clips.py), and PyAV's plain front-to-back decode serves as the
independent reference for pixels.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from common.video import (
    AUTO_BACKEND_ORDER,
    FrameIndexError,
    VideoDecodeError,
    VideoReader,
    available_backends,
    main,
    preprocess_clip,
    sample_frame_indices,
)
from tests.common.video_clips import decode_indices, index_frame, pyav_sequential_indices, write_index_clip

HAS_TORCHCODEC = importlib.util.find_spec("torchcodec") is not None
if HAS_TORCHCODEC:
    try:  # importable but without FFmpeg's shared libraries is as good as absent
        import torchcodec.decoders  # noqa: F401
    except Exception:  # noqa: BLE001
        HAS_TORCHCODEC = False

BACKENDS = [
    "pyav",
    "decord",
    pytest.param(
        "torchcodec", marks=pytest.mark.skipif(not HAS_TORCHCODEC, reason="torchcodec not importable")
    ),
    "auto",
]
NUM_FRAMES = 90

# name -> encoder settings; all with B-frames (b-adapt=0 forces the full run of 3 everywhere).
CLIPS = {
    "gop250": dict(gop=250, bframes=3),
    "gop8": dict(gop=8, bframes=3),
    "gop8_open": dict(gop=8, bframes=3, open_gop=True),
    "gop8_no_bframes": dict(gop=8, bframes=0),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video")
    return {
        name: write_index_clip(root / f"{name}.mp4", num_frames=NUM_FRAMES, **kw)
        for name, kw in CLIPS.items()
    }


@pytest.fixture(scope="module")
def overreported(tmp_path_factory) -> tuple[Path, int]:
    """An mp4 whose header (moov first) claims NUM_FRAMES frames but whose data was cut short."""
    root = tmp_path_factory.mktemp("video_bad")
    full = write_index_clip(root / "full.mp4", num_frames=NUM_FRAMES, gop=8, faststart=True)
    data = full.read_bytes()
    cut = root / "overreported.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == NUM_FRAMES  # the header still claims every frame
        holds = sum(1 for p in container.demux(video=0) if p.size and not p.is_corrupt)
    return cut, holds


def _orders(n: int, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        "random": rng.integers(0, n, 12).tolist(),
        "repeated": [5, 5, 40, 5, n - 1, n - 1, 0, 0],
        "backward": list(range(n - 1, -1, -7)),
        "forward_all": list(range(n)),
        "single_last": [n - 1],
    }


# ---------------------------------------------------------------------------------------------- exactness
def test_test_clips_encode_their_index(clips):
    for path in clips.values():
        assert pyav_sequential_indices(path) == list(range(NUM_FRAMES))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clip", list(CLIPS))
def test_get_frames_is_frame_exact_in_any_order(clips, clip, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # decord's open-GOP fallback warns
        reader = VideoReader(clips[clip], backend=backend)
    assert reader.num_frames == NUM_FRAMES
    # Several calls on one reader: the decoder position carried between calls must not matter.
    for seed in range(3):
        for order, indices in _orders(NUM_FRAMES, seed).items():
            frames = reader.get_frames(indices)
            assert frames.dtype == torch.uint8 and frames.shape == (len(indices), 3, 96, 128), order
            assert decode_indices(frames) == indices, (clip, reader.backend, order)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pixels_equal_pyav_sequential_decode(clips, backend):
    path = clips["gop8"]
    with av.open(str(path)) as container:
        reference = torch.from_numpy(
            np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        ).permute(0, 3, 1, 2)
    indices = [77, 3, 50, 3, 89, 0]
    frames = VideoReader(path, backend=backend).get_frames(indices).int()
    diff = (frames - reference[indices].int()).abs()
    if backend in ("pyav", "auto"):
        assert diff.max().item() == 0  # same decoder, same colour conversion: bit-exact
    else:
        # Other FFmpeg builds may round the YUV->RGB conversion differently, never by more than a few levels.
        assert diff.float().mean().item() < 1.0 and diff.max().item() <= 8


def test_pyav_recovers_when_a_seek_lands_past_the_keyframe(clips):
    reader = VideoReader(clips["gop8"], backend="pyav")
    # Simulate a container whose seeks overshoot: every seek lands on the last keyframe.
    reader._index.seek_ts = np.full_like(reader._index.seek_ts, reader._index.seek_ts[-1])
    indices = [70, 3, 41, 89]
    assert decode_indices(reader.get_frames(indices)) == indices


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in ("pyav", "auto")])
def test_open_gop_falls_back_to_pyav(clips, backend):
    with pytest.warns(RuntimeWarning, match="open-GOP"):
        reader = VideoReader(clips["gop8_open"], backend=backend)
    assert reader.backend == "pyav"
    assert VideoReader(clips["gop8"], backend=backend).backend == backend
    assert VideoReader(clips["gop8_open"], backend="auto").backend == "pyav"


def test_auto_takes_first_available_backend(clips):
    assert VideoReader(clips["gop8"]).backend == available_backends()[0] == AUTO_BACKEND_ORDER[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs, shape", [({"size": (48, 80)}, (48, 80)), ({"short_side": 48}, (48, 64))])
def test_decode_time_resize(clips, backend, kwargs, shape):
    reader = VideoReader(clips["gop8"], backend=backend, **kwargs)
    assert (reader.height, reader.width) == shape
    assert (reader.source_height, reader.source_width) == (96, 128)
    indices = [60, 2, 33, 2]
    frames = reader.get_frames(indices)
    assert frames.shape == (4, 3, *shape)
    assert decode_indices(frames) == indices


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_and_file_objects_read_like_paths(clips, backend):
    path = clips["gop250"]
    indices = [10, 80, 10, 45]
    expected = VideoReader(path, backend=backend).get_frames(indices)
    from_bytes = VideoReader(path.read_bytes(), backend=backend)
    with open(path, "rb") as f:
        from_file = VideoReader(f, backend=backend)
    from_buffer = VideoReader(io.BytesIO(path.read_bytes()), backend=backend, name="shard/0001.mp4")
    for reader in (from_bytes, from_file, from_buffer):
        assert reader.num_frames == NUM_FRAMES
        assert torch.equal(reader.get_frames(indices), expected)
    assert from_buffer.name == "shard/0001.mp4" and str(path) in from_file.name


def test_properties_and_timestamps(clips):
    reader = VideoReader(clips["gop8"])
    assert reader.fps == pytest.approx(25.0)
    assert reader.duration == pytest.approx(NUM_FRAMES / 25.0)
    assert len(reader) == NUM_FRAMES
    assert reader.frame_times[:3] == pytest.approx([0.0, 0.04, 0.08])
    seconds = [0.0, 0.041, 1.0, 0.5, 3.599, 1.0]
    expected = [0, 1, 25, 12, 89, 25]  # last frame shown at or before each time
    assert decode_indices(reader.get_frames_at(seconds)) == expected
    for bad in (-0.5, 3.6, 10.0):
        with pytest.raises(FrameIndexError):
            reader.get_frames_at([bad])


def test_negative_and_tensor_indices(clips):
    reader = VideoReader(clips["gop8"])
    assert decode_indices(reader.get_frames(torch.tensor([-1, 0, -NUM_FRAMES]))) == [NUM_FRAMES - 1, 0, 0]
    assert reader.get_frames([]).shape == (0, 3, 96, 128)


# ---------------------------------------------------------------------------------------------- robustness
@pytest.mark.parametrize("backend", ["pyav", "decord", "auto"])
def test_index_out_of_range_names_file(clips, backend):
    reader = VideoReader(clips["gop8"], backend=backend)
    for bad in ([NUM_FRAMES], [0, NUM_FRAMES + 5], [-NUM_FRAMES - 1]):
        with pytest.raises(FrameIndexError, match="out of range") as info:
            reader.get_frames(bad)
        assert str(clips["gop8"]) in str(info.value)
        assert isinstance(info.value, IndexError) and isinstance(info.value, VideoDecodeError)


def test_missing_empty_garbage_and_truncated_files(clips, tmp_path):
    missing = tmp_path / "nope.mp4"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"  # moov at the end (no faststart): cutting it loses the header
    truncated.write_bytes(clips["gop8"].read_bytes()[:3000])
    for path, message in [
        (missing, "not found"),
        (empty, "empty"),
        (garbage, "cannot open"),
        (truncated, "cannot open"),
    ]:
        with pytest.raises(VideoDecodeError, match=message) as info:
            VideoReader(path)
        assert str(path) in str(info.value)
    with pytest.raises(VideoDecodeError, match="empty"):
        VideoReader(b"")
    with pytest.raises(VideoDecodeError, match="cannot open"):
        VideoReader(b"\x00" * 1000, name="shard/broken.mp4")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_overreported_frame_count_raises_instead_of_hanging(overreported, backend):
    path, holds = overreported
    assert 0 < holds < NUM_FRAMES
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = VideoReader(path, backend=backend)
        assert reader.reported_num_frames == NUM_FRAMES
        assert reader.num_frames == holds
        # Every frame the file holds, the ones next to the cut included.
        indices = [holds - 1, 0, holds // 2, holds - 2, holds - 1]
        assert decode_indices(reader.get_frames(indices)) == indices
    if reader.backend != backend and backend != "auto":  # a backend that stops at the damage hands over
        assert reader.backend == "pyav" and "using PyAV instead" in str(caught[-1].message)
    with pytest.raises(FrameIndexError, match=f"holds {reader.num_frames} frames.*claims {NUM_FRAMES}"):
        reader.get_frames([0, NUM_FRAMES - 1])
    assert str(path) in str(reader.name)


# ---------------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((10, 4, "uniform"), {}, [0, 3, 6, 9]),
        ((100, 8, "uniform"), {}, [0, 14, 28, 42, 56, 70, 84, 99]),
        ((3, 5, "uniform"), {}, [0, 0, 1, 1, 2]),
        ((10, 4, "segment_middle"), {}, [1, 3, 6, 8]),
        ((3, 5, "segment_middle"), {}, [0, 0, 1, 2, 2]),
        ((100, 4, "uniform"), {"start": 2.0, "end": 3.0, "fps": 10}, [20, 23, 26, 29]),
        ((100, 3, "segment_middle"), {"start": 2.05, "end": 3.0, "fps": 10}, [22, 25, 28]),
        ((100, 2, "uniform"), {"start": 9.5, "fps": 10}, [95, 99]),
        ((3, 5, "consecutive"), {}, [0, 1, 2, 2, 2]),
    ],
)
def test_sampling_matches_hand_computed(args, kwargs, expected):
    assert sample_frame_indices(*args, **kwargs) == expected


def test_segment_random_draws_one_frame_per_segment():
    g = torch.Generator().manual_seed(0)
    seen = [set() for _ in range(5)]
    for _ in range(200):
        idx = sample_frame_indices(10, 5, "segment_random", generator=g)
        for k, i in enumerate(idx):
            assert i in (2 * k, 2 * k + 1)  # segments [0,2), [2,4), ... of a 10-frame video
            seen[k].add(i)
    assert all(s == {2 * k, 2 * k + 1} for k, s in enumerate(seen))
    first = sample_frame_indices(1000, 8, "segment_random", generator=torch.Generator().manual_seed(3))
    again = sample_frame_indices(1000, 8, "segment_random", generator=torch.Generator().manual_seed(3))
    assert first == again
    # Window [2 s, 3 s) at 10 fps = frames 20..29, four segments of 2.5 frames each.
    bounds = [(20, 22), (22, 24), (25, 27), (27, 29)]
    for _ in range(50):
        window = sample_frame_indices(100, 4, "segment_random", start=2.0, end=3.0, fps=10, generator=g)
        assert all(lo <= i <= hi for i, (lo, hi) in zip(window, bounds)), window


def test_consecutive_window_covers_every_start():
    g = torch.Generator().manual_seed(1)
    starts = set()
    for _ in range(300):
        idx = sample_frame_indices(10, 4, "consecutive", generator=g)
        assert idx == list(range(idx[0], idx[0] + 4))
        starts.add(idx[0])
    assert starts == set(range(7))


def test_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fps"):
        sample_frame_indices(10, 2, "uniform", start=1.0)
    with pytest.raises(ValueError, match="mode"):
        sample_frame_indices(10, 2, "every_other")
    with pytest.raises(ValueError):
        sample_frame_indices(0, 2, "uniform")


# ---------------------------------------------------------------------------------------------- preprocessing
def _torchvision_reference(clip, size, crop_size, mean, std, flip=False, top_left=None):
    """torchvision transforms applied frame by frame to one (T, C, H, W) uint8 clip."""
    steps = [v2.ToDtype(torch.float32, scale=True), v2.Resize(size, antialias=True)]
    if crop_size is not None and top_left is None:
        steps.append(v2.CenterCrop(crop_size))
    out = []
    for frame in clip:
        x = v2.Compose(steps)(frame)
        if top_left is not None:
            x = v2.functional.crop(x, top_left[0], top_left[1], crop_size, crop_size)
        if flip:
            x = v2.functional.horizontal_flip(x)
        out.append(v2.Normalize(mean, std)(x))
    return torch.stack(out)


MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


@pytest.mark.parametrize("size, crop_size", [(32, 28), ((30, 44), None), (24, (20, 24))])
def test_preprocess_equals_torchvision_per_frame(size, crop_size):
    gen = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (2, 3, 3, 40, 56), dtype=torch.uint8, generator=gen)
    out = preprocess_clip(clips, size=size, crop_size=crop_size, mean=MEAN, std=STD)
    expected = torch.stack([_torchvision_reference(c, size, crop_size, MEAN, STD) for c in clips])
    assert out.shape == expected.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    single = preprocess_clip(clips[1], size=size, crop_size=crop_size, mean=MEAN, std=STD)  # (T, C, H, W)
    torch.testing.assert_close(single, expected[1], atol=1e-5, rtol=1e-5)


def test_preprocess_random_crop_and_flip_match_torchvision_at_drawn_offsets():
    gen = torch.Generator().manual_seed(1)
    clips = torch.randint(0, 256, (4, 3, 3, 40, 56), dtype=torch.uint8, generator=gen)
    size, crop = 32, 24
    out = preprocess_clip(
        clips,
        size=size,
        crop_size=crop,
        crop="random",
        flip_prob=0.5,
        mean=MEAN,
        std=STD,
        generator=torch.Generator().manual_seed(5),
    )
    resized_w = int(size * 56 / 40)
    flips_seen, offsets_seen = set(), set()
    for b in range(4):
        # Find the one crop offset and flip that torchvision must use to give the same clip.
        matches = [
            (top, left, flip)
            for top in range(size - crop + 1)
            for left in range(resized_w - crop + 1)
            for flip in (False, True)
            if torch.allclose(
                out[b], _torchvision_reference(clips[b], size, crop, MEAN, STD, flip, (top, left)), atol=1e-5
            )
        ]
        assert len(matches) == 1, matches
        offsets_seen.add(matches[0][:2])
        flips_seen.add(matches[0][2])
    assert len(offsets_seen) > 1 and flips_seen == {False, True}  # drawn per clip, not once per batch


def test_preprocess_always_flip():
    clip = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = preprocess_clip(clip, flip_prob=1.0, mean=MEAN, std=STD)
    torch.testing.assert_close(out, _torchvision_reference(clip, 16, None, MEAN, STD, flip=True))
    with pytest.raises(TypeError):
        preprocess_clip(clip.float())


@pytest.mark.gpu
def test_preprocess_on_cuda_matches_cpu():
    clips = torch.randint(0, 256, (2, 4, 3, 64, 80), dtype=torch.uint8)
    kwargs = dict(size=48, crop_size=40, mean=MEAN, std=STD)
    torch.testing.assert_close(
        preprocess_clip(clips.cuda(), **kwargs).cpu(), preprocess_clip(clips, **kwargs), atol=1e-4, rtol=1e-4
    )


# ---------------------------------------------------------------------------------------------- reencode
def _keyframe_positions(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    order = np.argsort([p.pts for p in packets], kind="stable")
    rank = np.empty(len(packets), dtype=int)
    rank[order] = np.arange(len(packets))
    return sorted(int(rank[i]) for i, p in enumerate(packets) if p.is_keyframe)


def test_reencode_folder_short_gop_and_resize(clips, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.mp4").write_bytes(clips["gop250"].read_bytes())
    (src / "sub" / "b.mp4").write_bytes(clips["gop8_open"].read_bytes())
    (src / "notes.txt").write_text("not a video")
    assert main(["reencode", str(src), str(tmp_path / "dst"), "--gop", "4", "--short-side", "48"]) == 0
    for rel in ("a.mp4", "sub/b.mp4"):
        out = tmp_path / "dst" / rel
        reader = VideoReader(out)
        assert (reader.num_frames, reader.height, reader.width) == (NUM_FRAMES, 48, 64)
        assert reader.fps == pytest.approx(25.0)
        assert _keyframe_positions(out) == list(range(0, NUM_FRAMES, 4))
        assert pyav_sequential_indices(out) == list(range(NUM_FRAMES))


def test_reencode_module_entry_point_single_file(clips, tmp_path):
    dst = tmp_path / "one.mp4"
    cmd = [sys.executable, "-m", "common.video", "reencode", str(clips["gop8"]), str(dst), "--gop", "16"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert _keyframe_positions(dst) == list(range(0, NUM_FRAMES, 16))
    assert VideoReader(dst).height == 96


def test_index_frame_helper_round_trips():
    frame = torch.from_numpy(index_frame(613, 96, 128)).permute(2, 0, 1)
    assert decode_indices(frame[None]) == [613]
