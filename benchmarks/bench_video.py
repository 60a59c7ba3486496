"""Benchmark of common/video.py against the decoders called directly, and of a uint8 clip DataLoader.

Clips are generated on the fly with PyAV (libx264, yuv420p, mp4, x264 default B-frames) at 480p and 224p
with keyframe intervals 250 and 8. Workloads, per call (each call opens the file, as a loader does):

* ``random8``: 8 random frame indices in random order (the same index sets for every method);
* ``uniform8``: 8 frames spread over the clip (``sample_frame_indices(..., "uniform")``);
* ``consec16``: 16 consecutive frames from a random start.

Methods: decord's ``get_batch`` called directly with the indices as asked (and, as a fairer baseline, sorted
and deduplicated), PyAV the naive way (seek to each frame's time, decode forward), TorchCodec's
``get_frames_at`` when importable, and ``VideoReader`` on each backend and ``auto``. Every method runs the
same index sets, interleaved, and the figure is frames / median seconds per call. A second part runs a
DataLoader with 2 workers producing uint8 clips (8 frames, ``segment_random``, short side 224) and reports
clips/s and per-worker peak memory.

Usage:
    .venv/bin/python benchmarks/bench_video.py            # full run -> benchmarks/results/video.md
    .venv/bin/python benchmarks/bench_video.py --quick    # smoke run -> runs/bench/video-quick.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import av
import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.video import AUTO_BACKEND_ORDER, VideoReader, available_backends, sample_frame_indices  # noqa: E402

try:
    import decord

    decord.logging.set_level(decord.logging.QUIET)
except ImportError:  # pragma: no cover - decord is a pinned dependency
    decord = None
try:
    from torchcodec.decoders import VideoDecoder as TorchCodecDecoder
except Exception:  # noqa: BLE001 - absent, or present without FFmpeg's shared libraries
    TorchCodecDecoder = None


# ---------------------------------------------------------------------------------------------- clips
def synthetic_frame(i: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A textured, moving RGB frame: drifting waves plus moving squares (real motion for the encoder)."""
    h, w = yy.shape
    r = 128 + 60 * np.sin(xx / 23.0 + i * 0.11) * np.cos(yy / 17.0 - i * 0.07)
    g = 128 + 60 * np.sin((xx + yy) / 31.0 - i * 0.05)
    b = 128 + 50 * np.cos(xx / 11.0 + yy / 29.0 + i * 0.13)
    frame = np.stack([r, g, b], axis=-1)
    for k in range(4):
        size = h // 6
        y0 = int((h - size) * (0.5 + 0.45 * np.sin(i * 0.03 * (k + 1) + k)))
        x0 = int((w - size) * (0.5 + 0.45 * np.cos(i * 0.02 * (k + 2) + 2 * k)))
        frame[y0 : y0 + size, x0 : x0 + size] = (40 * k + 30, 220 - 40 * k, 90 + 30 * k)
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_clip(path: Path, width: int, height: int, num_frames: int, gop: int, fps: int = 25) -> Path:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "fast", "crf": "23", "x264-params": f"keyint={gop}:min-keyint={gop}"}
        for i in range(num_frames):
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(synthetic_frame(i, yy, xx), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---------------------------------------------------------------------------------------------- methods
def decord_direct(path: str, indices: list[int]) -> np.ndarray:
    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    return vr.get_batch(indices).asnumpy()


def decord_direct_sorted(path: str, indices: list[int]) -> np.ndarray:
    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    uniq, inverse = np.unique(indices, return_inverse=True)
    return vr.get_batch(uniq.tolist()).asnumpy()[inverse]


def pyav_naive(path: str, indices: list[int]) -> np.ndarray:
    """The common hand-written PyAV loop: per frame, seek to its time and decode forward to it."""
    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        for i in indices:
            target = int(round(i / fps / stream.time_base))
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    out.append(frame.to_ndarray(format="rgb24"))
                    break
    return np.stack(out)


def torchcodec_direct(path: str, indices: list[int]) -> torch.Tensor:
    decoder = TorchCodecDecoder(path, seek_mode="exact", num_ffmpeg_threads=1)
    return decoder.get_frames_at(indices).data


def video_reader(backend: str):
    def run(path: str, indices: list[int]) -> torch.Tensor:
        with VideoReader(path, backend=backend) as reader:
            return reader.get_frames(indices)

    return run


def methods() -> dict[str, callable]:
    found = {}
    if decord is not None:
        found["decord get_batch (as asked)"] = decord_direct
        found["decord get_batch (sorted)"] = decord_direct_sorted
    found["PyAV naive seek+decode"] = pyav_naive
    if TorchCodecDecoder is not None:
        found["torchcodec get_frames_at"] = torchcodec_direct
    for backend in available_backends():
        found[f"VideoReader({backend})"] = video_reader(backend)
    found["VideoReader(auto)"] = video_reader("auto")
    return found


def workload_indices(kind: str, num_frames: int, rng: np.random.Generator) -> list[int]:
    if kind == "random8":
        return rng.integers(0, num_frames, 8).tolist()
    if kind == "uniform8":
        return sample_frame_indices(num_frames, 8, "uniform")
    if kind == "consec16":
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
        return sample_frame_indices(num_frames, 16, "consecutive", generator=gen)
    raise ValueError(kind)


def time_methods(path: Path, num_frames: int, kind: str, repeats: int, seed: int) -> dict[str, float]:
    """Frames per second of each method: frames / median seconds per call, methods interleaved per repeat."""
    rng = np.random.default_rng(seed)
    index_sets = [workload_indices(kind, num_frames, rng) for _ in range(repeats)]
    all_methods = methods()
    times: dict[str, list[float]] = {name: [] for name in all_methods}
    for r, indices in enumerate(index_sets):
        order = list(all_methods.items())
        if r % 2:
            order.reverse()  # alternate the order so that load from other processes hits all methods alike
        for name, fn in order:
            start = time.perf_counter()
            fn(str(path), indices)
            times[name].append(time.perf_counter() - start)
    n = len(index_sets[0])
    return {name: n / statistics.median(ts) for name, ts in times.items()}


# ---------------------------------------------------------------------------------------------- DataLoader
class ClipDataset(Dataset):
    def __init__(self, paths: list[Path], length: int, method: str, num_samples: int = 8) -> None:
        self.paths, self.length, self.method, self.num_samples = (
            [str(p) for p in paths],
            length,
            method,
            num_samples,
        )
        self.first_rss = None
        self.peak_rss = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path = self.paths[i % len(self.paths)]
        gen = torch.Generator().manual_seed(i)
        if self.method == "decord direct":
            vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1, width=398, height=224)
            idx = sample_frame_indices(len(vr), self.num_samples, "segment_random", generator=gen)
            clip = torch.from_numpy(vr.get_batch(idx).asnumpy()).permute(0, 3, 1, 2).contiguous()
        else:
            with VideoReader(path, backend=self.method, short_side=224) as reader:
                idx = sample_frame_indices(
                    reader.num_frames, self.num_samples, "segment_random", generator=gen
                )
                clip = reader.get_frames(idx)
        rss = psutil.Process().memory_info().rss
        self.first_rss = self.first_rss or rss
        self.peak_rss = max(self.peak_rss, rss)
        return {
            "video": clip,
            "peak_rss": torch.tensor(self.peak_rss),
            "first_rss": torch.tensor(self.first_rss),
        }


