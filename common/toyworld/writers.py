"""Dataset writers: toy-world datasets saved in real datasets' formats, and the plumbing they share.

A writer is a small function registered under a format name with an options dataclass::

    @dataclass
    class MyOptions:
        size: int = field(default=64, metadata={"help": "image side in pixels"})

    @register_writer("my_format", MyOptions, help="what it writes")
    def write_my_format(ctx: WriteContext) -> None:
        for i in ctx.track(range(ctx.num)):
            scene = sample_scene(ctx.rng(i))
            ...  # write files under ctx.root

:func:`generate` (and the CLI, ``python -m common.toyworld <format> --out DIR --num N --seed S [options]``)
does the rest once for all writers: it checks the options, keeps an existing dataset whose spec (format,
num, seed, options, :data:`GENERATOR_VERSION`) matches, otherwise writes into a temporary folder beside the
target, writes :data:`SPEC_FILE` last and renames the folder into place, so that an interrupted run never
leaves a folder that looks complete. Writers draw sample ``i`` from ``ctx.rng(i)`` (a generator seeded by
``(seed, i)``), so every sample is reproducible on its own and the same seed gives byte-identical files.

Formats: ``msrvtt`` (MSR-VTT's ``MSRVTT_data.json`` and CLIP4Clip's 9k/7k train and JSFusion 1k-A test CSVs,
mp4 videos) and ``imagetext`` (M2-Encoder-style image-text jsonl, English and Chinese, train and test).
Every writer also saves ``toyworld.json``: each sample's scene, labels, captions with their content, and
boxes, for papers that need more than the real format holds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from common.toyworld.language import caption_pair, labels, qa_pairs, refer
from common.toyworld.scene import (
    NEGATIVE_KINDS,
    SCENES,
    Change,
    Scene,
    object_boxes,
    render_image,
    render_video,
    sample_family,
    sample_scene,
    window_frames,
)

log = logging.getLogger(__name__)

# Bump when a change to the generator changes what a given spec writes: existing datasets are then rebuilt.
GENERATOR_VERSION = "1"
SPEC_FILE = "toyworld_spec.json"
META_FILE = "toyworld.json"
DEFAULT_ROOT = Path("data") / "toy"

T = TypeVar("T")


@dataclass
class WriteContext:
    """What a writer gets: the folder to fill, the sample count, the seed and its parsed options."""

    root: Path
    num: int
    seed: int
    options: Any
    name: str = ""
    progress: bool = False

    def rng(self, *key: int) -> np.random.Generator:
        """The generator of one sample (or other keyed stream): seeded by ``(seed, *key)``."""
        return np.random.default_rng([self.seed, *key])

    def track(self, iterable: Iterable[T], total: int | None = None, desc: str | None = None) -> Iterator[T]:
        """Iterate with a progress bar (shown when the run asked for one)."""
        return iter(
            tqdm(
                iterable,
                total=total,
                desc=desc or f"toyworld {self.name}",
                disable=not self.progress,
                unit="it",
            )
        )


@dataclass(frozen=True)
class WriterInfo:
    """A registered writer: its name, function, options dataclass and help line."""

    name: str
    fn: Callable[[WriteContext], None]
    options: type
    help: str


WRITERS: dict[str, WriterInfo] = {}


def register_writer(name: str, options: type, help: str = "") -> Callable:
    """Register a writer function under a format name with its options dataclass (see the module docstring).

    The options dataclass gives every field a default and may validate in ``__post_init__`` by raising
    ``ValueError`` with a message that names the option.
    """
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"options of writer {name!r} must be a dataclass, got {options!r}")

    def wrap(fn: Callable[[WriteContext], None]) -> Callable[[WriteContext], None]:
        if name in WRITERS and WRITERS[name].fn is not fn:
            raise ValueError(f"a toy-world writer named {name!r} is already registered")
        WRITERS[name] = WriterInfo(name, fn, options, help or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return wrap


def make_options(name: str, **options: Any) -> Any:
    """Build and validate the options of writer ``name``.

    Raises:
        ValueError: for an unknown writer or option, or an invalid value; the message says what is valid.
    """
    if name not in WRITERS:
        raise ValueError(f"unknown toy-world format {name!r}; available: {', '.join(sorted(WRITERS))}")
    cls = WRITERS[name].options
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for format {name!r}; valid options: {known}")
    return cls(**options)


def dataset_spec(name: str, num: int, seed: int, options: Any) -> dict[str, Any]:
    """The spec that identifies a dataset: two runs with equal specs write identical datasets."""
    return {
        "format": name,
        "num": int(num),
        "seed": int(seed),
        "options": asdict(options),
        "generator_version": GENERATOR_VERSION,
    }


def read_spec(path: str | Path) -> dict[str, Any] | None:
    """The spec of the dataset at ``path``, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(path) / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None


