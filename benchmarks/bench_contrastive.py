"""Benchmark of common.contrastive: memory and time against open_clip's ClipLoss, and distributed traffic.

Single process (CPU, fp32, d = 512): for each N the peak extra memory of one forward plus backward and the
median wall time of a few more, for ``clip_loss`` and ``open_clip.loss.ClipLoss`` side by side. Every
configuration runs in a fresh subprocess, because PyTorch's CPU allocations are invisible to tracemalloc and
a process never hands its peak back: the figure is ``ru_maxrss`` after the first forward+backward minus the
resident set size measured after the inputs were allocated, with glibc's mmap threshold fixed (see
``MALLOC_ENV``) so that freed memory leaves the resident set and the peak is the live peak.

Distributed (gloo on CPU, 2 and 4 processes): bytes moved by the loss's collectives per step (counted in the
loss's own collective wrappers, see ``common.contrastive.count_collectives``), peak extra loss memory per rank
and the step time, for the global loss, the grouped loss (group_size = 2) and the grouped loss with
GradCache accumulation over ``W / 2`` micro-batches (the same number of negatives as the global loss).

Accelerator (``--accel``, on by default when CUDA is available; skipped otherwise): in bf16 on one device,
forward plus backward time of ``clip_loss`` (the fused Triton kernels), of open_clip's ``ClipLoss`` and of two
one-direction tiled passes (the Inf-CL layout: each direction its own sweep, row chunks recomputed in the
backward pass by checkpointing), peak memory from ``torch.cuda.max_memory_allocated``, and the kernel's
throughput as a fraction of a measured bf16 matmul peak (4 products of ``2 N^2 d`` FLOPs per step).

Usage::

    .venv/bin/python benchmarks/bench_contrastive.py          # writes benchmarks/results/contrastive.md
    .venv/bin/python benchmarks/bench_contrastive.py --quick  # writes runs/bench/contrastive-quick.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# glibc raises its mmap threshold to the size of the largest freed block (up to 32 MiB) and then keeps freed
# heap memory resident, so RSS would count dead tile buffers as if they were live. A fixed threshold (glibc's
# own initial value) makes every allocation of 128 KiB or more an mmap that leaves RSS when freed: RSS then
# tracks live bytes, as max_memory_allocated does on CUDA. Applied to both implementations alike.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _open_clip_loss_class():
    # open_clip's loss.py imports only torch; the full package takes ~10 s to import.
    import importlib.util

    package = importlib.util.find_spec("open_clip")
    path = Path(next(iter(package.submodule_search_locations))) / "loss.py"
    spec = importlib.util.spec_from_file_location("_open_clip_loss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ClipLoss


def _features(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=gen), dim=-1)
    y = F.normalize(x + 0.8 * torch.randn(n, d, generator=gen), dim=-1)
    return x, y


# ------------------------------------------------------------------------------------------------------------
# Single process: one configuration per subprocess
# ------------------------------------------------------------------------------------------------------------


def single_worker(impl: str, n: int, d: int, repeats: int, chunk: int | None) -> dict:
    from common.contrastive import clip_loss

    if impl == "open_clip":
        peer = _open_clip_loss_class()()

        def fn(a, b, s):
            return peer(a, b, s)
    else:

        def fn(a, b, s):
            return clip_loss(a, b, s, chunk_size=chunk)

    if os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    x, y = _features(n, d)
    x.requires_grad_()
    y.requires_grad_()
    scale = torch.tensor(14.3, requires_grad=True)
    base = _rss_bytes()
    peak_before = _peak_rss_bytes()
    t0 = time.perf_counter()
    loss = fn(x, y, scale)
    loss.backward()
    first = time.perf_counter() - t0
    peak = _peak_rss_bytes()
    times, cpu_times = [], []
    for _ in range(repeats):
        x.grad = y.grad = scale.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        fn(x, y, scale).backward()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    return {
        "impl": impl,
        "n": n,
        "chunk": chunk,
        "loss": float(loss.detach()),
        "extra_bytes": peak - base,
        "floor_bytes": max(0, peak_before - base),
        "first_s": first,
        "times_s": times,
        "cpu_times_s": cpu_times,
        "threads": torch.get_num_threads(),
    }


def _run_worker(impl: str, n: int, d: int, repeats: int, chunk: int | None, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps([impl, n, d, repeats, chunk])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        return {"impl": impl, "n": n, "chunk": chunk, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_single(impl: str, n: int, d: int, repeats: int, chunk: int | None = None) -> dict:
    """Memory from one process with the fixed mmap threshold, time from another with glibc's defaults.

    The fixed threshold turns every allocation of 128 KiB or more, BLAS packing buffers included, into an
    mmap and its page faults, which slows tiled code down and is not how anyone runs it; so it is used for
    the memory figure only.
    """
    memory = _run_worker(impl, n, d, 0, chunk, MALLOC_ENV)
    if "error" in memory:
        return memory
    timing = _run_worker(impl, n, d, repeats, chunk, {})
    if "error" in timing:
        return timing
    return {**timing, "extra_bytes": memory["extra_bytes"], "floor_bytes": memory["floor_bytes"]}


# ------------------------------------------------------------------------------------------------------------
# Accelerator: fused kernel against open_clip and two one-direction tiled passes
# ------------------------------------------------------------------------------------------------------------


def _one_direction_tiled(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, chunk: int) -> torch.Tensor:
    """Mean cross-entropy of ``scale a b^T`` rows against the diagonal, one row chunk at a time.

    Each chunk's ``(chunk, N)`` strip is recomputed in the backward pass (activation checkpointing), so only
    one strip is alive at a time: the baseline layout of one-direction tiled losses.
    """
    from torch.utils.checkpoint import checkpoint

    def strip(a_c: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        logits = (scale * a_c @ b.T).float()
        idx = torch.arange(a_c.shape[0], device=a.device) + start
        return F.cross_entropy(logits, idx, reduction="sum")

    total = a.new_zeros((), dtype=torch.float32)
    for i0 in range(0, a.shape[0], chunk):
        start = torch.tensor(i0, device=a.device)
        total = total + checkpoint(strip, a[i0 : i0 + chunk], start, use_reentrant=False)
    return total / a.shape[0]


def accel_case(impl: str, n: int, d: int, repeats: int, device: str, dtype: torch.dtype) -> dict:
    """Time and peak memory of one forward+backward on ``device`` (CUDA events when on CUDA)."""
    from common.contrastive import clip_loss

    gen = torch.Generator(device="cpu").manual_seed(0)
    x = F.normalize(torch.randn(n, d, generator=gen), dim=-1).to(device, dtype).requires_grad_()
    y = F.normalize(torch.randn(n, d, generator=gen), dim=-1).to(device, dtype).requires_grad_()
    scale = torch.tensor(14.3, device=device, requires_grad=True)
    peer = _open_clip_loss_class()() if impl == "open_clip" else None

    def fn() -> torch.Tensor:
        if impl == "ours":
            return clip_loss(x, y, scale)
        if impl == "open_clip":
            return peer(x, y, scale)
        return 0.5 * (_one_direction_tiled(x, y, scale, 4096) + _one_direction_tiled(y, x, scale, 4096))

    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    try:
        fn().backward()  # warm-up: compilation and autotuning
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if cuda else 0
        times = []
        for _ in range(repeats):
            x.grad = y.grad = scale.grad = None
            sync()
            t0 = time.perf_counter()
            fn().backward()
            sync()
            times.append(time.perf_counter() - t0)
        peak = (torch.cuda.max_memory_allocated() - base) if cuda else None
    except torch.OutOfMemoryError:
        return {"impl": impl, "n": n, "error": "out of memory"}
    return {"impl": impl, "n": n, "time_s": statistics.median(times), "peak_bytes": peak}


def matmul_peak_tflops(device: str, dtype: torch.dtype, size: int = 8192, repeats: int = 10) -> float:
    """Measured throughput of a large square matmul: the denominator of 'fraction of peak'."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e12


