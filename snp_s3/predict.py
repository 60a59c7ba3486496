"""``make predict-snp_s3 CKPT=... ARGS="--video clip.mp4 --text 'a red circle moves' --text '...'"``.

Scores each text against the video with both levels of SNP-S3 (``l2``: ``similarity_dense`` on the shared
cross pass, ``l1``: cosine with a log-sum-exp over clips), prints the texts ranked by ``l2`` (the
multiple-choice rule: the argmax is the answer), and with ``--png`` saves the sampled frames above the ranked
texts. With ``--question`` and a VideoQA checkpoint it prints the top answers instead. Uses the run's
``config.yaml`` beside the checkpoint for the tokenizer, clip count and frame size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from common.video import preprocess_clip
from snp_s3.data import FrameLoader, TextCodec
from snp_s3.module import IMAGENET_MEAN, IMAGENET_STD, SNPS3LitModule


def load(ckpt: str | Path) -> tuple[SNPS3LitModule, dict]:
    ckpt = Path(ckpt)
    cfg_path = ckpt.parents[1] / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no run config at {cfg_path} (predict reads the run's config.yaml)")
    cfg = yaml.safe_load(cfg_path.read_text())
    module = SNPS3LitModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    return module.eval(), cfg


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--video", required=True, help="a video or image file")
    ap.add_argument("--text", action="append", default=[], help="a caption / MC option (repeatable)")
    ap.add_argument("--question", default=None, help="a question for a VideoQA checkpoint")
    ap.add_argument("--png", default=None, help="write the frames and the ranked texts to this PNG")
    a = ap.parse_args(argv)
    module, cfg = load(a.ckpt)
    data = cfg["data"]
    codec = TextCodec(data["tokenizer"], data["max_text_len"])
    frames = FrameLoader(data["image_size"])(Path(a.video), data["n_clips"], train=False)  # (P, 3, S, S)
    clips = module.model.encode_video(preprocess_clip(frames[None], mean=IMAGENET_MEAN, std=IMAGENET_STD))
    out: dict = {}
    if a.question:
        ids, mask = codec(a.question)
        probs = module.model.qa_logits(ids[None], mask[None], clips).softmax(-1)[0]
        ans2label = json.loads((Path(data["qa_root"]) / "ans2label.json").read_text())
        label2ans = {v: k for k, v in ans2label.items()}
        top = probs.topk(min(5, len(label2ans)))
        out["answers"] = [
            (label2ans.get(int(i), f"#{int(i)}"), float(p)) for p, i in zip(top.values, top.indices)
        ]
        for ans, p in out["answers"]:
            print(f"{p:6.3f}  {ans}")
    if a.text:
        toks = [codec(t) for t in a.text]
        ids, mask = torch.stack([t[0] for t in toks]), torch.stack([t[1] for t in toks])
        l2 = module.model.pair_score(ids, mask, clips.expand(len(a.text), -1, -1))
        t = module.model.text_pass(ids, mask)[1]
        l1 = torch.logsumexp(t @ module.model.video_feature(clips)[0].t(), dim=-1)
        order = l2.argsort(descending=True).tolist()
        out["ranking"] = [(a.text[i], float(l2[i]), float(l1[i])) for i in order]
        print("rank  l2_score  l1_score  text")
        for r, (text, s2, s1) in enumerate(out["ranking"], 1):
            print(f"{r:4d}  {s2:8.3f}  {s1:8.3f}  {text}")
    if a.png:
        write_png(a.png, frames, out.get("ranking", []), out.get("answers", []))
        print(f"wrote {a.png}")
    return out


def write_png(path: str, frames: torch.Tensor, ranking: list, answers: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = frames.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.4), gridspec_kw={"height_ratios": [1, 1]})
    axes = axes.reshape(2, n)
    for i in range(n):
        axes[0, i].imshow(frames[i].permute(1, 2, 0).numpy())
        axes[0, i].set_title(f"clip {i + 1}", fontsize=8)
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    lines = [f"{r}. [{s2:.2f}] {t}" for r, (t, s2, _) in enumerate(ranking, 1)]
    lines += [f"{p:.2f} {ans}" for ans, p in answers]
    fig.text(0.02, 0.45, "\n".join(lines) or "(no texts)", fontsize=8, va="top", family="monospace")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
