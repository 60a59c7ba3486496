"""Frame-exact, fast video decoding, frame-index sampling and device-side clip preprocessing.

Five papers of this repository read raw video (SNP-S3, TPM-CL, video scene recognition, EVE, TSGSV). This
module gives them one reader, :class:`VideoReader`, with three interchangeable backends (PyAV, decord and,
when installed, TorchCodec) that all return exactly the frames asked for.

How the reader stays exact and fast:

* On open it demuxes the stream once (no decoding) and builds a packet index: every frame's presentation
  timestamp and which keyframe it must be decoded from. The frame count is the number of packets actually in
  the file, never the container header's claim, so a file that over-reports its length (dmlc/decord#373) or a
  truncated one gives a :class:`VideoDecodeError` instead of a hang or garbage.
* A request is deduplicated and sorted, then decoded in one forward pass: the decoder seeks only when the next
  wanted frame lies in a later GOP and never seeks backwards; the answer is reordered at the end. This is the
  access pattern that TorchCodec's benchmarks show to be the fast one for sparse random access.
* The PyAV backend also tells the decoder to skip non-reference frames that were not asked for (FFmpeg's
  ``skip_frame=NONREF``, set per packet, so it is exact: no other frame depends on a non-reference frame), and
  converts to RGB (with an optional resize in the same ``sws_scale`` call) only the frames that are returned.
* decord's seek is wrong on open-GOP streams (it counts frames from the keyframe's position in decode order)
  and TorchCodec fails on their last frames, so on such files both fall back to PyAV with a warning (the
  packet index detects open GOPs). Against decord's other known problems: it only ever sees sorted,
  deduplicated indices already checked against the packet index (wrong frames after backward seeks,
  dmlc/decord#195; the hang on over-reported counts, #373), and its background read-ahead, which grows
  memory while a reader sits idle (#157), ends with the reader: use ``with`` or ``close()``. The
  DataLoader benchmark reports worker memory growth for each backend.

Frame indices follow presentation order, ``0 .. num_frames - 1``, the same numbering as decord and
TorchCodec. Timestamps in seconds are relative to the first frame.

:func:`sample_frame_indices` implements the sampling protocols of the papers (CLIP4Clip uniform sampling,
ClipBERT/TSN segment sampling, consecutive windows) and :func:`preprocess_clip` turns a uint8 clip batch into
normalised float on the device (to be called from ``LightningModule.on_after_batch_transfer``), so loaders
ship uint8 and host-to-device traffic is a quarter of float32.

Command line: ``python -m common.video reencode SRC DST --gop 16 --short-side 256`` re-encodes a file or a
folder to a short keyframe interval for fast random access.

References: TorchCodec (pytorch/torchcodec) on sorted, forward-only batch decoding; CLIP4Clip
(arXiv:2104.08860, ``rawvideo_util.py``) for uniform sampling; TSN (arXiv:1608.00859) and ClipBERT
(arXiv:2102.06183) for segment sampling. The backend order of ``backend="auto"`` comes from
``benchmarks/results/video.md``.
"""

from __future__ import annotations

import argparse
import bisect
import io
import logging
import math
import os
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Literal

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

__all__ = [
    "AUTO_BACKEND_ORDER",
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FrameIndexError",
    "VideoDecodeError",
    "VideoReader",
    "available_backends",
    "preprocess_clip",
    "reencode",
    "reencode_tree",
    "sample_frame_indices",
]

logger = logging.getLogger(__name__)

VideoSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO
Backend = Literal["auto", "pyav", "decord", "torchcodec"]
SampleMode = Literal["uniform", "segment_random", "segment_middle", "consecutive"]

# Fastest first, as measured by benchmarks/bench_video.py (benchmarks/results/video.md): this module's
# PyAV path (sorted, forward-only, non-reference frames skipped) beat TorchCodec and decord on every
# workload there. "auto" takes the first available backend of this tuple.
AUTO_BACKEND_ORDER: tuple[str, ...] = ("pyav", "torchcodec", "decord")

# OpenAI CLIP's normalisation (CLIP4Clip and its descendants), and ImageNet's.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# Backends that are not frame-exact on open-GOP streams (keyframes that later-decoded frames are shown
# before). decord 0.6.0 places keyframes by decode order and returns shifted frames after a seek;
# TorchCodec 0.17.0 fails on the last frames ("no more frames left to decode"). Both found by
# tests/common/test_video.py on x264 open-gop=1 clips; such files are read with PyAV instead.
_OPEN_GOP_UNSAFE = frozenset({"decord", "torchcodec"})