def accel_section(sizes: list[int], d: int, repeats: int, device: str, dtype: torch.dtype) -> list[str]:
    name = torch.cuda.get_device_name() if device.startswith("cuda") else device
    mm_size = 8192 if device.startswith("cuda") else 1024
    peak = matmul_peak_tflops(device, dtype, size=mm_size)
    lines = [
        f"## Accelerator: {name}, {str(dtype).replace('torch.', '')}, d = {d}",
        "",
        f"Measured {str(dtype).replace('torch.', '')} matmul throughput ({mm_size}^3): {peak:.2f} TFLOP/s. "
        "Kernel fraction = 4 x 2 N^2 d FLOPs (one product forward, three backward) / time / that throughput.",
        "",
        "| N | ours ms | open_clip ms | two one-direction passes ms | ours / open_clip | ours / two passes |"
        " ours peak MiB | open_clip peak MiB | two passes peak MiB | kernel fraction of matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        res = {
            impl: accel_case(impl, n, d, repeats, device, dtype) for impl in ("ours", "open_clip", "two_pass")
        }
        print(f"accel N={n}: {res}", flush=True)

        ours, ref, two = res["ours"], res["open_clip"], res["two_pass"]

        def ms(r: dict) -> str:
            return r.get("error") or f"{1e3 * r['time_s']:.1f}"

        def mib(r: dict) -> str:
            return r.get("error") or ("-" if r["peak_bytes"] is None else _mib(r["peak_bytes"]))

        def ratio(r: dict, ours: dict = ours) -> str:
            return "-" if "error" in r or "error" in ours else f"{ours['time_s'] / r['time_s']:.2f}"

        frac = "-" if "error" in ours else f"{4 * 2 * n * n * d / ours['time_s'] / 1e12 / peak:.2f}"
        lines.append(
            f"| {n} | {ms(ours)} | {ms(ref)} | {ms(two)} | {ratio(ref)} | {ratio(two)} | {mib(ours)} | "
            f"{mib(ref)} | {mib(two)} | {frac} |"
        )
    return [*lines, ""]


