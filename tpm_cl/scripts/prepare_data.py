"""``make data-tpm_cl``: where to get the real datasets, and their one-time preparation.

Prints, for MSR-VTT, MSVD, DiDeMo and ActivityNet Captions, where the official annotations and videos come
from and the layout ``tpm_cl.data`` reads; ``--root DIR`` then checks that layout. MSVD's captions exist only
as a pickle (``raw-captions.pkl``); ``--convert-msvd`` turns it into ``raw-captions.json`` with an unpickler
that builds no objects (the only place a pickle is read). ``--toy`` writes the toy-world MSR-VTT of tiny.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tpm_cl.data import READERS, convert_msvd_captions

SOURCES = {
    "msrvtt": (
        "MSR-VTT: videos + MSRVTT_data.json (https://www.robots.ox.ac.uk/~maxbain/frozen-in-time/data/"
        "MSRVTT.zip) and CLIP4Clip's MSRVTT_train.9k.csv / MSRVTT_train.7k.csv / MSRVTT_JSFUSION_test.csv "
        "(https://github.com/ArrowLuo/CLIP4Clip, msrvtt_data.zip).",
        ["MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv", "videos/"],
        "9k",
    ),
    "msvd": (
        "MSVD: YouTubeClips (https://www.cs.utexas.edu/users/ml/clamp/videoDescription/) and CLIP4Clip's "
        "msvd_data.zip (raw-captions.pkl, train_list.txt, val_list.txt, test_list.txt).",
        ["raw-captions.json", "train_list.txt", "test_list.txt", "YouTubeClips/"],
        "test",
    ),
    "didemo": (
        "DiDeMo: https://github.com/LisaAnne/LocalizingMoments (train_data.json, val_data.json, "
        "test_data.json; videos from the AWS bucket listed there).",
        ["train_data.json", "test_data.json", "videos/"],
        "test",
    ),
    "activitynet": (
        "ActivityNet Captions: https://cs.stanford.edu/people/ranjaykrishna/densevid/ (train.json, "
        "val_1.json); videos from http://activity-net.org/download.html.",
        ["train.json", "val_1.json", "videos/"],
        "val_1",
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=sorted(SOURCES), help="check one dataset's layout under --root")
    parser.add_argument("--root", help="the dataset folder to check")
    parser.add_argument(
        "--convert-msvd", metavar="PKL", help="convert MSVD raw-captions.pkl to JSON beside it"
    )
    parser.add_argument("--toy", action="store_true", help="write the toy-world MSR-VTT of tiny.yaml")
    args = parser.parse_args(argv)
    if args.convert_msvd:
        out = convert_msvd_captions(args.convert_msvd, Path(args.convert_msvd).with_suffix(".json"))
        print(f"wrote {out}")
    if args.toy:
        from common.toyworld import generate

        out = generate("msrvtt", out="data/toy/tpm_cl_msrvtt", num=2000, seed=0, family_size=4,
                       negative_kinds="colour,event", num_frames=8, size=64, progress=True)  # fmt: skip
        print(f"toy-world MSR-VTT at {out}")
    if args.dataset and args.root:
        _, files, split = SOURCES[args.dataset]
        missing = [f for f in files if not (Path(args.root) / f).exists()]
        if missing:
            raise SystemExit(f"{args.root}: missing {missing}")
        items = READERS[args.dataset](args.root, split)
        absent = sum(not it.path.exists() for it in items)
        print(f"{args.dataset} {split}: {len(items)} videos, {sum(len(i.captions) for i in items)} texts, "
              f"{absent} video files missing")  # fmt: skip
    if not (args.convert_msvd or args.toy or args.dataset):
        for name, (text, files, _) in SOURCES.items():
            print(f"[{name}] {text}\n    layout under data.root: {', '.join(files)}")
        print("MSVD: then run `make data-tpm_cl ARGS='--convert-msvd DIR/raw-captions.pkl'`.")
        print("Weights: paper.yaml names open_clip's ViT-B-32 'openai' (or give a local checkpoint path).")


if __name__ == "__main__":
    main()
