"""SNP-S3 data: readers of the official annotation formats, caption processing (spec §3-4), the DataModule.

Readers (spec §4), each returning plain records:

* pretraining: the released jsonl layout (``{"caption", "clip_name", "sen_id", "type": "video"|"image"}``,
  grouped by clip, one caption drawn per ``__getitem__``), WebVid's ``results_*.csv`` (``videoid, ...,
  page_dir, name`` with ``videos/<page_dir>/<videoid>.mp4``) and CC3M-style ``caption<TAB>image`` tsv;
* retrieval: MSR-VTT (``MSRVTT_data.json`` + CLIP4Clip's 9k/7k CSVs, JSFusion 1k-A test CSV), MSVD
  (``raw-captions.json`` + split lists), DiDeMo paragraphs (``{split}_data.json``), and the released jsonl
  layout (train ``{"caption", "clip_name", "sen_id"}``, test ``{"caption", "clip_name", "retrieval_key"}``);
* VideoQA: the released jsonl (``{"caption": question, "clip_name", "label", "type"}``) or MSRVTT-QA / MSVD-QA
  official ``{split}_qa.json`` with an ``ans2label.json`` of the top-K training answers (MSRVTT-QA 1500,
  MSVD-QA 1000; other answers get label -1 and count as wrong);
* multiple choice: ``mc_test.jsonl`` (``{"qid", "clip_name", "title", "answer": "<idx>", "options": [5]}``).

Frames: ``n_clips`` equal segments, one frame each (training: a random frame per segment, evaluation: the
middle), decoded by ``common.video`` at ``image_size`` x ``image_size`` (DEVIATION: square resize instead of
the code's long-side scaling with pixel masks). An image is a one-clip video; in a batch whose videos have
``n_clips`` clips it is repeated ``n_clips`` times. An undecodable training file is logged, counted and
replaced by another sample (at most 10 tries); in evaluation it becomes a black clip (the ground truth cannot
be swapped). The count is logged at the end of each epoch.

Captions are tokenised once and truncated once (fix of spec §6 #7), ``[CLS] w [SEP] pad`` of ``max_text_len``
ids; training truncation keeps a random window. Masked ids and labels come from MSSM (``mask_strategy:
mssm``) or random 15% masking (``random``); attentive masking is applied per batch by the LitModule.

Batch contract (``dict[str, Tensor]``; B videos, P clips, L = max_text_len):

* every batch: ``video`` uint8 (B, P, 3, H, W), normalised on the device by the LitModule; ``index`` (B,).
* pretraining / retrieval training: ``text_ids``, ``text_mask`` (B, L) the raw caption; ``masked_ids``,
  ``mlm_labels`` (B, L) (-1 = not a target); ``maskable`` (B, L) bool (not special, not pad);
  ``word_pos`` (B, K) LVWM positions; ``neg_ids``, ``neg_mask`` (B, L) a caption of another video (ITM).
* retrieval evaluation: ``text_ids``, ``text_mask`` (T, L) all captions of the batch's videos,
  ``text_to_video`` (T,) the batch-local video of each text, ``family`` (B,) toy-world family (-1: none).
* VideoQA: ``text_ids``, ``text_mask`` (B, L) the question, ``label`` (B,).
* multiple choice: ``option_ids``, ``option_mask`` (B, O, L), ``answer`` (B,).
"""

from __future__ import annotations

import csv
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from common.video import VideoDecodeError, VideoReader, sample_frame_indices
from snp_s3.masking import lvwm_positions, mssm_mask, random_mask

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
TOY_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ------------------------------------------------------------------------------------------------ records
@dataclass
class Clip:
    """A video (or image) with its captions and its hard-negative family (-1: none)."""

    path: Path
    captions: list[str]
    kind: str = "video"
    family: int = -1


@dataclass
class QARecord:
    path: Path
    question: str
    label: int


@dataclass
class MCRecord:
    path: Path
    options: list[str]
    answer: int
    qid: str = ""


