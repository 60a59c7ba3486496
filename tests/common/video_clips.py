"""Test clips whose frames carry their own index in pixels, for frame-exact decoding tests.

Each frame shows its index as a row of large black/white blocks (one bit per block, most significant bit
first) over a moving gradient. The blocks are large enough to survive H.264 compression, chroma subsampling
and down-scaling, so a decoded frame can be mapped back to the index it was encoded from without trusting
any timestamp: that makes the check independent of the reader under test.

Written with PyAV (libx264, yuv420p, mp4), the same way the toy world writes its videos.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

NUM_BITS = 10  # up to 1024 frames
_BLOCK_ROWS = 2
_BLOCK_COLS = NUM_BITS // _BLOCK_ROWS


def index_frame(index: int, height: int, width: int) -> np.ndarray:
    """An RGB uint8 frame (H, W, 3) whose upper part encodes ``index`` in binary blocks."""
    yy, xx = np.mgrid[0:height, 0:width]
    # Moving background so that consecutive frames differ outside the blocks as well (real motion for
    # the encoder's B-frame decisions).
    background = ((xx * 3 + yy * 2 + index * 7) % 256).astype(np.uint8)
    frame = np.stack([background, 255 - background, (background // 2 + 64).astype(np.uint8)], axis=-1)
    code_h = (height * 2) // 3
    for bit in range(NUM_BITS):
        r, c = divmod(bit, _BLOCK_COLS)
        y0, y1 = r * code_h // _BLOCK_ROWS, (r + 1) * code_h // _BLOCK_ROWS
        x0, x1 = c * width // _BLOCK_COLS, (c + 1) * width // _BLOCK_COLS
        on = (index >> (NUM_BITS - 1 - bit)) & 1
        frame[y0:y1, x0:x1] = 255 if on else 0
    return frame


def decode_index(frame: torch.Tensor | np.ndarray) -> int:
    """The index encoded in a decoded frame (C, H, W) uint8, read at block centres."""
    x = torch.as_tensor(np.asarray(frame)).float()
    _, height, width = x.shape
    code_h = (height * 2) // 3
    gray = x.mean(0)
    index = 0
    for bit in range(NUM_BITS):
        r, c = divmod(bit, _BLOCK_COLS)
        y0, y1 = r * code_h // _BLOCK_ROWS, (r + 1) * code_h // _BLOCK_ROWS
        x0, x1 = c * width // _BLOCK_COLS, (c + 1) * width // _BLOCK_COLS
        # Inner half of the block, away from edges blurred by compression and scaling.
        hy, hx = max((y1 - y0) // 4, 1), max((x1 - x0) // 4, 1)
        value = gray[y0 + hy : y1 - hy, x0 + hx : x1 - hx].mean().item()
        index = (index << 1) | int(value > 127.5)
    return index


def decode_indices(frames: torch.Tensor) -> list[int]:
    """Indices encoded in a batch of frames (T, C, H, W)."""
    return [decode_index(f) for f in frames]


def write_index_clip(
    path: str | Path,
    num_frames: int = 60,
    width: int = 128,
    height: int = 96,
    fps: int = 25,
    gop: int = 250,
    bframes: int = 3,
    open_gop: bool = False,
    faststart: bool = False,
    crf: int = 18,
) -> Path:
    """Encode an index clip with x264: ``gop`` is the keyframe interval, ``bframes`` the B-frame run."""
    path = Path(path)
    x264_params = [
        f"keyint={gop}",
        f"min-keyint={gop}",
        "scenecut=0",
        f"bframes={bframes}",
        # b-adapt=0 places the full B-frame run everywhere: the most reordering the encoder can produce.
        "b-adapt=0",
        f"open-gop={1 if open_gop else 0}",
        f"crf={crf}",
    ]
    container_options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=container_options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"x264-params": ":".join(x264_params), "preset": "veryfast"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i, height, width), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def pyav_sequential_indices(path: str | Path) -> list[int]:
    """Reference: decode the whole clip front to back with PyAV, no seeking, and read each frame's code."""
    with av.open(str(path)) as container:
        return [
            decode_index(f.to_ndarray(format="rgb24").transpose(2, 0, 1)) for f in container.decode(video=0)
        ]
