"""The toy world: the seeded, deterministic generator of every paper's default data.

Procedural scenes (8 background classes, 6 shapes, 7 colours, 2 sizes) rendered as images or videos in which
objects move, grow, shrink, change colour, appear or disappear inside known time windows; captions in English
and Chinese with the content they state; a part-of-speech lexicon; referring expressions; QA pairs;
multi-label sets; hard-negative families; and writers that save datasets in real datasets' formats.

* :mod:`common.toyworld.scene`: :class:`Scene`, :func:`sample_scene`, :func:`render_image`,
  :func:`render_video`, :func:`sample_family` (the world model; timing and geometry conventions).
* :mod:`common.toyworld.language`: :func:`caption_pair`, :func:`lexicon`, :func:`refer`, :func:`qa_pairs`,
  :func:`labels`.
* :mod:`common.toyworld.writers`: :func:`register_writer`, :func:`generate` and the ``msrvtt`` and
  ``imagetext`` writers. CLI: ``python -m common.toyworld <format> --out DIR --num N --seed S [options]``.

Example::

    import numpy as np
    from common.toyworld import sample_scene, render_video, caption_pair

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, num_frames=10, fps=5.0)
    video = render_video(scene, size=64)           # frames (10, 64, 64, 3), boxes (10, N, 4), visible
    en, zh = caption_pair(scene, rng)              # same content, two languages
"""

from common.toyworld.language import (
    LABELS,
    QA,
    Caption,
    CaptionContent,
    LexEntry,
    Referring,
    caption,
    caption_pair,
    choose_content,
    content_tags,
    labels,
    lexicon,
    qa_pairs,
    realize,
    refer,
    resolve,
    tags,
    tokenize,
)
from common.toyworld.scene import (
    COLOURS,
    EVENT_KINDS,
    SCENES,
    SHAPES,
    SIZES,
    Change,
    Event,
    Scene,
    ToyObject,
    Video,
    object_boxes,
    render_background,
    render_image,
    render_video,
    sample_family,
    sample_scene,
    window_frames,
)
from common.toyworld.writers import WRITERS, WriteContext, generate, register_writer, write_mp4

# Modules whose import registers more writers (one per paper family, kept apart from the shared plumbing).
from common.toyworld import anet_captions, refcoco, videoqa  # noqa: E402, F401  isort: skip

__all__ = [
    "COLOURS",
    "EVENT_KINDS",
    "LABELS",
    "QA",
    "SCENES",
    "SHAPES",
    "SIZES",
    "WRITERS",
    "Caption",
    "CaptionContent",
    "Change",
    "Event",
    "LexEntry",
    "Referring",
    "Scene",
    "ToyObject",
    "Video",
    "WriteContext",
    "caption",
    "caption_pair",
    "choose_content",
    "content_tags",
    "generate",
    "labels",
    "lexicon",
    "object_boxes",
    "qa_pairs",
    "realize",
    "refer",
    "register_writer",
    "render_background",
    "render_image",
    "render_video",
    "resolve",
    "sample_family",
    "sample_scene",
    "tags",
    "tokenize",
    "window_frames",
    "write_mp4",
]