def _read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"annotation file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from exc
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing key(s) {missing}; expected {list(required)}")
        out.append(row)
    return out


def find_media(root: Path, name: str) -> Path:
    """The file of a ``clip_name``: itself if it exists, else with a known video or image extension."""
    p = root / name
    if p.suffix.lower() in VIDEO_EXTS + IMAGE_EXTS:
        return p
    for ext in VIDEO_EXTS + IMAGE_EXTS:
        if p.with_name(p.name + ext).exists():
            return p.with_name(p.name + ext)
    return p.with_name(p.name + ".mp4")  # a missing file is reported when it is read


def _kind(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_EXTS else "video"


def _families(root: Path) -> dict[str, int]:
    meta = root / "toyworld.json"
    if not meta.is_file():
        return {}
    return {v["video_id"]: int(v["family"]) for v in _read_json(meta).get("videos", []) if "family" in v}


def read_pretrain_jsonl(path: str | Path, media_root: str | Path | None = None) -> list[Clip]:
    """The released pretraining jsonl, grouped by ``clip_name`` (and ``start``/``end`` window)."""
    path = Path(path)
    root = Path(media_root) if media_root else path.parent
    groups: dict[tuple, Clip] = {}
    for row in _read_jsonl(path, ("caption", "clip_name")):
        key = (row["clip_name"], row.get("start"), row.get("end"))
        f = find_media(root, row["clip_name"])
        kind = row.get("type", _kind(f))
        if kind not in ("video", "image"):
            raise ValueError(f"{path}: clip {row['clip_name']} has type {kind!r}; expected video or image")
        groups.setdefault(key, Clip(f, [], kind)).captions.append(row["caption"])
    return list(groups.values())


def read_webvid_csv(path: str | Path, video_root: str | Path | None = None) -> list[Clip]:
    """WebVid ``results_*.csv``: ``videos/<page_dir>/<videoid>.mp4`` with the ``name`` caption."""
    path = Path(path)
    root = Path(video_root) if video_root else path.parent / "videos"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"videoid", "page_dir", "name"} <= set(rows[0]):
        raise ValueError(f"{path}: expected columns videoid, page_dir, name; got {list(rows[0])}")
    return [Clip(root / r["page_dir"] / f"{r['videoid']}.mp4", [r["name"]]) for r in rows]