def bench_loader(paths: list[Path], method: str, num_clips: int, batch_size: int = 4) -> dict[str, float]:
    dataset = ClipDataset(paths, num_clips + 2 * batch_size, method)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=2, shuffle=False)
    it = iter(loader)
    for _ in range(2):  # warm-up: worker start and first file opens are not counted
        batch = next(it)
    start, clips, peak, first = time.perf_counter(), 0, 0, None
    for batch in it:
        assert batch["video"].dtype == torch.uint8 and batch["video"].shape[1:] == (8, 3, 224, 398)
        clips += batch["video"].shape[0]
        peak = max(peak, int(batch["peak_rss"].max()))
        first = int(batch["first_rss"].min()) if first is None else min(first, int(batch["first_rss"].min()))
    elapsed = time.perf_counter() - start
    return {"clips_per_s": clips / elapsed, "peak_mib": peak / 2**20, "growth_mib": (peak - first) / 2**20}


# ---------------------------------------------------------------------------------------------- report
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tc = "not installed"
    if TorchCodecDecoder is not None:
        import torchcodec

        tc = torchcodec.__version__
    return (
        f"{cpu}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
        f"Python {platform.python_version()}, torch {torch.__version__}, av {av.__version__} "
        f"(FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec), "
        f"decord {decord.__version__ if decord else 'absent'}, torchcodec {tc}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run under ~2 minutes")
    parser.add_argument("--out", type=Path, default=None, help="results markdown path")
    parser.add_argument("--repeats", type=int, default=None, help="calls per case (median taken)")
    args = parser.parse_args()
    out = args.out or Path("runs/bench/video-quick.md" if args.quick else "benchmarks/results/video.md")
    repeats = args.repeats or (3 if args.quick else 9)
    num_frames = 120 if args.quick else 300
    resolutions = {"224p": (398, 224)} if args.quick else {"480p": (854, 480), "224p": (398, 224)}
    gops = (250, 8)
    workloads = ("random8", "uniform8", "consec16")
    command = "benchmarks/bench_video.py " + " ".join(sys.argv[1:])
    torch.set_num_threads(1)

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = {}
        for res, (w, h) in resolutions.items():
            for gop in gops:
                t0 = time.perf_counter()
                clips[(res, gop)] = write_clip(Path(tmp) / f"{res}_gop{gop}.mp4", w, h, num_frames, gop)
                print(
                    f"[bench_video] wrote {res} gop={gop} clip in {time.perf_counter() - t0:.1f}s",
                    file=sys.stderr,
                )

        results: dict[tuple, dict[str, float]] = {}
        for (res, gop), path in clips.items():
            for kind in workloads:
                t0 = time.perf_counter()
                results[(res, gop, kind)] = time_methods(
                    path, num_frames, kind, repeats, seed=zlib.crc32(f"{res}{gop}{kind}".encode())
                )
                best = max(results[(res, gop, kind)].items(), key=lambda kv: kv[1])
                print(
                    f"[bench_video] {res} gop={gop} {kind}: {time.perf_counter() - t0:.1f}s, best {best[0]} "
                    f"{best[1]:.1f} frames/s",
                    file=sys.stderr,
                )

        loader_methods = ["auto"] + (["decord", "decord direct"] if decord is not None else [])
        loader_clips = 24 if args.quick else 96
        loader_paths = [p for (res, gop), p in clips.items() if gop == 8] + [
            p for (res, gop), p in clips.items() if gop == 250
        ]
        loader_results = {}
        for method in loader_methods:
            loader_results[method] = bench_loader(loader_paths, method, loader_clips)
            print(f"[bench_video] DataLoader {method}: {loader_results[method]}", file=sys.stderr)

    names = list(next(iter(results.values())).keys())
    lines += [
        "# Video decoding benchmark (common/video.py)",
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {machine()}",
        f"- Command: `.venv/bin/python {command.strip()}`",
        f"- Backends available: {', '.join(available_backends())}; `auto` order in code: "
        f"{', '.join(AUTO_BACKEND_ORDER)}, so `auto` = `{available_backends()[0]}` here",
        f"- Clips: {num_frames} frames at 25 fps, x264 preset fast, crf 23, default B-frames; every call "
        "opens the file (as a loader does) and decodes with 1 thread; figure = frames / median seconds over "
        f"{repeats} calls with the same index sets for every method, methods interleaved. Other processes "
        "shared the CPU.",
        "",
        "## Frames per second",
        "",
    ]
    for res in resolutions:
        for gop in gops:
            lines += [f"### {res}, keyframe interval {gop}", "", "| method | " + " | ".join(workloads) + " |"]
            lines.append("|---|" + "---:|" * len(workloads))
            for name in names:
                row = [f"{results[(res, gop, k)][name]:.1f}" for k in workloads]
                lines.append(f"| {name} | " + " | ".join(row) + " |")
            lines.append("")

    lines += ["## Acceptance: VideoReader(auto) vs decord called directly, random8", ""]
    lines += ["| clip | VideoReader(auto) | decord (as asked) | ratio | decord (sorted) | ratio | met |"]
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    all_met = True
    for res in resolutions:
        for gop in gops:
            r = results[(res, gop, "random8")]
            auto, dec, dec_sorted = (
                r["VideoReader(auto)"],
                r.get("decord get_batch (as asked)"),
                r.get("decord get_batch (sorted)"),
            )
            met = dec is None or auto >= dec
            all_met &= met
            lines.append(
                f"| {res} gop {gop} | {auto:.1f} | {dec:.1f} | {auto / dec:.2f}x | {dec_sorted:.1f} | "
                f"{auto / dec_sorted:.2f}x | {'yes' if met else 'NO'} |"
            )
    lines += [
        "",
        f"**Target {'met' if all_met else 'MISSED'}**: VideoReader(auto) is "
        f"{'at least as fast as' if all_met else 'not everywhere as fast as'} decord's get_batch called "
        "directly on the random-frames workload at both keyframe intervals (same run, same index sets).",
        "",
        f"## DataLoader: 2 workers, batch 4, uint8 clips of 8 frames (segment_random, 224x398), "
        f"{loader_clips} clips",
        "",
        "| method | clips/s | peak worker RSS (MiB) | worker RSS growth over the run (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for method, res_ in loader_results.items():
        label = method if method == "decord direct" else f"VideoReader({method})"
        lines.append(
            f"| {label} | {res_['clips_per_s']:.2f} | {res_['peak_mib']:.0f} | {res_['growth_mib']:.0f} |"
        )
    lines += [
        "",
        f"Main process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB. "
        "Worker RSS includes the libraries shared with the parent; growth = peak minus the RSS after the "
        "first clip.",
        "",
        "## Notes",
        "",
        "- `decord get_batch (sorted)` gives decord the sorted, deduplicated indices that `VideoReader` "
        "decodes internally (decord used as well as it can be), beside the usual call with the indices as "
        "asked.",
        "- `VideoReader(decord)` and `VideoReader(torchcodec)` pay for the PyAV packet index (the true frame "
        "count, one demux pass without decoding) on top of the backend's own open; `auto` is the PyAV path, "
        "which shares one open for index and decoding and skips unneeded non-reference frames.",
        "- `PyAV naive` seeks by time for every frame and checks nothing (it assumes frame i sits at i / fps "
        "and that the header's frame count is true); it builds no index, which is cheap on short clips.",
        "- TorchCodec is an optional extra (`pip install torchcodec==0.17.0` plus FFmpeg's shared libraries "
        "from `apt-get install ffmpeg`); without it its rows are absent and `auto` is unchanged.",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"[bench_video] wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
