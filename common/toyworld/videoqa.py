"""Toy-world writers for snp_s3: MSRVTT-QA/MSVD-QA jsonl, MSR-VTT multiple choice, a WebVid-style corpus.

Writers register themselves with :func:`common.toyworld.writers.register_writer` when this module is imported
(``common/toyworld/__init__.py`` imports it).

* ``msrvtt_qa``: open-ended VideoQA in MSRVTT-QA's official layout (``{train,val,test}_qa.json``, lists of
  ``{"answer", "category_id", "id", "question", "video_id"}``) plus the layout of SNP-S3's released code:
  ``ans2label.json`` (the ``top_k`` most frequent training answers) and ``{split}.jsonl`` lines
  ``{"caption": question, "clip_name", "label", "type": "video"}`` (label -1: answer outside the vocabulary).
  Questions come from :func:`common.toyworld.language.qa_pairs` (count, colour, shape, exists, scene, action).
* ``msrvtt_mc``: MSR-VTT multiple choice as SNP-S3's ``mc_test.jsonl``: ``{"qid", "clip_name", "title",
  "answer": "<idx>", "options": [5 captions]}``. With ``family_size 1`` the distractors are captions of other
  videos (the JSFusion protocol); with ``family_size 5`` each video's options are the full captions of its
  hard-negative family, so every distractor differs from the truth in exactly one attribute.
* ``webvid``: a WebVid-style pretraining corpus: ``results_train.csv`` (``videoid, contentUrl, duration,
  page_dir, name``) with ``videos/<page_dir>/<videoid>.mp4``, and the same pairs as SNP-S3's pretraining jsonl
  (``train.jsonl``: ``{"caption", "clip_name", "sen_id", "type"}``). With ``image_fraction > 0`` a share of
  the samples are still images (``images/*.png``), listed with ``"type": "image"`` in the jsonl and in a
  CC3M-style ``cc3m_train.tsv`` (``caption<TAB>image``).

Every writer also saves ``toyworld.json`` with each sample's scene, captions and QA.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from common.toyworld.language import caption_pair, qa_pairs
from common.toyworld.scene import NEGATIVE_KINDS, render_image, render_video, sample_scene
from common.toyworld.writers import (
    META_FILE,
    WriteContext,
    _check_common,
    _strip_final_punct,
    register_writer,
    scenes_for,
    write_json,
    write_mp4,
)


@dataclass
class _VideoOptions:
    num_frames: int = field(default=10, metadata={"help": "frames per video"})
    fps: float = field(default=5.0, metadata={"help": "frame rate"})
    size: int = field(default=64, metadata={"help": "frame side in pixels (even)"})
    min_objects: int = field(default=1, metadata={"help": "fewest objects per video"})
    max_objects: int = field(default=3, metadata={"help": "most objects per video"})
    min_events: int = field(default=1, metadata={"help": "fewest events per video"})
    max_events: int = field(default=2, metadata={"help": "most events per video"})
    crf: int = field(default=18, metadata={"help": "x264 quality (0 lossless .. 51 worst)"})

    def scene_kwargs(self) -> dict[str, Any]:
        return dict(
            num_objects=(self.min_objects, self.max_objects),
            num_events=(self.min_events, self.max_events),
            num_frames=self.num_frames,
            fps=self.fps,
        )


# ------------------------------------------------------------------------------------------- VideoQA
@dataclass
class MsrvttQAOptions(_VideoOptions):
    """Options of the ``msrvtt_qa`` writer."""

    top_k: int = field(
        default=1500, metadata={"help": "answer vocabulary size (MSRVTT-QA 1500, MSVD-QA 1000)"}
    )
    val_fraction: float = field(default=0.1, metadata={"help": "fraction of videos in val"})
    test_fraction: float = field(default=0.2, metadata={"help": "fraction of videos in test"})
    family_size: int = field(default=1, metadata={"help": "videos per hard-negative family (1: independent)"})
    negative_kinds: str = field(
        default="colour,event", metadata={"help": f"family changes, from {NEGATIVE_KINDS}"}
    )

    def __post_init__(self) -> None:
        _check_common(self)
        if self.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {self.top_k}")
        if not (
            0 <= self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError("need 0 <= --val-fraction, 0 < --test-fraction and their sum < 1")


def qa_split(i: int, num: int, val_fraction: float, test_fraction: float) -> str:
    """The split of video ``i``: train first, then val, then test (contiguous, like the official lists)."""
    n_test = max(1, round(num * test_fraction))
    n_val = round(num * val_fraction)
    if i >= num - n_test:
        return "test"
    return "val" if i >= num - n_test - n_val else "train"


@register_writer("msrvtt_qa", MsrvttQAOptions, help="MSRVTT-QA json + SNP-S3 QA jsonl with ans2label, videos")
def write_msrvtt_qa(ctx: WriteContext) -> None:
    """MSRVTT-QA layout: ``videos/video{i}.mp4``, ``{split}_qa.json``, ``ans2label.json``, ``{split}.jsonl``.

    Answers outside the ``top_k`` training answers get label -1 (they count as wrong at test time).
    """
    o: MsrvttQAOptions = ctx.options
    (ctx.root / "videos").mkdir()
    official: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    meta = []
    for item in scenes_for(ctx, o.family_size, o.negative_kinds, **o.scene_kwargs()):
        i, scene = item["index"], item["scene"]
        write_mp4(
            ctx.root / "videos" / f"video{i}.mp4", render_video(scene, size=o.size).frames, o.fps, o.crf
        )
        split = qa_split(i, ctx.num, o.val_fraction, o.test_fraction)
        qas = qa_pairs(scene, ctx.rng(i, 2), "en")
        for qa in qas:
            official[split].append(
                {"answer": qa.answer, "category_id": qa.kind, "id": 0, "question": qa.question, "video_id": i}
            )
        caps = [caption_pair(scene, ctx.rng(i, 1), medium="video")[0]]
        meta.append(
            {
                "video_id": f"video{i}",
                "split": split,
                "family": item["family"],
                "change": item["change"],
                "scene": scene.to_dict(),
                "captions": [{"en": c.text, "content": asdict(c.content)} for c in caps],
                "qa": [asdict(q) for q in qas],
            }
        )
    counts = Counter(q["answer"] for q in official["train"])
    vocab = [a for a, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))][: o.top_k]
    ans2label = {a: k for k, a in enumerate(vocab)}
    write_json(ctx.root / "ans2label.json", ans2label)
    next_id = 0
    for split, rows in official.items():
        lines = []
        for row in rows:
            row["id"] = next_id
            next_id += 1
            record = {
                "caption": row["question"],
                "clip_name": f"video{row['video_id']}",
                "label": ans2label.get(row["answer"], -1),
                "type": "video",
            }
            lines.append(json.dumps(record))
        write_json(ctx.root / f"{split}_qa.json", rows)
        (ctx.root / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    write_json(ctx.root / META_FILE, {"format": "msrvtt_qa", "videos": meta})


# ---------------------------------------------------------------------------------- multiple choice
@dataclass
class MsrvttMCOptions(_VideoOptions):
    """Options of the ``msrvtt_mc`` writer."""

    num_options: int = field(default=5, metadata={"help": "options per question (MSR-VTT MC: 5)"})
    family_size: int = field(
        default=1, metadata={"help": "1: distractors from other videos; = num-options: one-attribute family"}
    )
    negative_kinds: str = field(
        default="colour,shape,size,scene,event", metadata={"help": f"family changes, from {NEGATIVE_KINDS}"}
    )

    def __post_init__(self) -> None:
        _check_common(self)
        if self.num_options < 2:
            raise ValueError(f"--num-options must be >= 2, got {self.num_options}")
        if self.family_size not in (1, self.num_options):
            raise ValueError(f"--family-size must be 1 or --num-options ({self.num_options})")


@register_writer("msrvtt_mc", MsrvttMCOptions, help="MSR-VTT multiple choice (SNP-S3 mc_test.jsonl), videos")
def write_msrvtt_mc(ctx: WriteContext) -> None:
    """MSR-VTT MC layout: ``videos/video{i}.mp4`` and ``mc_test.jsonl`` (see the module docstring)."""
    o: MsrvttMCOptions = ctx.options
    if ctx.num < o.num_options:
        raise ValueError(f"msrvtt_mc needs --num >= --num-options ({o.num_options}), got {ctx.num}")
    (ctx.root / "videos").mkdir()
    truth, meta, family_of = [], [], []
    for item in scenes_for(ctx, o.family_size, o.negative_kinds, **o.scene_kwargs()):
        i, scene = item["index"], item["scene"]
        write_mp4(
            ctx.root / "videos" / f"video{i}.mp4", render_video(scene, size=o.size).frames, o.fps, o.crf
        )
        # Full captions name every attribute, so a family member's caption differs in the changed one.
        en = caption_pair(scene, ctx.rng(i, 1), medium="video", full=True)[0]
        truth.append(_strip_final_punct(en.text))
        family_of.append(item["family"])
        record = {"video_id": f"video{i}", "family": item["family"], "change": item["change"]}
        meta.append({**record, "scene": scene.to_dict(), "caption": en.text, "content": asdict(en.content)})
    lines = []
    for i in range(ctx.num):
        rng = ctx.rng(i, 3)
        if o.family_size > 1:
            others = [j for j in range(ctx.num) if family_of[j] == family_of[i] and j != i]
        else:
            pool = [j for j in range(ctx.num) if j != i and truth[j] != truth[i]]
            others = [int(j) for j in rng.choice(pool, size=o.num_options - 1, replace=False)]
        options = [truth[i]] + [truth[j] for j in others]
        order = [int(k) for k in rng.permutation(len(options))]
        record = {
            "qid": f"mc{i}",
            "clip_name": f"video{i}",
            "title": f"toy-world video {i}",
            "answer": str(order.index(0)),
            "options": [options[k] for k in order],
        }
        meta[i]["distractor_videos"] = [f"video{j}" for j in others]
        lines.append(json.dumps(record))
    (ctx.root / "mc_test.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    write_json(ctx.root / META_FILE, {"format": "msrvtt_mc", "videos": meta})


# ----------------------------------------------------------------------------------- pretraining
@dataclass
class WebVidOptions(_VideoOptions):
    """Options of the ``webvid`` writer."""

    image_fraction: float = field(default=0.0, metadata={"help": "share of samples written as still images"})
    videos_per_page: int = field(default=100, metadata={"help": "videos per page_dir folder"})

    def __post_init__(self) -> None:
        _check_common(self)
        if not 0.0 <= self.image_fraction <= 1.0:
            raise ValueError(f"--image-fraction must be in [0, 1], got {self.image_fraction}")
        if self.videos_per_page < 1:
            raise ValueError(f"--videos-per-page must be >= 1, got {self.videos_per_page}")


@register_writer(
    "webvid", WebVidOptions, help="WebVid-style csv + mp4, SNP-S3 pretraining jsonl, CC3M-style tsv"
)
def write_webvid(ctx: WriteContext) -> None:
    """WebVid layout (``results_train.csv``, ``videos/<page_dir>/<videoid>.mp4``) and ``train.jsonl``."""
    o: WebVidOptions = ctx.options
    (ctx.root / "videos").mkdir()
    n_images = round(ctx.num * o.image_fraction)
    csv_rows, tsv_rows, lines, meta = [], [], [], []
    for item in scenes_for(ctx, 1, "colour", **o.scene_kwargs()):
        i, scene = item["index"], item["scene"]
        is_image = i >= ctx.num - n_images
        if is_image:  # a still image has no events to describe
            scene = sample_scene(
                ctx.rng(i), num_objects=(o.min_objects, o.max_objects), num_events=0, num_frames=1
            )
        text = _strip_final_punct(
            caption_pair(scene, ctx.rng(i, 1), medium="image" if is_image else "video")[0].text
        )
        if is_image:
            from PIL import Image

            (ctx.root / "images").mkdir(exist_ok=True)
            rel = f"images/{i:06d}.png"
            Image.fromarray(render_image(scene, o.size)).save(ctx.root / rel, format="PNG")
            tsv_rows.append([text, rel])
        else:
            page = f"{i // o.videos_per_page:03d}"
            (ctx.root / "videos" / page).mkdir(exist_ok=True)
            vid = str(1000000 + i)
            rel = f"videos/{page}/{vid}.mp4"
            write_mp4(ctx.root / rel, render_video(scene, size=o.size).frames, o.fps, o.crf)
            duration = f"PT00H00M{int(o.num_frames / o.fps):02d}S"
            csv_rows.append([vid, f"toyworld://{vid}.mp4", duration, page, text])
        record = {"caption": text, "clip_name": rel, "sen_id": i, "type": "image" if is_image else "video"}
        lines.append(json.dumps(record))
        meta.append({"clip_name": rel, "scene": scene.to_dict(), "caption": text})
    with open(ctx.root / "results_train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        writer.writerows(csv_rows)
    with open(ctx.root / "cc3m_train.tsv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(tsv_rows)
    (ctx.root / "train.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    write_json(ctx.root / META_FILE, {"format": "webvid", "samples": meta})
