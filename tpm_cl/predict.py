"""Apply a trained TPM-CL model: rank videos for a text query, or captions for a video.

``python -m tpm_cl.predict --ckpt CKPT --text "a red circle grows" --videos DIR_OR_FILES... [--topk 5]
[--png out.png]`` prints the videos ranked by S (the model's DMAE similarity) and writes a PNG of the top
videos' frames; ``--video FILE --captions "..." "..."`` ranks the captions for one video instead. The frame
count, image size, word limit and part-of-speech source come from the checkpoint's data hyperparameters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tpm_cl.data import VIDEO_EXTS, CaptionTokenizer, _ClipLoader
from tpm_cl.module import TPMCLLitModule


def _videos(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_EXTS) if p.is_dir() else [p]
    if not out:
        raise SystemExit(f"no video files found in {paths}")
    return out


@torch.no_grad()
def rank(ckpt: str, texts: list[str], videos: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """S ``(texts, videos)`` and the uint8 clips ``(V, F, 3, H, W)``."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own Lightning checkpoint
    data_hp = state.get("datamodule_hyper_parameters", {})
    lit = TPMCLLitModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    cfg = lit.config
    tok = CaptionTokenizer(cfg.max_words, data_hp.get("pos", "stopwords"))
    loader = _ClipLoader(cfg.num_frames, data_hp.get("image_size", cfg.image_size))
    clips, masks = zip(*(loader(v) for v in videos))
    ids, weight = zip(*(tok(t) for t in texts))
    batch = {
        "video": torch.stack(clips),
        "video_mask": torch.stack(masks),
        "text_ids": torch.stack(ids),
        "text_weight": torch.stack(weight),
    }
    raw = batch["video"].clone()
    batch = lit.on_after_batch_transfer(batch, 0)
    text, video = lit._encode(batch)
    return lit.model.similarity(text, video), raw


def save_png(
    path: str, query: str, videos: list[Path], scores: torch.Tensor, clips: torch.Tensor, topk: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = scores.argsort(descending=True)[:topk].tolist()
    frames = clips.shape[1]
    fig, axes = plt.subplots(len(order), frames, figsize=(1.3 * frames, 1.5 * len(order)), squeeze=False)
    for row, v in enumerate(order):
        for f in range(frames):
            ax = axes[row][f]
            ax.imshow(clips[v, f].permute(1, 2, 0).numpy())
            ax.axis("off")
        axes[row][0].set_title(f"#{row + 1} {videos[v].name}  S={scores[v]:.3f}", fontsize=7, loc="left")
    fig.suptitle(query, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--text", help="text query: rank --videos")
    parser.add_argument("--videos", nargs="+", help="video files or folders to rank")
    parser.add_argument("--video", help="one video: rank --captions")
    parser.add_argument("--captions", nargs="+", help="captions to rank for --video")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--png", default="tpm_cl_predict.png", help="where to write the picture (text query)")
    args = parser.parse_args(argv)
    if args.text and args.videos:
        videos = _videos(args.videos)
        sim, clips = rank(args.ckpt, [args.text], videos)
        order = sim[0].argsort(descending=True).tolist()
        print(f"query: {args.text!r}")
        for r, v in enumerate(order[: args.topk], start=1):
            print(f"{r:3d}. {videos[v]}  S={sim[0, v]:.4f}")
        save_png(args.png, args.text, videos, sim[0], clips, args.topk)
        print(f"wrote {args.png}")
    elif args.video and args.captions:
        sim, _ = rank(args.ckpt, args.captions, [Path(args.video)])
        print(f"video: {args.video}")
        for r, t in enumerate(sim[:, 0].argsort(descending=True).tolist(), start=1):
            print(f"{r:3d}. S={sim[t, 0]:.4f}  {args.captions[t]}")
    else:
        parser.error("give --text with --videos, or --video with --captions")


if __name__ == "__main__":
    main()
