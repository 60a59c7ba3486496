"""``make data-snp_s3``: where to get SNP-S3's datasets and weights, and the one preparation step they need.

Without arguments it prints the layout the configs expect. ``--mine CAPTIONS`` runs the significant-word
mining (``mine_significant_words.py``) with spaCy on a real caption corpus (WebVid train captions in the
paper) into ``data/snp_s3/significant/``.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

LAYOUT = """\
SNP-S3 data (paths of configs/paper.yaml and configs/stages/*.yaml; none is downloaded automatically):

  data/coco_vg/train.jsonl     COCO train2017 captions + Visual Genome regions as {"caption", "clip_name",
                               "sen_id", "type": "image"} lines, images under data/coco_vg/
                               (https://cocodataset.org, https://homes.cs.washington.edu/~ranjay/visualgenome)
  data/webvid/results_2M_train.csv + videos/<page_dir>/<videoid>.mp4   (WebVid-2M; pretrain_format: webvid)
  data/cc3m/Train_GCC-training.tsv  caption<TAB>image (CC3M; pretrain_format: cc3m)
  data/msrvtt/                 MSRVTT_data.json, MSRVTT_train.{9k,7k}.csv, MSRVTT_JSFUSION_test.csv, videos/
                               (CLIP4Clip's msrvtt_data.zip + the MSR-VTT videos)
  data/msvd/                   raw-captions.json (made once from raw-captions.pkl: make data-snp_s3
                               ARGS="--msvd-pkl data/msvd/raw-captions.pkl"), *_list.txt, YouTubeClips/
  data/didemo/                 {train,val,test}_data.json, videos/ (LisaAnne/LocalizingMoments)
  data/msrvtt_qa/, data/msvd_qa/   {train,val,test}_qa.json (xudejing/video-question-answering) and
                               ans2label.json of the top-1500 / top-1000 training answers, videos/
  data/msrvtt_mc/mc_test.jsonl {"qid", "clip_name", "title", "answer", "options"} (JSFusion MC test), videos/
  data/snp_s3/significant/     count_reprocess.json + vocab_simi_list.json: make data-snp_s3 ARGS="--mine
                               data/webvid/results_2M_train.csv" (needs pip install '.[spacy]' and
                               python -m spacy download en_core_web_sm)
Weights: bert-base-uncased (hub id) and timm/pvt_v2_b2.in1k; R50: torchvision ImageNet weights as a local
file; Video Swin: VIOLET's checkpoint (no public URL in the released code).
"""


class _NoObjects(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain containers are allowed")


# Adapted from tpm_cl/data.py (convert_msvd_captions)
def convert_msvd_captions(pkl: str | Path, out: str | Path) -> Path:
    """Convert MSVD's ``raw-captions.pkl`` to JSON once, with an unpickler that builds no objects."""
    with open(pkl, "rb") as f:
        caps = _NoObjects(f).load()
    out = Path(out)
    out.write_text(json.dumps({str(k): [list(map(str, c)) for c in v] for k, v in caps.items()}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mine", default=None, help="caption corpus to mine significant words from (spaCy)")
    ap.add_argument("--tokenizer", default="bert-base-uncased")
    ap.add_argument("--out", default="data/snp_s3/significant")
    ap.add_argument("--msvd-pkl", default=None, help="MSVD raw-captions.pkl to convert to raw-captions.json")
    a = ap.parse_args(argv)
    print(LAYOUT)
    if a.msvd_pkl:
        out = convert_msvd_captions(a.msvd_pkl, Path(a.msvd_pkl).with_name("raw-captions.json"))
        print(f"wrote {out} (plain lists of tokens; the pickle was read without building any object)")
    if a.mine:
        from snp_s3.scripts.mine_significant_words import main as mine

        return mine(["--captions", a.mine, "--tokenizer", a.tokenizer, "--pos", "spacy", "--out", a.out])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
