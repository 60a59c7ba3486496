"""Toy-world writers (tsgsv: ActivityNet-Captions-format long videos with one sentence per event).

Writers register themselves with :func:`common.toyworld.writers.register_writer` when this module is imported
(``common/toyworld/__init__.py`` imports it).

``anet_captions`` writes the layout of ActivityNet Captions (Krishna et al., 2017)::

    videos/v_<id>.mp4
    train.json  val_1.json  val_2.json     {"v_<id>": {"duration": s, "timestamps": [[s, e], ...],
                                                       "sentences": [...]}}
    toyworld.json                          per video: scene, events (seconds and frames), sentence content

Each sentence describes exactly one event (the object named with its size, colour and shape, then what it
does), and its timestamp is the event's window ``[start, end)`` in seconds, so the sentence's moment is known
to the frame. With ``event_duration_jitter=low`` each event lasts (almost) the longest visible window of its
kind, so an event's end can be anticipated once its start has been seen (spec tsgsv §8).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from common.toyworld.language import CaptionContent, EventMention, ObjectMention, realize
from common.toyworld.scene import (
    Event,
    Scene,
    max_window_frames,
    render_video,
    sample_scene,
    window_frames,
)
from common.toyworld.writers import (
    META_FILE,
    WriteContext,
    _check_common,
    register_writer,
    write_json,
    write_mp4,
)

ANET_SPLITS = ("train", "val_1", "val_2")


@dataclass
class AnetCaptionsOptions:
    """Options of the ``anet_captions`` writer."""

    num_frames: int = field(default=96, metadata={"help": "frames per video"})
    fps: float = field(default=2.0, metadata={"help": "frame rate (low: long videos in few frames)"})
    size: int = field(default=64, metadata={"help": "frame side in pixels (even)"})
    min_objects: int = field(default=2, metadata={"help": "fewest objects per video"})
    max_objects: int = field(default=3, metadata={"help": "most objects per video"})
    min_events: int = field(default=1, metadata={"help": "fewest events (sentences) per video"})
    max_events: int = field(default=3, metadata={"help": "most events (sentences) per video"})
    event_duration_jitter: str = field(
        default="low",
        metadata={"help": "low: events last their kind's longest visible window (-0/1 frame); full: any"},
    )
    val_fraction: float = field(default=0.1, metadata={"help": "fraction of videos in val_1 and in val_2"})
    crf: int = field(default=18, metadata={"help": "x264 quality (0 lossless .. 51 worst)"})

    def __post_init__(self) -> None:
        _check_common(self)
        if self.num_frames < 4 or self.fps <= 0:
            raise ValueError(f"need --num-frames >= 4 and --fps > 0, got {self.num_frames}, {self.fps}")
        if not 1 <= self.min_events <= self.max_events:
            raise ValueError(
                f"need 1 <= --min-events <= --max-events, got {self.min_events}, {self.max_events}"
            )
        if self.min_objects < self.min_events:
            raise ValueError(
                f"--min-objects ({self.min_objects}) must be >= --min-events ({self.min_events})"
            )
        if self.event_duration_jitter not in ("low", "full"):
            raise ValueError(
                f"--event-duration-jitter must be low or full, got {self.event_duration_jitter!r}"
            )
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"--val-fraction must be in [0, 0.5), got {self.val_fraction}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"--crf must be in 0..51, got {self.crf}")


def anet_split_of(i: int, num: int, val_fraction: float) -> str:
    """The split of video ``i``: the last ``2 * val_fraction`` of the videos are val_1 then val_2."""
    n_val = round(num * val_fraction)
    if i >= num - n_val:
        return "val_2"
    if i >= num - 2 * n_val:
        return "val_1"
    return "train"


def _low_jitter(event: Event, rng: np.random.Generator, num_frames: int, fps: float) -> Event:
    longest = min(max_window_frames(event.kind, event.distance or None), num_frames - 2)
    k = max(1, longest - int(rng.integers(0, 2)))
    t0 = int(rng.integers(1, num_frames - k + 1))
    return replace(event, start=t0 / fps, end=(t0 + k) / fps)


def event_sentence(scene: Scene, event: Event, rng: np.random.Generator) -> tuple[str, CaptionContent]:
    """An English sentence naming the event's object fully (size, colour, shape) and what it does."""
    obj = scene.objects[event.object]
    content = CaptionContent(
        scene=None,
        objects=(ObjectMention(event.object, obj.shape, obj.colour, obj.size),),
        events=(EventMention(0, event.kind, event.direction, event.colour),),
    )
    return realize(content, "en", rng).text, content


@register_writer(
    "anet_captions", AnetCaptionsOptions, help="ActivityNet Captions: long videos, one sentence per event"
)
def write_anet_captions(ctx: WriteContext) -> None:
    """ActivityNet Captions layout: ``videos/v_<id>.mp4``, ``train.json``, ``val_1.json``, ``val_2.json``."""
    o: AnetCaptionsOptions = ctx.options
    (ctx.root / "videos").mkdir()
    splits: dict[str, dict] = {s: {} for s in ANET_SPLITS}
    meta = []
    for i in ctx.track(range(ctx.num), total=ctx.num):
        rng = ctx.rng(i)
        scene = sample_scene(
            rng,
            num_objects=(o.min_objects, o.max_objects),
            num_events=(o.min_events, o.max_events),
            num_frames=o.num_frames,
            fps=o.fps,
        )
        if o.event_duration_jitter == "low":
            scene.events = [_low_jitter(e, rng, o.num_frames, o.fps) for e in scene.events]
        vid = f"v_toy{i:06d}"
        video = render_video(scene, size=o.size)
        write_mp4(ctx.root / "videos" / f"{vid}.mp4", video.frames, o.fps, o.crf)
        events = sorted(scene.events, key=lambda e: (e.start, e.object))
        sent_rng = ctx.rng(i, 1)
        sentences, contents, timestamps, ev_meta = [], [], [], []
        for e in events:
            text, content = event_sentence(scene, e, sent_rng)
            frames = window_frames(e, scene.fps, scene.num_frames)
            sentences.append(text)
            contents.append(asdict(content))
            timestamps.append([round(e.start, 4), round(e.end, 4)])
            ev_meta.append({**asdict(e), "frames": [frames.start, frames.stop]})
        split = anet_split_of(i, ctx.num, o.val_fraction)
        splits[split][vid] = {
            "duration": round(scene.duration, 4),
            "timestamps": timestamps,
            "sentences": sentences,
        }
        meta.append(
            {
                "video_id": vid,
                "split": split,
                "scene": scene.to_dict(),
                "events": ev_meta,
                "sentences": [{"text": t, "content": c} for t, c in zip(sentences, contents)],
            }
        )
    for name, data in splits.items():
        write_json(ctx.root / f"{name}.json", data)
    write_json(ctx.root / META_FILE, {"format": "anet_captions", "videos": meta})