def _clean_stale(out: Path) -> None:
    # Temporary folders of runs that were killed; a live process's folder (another rank) is left alone.
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        alive = pid.isdigit() and _pid_alive(int(pid))
        if not alive:
            shutil.rmtree(stale, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def generate(
    name: str,
    out: str | Path | None = None,
    num: int = 100,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> Path:
    """Write (or keep) a toy-world dataset.

    Args:
        name: the format (a key of :data:`WRITERS`).
        out: the dataset folder (default ``data/toy/<name>``, relative to the working directory).
        num: number of samples (videos, images).
        seed: the seed; equal specs give byte-identical annotation files.
        progress: show a progress bar.
        **options: the writer's options (see ``python -m common.toyworld <name> --help``).

    Returns:
        The dataset folder.

    Raises:
        ValueError: for an unknown format or option, or an invalid value.
        FileExistsError: if ``out`` is a non-empty folder that is not a toy-world dataset.
    """
    opts = make_options(name, **options)
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    out = Path(out) if out is not None else DEFAULT_ROOT / name
    spec = dataset_spec(name, num, seed, opts)
    if read_spec(out) == spec:
        log.info("toy-world dataset %s is up to date (%s, num=%d, seed=%d); kept", out, name, num, seed)
        return out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and read_spec(out) is None)):
        raise FileExistsError(
            f"{out} exists and is not a toy-world dataset (no {SPEC_FILE}); refusing to overwrite it. "
            "Choose another --out or remove it."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        WRITERS[name].fn(WriteContext(tmp, num, seed, opts, name=name, progress=progress))
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        if read_spec(out) == spec:  # another process finished the same dataset meanwhile
            shutil.rmtree(tmp)
            return out
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote toy-world dataset %s (%s, num=%d, seed=%d)", out, name, num, seed)
    return out


# ------------------------------------------------------------------------------------ shared helpers


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as H.264 (libx264, yuv420p) mp4 at ``fps``.

    One encoder thread: output is byte-identical across runs and machines with the same PyAV build.
    """
    import av

    if "libx264" not in av.codecs_available:
        raise RuntimeError("PyAV was built without libx264; the toy world needs it to write mp4 videos")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even frame sides, got {width}x{height}")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"crf": str(crf), "preset": "veryfast"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_json(path: Path, data: Any) -> None:
    """Write JSON deterministically (UTF-8, Chinese kept readable)."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in NEGATIVE_KINDS]
    if bad or not kinds:
        raise ValueError(f"--negative-kinds: unknown kind(s) {bad or value!r}; choose from {NEGATIVE_KINDS}")
    return kinds


def scenes_for(
    ctx: WriteContext, family_size: int, kinds: str, **scene_kwargs: Any
) -> Iterator[dict[str, Any]]:
    """Scenes for samples ``0..num-1`` with a progress bar: independent, or hard-negative families.

    With ``family_size > 1``, consecutive samples form families (sample ``i`` belongs to family
    ``i // family_size``): the first is an anchor, each other differs from it in one field (see
    :func:`common.toyworld.scene.sample_family`). Yields dicts with ``index``, ``scene``, ``family`` and
    ``change`` (the difference from the anchor, or None).
    """
    kind_tuple = _kinds(kinds)
    family: list[tuple[Scene, Change | None]] = []
    for i in ctx.track(range(ctx.num), total=ctx.num):
        if family_size <= 1:
            yield {"index": i, "scene": sample_scene(ctx.rng(i), **scene_kwargs), "family": i, "change": None}
            continue
        fam, pos = divmod(i, family_size)
        if pos == 0:
            family = sample_family(ctx.rng(fam), family_size, kind_tuple, **scene_kwargs)
        scene, change = family[pos]
        yield {"index": i, "scene": scene, "family": fam, "change": asdict(change) if change else None}


def _check_common(opts: Any) -> None:
    """Check the options writers share, each only where the writer's options dataclass has the field."""
    if hasattr(opts, "size") and (opts.size < 16 or opts.size % 2):
        raise ValueError(f"--size must be an even number >= 16, got {opts.size}")
    if not 1 <= opts.min_objects <= opts.max_objects:
        raise ValueError(
            f"need 1 <= --min-objects <= --max-objects, got {opts.min_objects}, {opts.max_objects}"
        )
    if hasattr(opts, "num_frames") and (opts.num_frames < 2 or opts.fps <= 0):
        raise ValueError(f"need --num-frames >= 2 and --fps > 0, got {opts.num_frames}, {opts.fps}")
    if hasattr(opts, "min_events") and not 0 <= opts.min_events <= opts.max_events:
        raise ValueError(f"need 0 <= --min-events <= --max-events, got {opts.min_events}, {opts.max_events}")
    if hasattr(opts, "crf") and not 0 <= opts.crf <= 51:
        raise ValueError(f"--crf must be in 0..51, got {opts.crf}")
    if hasattr(opts, "family_size"):
        if opts.family_size < 1:
            raise ValueError(f"--family-size must be >= 1, got {opts.family_size}")
        _kinds(opts.negative_kinds)


def _strip_final_punct(text: str) -> str:
    # MSR-VTT captions have no final full stop.
    return text[:-1] if text and text[-1] in ".。" else text


# ------------------------------------------------------------------------------------------- MSR-VTT


@dataclass
class MsrvttOptions:
    """Options of the ``msrvtt`` writer."""

    captions_per_video: int = field(default=5, metadata={"help": "captions per video (MSR-VTT has 20)"})
    lang: str = field(default="en", metadata={"help": "caption language: en or zh"})
    num_frames: int = field(default=10, metadata={"help": "frames per video"})
    fps: float = field(default=5.0, metadata={"help": "frame rate"})
    size: int = field(default=64, metadata={"help": "frame side in pixels (even)"})
    min_objects: int = field(default=1, metadata={"help": "fewest objects per video"})
    max_objects: int = field(default=3, metadata={"help": "most objects per video"})
    min_events: int = field(default=1, metadata={"help": "fewest events per video"})
    max_events: int = field(default=2, metadata={"help": "most events per video"})
    family_size: int = field(
        default=1, metadata={"help": "videos per hard-negative family (1: independent videos)"}
    )
    negative_kinds: str = field(
        default="colour,event",
        metadata={"help": f"comma-separated changes for families, from {NEGATIVE_KINDS}"},
    )
    crf: int = field(default=18, metadata={"help": "x264 quality (0 lossless .. 51 worst)"})

    def __post_init__(self) -> None:
        _check_common(self)
        if self.lang not in ("en", "zh"):
            raise ValueError(f"--lang must be en or zh, got {self.lang!r}")
        if self.captions_per_video < 1:
            raise ValueError(f"--captions-per-video must be >= 1, got {self.captions_per_video}")


def msrvtt_splits(num: int) -> dict[str, range]:
    """Index ranges of MSR-VTT's splits scaled from 10,000 videos to ``num``.

    ``train``/``validate``/``test`` follow the official 6,513/497/2,990 split; ``7k`` is train+validate
    (CLIP4Clip's ``MSRVTT_train.7k.csv``), ``1k-A`` the last tenth of the test split (JSFusion's test,
    ``MSRVTT_JSFUSION_test.csv``) and ``9k`` every other video (``MSRVTT_train.9k.csv``).
    """
    if num < 10:
        raise ValueError(f"msrvtt needs --num >= 10 (one 1k-A test video per 10 videos), got {num}")
    a, b = round(num * 6513 / 10000), round(num * 7010 / 10000)
    c = num - max(1, round(num * 1000 / 10000))
    return {
        "train": range(0, a),
        "validate": range(a, b),
        "test": range(b, num),
        "7k": range(0, b),
        "9k": range(0, c),
        "1k-A": range(c, num),
    }


@register_writer("msrvtt", MsrvttOptions, help="MSR-VTT videos, MSRVTT_data.json and CLIP4Clip's CSVs")
def write_msrvtt(ctx: WriteContext) -> None:
    """MSR-VTT layout: ``videos/video{i}.mp4``, ``MSRVTT_data.json``, 9k/7k train and 1k-A test CSVs."""
    o: MsrvttOptions = ctx.options
    splits = msrvtt_splits(ctx.num)
    (ctx.root / "videos").mkdir()
    videos, sentences, meta, first_caption = [], [], [], {}
    scene_kwargs = dict(
        num_objects=(o.min_objects, o.max_objects),
        num_events=(o.min_events, o.max_events),
        num_frames=o.num_frames,
        fps=o.fps,
    )
    for item in scenes_for(ctx, o.family_size, o.negative_kinds, **scene_kwargs):
        i, scene = item["index"], item["scene"]
        vid = f"video{i}"
        video = render_video(scene, size=o.size)
        write_mp4(ctx.root / "videos" / f"{vid}.mp4", video.frames, o.fps, o.crf)
        split = next(s for s in ("train", "validate", "test") if i in splits[s])
        videos.append(
            {
                "category": SCENES.index(scene.scene),
                "url": f"toyworld://{vid}",
                "video_id": vid,
                "start time": 0.0,
                "end time": round(o.num_frames / o.fps, 3),
                "split": split,
                "id": i,
            }
        )
        rng = ctx.rng(i, 1)
        caps = []
        for k in range(o.captions_per_video):
            # Families describe everything in the first caption, so it names the one changed attribute.
            en, zh = caption_pair(scene, rng, medium="video", full=o.family_size > 1 and k == 0)
            caps.append({"en": en.text, "zh": zh.text, "content": asdict(en.content)})
            text = _strip_final_punct(en.text if o.lang == "en" else zh.text)
            sentences.append({"caption": text, "video_id": vid, "sen_id": len(sentences)})
            first_caption.setdefault(vid, text)
        meta.append(_video_meta(vid, item, video, caps))
    data = {
        "info": {
            "contributor": "common.toyworld",
            "data_created": "generated",
            "description": f"toy-world MSR-VTT (num={ctx.num}, seed={ctx.seed})",
            "version": GENERATOR_VERSION,
            "year": "2024",
        },
        "videos": videos,
        "sentences": sentences,
    }
    write_json(ctx.root / "MSRVTT_data.json", data)
    for name, key in (("MSRVTT_train.9k.csv", "9k"), ("MSRVTT_train.7k.csv", "7k")):
        with open(ctx.root / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["video_id"])
            writer.writerows([[f"video{i}"] for i in splits[key]])
    with open(ctx.root / "MSRVTT_JSFUSION_test.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["key", "vid_key", "video_id", "sentence"])
        for j, i in enumerate(splits["1k-A"]):
            writer.writerow([f"ret{j}", f"msr{i}", f"video{i}", first_caption[f"video{i}"]])
    write_json(ctx.root / META_FILE, {"format": "msrvtt", "videos": meta})


def _video_meta(vid: str, item: dict[str, Any], video: Any, caps: list[dict[str, Any]]) -> dict[str, Any]:
    scene: Scene = item["scene"]
    events = []
    for e in scene.events:
        frames = window_frames(e, scene.fps, scene.num_frames)
        events.append({**asdict(e), "frames": [frames.start, frames.stop]})
    return {
        "video_id": vid,
        "family": item["family"],
        "change": item["change"],
        "scene": scene.to_dict(),
        "labels": labels(scene),
        "events": events,
        "captions": caps,
        "boxes": video.boxes.tolist(),
        "visible": video.visible.tolist(),
    }


# ---------------------------------------------------------------------------------------- image-text


@dataclass
class ImageTextOptions:
    """Options of the ``imagetext`` writer."""

    captions_per_image: int = field(default=3, metadata={"help": "captions per image and language"})
    size: int = field(default=64, metadata={"help": "image side in pixels (even)"})
    test_fraction: float = field(default=0.2, metadata={"help": "fraction of images in the test files"})
    image_format: str = field(default="png", metadata={"help": "png (lossless) or jpg"})
    min_objects: int = field(default=1, metadata={"help": "fewest objects per image"})
    max_objects: int = field(default=3, metadata={"help": "most objects per image"})
    family_size: int = field(default=1, metadata={"help": "images per hard-negative family (1: independent)"})
    negative_kinds: str = field(
        default="colour,shape,size,scene",
        metadata={
            "help": f"comma-separated changes for families, from {NEGATIVE_KINDS} (images have no events)"
        },
    )

    def __post_init__(self) -> None:
        _check_common(self)
        if self.captions_per_image < 1:
            raise ValueError(f"--captions-per-image must be >= 1, got {self.captions_per_image}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"--image-format must be png or jpg, got {self.image_format!r}")
        if "event" in _kinds(self.negative_kinds):
            raise ValueError("--negative-kinds: images have no events; drop 'event'")


@register_writer("imagetext", ImageTextOptions, help="image-text jsonl (EN and ZH, train and test), images")
def write_imagetext(ctx: WriteContext) -> None:
    """Image-text data: ``images/*`` and ``{train,test}_{en,zh}.jsonl`` of ``{"image", "caption"}`` lines."""
    from PIL import Image

    o: ImageTextOptions = ctx.options
    (ctx.root / "images").mkdir()
    num_test = round(ctx.num * o.test_fraction)
    lines: dict[str, list[str]] = {f"{s}_{lang}": [] for s in ("train", "test") for lang in ("en", "zh")}
    meta = []
    scene_kwargs = dict(num_objects=(o.min_objects, o.max_objects), num_events=0, num_frames=1)
    for item in scenes_for(ctx, o.family_size, o.negative_kinds, **scene_kwargs):
        i, scene = item["index"], item["scene"]
        rel = f"images/{i:06d}.{o.image_format}"
        image = Image.fromarray(render_image(scene, o.size))
        if o.image_format == "png":
            image.save(ctx.root / rel, format="PNG")
        else:
            image.save(ctx.root / rel, format="JPEG", quality=95)
        rng = ctx.rng(i, 1)
        pairs = [
            caption_pair(scene, rng, medium="image", full=o.family_size > 1 and k == 0)
            for k in range(o.captions_per_image)
        ]
        split = "test" if i >= ctx.num - num_test else "train"
        for lang, pick in (("en", 0), ("zh", 1)):
            record = {"image": rel, "caption": [p[pick].text for p in pairs]}
            lines[f"{split}_{lang}"].append(json.dumps(record, ensure_ascii=False))
        boxes, visible = object_boxes(scene, o.size)
        refs = [refer(scene, t, rng, lang) for t in range(len(scene.objects)) for lang in ("en", "zh")]
        meta.append(
            {
                "image": rel,
                "split": split,
                "family": item["family"],
                "change": item["change"],
                "scene": scene.to_dict(),
                "labels": labels(scene),
                "captions": [
                    {"en": en.text, "zh": zh.text, "content": asdict(en.content)} for en, zh in pairs
                ],
                "boxes": boxes.tolist(),
                "visible": visible.tolist(),
                "referring": [asdict(r) for r in refs if r is not None],
                "qa": [asdict(q) for lang in ("en", "zh") for q in qa_pairs(scene, rng, lang)],
            }
        )
    for key, rows in lines.items():
        (ctx.root / f"{key}.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    write_json(ctx.root / META_FILE, {"format": "imagetext", "images": meta})
