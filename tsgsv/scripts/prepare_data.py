"""``make data-tsgsv``: where to get ActivityNet Captions, TACoS and MAD, and their conversion.

Without arguments it prints the sources and the layout :class:`tsgsv.data.TSGSVDataModule` reads. With
``--dataset D --src DIR --root OUT`` it converts the original annotations into the repo format
(``{train,val,test}.json`` with ``duration_frame`` read from the video feature file):

* ``anet``: ``train.json``, ``val_1.json``, ``val_2.json`` + a C3D HDF5 keyed by ``v_<id>`` (``--video-h5``);
  sentence features are produced by ``--bert`` (BERT-base-uncased 2nd-to-last layer, needs the weights).
* ``tacos``: 2D-TAN's ``train.json``, ``val.json``, ``test.json`` + a C3D HDF5.
* ``mad``: ``MAD_{train,val,test}.json`` + ``CLIP_frames_features_5fps.h5`` (the language token features,
  ``CLIP_language_tokens_features.h5``, are used as they are).

``--toy`` writes the toy-world chain of tiny.yaml instead (the same as the toy run's ``prepare_data``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tsgsv.data import convert_anet_captions, convert_mad, convert_tacos, prepare_toy

SOURCES = {
    "anet": "ActivityNet Captions annotations: https://cs.stanford.edu/people/ranjaykrishna/densevid/ "
    "(train.json, val_1.json, val_2.json); C3D features: "
    "http://activity-net.org/challenges/2016/download.html "
    "(sub_activitynet_v1-3.c3d.hdf5, converted to one (T, 500) dataset per video).",
    "tacos": "TACoS (2D-TAN split and C3D features): https://github.com/microsoft/2D-TAN (data/TACoS).",
    "mad": "MAD: https://github.com/Soldelli/MAD (MAD_{train,val,test}.json, CLIP_frames_features_5fps.h5, "
    "CLIP_language_tokens_features.h5; access by request).",
}
SPLITS = {
    "anet": {"train.json": "train", "val_1.json": "val", "val_2.json": "test"},
    "tacos": {"train.json": "train", "val.json": "val", "test.json": "test"},
    "mad": {"MAD_train.json": "train", "MAD_val.json": "val", "MAD_test.json": "test"},
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(SOURCES))
    p.add_argument("--src", help="folder with the original annotation files")
    p.add_argument("--root", help="output folder (data/<dataset>)")
    p.add_argument("--video-h5", help="video feature HDF5 keyed by video name (copied to the output)")
    p.add_argument("--toy", action="store_true", help="write the toy-world chain of tiny.yaml")
    a = p.parse_args(argv)
    if a.toy:
        import yaml

        cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "tiny.yaml").read_text())["data"]
        out = prepare_toy(Path(a.root or cfg["root"]), cfg["toy_num"], cfg["toy_seed"], cfg["toy_options"],
                          cfg["toy_features"])  # fmt: skip
        print(f"toy-world data ready in {out}")
        return
    if not (a.dataset and a.src and a.root):
        for name, text in SOURCES.items():
            print(f"[{name}] {text}")
        print("\nthen: python -m tsgsv.scripts.prepare_data --dataset anet --src DIR --root data/anet "
              "--video-h5 c3d.hdf5")  # fmt: skip
        return
    src, root = Path(a.src), Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    vh5 = None
    if a.video_h5:
        vh5 = root / ("CLIP_frames_features_5fps.h5" if a.dataset == "mad" else "video_features.hdf5")
        if Path(a.video_h5).resolve() != vh5.resolve():
            shutil.copy(a.video_h5, vh5)
    for name, split in SPLITS[a.dataset].items():
        if not (src / name).is_file():
            print(f"skip {name}: not in {src}")
            continue
        if a.dataset == "anet":
            convert_anet_captions(src / name, vh5, root / f"{split}.json")
        elif a.dataset == "tacos":
            convert_tacos(src / name, vh5, root / f"{split}.json")
        else:
            convert_mad(src / name, 5.0, vh5, root / f"{split}.json")
        print(f"wrote {root / f'{split}.json'}")


if __name__ == "__main__":
    main()