class VideoDecodeError(RuntimeError):
    """A video could not be opened or the frames asked for could not be decoded.

    Attributes:
        source: the file path, or a short description of an in-memory source.
    """

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class FrameIndexError(VideoDecodeError, IndexError):
    """A frame index or timestamp outside the frames the file really holds."""


def available_backends() -> list[str]:
    """Backends importable in this environment, in ``AUTO_BACKEND_ORDER``."""
    found = []
    for name in AUTO_BACKEND_ORDER:
        try:
            _import_backend(name)
        except ImportError:
            continue
        found.append(name)
    return found


def _import_backend(name: str):
    if name == "pyav":
        return av
    if name == "decord":
        import decord

        # decord's bundled FFmpeg writes every concealed slice error to stderr; errors still raise.
        decord.logging.set_level(decord.logging.QUIET)
        return decord
    if name == "torchcodec":
        try:
            from torchcodec import decoders
        except ImportError:
            raise
        except Exception as exc:  # installed, but FFmpeg's shared libraries are missing or mismatched
            raise ImportError(f"torchcodec is installed but cannot load: {exc}") from exc
        return decoders
    raise ValueError(f"unknown video backend {name!r}; expected auto, pyav, decord or torchcodec")


def _resized_hw(
    height: int, width: int, size: tuple[int, int] | None, short_side: int | None
) -> tuple[int, int]:
    if size is not None and short_side is not None:
        raise ValueError("give either size=(H, W) or short_side=, not both")
    if size is not None:
        return int(size[0]), int(size[1])
    if short_side is not None:
        # torchvision.transforms.Resize(int) convention: the long side is truncated, not rounded.
        if height <= width:
            return int(short_side), int(short_side * width / height)
        return int(short_side * height / width), int(short_side)
    return height, width


class _PacketIndex:
    """Presentation-ordered frame table built from demuxed packets (no decoding).

    Attributes:
        pts: (N,) int64 presentation timestamps, sorted, in ``time_base`` units.
        seek_ts: (N,) int64 timestamp to seek to for frame i: its governing keyframe's pts.
        gop: (N,) int64 presentation index of the keyframe frame i is decoded from.
        open_gop: True when some frame after a keyframe in decode order is shown before it.
    """

    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream, name: str) -> None:
        pts_list: list[int] = []
        key_list: list[bool] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_corrupt:
                    continue  # the final flush packet, or a packet cut short by truncation
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    continue
                pts_list.append(ts)
                key_list.append(bool(packet.is_keyframe))
        except (av.FFmpegError, OSError) as exc:
            # Truncated or damaged data: keep the packets read so far; they are what the file holds.
            logger.warning("%s: demuxing stopped early (%s); using %d packets", name, exc, len(pts_list))
        if not pts_list:
            raise VideoDecodeError(name, "no decodable video frames")

        decode_pts = np.asarray(pts_list, dtype=np.int64)
        is_key = np.asarray(key_list, dtype=bool)
        order = np.argsort(decode_pts, kind="stable")
        self.pts = decode_pts[order]
        self.open_gop = False
        key_decode_pos = np.flatnonzero(is_key)
        for j, pos in enumerate(key_decode_pos[1:], start=1):
            end = key_decode_pos[j + 1] if j + 1 < len(key_decode_pos) else len(decode_pts)
            if (decode_pts[pos + 1 : end] < decode_pts[pos]).any():
                self.open_gop = True
                break

        n = len(self.pts)
        rank = np.empty(n, dtype=np.int64)  # decode position -> presentation index
        rank[order] = np.arange(n)
        key_pres = np.sort(rank[key_decode_pos]) if len(key_decode_pos) else np.zeros(0, dtype=np.int64)
        # A frame is decoded from the last keyframe shown at or before it. For an open GOP this sends the
        # leading frames of a GOP to the previous keyframe, which is where they can be decoded correctly.
        if len(key_pres) == 0 or key_pres[0] != 0:
            # The stream does not start on a keyframe: decode from its very first packet.
            key_pres = np.concatenate([[0], key_pres])
        slot = np.searchsorted(key_pres, np.arange(n), side="right") - 1
        self.gop = key_pres[slot]
        # Seek by the keyframe's pts: FFmpeg's MP4 demuxer compares seek targets with edit-list-shifted
        # times, so the keyframe's dts (smaller with B-frames) lands one whole GOP early; pts lands on it.
        # A landing after the keyframe would be caught in decoding (and retried from the start).
        self.seek_ts = self.pts[key_pres][slot]
        self.pts_to_index = {int(p): i for i, p in enumerate(self.pts)}


