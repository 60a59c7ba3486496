"""Per-step video features and per-token sentence features in the HDF5 layouts the TSGSV readers expect.

Video: one HDF5 dataset per video name, ``(T, D)`` float32, one row per feature step. A step is one decoded
frame sampled at ``--step-fps`` (default: every frame), read through :class:`common.video.VideoReader` and
normalised with :func:`common.video.preprocess_clip`. Encoders:

* ``clip``: an open_clip visual tower (``--clip-arch``, weights by tag or local path with
  ``--clip-pretrained``; none = random init), image embeddings (MAD's CLIP features are ViT-L/14 at 5 fps).
* ``tiny_cnn``: a seeded, frozen, random 2-layer CNN pooled to a 4x4 grid, projected to ``--video-dim``
  (the toy world's feature extractor, spec tsgsv §8: position survives pooling, so moves show up).

Sentences: one HDF5 dataset per annotation id, ``(L, D)`` token features. Encoders: ``bert``
(BERT-base-uncased second-to-last layer, ActivityNet/TACoS), ``clip`` (open_clip text transformer token
outputs after ``ln_final``, as MAD's ``CLIP_language_tokens_features.h5``) and ``random`` (a seeded embedding
per lower-cased word, ``--sent-dim`` wide, with CLS and SEP tokens: the toy world's).

Resumable: keys already in an output file are skipped, and files are written with a progress bar. The
repo-format annotation (``{split}.json``) is written by :func:`tsgsv.data.convert_anet_captions` and friends;
``main`` converts an ActivityNet-Captions-layout folder end to end::

    python -m tsgsv.scripts.extract_features --anet-root data/toy/anet --out data/toy/tsgsv \
        --video-encoder tiny_cnn --video-dim 64 --sent-encoder random --sent-dim 32
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from common.video import VideoDecodeError, VideoReader, preprocess_clip

log = logging.getLogger(__name__)


class TinyCNN(nn.Module):
    """A seeded random CNN: 2 strided convs and raw colours pooled to a 4x4 grid, a fixed projection.

    With ``motion`` (the default) a step's feature is ``gain * [a_t - a_0, a_t - a_{t-1}]`` for the appearance
    ``a`` (``dim / 2`` wide): what has changed since the first frame and since the previous frame. Like C3D's
    clip features it carries motion, here from past frames only, so it stays causal; the gain brings the
    within-video variation (a small object in a static scene moves ~3% of the appearance) to unit scale. The
    differences run along the frames of one call and carry over to the next call until :meth:`reset`.
    """

    def __init__(self, dim: int = 64, seed: int = 0, motion: bool = True, motion_gain: float = 20.0) -> None:
        super().__init__()
        if motion and dim % 2:
            raise ValueError(f"--video-dim must be even with motion features, got {dim}")
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList([nn.Conv2d(3, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1)])
        self.proj = nn.Linear(32 * 16 + 3 * 16, dim // 2 if motion else dim)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p[0].numel()) ** 0.5))
        self.requires_grad_(False).eval()
        self.motion, self.motion_gain = motion, motion_gain
        self._prev: torch.Tensor | None = None
        self._first: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the first and previous frames (call at the start of each video)."""
        self._prev = self._first = None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` consecutive normalised frames -> ``(N, dim)``."""
        colour = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # keeps where each colour is
        for conv in self.convs:
            x = torch.relu(conv(x))
        a = self.proj(torch.cat([nn.functional.adaptive_avg_pool2d(x, 4).flatten(1), colour], 1))
        if not self.motion:
            return a
        if self._first is None:
            self._first = a[:1]
        prev = torch.cat([a[:1] if self._prev is None else self._prev, a[:-1]])
        self._prev = a[-1:]
        return self.motion_gain * torch.cat([a - self._first, a - prev], 1)


def clip_visual(arch: str, pretrained: str | None, device: str) -> tuple[Callable, int]:
    """An open_clip image encoder and its input size (weights by tag or path; ``None``: random init)."""
    import open_clip

    model = open_clip.create_model(arch, pretrained=pretrained, device=device).eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return torch.no_grad()(model.encode_image), int(size)


def video_encoder(name: str, dim: int, seed: int, arch: str, pretrained: str | None, device: str):
    """``(encode, input_size)`` for ``tiny_cnn`` or ``clip``."""
    if name == "tiny_cnn":
        return TinyCNN(dim, seed).to(device), None
    if name == "clip":
        return clip_visual(arch, pretrained, device)
    raise ValueError(f"--video-encoder must be tiny_cnn or clip, got {name!r}")


@torch.no_grad()
def extract_video_features(
    videos: dict[str, Path],
    out: Path,
    encode: Callable,
    size: int | None = None,
    step_fps: float | None = None,
    batch: int = 256,
    device: str = "cpu",
    progress: bool = True,
) -> int:
    """Write ``(T, D)`` features per video into ``out`` (HDF5); returns how many videos were written now."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written, failed = 0, []
    with h5py.File(out, "a") as h5:
        todo = [k for k in sorted(videos) if k not in h5]
        for name in tqdm(todo, desc=f"video features -> {out.name}", disable=not progress):
            if hasattr(encode, "reset"):
                encode.reset()
            try:
                with VideoReader(videos[name]) as reader:
                    n = reader.num_frames
                    if step_fps:
                        step = max(1, round(n / reader.duration / step_fps)) if reader.duration > 0 else 1
                        idx = list(range(0, n, step))
                    else:
                        idx = list(range(n))
                    feats = []
                    for j in range(0, len(idx), batch):
                        clip = reader.get_frames(idx[j : j + batch]).to(device)
                        x = (
                            preprocess_clip(clip, size=size, crop_size=size)
                            if size
                            else preprocess_clip(clip)
                        )
                        feats.append(encode(x).float().cpu())
            except (
                VideoDecodeError
            ) as e:  # logged, counted and skipped: the readers drop videos without features
                log.warning("skipping undecodable video %s: %s", videos[name], e)
                failed.append(name)
                continue
            h5.create_dataset(name, data=torch.cat(feats).numpy().astype(np.float32))
            written += 1
    if failed:
        log.warning("%d undecodable videos skipped: %s", len(failed), ", ".join(failed[:20]))
    return written


WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def random_token_features(text: str, dim: int, seed: int, max_len: int) -> np.ndarray:
    """``(L, dim)``: [CLS] + words + [SEP], each a seeded Gaussian vector of the lower-cased word."""
    words = ["[CLS]", *WORD.findall(text.lower())[: max_len - 2], "[SEP]"]
    rows = [np.random.default_rng([seed, zlib.crc32(w.encode())]).standard_normal(dim) for w in words]
    return (np.stack(rows) / np.sqrt(dim)).astype(np.float32)


def clip_text(arch: str, pretrained: str | None, device: str, max_len: int) -> Callable[[str], np.ndarray]:
    """Token features of open_clip's text transformer (after ``ln_final``), cut at the EOT token."""
    import open_clip

    model = open_clip.create_model(arch, pretrained=pretrained, device=device).eval()
    tokenizer = open_clip.get_tokenizer(arch)

    @torch.no_grad()
    def encode(text: str) -> np.ndarray:
        tokens = tokenizer([text]).to(device)
        x = model.token_embedding(tokens) + model.positional_embedding
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)[0]
        n = min(int(tokens[0].argmax()) + 1, max_len)  # EOT has the largest id
        return x[:n].float().cpu().numpy()

    return encode


def bert_text(name_or_path: str, device: str, max_len: int) -> Callable[[str], np.ndarray]:
    """BERT token features from the second-to-last layer, ``[CLS] ... [SEP]`` cut at ``max_len`` (spec §2).

    ``name_or_path``: a Hugging Face hub id (``bert-base-uncased``; needs the files in the local cache, the
    hub is offline) or a local folder. No remote code is run.
    """
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModel.from_pretrained(name_or_path).to(device).eval()

    @torch.no_grad()
    def encode(text: str) -> np.ndarray:
        batch = tokenizer(text, truncation=True, max_length=max_len, return_tensors="pt").to(device)
        hidden = model(**batch, output_hidden_states=True).hidden_states[-2][0]  # (L, 768)
        return hidden.float().cpu().numpy()

    return encode


def extract_sentence_features(
    sentences: dict[str, str], out: Path, encode: Callable[[str], np.ndarray], progress: bool = True
) -> int:
    """Write ``(L, D)`` token features per annotation id into ``out`` (HDF5); resumable."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with h5py.File(out, "a") as h5:
        todo = [k for k in sorted(sentences) if k not in h5]
        for key in tqdm(todo, desc=f"sentence features -> {out.name}", disable=not progress):
            h5.create_dataset(key, data=encode(sentences[key]))
            written += 1
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--anet-root", required=True, help="folder with train.json, val_1.json, val_2.json, videos/"
    )
    p.add_argument("--out", required=True, help="output folder (repo-format json + HDF5 features)")
    p.add_argument("--video-encoder", default="tiny_cnn", choices=["tiny_cnn", "clip"])
    p.add_argument("--video-dim", type=int, default=64)
    p.add_argument("--frame-size", type=int, default=32, help="input side for tiny_cnn")
    p.add_argument(
        "--step-fps", type=float, default=None, help="feature steps per second (default: all frames)"
    )
    p.add_argument("--sent-encoder", default="random", choices=["random", "clip", "bert"])
    p.add_argument("--bert", default="bert-base-uncased", help="BERT hub id (local cache) or folder")
    p.add_argument("--sent-dim", type=int, default=32)
    p.add_argument("--max-sent-len", type=int, default=20)
    p.add_argument("--clip-arch", default="ViT-B-32")
    p.add_argument("--clip-pretrained", default=None, help="open_clip tag or local checkpoint path")
    p.add_argument("--lm", default="random", help="name in <lm>_language_tokens_features_<split>.hdf5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1: fastest on a shared CPU)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    """Convert an ActivityNet-Captions-layout folder: features, then repo-format annotations."""
    from tsgsv.data import ANET_SPLIT_MAP, convert_anet_captions, video_feature_file

    a = parse_args(argv)
    src, out = Path(a.anet_root), Path(a.out)
    progress = not a.no_progress
    if a.threads:
        torch.set_num_threads(a.threads)
    encode, size = video_encoder(
        a.video_encoder, a.video_dim, a.seed, a.clip_arch, a.clip_pretrained, a.device
    )
    if a.video_encoder == "tiny_cnn":
        size = a.frame_size
    videos = {p.stem: p for p in sorted((src / "videos").glob("*.mp4"))}
    vfile = out / video_feature_file()
    extract_video_features(videos, vfile, encode, size, a.step_fps, device=a.device, progress=progress)
    if a.sent_encoder == "random":

        def text_encode(text: str) -> np.ndarray:
            return random_token_features(text, a.sent_dim, a.seed, a.max_sent_len)
    elif a.sent_encoder == "bert":
        text_encode = bert_text(a.bert, a.device, a.max_sent_len)
    else:
        text_encode = clip_text(a.clip_arch, a.clip_pretrained, a.device, a.max_sent_len)
    for official, split in ANET_SPLIT_MAP.items():
        anno = convert_anet_captions(src / f"{official}.json", vfile, out / f"{split}.json")
        sentences = {aid: s for item in anno.values() for aid, s in zip(item["anno_ids"], item["sentences"])}
        sfile = out / f"{a.lm}_language_tokens_features_{split}.hdf5"
        extract_sentence_features(sentences, sfile, text_encode, progress=progress)
    (out / "features.json").write_text(json.dumps(vars(a), indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