# ------------------------------------------------------------------------------------------------------------
# Distributed: gloo processes
# ------------------------------------------------------------------------------------------------------------


def dist_worker(rank: int, world: int, mode: str, local: int, d: int, repeats: int) -> dict:
    from common.contrastive import (
        GradCacheContrastive,
        GroupedContrastiveLoss,
        clip_loss,
        count_collectives,
        split_batch,
    )

    group_size = 2
    micro = world // group_size if mode == "grouped+accum" else 1
    rows = local * micro  # the accumulated local batch: W/2 micro-batches of `local` rows
    x_all, y_all = _features(world * rows, d)
    sl = slice(rank * rows, (rank + 1) * rows)
    x, y = x_all[sl].clone(), y_all[sl].clone()
    del x_all, y_all
    scale = torch.tensor(14.3, requires_grad=True)
    proj = torch.nn.Linear(d, d, bias=False)  # a stand-in encoder for the GradCache re-forward
    loss_fn = clip_loss if mode == "global" else GroupedContrastiveLoss(group_size=group_size)
    if mode != "global":
        loss_fn.process_group  # noqa: B018  create the sub-groups before measuring

    def step() -> None:
        if mode == "grouped+accum":
            batch = {"x": x, "y": y}
            GradCacheContrastive(loss_fn).step(
                lambda mb: (proj(mb["x"]), proj(mb["y"])), split_batch(batch, micro), scale
            )
        else:
            xi, yi = x.clone().requires_grad_(), y.clone().requires_grad_()
            loss_fn(xi, yi, scale).backward()

    base = _rss_bytes()
    with count_collectives() as counter:
        step()
    peak = _peak_rss_bytes()
    times = []
    for _ in range(repeats):
        torch.distributed.barrier()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "payload": counter.payload_bytes,
        "sent": counter.sent_bytes_per_rank,
        "calls": [(op, nbytes, w) for op, nbytes, w in counter.calls],
        "extra_bytes": peak - base,
        "time_s": statistics.median(times) if times else float("nan"),
        "rows": rows,
    }