class VideoReader:
    """Reads exactly the frames asked for, as ``torch.uint8`` ``(T, C, H, W)`` RGB.

    Args:
        source: a file path, or the video's bytes or a binary file-like object (e.g. a member of a tar or
            LMDB shard; read into memory once).
        backend: ``"pyav"``, ``"decord"``, ``"torchcodec"`` or ``"auto"`` (the fastest available, in
            ``AUTO_BACKEND_ORDER``).
        num_threads: decoder threads (1 is best inside DataLoader workers).
        size: decode-time resize to ``(H, W)``.
        short_side: decode-time resize so that the shorter side is this long, keeping the aspect ratio.
        name: how errors refer to an in-memory source (default: ``<N bytes>`` or the file object's name).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video or holds no decodable video frame.

    Example:
        >>> with VideoReader("clip.mp4", short_side=224) as reader:
        ...     idx = sample_frame_indices(reader.num_frames, 8, "segment_middle")
        ...     frames = reader.get_frames(idx)  # (8, 3, 224, W) uint8
    """

    def __init__(
        self,
        source: VideoSource,
        backend: Backend = "auto",
        num_threads: int = 1,
        *,
        size: tuple[int, int] | None = None,
        short_side: int | None = None,
        name: str | None = None,
    ) -> None:
        self._path, self._data, self.name = self._normalise_source(source, name)
        self.num_threads = int(num_threads)
        self._container = None
        self._backend_handle = None
        self._frames = None
        self._cursor: int | None = None
        self._want_pts: set[int] = set()
        self._reformatter = VideoReformatter()

        self._container, self._stream = self._open_pyav()
        try:
            self._index = _PacketIndex(self._container, self._stream, self.name)
        except BaseException:
            self.close()
            raise
        self._cursor = None
        self._frames = None  # the demux above consumed the stream; the first decode seeks

        stream = self._stream
        self.time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        self.reported_num_frames = int(stream.frames or 0)
        self.source_height, self.source_width = (
            int(stream.codec_context.height),
            int(stream.codec_context.width),
        )
        self.height, self.width = _resized_hw(self.source_height, self.source_width, size, short_side)
        self._resize = (self.height, self.width) != (self.source_height, self.source_width)
        rate = stream.average_rate or stream.guessed_rate
        n = self.num_frames
        if rate:
            self.fps = float(rate)
        elif n > 1:
            self.fps = (n - 1) / float((self._index.pts[-1] - self._index.pts[0]) * self.time_base)
        else:
            self.fps = float("nan")
        self._times = ((self._index.pts - self._index.pts[0]) * float(self.time_base)).tolist()

        self.backend = self._choose_backend(backend)
        if self.backend != "pyav":
            try:
                self._backend_handle = self._open_other(self.backend)
            except VideoDecodeError as exc:
                # e.g. decord gives up on a file whose data ends before its header says (av_read_frame
                # fails while it indexes); PyAV's packet index has already found the frames it holds.
                warnings.warn(f"{exc}; using PyAV instead", RuntimeWarning, stacklevel=2)
                self.backend = "pyav"
            else:
                self._close_pyav()

    # ------------------------------------------------------------------ properties
    @property
    def num_frames(self) -> int:
        """Frames the file really holds (from its packets, not from the header)."""
        return len(self._index.pts)

    @property
    def duration(self) -> float:
        """Seconds covered by the frames: ``num_frames / fps``."""
        return self.num_frames / self.fps

    @property
    def frame_times(self) -> list[float]:
        """Presentation time of each frame in seconds, relative to the first frame."""
        return list(self._times)

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (
            f"VideoReader({self.name!r}, backend={self.backend!r}, num_frames={self.num_frames}, "
            f"fps={self.fps:.3f}, size=({self.height}, {self.width}))"
        )

    # ------------------------------------------------------------------ public API
    def get_frames(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The frames at ``indices``, in the order given, repeats allowed.

        Args:
            indices: frame indices in ``[0, num_frames)``; negative indices count from the end.

        Returns:
            ``torch.uint8`` tensor ``(T, 3, H, W)``, RGB, ``T == len(indices)``.

        Raises:
            FrameIndexError: an index is outside the frames the file holds.
            VideoDecodeError: a frame could not be decoded (damaged data).
        """
        idx = np.asarray(torch.as_tensor(indices).cpu().numpy() if torch.is_tensor(indices) else indices)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        n = self.num_frames
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            claim = (
                f" (the header claims {self.reported_num_frames})" if self.reported_num_frames != n else ""
            )
            raise FrameIndexError(
                self.name, f"frame index {int(idx[bad][0])} out of range: the file holds {n} frames{claim}"
            )
        idx = np.where(idx < 0, idx + n, idx)
        if len(idx) == 0:
            return torch.empty((0, 3, self.height, self.width), dtype=torch.uint8)
        wanted, inverse = np.unique(idx, return_inverse=True)  # sorted, each frame decoded once
        if self.backend == "pyav":
            frames = self._decode_pyav(wanted)
        else:
            try:
                frames = (
                    self._decode_decord(wanted)
                    if self.backend == "decord"
                    else self._decode_torchcodec(wanted)
                )
            except VideoDecodeError as exc:
                # Damaged data that the other decoders stop at (TorchCodec pushes a packet cut short by
                # truncation and fails) is skipped by the PyAV path; hand this reader over to it.
                warnings.warn(f"{exc}; using PyAV instead", RuntimeWarning, stacklevel=2)
                self.backend, self._backend_handle = "pyav", None
                frames = self._decode_pyav(wanted)
        if len(wanted) == len(idx) and (wanted == idx).all():
            return frames  # asked sorted and without repeats: no reordering copy
        return frames[torch.from_numpy(inverse.reshape(-1))]

    def get_frames_at(self, seconds: Sequence[float] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The frames shown at the given times (seconds from the first frame), in the order given.

        A time maps to the last frame whose presentation time is at or before it.

        Raises:
            FrameIndexError: a time is negative or at or after the end of the last frame.
        """
        secs = np.asarray(
            torch.as_tensor(seconds).cpu().numpy() if torch.is_tensor(seconds) else seconds, dtype=np.float64
        ).reshape(-1)
        eps = 1e-6
        last_end = self._times[-1] + (1.0 / self.fps if self.fps == self.fps else 0.0)
        indices = []
        for s in secs:
            if not (-eps <= s < last_end - eps):
                raise FrameIndexError(self.name, f"time {s:.6f}s outside [0, {last_end:.6f})")
            indices.append(max(bisect.bisect_right(self._times, float(s) + eps) - 1, 0))
        return self.get_frames(indices)

    def close(self) -> None:
        """Release the decoder (also done on garbage collection and by ``with``)."""
        self._close_pyav()
        self._backend_handle = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn modules down
            pass

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _normalise_source(source: VideoSource, name: str | None) -> tuple[str | None, bytes | None, str]:
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.exists(path):
                raise VideoDecodeError(path, "file not found")
            if os.path.isdir(path):
                raise VideoDecodeError(path, "is a directory, not a video file")
            if os.path.getsize(path) == 0:
                raise VideoDecodeError(path, "empty file")
            return path, None, name or path
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        elif hasattr(source, "read"):
            data = source.read()
            name = name or str(getattr(source, "name", "") or "") or None
        else:
            raise TypeError(
                f"VideoReader source must be a path, bytes or a binary file object, got {type(source)}"
            )
        label = name or f"<{len(data)} bytes>"
        if len(data) == 0:
            raise VideoDecodeError(label, "empty file")
        return None, data, label

    def _open_pyav(self):
        target = self._path if self._path is not None else io.BytesIO(self._data)
        try:
            container = av.open(target, mode="r", metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoDecodeError(self.name, f"cannot open as a video ({exc})") from exc
        if not container.streams.video:
            container.close()
            raise VideoDecodeError(self.name, "no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count = self.num_threads
        # Frame threading adds a reorder delay per seek; slice threading has none.
        ctx.thread_type = "SLICE" if self.num_threads > 1 else "NONE"
        return container, stream

    def _close_pyav(self) -> None:
        self._frames = None
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None

    def _choose_backend(self, backend: str) -> str:
        if backend == "auto":
            for candidate in AUTO_BACKEND_ORDER:
                try:
                    _import_backend(candidate)
                except ImportError:
                    continue
                if candidate in _OPEN_GOP_UNSAFE and self._index.open_gop:
                    continue
                return candidate
            return "pyav"
        _import_backend(backend)  # ValueError for an unknown name, ImportError when not installed
        if backend in _OPEN_GOP_UNSAFE and self._index.open_gop:
            warnings.warn(
                f"{self.name}: open-GOP stream; {backend} returns wrong frames or fails on these "
                "(see common/video.py), using PyAV instead",
                RuntimeWarning,
                stacklevel=3,
            )
            return "pyav"
        return backend

    def _open_other(self, backend: str):
        try:
            if backend == "decord":
                decord = _import_backend("decord")
                uri = self._path if self._path is not None else io.BytesIO(self._data)
                kwargs = {"width": self.width, "height": self.height} if self._resize else {}
                return decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=self.num_threads, **kwargs)
            decoders = _import_backend("torchcodec")
            transforms = None
            if self._resize:
                from torchcodec.transforms import Resize

                transforms = [Resize(size=(self.height, self.width))]
            src = self._path if self._path is not None else self._data
            return decoders.VideoDecoder(
                src,
                seek_mode="exact",
                num_ffmpeg_threads=self.num_threads,
                dimension_order="NCHW",
                transforms=transforms,
            )
        except Exception as exc:
            raise VideoDecodeError(self.name, f"{backend} cannot open the video ({exc})") from exc

    # ------------------------------------------------------------------ decoding
    def _decode_pyav(self, wanted: np.ndarray) -> torch.Tensor:
        if self._container is None:
            self._container, self._stream = self._open_pyav()
        index = self._index
        out = np.empty((len(wanted), 3, self.height, self.width), dtype=np.uint8)  # (T, C, H, W)
        # Which packets to decode in full; the rest may be skipped when nothing references them. Set per
        # call, and the first wanted frame always seeks, so no packet was fed under another call's set.
        self._want_pts = {int(index.pts[i]) for i in wanted}
        self._cursor = None
        k = 0
        retried_for, from_start = -1, False
        while k < len(wanted):
            target = int(wanted[k])
            cur = self._cursor
            if not from_start and (
                cur is None or cur >= target or index.gop[target] != index.gop[min(cur + 1, target)]
            ):
                self._seek(target)
            overshot = from_start = False
            for frame in self._frames:
                i = index.pts_to_index.get(frame.pts) if frame.pts is not None else None
                if i is None:
                    continue
                self._cursor = i
                if i < target:
                    continue
                if i > target:
                    overshot = True
                    break
                # One cached swscale context converts (and resizes) every returned frame; a fresh
                # frame.to_ndarray(format=...) builds a new context per frame, ten times slower.
                rgb = self._reformatter.reformat(
                    frame,
                    width=self.width,
                    height=self.height,
                    format="gbrp",
                    interpolation="BILINEAR",
                    threads=self.num_threads,
                )
                # Planar output copied plane by plane straight into (C, H, W): no interleaved RGB and no
                # transpose afterwards. gbrp stores the planes as G, B, R.
                for plane, channel in zip(rgb.planes, (1, 2, 0)):
                    rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
                    out[k, channel] = rows[: self.height, : self.width]
                k += 1
                if k == len(wanted):
                    break
                target = int(wanted[k])
                if index.gop[target] != index.gop[min(i + 1, target)]:
                    break  # the next wanted frame is in a later GOP: seek there
            else:
                self._cursor = None
                self._frames = None
                raise VideoDecodeError(
                    self.name, f"data ends before frame {target} (truncated or damaged file)"
                )
            if overshot:
                # The seek landed past the keyframe (a container with odd seek semantics) or the decoder
                # dropped the frame: decode once more from the very first keyframe, then give up.
                if retried_for == target:
                    raise VideoDecodeError(self.name, f"frame {target} could not be decoded")
                retried_for = target
                self._seek(0, ts=int(index.pts[0]))
                from_start = True
        return torch.from_numpy(out)

    def _seek(self, target: int, ts: int | None = None) -> None:
        ts = int(self._index.seek_ts[target]) if ts is None else ts
        try:
            self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError) as exc:
            raise VideoDecodeError(self.name, f"seek failed ({exc})") from exc
        self._cursor = None
        self._frames = self._iter_frames()

    def _iter_frames(self):
        """Decoded frames from the current position, skipping non-reference frames not in ``_want_pts``."""
        ctx = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            if packet.size and packet.pts is not None:
                # Per packet, so exact: a skipped non-reference frame is needed by no other frame.
                ctx.skip_frame = "DEFAULT" if packet.pts in self._want_pts else "NONREF"
            else:
                ctx.skip_frame = "DEFAULT"
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                logger.debug("%s: packet at pts %s undecodable (%s)", self.name, packet.pts, exc)
                continue
            yield from frames

    def _decode_decord(self, wanted: np.ndarray) -> torch.Tensor:
        try:
            batch = self._backend_handle.get_batch(wanted.tolist()).asnumpy()
        except Exception as exc:
            raise VideoDecodeError(self.name, f"decord failed to decode ({exc})") from exc
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def _decode_torchcodec(self, wanted: np.ndarray) -> torch.Tensor:
        try:
            return self._backend_handle.get_frames_at(indices=wanted.tolist()).data.contiguous()
        except Exception as exc:
            raise VideoDecodeError(self.name, f"torchcodec failed to decode ({exc})") from exc


# ---------------------------------------------------------------------------------------------- sampling
def sample_frame_indices(
    num_frames: int,
    num_samples: int,
    mode: SampleMode,
    *,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Frame indices for one clip, sorted ascending.

    The window is ``[first, stop)`` = all frames, or those whose time ``i / fps`` lies in ``[start, end)``
    (at least one frame). Let ``L = stop - first`` and ``S = num_samples``:

    * ``uniform`` (CLIP4Clip): ``floor(linspace(first, stop - 1, S))``, both ends included.
    * ``segment_random`` (TSN/ClipBERT training): the window is cut into ``S`` equal real-valued segments
      of length ``L / S``; one uniformly random frame per segment: ``floor(first + (k + u_k) * L / S)``.
    * ``segment_middle`` (evaluation): the middle of each segment, ``floor(first + (k + 0.5) * L / S)``.
    * ``consecutive``: ``S`` consecutive frames starting at a uniformly random frame; a window shorter than
      ``S`` is taken whole and its last frame repeated.

    When ``L < S`` the segment modes repeat frames; all modes always return ``S`` valid indices.

    Args:
        num_frames: frames in the video (``VideoReader.num_frames``).
        num_samples: how many indices to return.
        mode: one of the four modes above.
        start: window start in seconds (needs ``fps``).
        end: window end in seconds, exclusive (needs ``fps``).
        fps: frame rate used to turn ``start``/``end`` into frame indices.
        generator: random source for the random modes (default: torch's global generator).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    first, stop = 0, num_frames
    if start is not None or end is not None:
        if not fps or fps <= 0:
            raise ValueError("start/end in seconds need fps")
        # A frame i is in the window when its time i / fps is in [start, end); 1e-9 absorbs float error.
        if start is not None:
            first = min(max(math.ceil(start * fps - 1e-9), 0), num_frames - 1)
        if end is not None:
            stop = min(max(math.ceil(end * fps - 1e-9), first + 1), num_frames)
    length = stop - first

    if mode == "uniform":
        return np.linspace(first, stop - 1, num_samples).astype(np.int64).tolist()
    if mode == "segment_middle":
        k = np.arange(num_samples, dtype=np.float64)
        return np.floor(first + (k + 0.5) * length / num_samples).astype(np.int64).tolist()
    if mode == "segment_random":
        u = torch.rand(num_samples, generator=generator, dtype=torch.float64).numpy()
        k = np.arange(num_samples, dtype=np.float64)
        idx = np.floor(first + (k + u) * length / num_samples).astype(np.int64)
        return np.minimum(idx, stop - 1).tolist()
    if mode == "consecutive":
        latest_start = max(stop - num_samples, first)
        s = int(torch.randint(first, latest_start + 1, (1,), generator=generator))
        return np.minimum(np.arange(s, s + num_samples), stop - 1).tolist()
    raise ValueError(
        f"unknown sampling mode {mode!r}; expected uniform, segment_random, segment_middle, consecutive"
    )


# ---------------------------------------------------------------------------------------------- preprocessing
def preprocess_clip(
    clip: torch.Tensor,
    *,
    size: int | tuple[int, int] | None = None,
    crop_size: int | tuple[int, int] | None = None,
    crop: Literal["center", "random"] = "center",
    flip_prob: float = 0.0,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear",
    antialias: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 clips -> normalised float, on the clips' device: resize, crop, flip, mean/std.

    Equivalent to torchvision's ``ToDtype(float32, scale=True) -> Resize(size) -> CenterCrop/RandomCrop ->
    RandomHorizontalFlip -> Normalize(mean, std)`` applied to every frame, with one crop and one flip drawn
    per clip (shared by its frames). Meant for ``LightningModule.on_after_batch_transfer``.

    Args:
        clip: ``uint8`` ``(B, T, C, H, W)`` or ``(T, C, H, W)``.
        size: resize target: an int resizes the shorter side (torchvision's rule), ``(H, W)`` is exact.
        crop_size: crop to this size (int: square) after resizing; ``None`` keeps the whole frame.
        crop: ``"center"`` (evaluation) or ``"random"`` (training, one offset per clip).
        flip_prob: probability of a horizontal flip per clip.
        mean: per-channel mean in ``[0, 1]`` units.
        std: per-channel standard deviation in ``[0, 1]`` units.
        interpolation: ``F.interpolate`` mode for the resize.
        antialias: low-pass before down-scaling (torchvision's default).
        generator: random source (CPU generator) for crop offsets and flips.
        dtype: output dtype (compute happens in float32).

    Returns:
        Float tensor of the same rank: ``(B, T, C, h, w)`` or ``(T, C, h, w)``.
    """
    if clip.dtype != torch.uint8:
        raise TypeError(f"preprocess_clip expects uint8 clips, got {clip.dtype}")
    squeeze = clip.dim() == 4
    if squeeze:
        clip = clip.unsqueeze(0)
    if clip.dim() != 5:
        raise ValueError(f"expected (B, T, C, H, W) or (T, C, H, W), got shape {tuple(clip.shape)}")
    b, t, c, h, w = clip.shape
    x = clip.reshape(b * t, c, h, w).float()  # (B*T, C, H, W)

    if size is not None:
        if isinstance(size, int):
            out_h, out_w = _resized_hw(h, w, None, size)
        else:
            out_h, out_w = int(size[0]), int(size[1])
        if (out_h, out_w) != (h, w):
            kwargs = {"align_corners": False} if interpolation in ("bilinear", "bicubic") else {}
            use_aa = antialias and interpolation in ("bilinear", "bicubic")
            x = F.interpolate(x, size=(out_h, out_w), mode=interpolation, antialias=use_aa, **kwargs)
        h, w = out_h, out_w
    x = x.reshape(b, t, c, h, w)

    if crop_size is not None:
        ch, cw = (
            (crop_size, crop_size) if isinstance(crop_size, int) else (int(crop_size[0]), int(crop_size[1]))
        )
        if ch > h or cw > w:
            raise ValueError(f"crop {ch}x{cw} larger than the resized frame {h}x{w}")
        if crop == "center":
            # torchvision.transforms.functional.center_crop's offsets.
            top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
            x = x[..., top : top + ch, left : left + cw]
        elif crop == "random":
            tops = torch.randint(0, h - ch + 1, (b,), generator=generator).tolist()
            lefts = torch.randint(0, w - cw + 1, (b,), generator=generator).tolist()
            x = torch.stack(
                [x[i, ..., tp : tp + ch, lf : lf + cw] for i, (tp, lf) in enumerate(zip(tops, lefts))]
            )
        else:
            raise ValueError(f"crop must be 'center' or 'random', got {crop!r}")

    if flip_prob > 0:
        flips = (torch.rand(b, generator=generator) < flip_prob).to(x.device)  # (B,)
        x = torch.where(flips.view(b, 1, 1, 1, 1), x.flip(-1), x)

    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 1, c, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 1, c, 1, 1) * 255.0
    x = ((x - m) / s).to(dtype)
    return x[0] if squeeze else x


# ---------------------------------------------------------------------------------------------- re-encoding
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp")


def reencode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    gop: int = 16,
    short_side: int | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    progress: bool = True,
) -> Path:
    """Re-encode one video with H.264 (yuv420p, mp4) and a keyframe every ``gop`` frames.

    Short keyframe intervals make random access cheap: a frame is at most ``gop - 1`` decodes away from a
    keyframe. The video stream is re-encoded (optionally down-scaled so the shorter side is
    ``short_side``, even dimensions); audio and other streams are dropped.

    Returns:
        The output path.

    Raises:
        VideoDecodeError: the input cannot be decoded.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with VideoReader(src, backend="pyav") as probe:
        total = probe.num_frames
    try:
        in_container = av.open(str(src), metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(str(src), f"cannot open ({exc})") from exc
    from tqdm.auto import tqdm

    with in_container, av.open(str(dst), mode="w", format="mp4") as out_container:
        in_stream = in_container.streams.video[0]
        in_stream.codec_context.thread_type = "AUTO"
        height, width = in_stream.codec_context.height, in_stream.codec_context.width
        out_h, out_w = _resized_hw(height, width, None, short_side) if short_side else (height, width)
        out_h, out_w = out_h - out_h % 2, out_w - out_w % 2  # yuv420p needs even sizes
        rate = in_stream.average_rate or in_stream.guessed_rate or Fraction(25)
        out_stream = out_container.add_stream("libx264", rate=rate)
        out_stream.width, out_stream.height, out_stream.pix_fmt = out_w, out_h, "yuv420p"
        out_stream.codec_context.time_base = in_stream.time_base or Fraction(1, int(rate) or 25)
        out_stream.options = {
            "preset": preset,
            "crf": str(crf),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        with tqdm(total=total, desc=src.name, unit="frame", disable=not progress, leave=False) as bar:
            try:
                for frame in in_container.decode(in_stream):
                    new = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
                    new.pts, new.time_base = frame.pts, frame.time_base
                    # Decoded frames keep their source picture type, and x264 would force a keyframe at
                    # every old one; clear it so only --gop decides.
                    new.pict_type = PictureType.NONE
                    for packet in out_stream.encode(new):
                        out_container.mux(packet)
                    bar.update(1)
            except av.FFmpegError as exc:
                logger.warning("%s: decoding stopped early (%s)", src, exc)
            for packet in out_stream.encode():
                out_container.mux(packet)
    return dst


def reencode_tree(
    src: str | os.PathLike, dst: str | os.PathLike, *, gop: int = 16, short_side: int | None = None, **kwargs
) -> list[Path]:
    """Re-encode a file, or every video under a folder into the same relative layout (``.mp4``)."""
    src, dst = Path(src), Path(dst)
    if src.is_file():
        target = dst / (src.stem + ".mp4") if dst.is_dir() else dst
        return [reencode(src, target, gop=gop, short_side=short_side, **kwargs)]
    if not src.is_dir():
        raise VideoDecodeError(str(src), "file not found")
    from tqdm.auto import tqdm

    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    done, failed = [], []
    for path in tqdm(files, desc="reencode", unit="video"):
        target = (dst / path.relative_to(src)).with_suffix(".mp4")
        try:
            done.append(reencode(path, target, gop=gop, short_side=short_side, **kwargs))
        except VideoDecodeError as exc:
            logger.warning("skipped %s", exc)
            failed.append(path)
    if failed:
        logger.warning("%d of %d videos could not be re-encoded", len(failed), len(files))
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m common.video reencode SRC DST --gop N --short-side S``."""
    parser = argparse.ArgumentParser(prog="python -m common.video", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reencode", help="re-encode a video or a folder with a short keyframe interval")
    p.add_argument("src", help="a video file or a folder (searched recursively)")
    p.add_argument("dst", help="output file, or output folder for a folder")
    p.add_argument("--gop", type=int, default=16, help="keyframe interval in frames (default 16)")
    p.add_argument("--short-side", type=int, default=None, help="resize so the shorter side is S pixels")
    p.add_argument("--crf", type=int, default=23, help="x264 constant rate factor (default 23)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    outputs = reencode_tree(
        args.src, args.dst, gop=args.gop, short_side=args.short_side, crf=args.crf, preset=args.preset
    )
    logger.info("re-encoded %d video(s) into %s", len(outputs), args.dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
