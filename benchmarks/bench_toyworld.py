"""Benchmark of the toy-world generator (``common.toyworld``): how fast it writes datasets on one CPU core.

Goal from issue 2: 1,000 ten-frame 64x64 videos in under a minute on one core. The script pins itself to one
core (``os.sched_setaffinity``), writes the MSR-VTT and image-text datasets end to end with ``generate`` (the
code path ``python -m common.toyworld`` runs), and times the parts of one video (sampling, rendering,
captions, mp4 encoding) separately.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_toyworld.py            # full: 1,000 videos, 3 repeats
    .venv/bin/python benchmarks/bench_toyworld.py --quick    # 100 videos, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.toyworld import caption_pair, generate, render_video, sample_scene, write_mp4  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_generate(fmt: str, num: int, repeats: int, **options) -> list[float]:
    times = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate(fmt, out=Path(tmp) / fmt, num=num, seed=r, progress=True, **options)
            times.append(time.perf_counter() - start)
        print(f"{fmt}: {num} samples in {times[-1]:.2f} s (repeat {r + 1}/{repeats})", flush=True)
    return times


def time_parts(num: int) -> dict[str, float]:
    """Mean milliseconds per video of each part of the msrvtt writer's loop."""
    parts = dict.fromkeys(("sample_scene", "render_video", "caption_pair x5", "write_mp4"), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(num):
            rng = np.random.default_rng([0, i])
            t0 = time.perf_counter()
            scene = sample_scene(rng, num_events=(1, 2))
            t1 = time.perf_counter()
            video = render_video(scene, size=64)
            t2 = time.perf_counter()
            for _ in range(5):
                caption_pair(scene, rng)
            t3 = time.perf_counter()
            write_mp4(Path(tmp) / "v.mp4", video.frames, scene.fps)
            t4 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key] += dt
    return {k: 1000 * v / num for k, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 videos, one repeat")
    parser.add_argument("--out", type=Path, default=None, help="results markdown")
    args = parser.parse_args()
    num, repeats = (100, 1) if args.quick else (1000, 3)
    out = args.out or Path("runs/bench/toyworld-quick.md" if args.quick else "benchmarks/results/toyworld.md")
    pinned = "no"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = "yes (os.sched_setaffinity to one core)"

    import av
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    msrvtt = time_generate("msrvtt", num, repeats)
    imagetext = time_generate("imagetext", num, repeats)
    parts = time_parts(min(num, 200))

    def row(name: str, times: list[float]) -> str:
        med = statistics.median(times)
        return (
            f"| {name} | {num} | {repeats} | {med:.2f} | {min(times):.2f} | {max(times):.2f} | "
            f"{num / med:.0f} | {1000 * med / num:.2f} |"
        )

    command = "python benchmarks/bench_toyworld.py" + (" --quick" if args.quick else "")
    goal = statistics.median(msrvtt) * 1000 / num
    lines = [
        "# Toy-world generator speed",
        "",
        f"- Command: `{command}` (from the repository root, `.venv/bin/python`)",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores visible; pinned to one core: {pinned}",
        f"- Software: Python {platform.python_version()}, numpy {np.__version__}, PyAV {av.__version__}, "
        f"torch {torch.__version__}",
        f"- Load average (1/5/15 min) at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(other jobs on the machine slow the figures down)",
        "",
        "## End to end (`generate`, the CLI's code path, progress bar on)",
        "",
        "msrvtt: 10 frames at 5 fps, 64x64, libx264 yuv420p crf 18, 5 captions per video, 1-3 objects,",
        "1-2 events, plus `MSRVTT_data.json`, CSVs and `toyworld.json`. imagetext: 64x64 PNG, 3 EN + 3 ZH",
        "captions, referring expressions and QA in `toyworld.json`.",
        "",
        "| dataset | samples | repeats | median s | min s | max s | samples/s | ms/sample |",
        "|---|---|---|---|---|---|---|---|",
        row("msrvtt", msrvtt),
        row("imagetext", imagetext),
        "",
        f"Goal (issue 2): 1,000 ten-frame 64x64 videos in under 60 s on one core. Measured: "
        f"{goal:.1f} s per 1,000 videos (median) -> {'met' if goal < 60 else 'NOT met'}.",
        "",
        f"## Parts of one msrvtt video (mean ms over {min(num, 200)} videos)",
        "",
        "| part | ms/video |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in parts.items()],
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