def run_distributed_case(world: int, mode: str, local: int, d: int, repeats: int) -> dict:
    from tests.distributed import run_distributed

    results = run_distributed(dist_worker, world, mode, local, d, repeats)
    out = dict(results[0])
    out["extra_bytes_max"] = max(r["extra_bytes"] for r in results)
    out["time_s_max"] = max(r["time_s"] for r in results)
    return out


# ------------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------------


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.1f}"


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads, Python {platform.python_version()}"
    )


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under ~2 minutes on 2 cores")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="batch sizes N (single process)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per configuration")
    parser.add_argument("--skip-distributed", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads of the single-process workers (default: torch's)",
    )
    parser.add_argument("--skip-sweep", action="store_true", help="skip the tile-size sweep")
    parser.add_argument(
        "--accel",
        default="cuda" if torch.cuda.is_available() else None,
        help="device of the accelerator section (default: cuda when available; 'cpu': a smoke check)",
    )
    parser.add_argument("--accel-only", action="store_true", help="run only the accelerator section")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(single_worker(*json.loads(args.worker))))
        return

    if args.threads:
        os.environ["BENCH_THREADS"] = str(args.threads)
    d = 512
    sizes = args.sizes or ([1024, 2048] if args.quick else [4096, 8192, 16384, 32768])
    repeats = args.repeats or (2 if args.quick else 3)
    out = args.out or (
        ROOT / "runs/bench/contrastive-quick.md" if args.quick else ROOT / "benchmarks/results/contrastive.md"
    )
    command = "  ".join(["", sys.executable.replace(str(ROOT) + "/", ""), *sys.argv]).strip()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    lines = [
        "# common.contrastive benchmark",
        "",
        f"- Machine: {_machine()}",
        f"- Command: `{command}` (from the repository root)",
        f"- Date: {started}",
        f"- Load at start: {_load()} (other engineers' tests share this machine)",
        "",
        "## Single process, CPU fp32, d = 512: this loss against open_clip `ClipLoss`",
        "",
        "Peak extra memory = peak RSS of one forward+backward minus the RSS after the inputs were allocated,",
        "each configuration in a fresh subprocess (see the script's docstring). Time = median of the timed",
        "repeats (a separate subprocess with glibc's default allocator), open_clip first, then ours, so both",
        "see about the same machine load. CPU s = the process's CPU time (user + system) over the same",
        "repeats: less sensitive than wall time to other processes on the machine.",
        f"Intra-op threads in the workers: {args.threads or torch.get_num_threads()}.",
        "",
        "| N | open_clip peak extra MiB | ours MiB | memory ratio (open_clip / ours) | open_clip s | ours s |"
        " time ratio (ours / open_clip) | open_clip CPU s | ours CPU s | CPU ratio | loss diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in [] if args.accel_only else sizes:
        reps = 1 if n >= 32768 else repeats
        need = 18 * n * n  # open_clip holds about 16 bytes per logit, plus the process
        if _available_bytes() > 1.2 * need:
            ref = run_single("open_clip", n, d, reps)
        else:
            ref = {
                "error": f"skipped: needs about {need / 2**30:.0f} GiB, "
                f"{_available_bytes() / 2**30:.1f} GiB available"
            }
        ours = run_single("ours", n, d, reps)
        print(f"N={n}: open_clip {ref}\n        ours {ours}", flush=True)
        if "error" in ours:
            lines.append(f"| {n} | | error: {ours['error']} | | | | | | | | |")
            continue
        t_ours = statistics.median(ours["times_s"])
        if "error" in ref:
            lines.append(
                f"| {n} | {ref['error']} | {_mib(ours['extra_bytes'])} | | | {t_ours:.2f} | | | | | |"
            )
            continue
        t_ref = statistics.median(ref["times_s"])
        c_ours, c_ref = statistics.median(ours["cpu_times_s"]), statistics.median(ref["cpu_times_s"])
        lines.append(
            f"| {n} | {_mib(ref['extra_bytes'])} | {_mib(ours['extra_bytes'])} | "
            f"{ref['extra_bytes'] / max(ours['extra_bytes'], 1):.1f} | {t_ref:.2f} | {t_ours:.2f} | "
            f"{t_ours / t_ref:.2f} | {c_ref:.2f} | {c_ours:.2f} | {c_ours / c_ref:.2f} | "
            f"{abs(ref['loss'] - ours['loss']):.1e} |"
        )
    lines += ["", f"Load after the single-process table: {_load()}.", ""]

    if not (args.quick or args.skip_sweep or args.accel_only):
        n = 8192
        lines += [
            f"### Tile size (chunk) sweep, N = {n}",
            "",
            "| chunk | peak extra MiB | median s |",
            "|---|---|---|",
        ]
        for chunk in (256, 512, 1024, 2048):
            res = run_single("ours", n, d, repeats, chunk)
            print(f"chunk={chunk}: {res}", flush=True)
            if "error" not in res:
                lines.append(
                    f"| {chunk} | {_mib(res['extra_bytes'])} | {statistics.median(res['times_s']):.2f} |"
                )
        lines.append("")

    if not (args.skip_distributed or args.accel_only):
        local = 256 if args.quick else 1024
        lines += [
            f"## Distributed, gloo on CPU, local batch b = {local} per rank, d = {d}, fp32",
            "",
            "Bytes are counted in the loss's collective wrappers for one training step (forward and",
            "backward). *Payload* is the sum of the tensors the collectives move (the gathered output of an",
            "all-gather, the input of a reduce-scatter or all-reduce); *sent per rank* applies the ring",
            "algorithm's cost. Grouped collectives run inside a group of 2 ranks (a node); the global ones",
            "span all W ranks. grouped+accum accumulates W/2 micro-batches of b rows (GradCache), so each",
            "rank's rows see W*b negatives, as with the global loss.",
            "Memory and time are the worst rank's; times on 2 shared cores only show that it runs.",
            "",
            "| W | mode | local rows per step | negatives per row | payload MiB | sent per rank MiB |"
            " collectives | peak extra MiB per rank | step s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for world in (2, 4):
            for mode in ("global", "grouped", "grouped+accum"):
                res = run_distributed_case(world, mode, local, d, repeats)
                print(f"W={world} {mode}: { {k: v for k, v in res.items() if k != 'calls'} }", flush=True)
                group = world if mode == "global" else 2
                ops = {}
                for op, _, _ in res["calls"]:
                    ops[op] = ops.get(op, 0) + 1
                ops_text = ", ".join(f"{k} x{v}" for k, v in sorted(ops.items()))
                lines.append(
                    f"| {world} | {mode} | {res['rows']} | {group * res['rows']} | {_mib(res['payload'])} | "
                    f"{_mib(res['sent'])} | {ops_text} | {_mib(res['extra_bytes_max'])} | "
                    f"{res['time_s_max']:.2f} |"
                )
        lines.append("")
    if args.accel:
        accel_sizes = [4096, 8192] if args.accel == "cpu" or args.quick else [16384, 32768, 65536, 131072]
        dtype = torch.float32 if args.accel == "cpu" else torch.bfloat16
        lines += accel_section(accel_sizes, d, repeats, args.accel, dtype)
    else:
        lines += ["## Accelerator", "", "Skipped: no CUDA device on this machine.", ""]
    lines += [f"Load at the end: {_load()}.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    if out.exists() and not args.quick:
        # Keep the hand-written analysis that follows the generated tables.
        old = out.read_text()
        marker = "<!-- analysis -->"
        if marker in old:
            text += "\n" + old[old.index(marker) :]
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