def read_cc3m_tsv(path: str | Path, image_root: str | Path | None = None) -> list[Clip]:
    """CC3M-style ``caption<TAB>image`` lines (images as one-clip videos)."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if len(row) < 2:
                raise ValueError(f"{path}:{n}: expected 'caption<TAB>image', got {row}")
            out.append(Clip(root / row[1], [row[0]], "image"))
    return out


# Adapted from tpm_cl/data.py (read_msrvtt, read_msvd, read_didemo)
def read_msrvtt(root: str | Path, split: str, video_dir: str = "videos") -> list[Clip]:
    """MSR-VTT: ``9k``/``7k`` (CLIP4Clip train CSVs, all captions) or ``1k-A`` (JSFusion test CSV)."""
    root = Path(root)
    fam = _families(root)
    if split == "1k-A":
        path = root / "MSRVTT_JSFUSION_test.csv"
        items: dict[str, Clip] = {}
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if not row.get("video_id") or row.get("sentence") is None:
                    raise ValueError(f"{path}:{line}: expected columns key,vid_key,video_id,sentence")
                vid = row["video_id"]
                clip = items.setdefault(
                    vid, Clip(find_media(root / video_dir, vid), [], family=fam.get(vid, -1))
                )
                clip.captions.append(row["sentence"])
        return list(items.values())
    if split not in ("9k", "7k"):
        raise ValueError(f"MSR-VTT split must be 9k, 7k or 1k-A, got {split!r}")
    path = root / f"MSRVTT_train.{split}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "video_id" not in rows[0]:
        raise ValueError(f"{path}: expected a video_id column, got {list(rows[0])}")
    captions: dict[str, list[str]] = {}
    for k, sen in enumerate(_read_json(root / "MSRVTT_data.json").get("sentences", [])):
        if "video_id" not in sen or "caption" not in sen:
            raise ValueError(f"{root / 'MSRVTT_data.json'}: sentences[{k}] lacks video_id or caption")
        captions.setdefault(sen["video_id"], []).append(sen["caption"])
    out = []
    for row in rows:
        vid = row["video_id"]
        if vid not in captions:
            raise ValueError(f"{path}: video {vid} has no sentence in MSRVTT_data.json")
        out.append(Clip(find_media(root / video_dir, vid), captions[vid], family=fam.get(vid, -1)))
    return out


def read_msvd(root: str | Path, split: str, video_dir: str = "YouTubeClips") -> list[Clip]:
    """MSVD (1,200/100/670): ``raw-captions.json`` (converted once from the pickle) + ``{split}_list.txt``."""
    root = Path(root)
    caps = _read_json(root / "raw-captions.json")
    ids = [x.strip() for x in (root / f"{split}_list.txt").read_text().splitlines() if x.strip()]
    out = []
    for vid in ids:
        if vid not in caps:
            raise ValueError(f"{root / 'raw-captions.json'}: no captions for video {vid} of {split}_list.txt")
        out.append(Clip(find_media(root / video_dir, vid), [" ".join(t) for t in caps[vid]]))
    return out


def read_didemo(root: str | Path, split: str, video_dir: str = "videos") -> list[Clip]:
    """DiDeMo paragraph-to-video retrieval: a video's descriptions in time order, joined (reconstructed)."""
    root = Path(root)
    path = root / f"{split}_data.json"
    grouped: dict[str, list[tuple[float, str]]] = {}
    for k, row in enumerate(_read_json(path)):
        if not {"video", "times", "description"} <= set(row):
            raise ValueError(f"{path}: entry {k} needs video, times and description, got {sorted(row)}")
        start = min(t[0] for t in row["times"]) if row["times"] else 0
        grouped.setdefault(row["video"], []).append((start, row["description"].strip()))
    return [
        Clip(find_media(root / video_dir, vid), [" ".join(d for _, d in sorted(descs))])
        for vid, descs in grouped.items()
    ]


def read_retrieval_jsonl(path: str | Path, video_root: str | Path | None = None) -> list[Clip]:
    """The released retrieval jsonl: captions grouped by ``clip_name`` (test lines add ``retrieval_key``)."""
    path = Path(path)
    root = Path(video_root) if video_root else path.parent / "videos"
    groups: dict[str, Clip] = {}
    for row in _read_jsonl(path, ("caption", "clip_name")):
        groups.setdefault(row["clip_name"], Clip(find_media(root, row["clip_name"]), [])).captions.append(
            row["caption"]
        )
    return list(groups.values())


def read_qa_jsonl(path: str | Path, video_root: str | Path | None = None) -> list[QARecord]:
    """The released VideoQA jsonl: ``{"caption": question, "clip_name", "label", "type"}``."""
    path = Path(path)
    root = Path(video_root) if video_root else path.parent / "videos"
    rows = _read_jsonl(path, ("caption", "clip_name", "label"))
    return [QARecord(find_media(root, r["clip_name"]), r["caption"], int(r["label"])) for r in rows]


def read_official_qa(root: str | Path, split: str, video_dir: str = "videos") -> list[QARecord]:
    """MSRVTT-QA / MSVD-QA official ``{split}_qa.json`` with ``ans2label.json`` (OOV answers -> -1)."""
    root = Path(root)
    ans2label = _read_json(root / "ans2label.json")
    out = []
    for k, q in enumerate(_read_json(root / f"{split}_qa.json")):
        if not {"question", "answer", "video_id"} <= set(q):
            raise ValueError(f"{root / f'{split}_qa.json'}[{k}]: needs question, answer and video_id")
        vid = q["video_id"] if isinstance(q["video_id"], str) else f"video{q['video_id']}"
        out.append(QARecord(find_media(root / video_dir, vid), q["question"], ans2label.get(q["answer"], -1)))
    return out


