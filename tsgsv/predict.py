"""``make predict-tsgsv CKPT=... ARGS="--video clip.mp4 --query 'the red circle grows'"``.

Streams a video (or a ``.npy`` of per-step features) through a trained model for one query, one step at a
time (:class:`tsgsv.streaming.StreamingGrounder`), prints the step at which the model first fires on the
moment's start and end, the top moments (from the streaming start/end scores, as in the evaluation), and
writes a PNG timeline of the three streaming scores (``--out``, default ``tsgsv_timeline.png``).

Video features come from the extractor named in the run's ``config.yaml`` (``data.toy_features``; the toy
run's tiny CNN by default); query features from the same text encoder (the toy's seeded word embeddings).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from tsgsv.metrics import moments_from_scores
from tsgsv.module import TSGSVLitModule
from tsgsv.scripts.extract_features import random_token_features, video_encoder
from tsgsv.streaming import StreamingGrounder


def _run_config(ckpt: Path) -> dict:
    cfg = ckpt.parent.parent / "config.yaml"
    return yaml.safe_load(cfg.read_text()) if cfg.is_file() else {}


def video_features(path: Path, feat: dict) -> tuple[torch.Tensor, float]:
    """``(T, D)`` features and the duration in seconds of a video or a ``.npy`` (duration = T steps)."""
    if path.suffix == ".npy":
        x = torch.from_numpy(np.load(path)).float()
        return x, float(len(x))
    from common.video import VideoReader, preprocess_clip

    enc, size = video_encoder(
        feat.get("video_encoder", "tiny_cnn"), int(feat.get("video_dim", 64)), int(feat.get("seed", 0)),
        feat.get("clip_arch", "ViT-B-32"), feat.get("clip_pretrained"), "cpu",
    )  # fmt: skip
    size = int(feat.get("frame_size", 32)) if feat.get("video_encoder", "tiny_cnn") == "tiny_cnn" else size
    with VideoReader(path) as reader:
        frames = reader.get_frames(list(range(reader.num_frames)))
        duration = reader.duration
    with torch.no_grad():
        return enc(preprocess_clip(frames, size=size, crop_size=size)).float(), float(duration)


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--video", required=True, help="an mp4 (features extracted here) or a (T, D) .npy")
    p.add_argument("--query", required=True)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--out", default="tsgsv_timeline.png")
    a = p.parse_args(argv)
    ckpt = Path(a.ckpt)
    if not ckpt.is_file():
        raise SystemExit(f"no checkpoint at {ckpt}")
    module = TSGSVLitModule.load_from_checkpoint(ckpt, map_location="cpu")
    run = _run_config(ckpt)
    feat = (run.get("data") or {}).get("toy_features") or {}
    x, duration = video_features(Path(a.video), feat)
    cfg = module.model.cfg
    sent = torch.from_numpy(
        random_token_features(a.query, int(feat.get("sent_dim", cfg.sent_dim)), int(feat.get("seed", 0)),
                              cfg.max_sent_len)
    )  # fmt: skip
    scores = StreamingGrounder(module.model, sent, len(sent)).run(x).numpy()
    moments, conf = moments_from_scores(scores[:, 0], scores[:, 1], duration, top_k=a.top_k)
    sec = duration / max(len(x) - 1, 1)
    print(f"query: {a.query!r}; {len(x)} steps over {duration:.1f} s, streamed one step at a time")
    for k, ((s, e), c) in enumerate(zip(moments, conf), 1):
        print(f"  #{k}: {s:6.2f} s - {e:6.2f} s   score {c:.3f}")
    rel = scores[:, 2]
    print(f"  relevance peaks at {np.argmax(rel) * sec:.2f} s (p={rel.max():.2f})")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(x)) * sec
    fig, ax = plt.subplots(figsize=(9, 3))
    for k, name in enumerate(("start", "end", "relevance")):
        ax.plot(t, scores[:, k], label=name)
    if len(moments):
        ax.axvspan(moments[0][0], moments[0][1], color="grey", alpha=0.2, label="top-1 moment")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("streaming score")
    ax.set_title(a.query[:80])
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    print(f"timeline written to {a.out}")
    return {"scores": scores, "moments": moments}


if __name__ == "__main__":
    main()