def read_mc_jsonl(path: str | Path, video_root: str | Path | None = None) -> list[MCRecord]:
    """MSR-VTT multiple choice ``mc_test.jsonl``."""
    path = Path(path)
    root = Path(video_root) if video_root else path.parent / "videos"
    out = []
    for n, r in enumerate(_read_jsonl(path, ("clip_name", "answer", "options")), 1):
        answer = int(r["answer"])
        if not 0 <= answer < len(r["options"]):
            raise ValueError(f"{path}:{n}: answer {answer} outside the {len(r['options'])} options")
        out.append(
            MCRecord(find_media(root, r["clip_name"]), list(r["options"]), answer, str(r.get("qid", n)))
        )
    return out


# ------------------------------------------------------------------------------------------- text side
def build_toy_tokenizer(texts: list[str], path: str | Path, vocab_size: int = 1000) -> Path:
    """A BERT-style uncased WordPiece tokenizer trained on ``texts`` (toy captions), saved as json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=TOY_SPECIALS)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


class TextCodec:
    """``[CLS] w [SEP] pad`` ids of ``max_len`` from a ``tokenizers`` json or a BERT folder / hub id."""

    def __init__(self, tokenizer: str, max_len: int) -> None:
        from tokenizers import Tokenizer

        if tokenizer.endswith(".json"):
            if not Path(tokenizer).is_file():
                raise FileNotFoundError(f"tokenizer file not found: {tokenizer}")
            self.tok = Tokenizer.from_file(tokenizer)
        else:
            from transformers import BertTokenizerFast

            self.tok = BertTokenizerFast.from_pretrained(tokenizer).backend_tokenizer
        self.tok.no_truncation()
        self.tok.no_padding()
        self.max_len = max_len
        vocab = self.tok.get_vocab()
        self.vocab_size = max(vocab.values()) + 1
        self.pad_id, self.cls_id = vocab["[PAD]"], vocab["[CLS]"]
        self.sep_id, self.mask_id = vocab["[SEP]"], vocab["[MASK]"]
        self.special = {vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
        self.num_special = max(self.special) + 1 if max(self.special) < 1000 else 999  # BERT: [unusedN] < 999

    def encode(self, text: str, rng: random.Random | None = None) -> list[int]:
        """Ids with ``[CLS]``/``[SEP]``, truncated once (a random window when ``rng`` is given), unpadded."""
        words = self.tok.encode(text, add_special_tokens=False).ids
        room = self.max_len - 2
        if len(words) > room:
            start = rng.randint(0, len(words) - room) if rng is not None else 0
            words = words[start : start + room]
        return [self.cls_id, *words, self.sep_id]

    def pad(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.full((self.max_len,), self.pad_id, dtype=torch.long)
        out[: len(ids)] = torch.tensor(ids)
        mask = torch.zeros(self.max_len, dtype=torch.long)
        mask[: len(ids)] = 1
        return out, mask

    def __call__(self, text: str, rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pad(self.encode(text, rng))


class Significance:
    """Ranks and same-lemma lists of the mined significant words (``scripts/mine_significant_words.py``)."""

    def __init__(self, count_file: str | Path, simi_file: str | Path | None, top_k: int) -> None:
        table = _read_json(Path(count_file))
        if not {"id", "rank"} <= set(table):
            raise ValueError(f"{count_file}: expected parallel lists with 'id' and 'rank'")
        self.rank = {int(i): int(r) for i, r in zip(table["id"], table["rank"])}
        self.top_k = top_k
        self.significant = {i for i, r in self.rank.items() if r <= top_k and table["total_count"][i] > 0}
        self.significant_list = sorted(self.significant)
        simi = _read_json(Path(simi_file)) if simi_file else []
        self.variants = {i: list(v) for i, v in enumerate(simi) if v}


# ------------------------------------------------------------------------------------------- frames
class FrameLoader:
    """``n_clips`` segment-sampled frames of a video (or an image repeated) as uint8 (P, 3, S, S)."""

    def __init__(self, image_size: int, cache: bool = False) -> None:
        self.size = image_size
        self.bad = 0
        self.cache: dict[Path, torch.Tensor] | None = {} if cache else None

    def _all_frames(self, path: Path) -> torch.Tensor:
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        if _kind(path) == "image":
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BILINEAR))
            except (OSError, UnidentifiedImageError) as exc:
                raise VideoDecodeError(str(path), f"unreadable image ({exc})") from exc
            frames = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]  # (1, 3, S, S)
        else:
            with VideoReader(path, size=(self.size, self.size)) as r:
                frames = r.get_frames(list(range(r.num_frames)))  # (T, 3, S, S)
        if self.cache is not None:
            self.cache[path] = frames
        return frames

    def __call__(self, path: Path, n_clips: int, train: bool, generator: torch.Generator | None = None):
        frames = self._all_frames(path)
        if frames.shape[0] == 1:  # an image: a one-clip video, repeated to the batch's clip count
            return frames.expand(n_clips, -1, -1, -1).clone()
        mode = "segment_random" if train else "segment_middle"
        return frames[sample_frame_indices(frames.shape[0], n_clips, mode, generator=generator)]

    def black(self, n_clips: int) -> torch.Tensor:
        return torch.zeros(n_clips, 3, self.size, self.size, dtype=torch.uint8)


# ------------------------------------------------------------------------------------------- datasets
class CaptionVideoDataset(Dataset):
    """Pretraining / retrieval training pairs: one caption drawn per ``__getitem__`` (spec §4)."""

    def __init__(
        self,
        clips: list[Clip],
        codec: TextCodec,
        sig: Significance,
        frames: FrameLoader,
        n_clips: int,
        mask_strategy: str = "mssm",
        mask_prob: float = 0.15,
        lvwm_words: int = 3,
        seed: int = 0,
    ) -> None:
        if mask_strategy not in ("mssm", "random"):
            raise ValueError(f"mask_strategy must be mssm or random, got {mask_strategy!r}")
        if not clips:
            raise ValueError("no training clips")
        self.clips, self.codec, self.sig, self.frames = clips, codec, sig, frames
        self.n_clips, self.strategy, self.prob, self.k, self.seed = (
            n_clips,
            mask_strategy,
            mask_prob,
            lvwm_words,
            seed,
        )
        self.calls = 0

    def __len__(self) -> int:
        return len(self.clips)

    def _rng(self, index: int) -> random.Random:
        self.calls += 1
        return random.Random(int(torch.randint(0, 2**62, (1,))) ^ index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for attempt in range(10):
            clip = self.clips[index]
            try:
                video = self.frames(clip.path, self.n_clips, train=True)
                break
            except VideoDecodeError as exc:
                self.frames.bad += 1
                log.warning("undecodable %s (%s); replaced (%d so far)", clip.path, exc, self.frames.bad)
                index = (index + 1 + attempt) % len(self.clips)
        else:
            raise RuntimeError(f"10 undecodable files in a row from {clip.path}; check the data")
        rng = self._rng(index)
        ids = self.codec.encode(rng.choice(clip.captions), rng)
        maskable = [i not in self.codec.special for i in ids]
        if self.strategy == "mssm":
            masked, labels = mssm_mask(
                ids, maskable, self.sig.significant, self.sig.significant_list, self.sig.variants,
                self.codec.mask_id, rng, self.prob,
            )  # fmt: skip
        else:
            masked, labels = random_mask(
                ids,
                maskable,
                self.codec.mask_id,
                self.codec.vocab_size,
                self.codec.num_special,
                rng,
                self.prob,
            )
        word_pos = lvwm_positions(ids, maskable, self.sig.rank, self.sig.top_k, self.k, rng)
        other = (
            self.clips[(index + rng.randrange(1, len(self.clips))) % len(self.clips)]
            if len(self.clips) > 1
            else clip
        )
        neg_ids, neg_mask = self.codec(rng.choice(other.captions), rng)
        text_ids, text_mask = self.codec.pad(ids)
        masked_ids, _ = self.codec.pad(masked)
        lab = torch.full((self.codec.max_len,), -1, dtype=torch.long)
        lab[: len(labels)] = torch.tensor(labels)
        mk = torch.zeros(self.codec.max_len, dtype=torch.bool)
        mk[: len(maskable)] = torch.tensor(maskable)
        return {
            "video": video, "index": torch.tensor(index), "text_ids": text_ids, "text_mask": text_mask,
            "masked_ids": masked_ids, "mlm_labels": lab, "maskable": mk, "word_pos": torch.tensor(word_pos),
            "neg_ids": neg_ids, "neg_mask": neg_mask,
        }  # fmt: skip


class RetrievalEvalDataset(Dataset):
    """One video with all its captions per item (multi-caption ground truth)."""

    def __init__(self, clips: list[Clip], codec: TextCodec, frames: FrameLoader, n_clips: int) -> None:
        self.clips, self.codec, self.frames, self.n_clips = clips, codec, frames, n_clips

    def __len__(self) -> int:
        return len(self.clips)

    def _video(self, path: Path) -> torch.Tensor:
        try:
            return self.frames(path, self.n_clips, train=False)
        except VideoDecodeError as exc:
            self.frames.bad += 1
            log.warning("undecodable %s (%s); black clip (%d so far)", path, exc, self.frames.bad)
            return self.frames.black(self.n_clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        toks = [self.codec(c) for c in clip.captions]
        return {
            "video": self._video(clip.path),
            "index": torch.tensor(index),
            "family": torch.tensor(clip.family),
            "text_ids": torch.stack([t[0] for t in toks]),
            "text_mask": torch.stack([t[1] for t in toks]),
        }


class QADataset(RetrievalEvalDataset):
    """VideoQA: (video, question, label)."""

    def __init__(
        self, records: list[QARecord], codec: TextCodec, frames: FrameLoader, n_clips: int, train: bool
    ):
        super().__init__([], codec, frames, n_clips)
        self.records, self.train = records, train

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        r = self.records[index]
        video = self.frames(r.path, self.n_clips, train=True) if self.train else self._video(r.path)
        ids, mask = self.codec(r.question)
        return {"video": video, "index": torch.tensor(index), "text_ids": ids, "text_mask": mask,
                "label": torch.tensor(r.label)}  # fmt: skip


class MCDataset(RetrievalEvalDataset):
    """Multiple choice: (video, options, answer)."""

    def __init__(self, records: list[MCRecord], codec: TextCodec, frames: FrameLoader, n_clips: int):
        super().__init__([], codec, frames, n_clips)
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        r = self.records[index]
        toks = [self.codec(o) for o in r.options]
        return {
            "video": self._video(r.path), "index": torch.tensor(index),
            "option_ids": torch.stack([t[0] for t in toks]), "option_mask": torch.stack([t[1] for t in toks]),
            "answer": torch.tensor(r.answer),
        }  # fmt: skip


def collate_retrieval_eval(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("video", "index", "family")}
    batch["text_ids"] = torch.cat([s["text_ids"] for s in samples])
    batch["text_mask"] = torch.cat([s["text_mask"] for s in samples])
    batch["text_to_video"] = torch.cat(
        [torch.full((len(s["text_ids"]),), i, dtype=torch.long) for i, s in enumerate(samples)]
    )
    return batch


# ------------------------------------------------------------------------------------------- datamodule
class SNPS3DataModule(LightningDataModule):
    """Loaders of the three stages: pretraining, retrieval fine-tuning (+ MC evaluation) and VideoQA.

    Args:
        task: ``pretrain`` | ``retrieval`` | ``qa`` (linked to the model's task).
        pretrain_format: ``jsonl`` | ``webvid`` | ``cc3m``; pretrain_file: its annotation file.
        retrieval_dataset: ``msrvtt`` | ``msvd`` | ``didemo`` | ``jsonl``; retrieval_root; train_split /
            test_split: reader splits (MSR-VTT ``9k``/``7k``/``1k-A``; for ``jsonl``, file names).
        mc_file: MSR-VTT MC jsonl evaluated beside retrieval (None: no MC).
        qa_format: ``jsonl`` | ``official``; qa_root; qa_train / qa_test: split file names or split names.
        tokenizer: ``tokenizers`` json (toy) or a BERT folder / hub id (``bert-base-uncased``).
        significant_words / lemma_lists: the mined files; words_top_k: the significant cut (spec: 3000).
        mask_strategy: ``mssm`` or ``random``; mask_prob; lvwm_words: LVWM's words per caption (3).
        n_clips: clips per video (an image is one clip, repeated). image_size: frame side.
        max_text_len: token length (30 in the paper). batch_size: per device; eval_batch_size: videos.
        toy: write the toy-world datasets, tokenizer and significant words under ``toy_root`` (prepare_data).
        toy_num: videos per toy dataset {webvid, msrvtt, mc, qa}; toy_options: msrvtt writer options.
        cache_clips: keep decoded clips in memory. num_workers, seed.
    """

    def __init__(
        self,
        task: str = "pretrain",
        pretrain_format: str = "jsonl",
        pretrain_file: str = "data/webvid/train.jsonl",
        retrieval_dataset: str = "msrvtt",
        retrieval_root: str = "data/msrvtt",
        train_split: str = "9k",
        test_split: str = "1k-A",
        mc_file: str | None = None,
        qa_format: str = "jsonl",
        qa_root: str = "data/msrvtt_qa",
        qa_train: str = "train",
        qa_test: str = "test",
        tokenizer: str = "bert-base-uncased",
        significant_words: str = "data/snp_s3/significant/count_reprocess.json",
        lemma_lists: str | None = "data/snp_s3/significant/vocab_simi_list.json",
        words_top_k: int = 3000,
        mask_strategy: str = "mssm",
        mask_prob: float = 0.15,
        lvwm_words: int = 3,
        n_clips: int = 4,
        image_size: int = 224,
        max_text_len: int = 30,
        batch_size: int = 16,
        eval_batch_size: int = 32,
        toy: bool = False,
        toy_root: str = "data/toy/snp_s3",
        toy_num: dict[str, int] | None = None,
        toy_options: dict | None = None,
        cache_clips: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if task not in ("pretrain", "retrieval", "qa"):
            raise ValueError(f"task must be pretrain, retrieval or qa, got {task!r}")
        self.save_hyperparameters()
        self.toy_num = {"webvid": 600, "msrvtt": 1000, "mc": 100, "qa": 300, **(toy_num or {})}
        self.toy_options = dict(toy_options or {})

    # -- toy world
    def prepare_data(self) -> None:
        hp = self.hparams
        if not hp.toy:
            return
        from common.toyworld import generate

        video = {k: v for k, v in self.toy_options.items() if k in ("num_frames", "size", "fps")}
        # Each toy dataset is written where the config reads it (the ablation's family split has its own).
        n = self.toy_num
        wv = generate("webvid", out=Path(hp.pretrain_file).parent, num=n["webvid"], seed=1, **video)
        ms = generate("msrvtt", out=hp.retrieval_root, num=self.toy_num["msrvtt"], seed=0, **self.toy_options)
        mc_root = Path(hp.mc_file).parent if hp.mc_file else Path(hp.toy_root) / "mc"
        mc = generate("msrvtt_mc", out=mc_root, num=self.toy_num["mc"], seed=2, **video)
        qa = generate("msrvtt_qa", out=hp.qa_root, num=self.toy_num["qa"], seed=3, top_k=100, **video)
        tok = Path(hp.tokenizer)
        if not tok.is_file():
            texts = [r["caption"] for r in _read_jsonl(wv / "train.jsonl", ("caption",))]
            texts += [s["caption"] for s in _read_json(ms / "MSRVTT_data.json")["sentences"]]
            texts += [o for r in _read_jsonl(mc / "mc_test.jsonl", ("options",)) for o in r["options"]]
            texts += [r["caption"] for r in _read_jsonl(qa / "train.jsonl", ("caption",))]
            build_toy_tokenizer(texts, tok)
        sig = Path(hp.significant_words)
        if not sig.is_file():
            from snp_s3.scripts.mine_significant_words import run

            run(wv / "train.jsonl", str(tok), "lexicon", sig.parent)

    # -- setup
    def _retrieval(self, split: str) -> list[Clip]:
        hp = self.hparams
        root = Path(hp.retrieval_root)
        if hp.retrieval_dataset == "msrvtt":
            return read_msrvtt(root, split)
        if hp.retrieval_dataset == "msvd":
            return read_msvd(root, split)
        if hp.retrieval_dataset == "didemo":
            return read_didemo(root, split)
        if hp.retrieval_dataset == "jsonl":
            return read_retrieval_jsonl(root / split)
        raise ValueError(
            f"retrieval_dataset must be msrvtt, msvd, didemo or jsonl, got {hp.retrieval_dataset!r}"
        )

    def _pretrain(self) -> list[Clip]:
        hp = self.hparams
        readers = {"jsonl": read_pretrain_jsonl, "webvid": read_webvid_csv, "cc3m": read_cc3m_tsv}
        if hp.pretrain_format not in readers:
            raise ValueError(f"pretrain_format must be one of {sorted(readers)}, got {hp.pretrain_format!r}")
        return readers[hp.pretrain_format](hp.pretrain_file)

    def _qa(self, split: str) -> list[QARecord]:
        hp = self.hparams
        if hp.qa_format == "jsonl":
            return read_qa_jsonl(Path(hp.qa_root) / f"{split}.jsonl")
        if hp.qa_format == "official":
            return read_official_qa(hp.qa_root, split)
        raise ValueError(f"qa_format must be jsonl or official, got {hp.qa_format!r}")

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.codec = TextCodec(hp.tokenizer, hp.max_text_len)
        self.frames = FrameLoader(hp.image_size, hp.cache_clips)
        self.eval_frames = FrameLoader(hp.image_size, hp.cache_clips)
        if hp.task == "qa":
            self.num_answers = len(_read_json(Path(hp.qa_root) / "ans2label.json"))
            if stage == "fit":
                self.train_set = QADataset(self._qa(hp.qa_train), self.codec, self.frames, hp.n_clips, True)
            self.val_sets = [QADataset(self._qa(hp.qa_test), self.codec, self.eval_frames, hp.n_clips, False)]
            return
        if stage == "fit":
            self.sig = Significance(hp.significant_words, hp.lemma_lists, hp.words_top_k)
            clips = self._pretrain() if hp.task == "pretrain" else self._retrieval(hp.train_split)
            self.train_set = CaptionVideoDataset(
                clips, self.codec, self.sig, self.frames, hp.n_clips, hp.mask_strategy, hp.mask_prob,
                hp.lvwm_words, hp.seed,
            )  # fmt: skip
        self.test_clips = self._retrieval(hp.test_split)
        self.val_sets = [RetrievalEvalDataset(self.test_clips, self.codec, self.eval_frames, hp.n_clips)]
        if hp.mc_file:
            self.val_sets.append(
                MCDataset(read_mc_jsonl(hp.mc_file), self.codec, self.eval_frames, hp.n_clips)
            )

    @property
    def bad_files(self) -> int:
        return sum(getattr(self, a).bad for a in ("frames", "eval_frames") if hasattr(self, a))

    # -- loaders
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set, batch_size=self.hparams.batch_size, shuffle=True, drop_last=True,
            num_workers=self.hparams.num_workers,
        )  # fmt: skip

    def _eval_loader(self, ds: Dataset) -> DataLoader:
        collate = collate_retrieval_eval if type(ds) is RetrievalEvalDataset else None
        return DataLoader(
            ds,
            batch_size=self.hparams.eval_batch_size,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(ds) for ds in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()

    def predict_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
