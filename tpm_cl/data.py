"""Text-video retrieval data for TPM-CL: the official annotation formats, DMAE's textual cue and the samplers.

Readers (spec §4), each returning :class:`VideoItem` (video id, file, captions, family):

* MSR-VTT: ``MSRVTT_data.json`` + CLIP4Clip's ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv`` (every caption
  of the listed videos) and ``MSRVTT_JSFUSION_test.csv`` (1k-A: one sentence per video).
* MSVD: ``raw-captions.json`` (made once from ``raw-captions.pkl`` by ``make data-tpm_cl``; video id ->
  list of token lists) + ``{train,val,test}_list.txt``; every test caption is a query.
* DiDeMo: ``{train,val,test}_data.json`` ``[{video, times, description}]``; the descriptions of a video are
  concatenated into one paragraph (paragraph-to-video retrieval, CLIP4Clip's protocol).
* ActivityNet Captions: ``train.json`` / ``val_1.json`` (``"v_<id>": {duration, timestamps, sentences}``);
  the sentences form one paragraph.

Tokenisation (:class:`CaptionTokenizer`): CLIP's BPE (open_clip ships the vocabulary), word by word, so
that each BPE piece knows its word; ``[SOT] pieces [EOT]`` truncated to ``max_words`` (EOT kept), 0-padded.
The DMAE textual weight of a piece is 1, plus 1 when its word is a NOUN/ADJ/VERB and not a stop-word (spec
§3). Parts of speech come from :class:`PosTagger`: the toy world's lexicon, spaCy when asked for
(``pos: spacy``, optional), else a shipped stop-word list (every other word is content; a deviation).

Caption-drop augmentation (:class:`CaptionDrop`, training only, with ``use_twm``): per video, word scores by
TF-IDF over the video's captions; up to 5 words scoring < 0.1 may be dropped, ``k ~ U{0..min(n, ⌊0.5·len⌋)}``.

Batch contract (``dict[str, Tensor]``), the same in training and evaluation:

* ``video``: ``uint8`` ``(B, F, 3, H, W)`` frames sampled uniformly (``common.video``), normalised on the
  device by the LitModule (``preprocess_clip``). ``video_mask``: ``(B, F)`` 1 on real frames (short videos
  are zero-padded, as in CLIP4Clip).
* ``text_ids``: ``(T, L)`` long, ``text_weight``: ``(T, L)`` float DMAE weights (0 on padding).
* ``text_to_video``: ``(T,)`` long, the batch-local index of each text's video (training: ``T = B``, the
  identity); ``video_index``: ``(B,)`` the dataset index of each video; ``family``: ``(B,)`` family ids (-1
  when unknown).

Training batches never hold one video twice (NegNCE assumes one positive per row): the
:class:`UniqueVideoBatchSampler` walks the captions in rounds (round r takes the r-th caption of every
video, so an epoch visits every pair once) and, with families (toy world), keeps
``family_members_per_batch`` members of a family next to each other so that in-batch hard negatives exist.
It is distributed-aware: each global batch is split across ranks, so the gathered batch is unique too.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import pickle
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from common.video import VideoDecodeError, VideoReader, sample_frame_indices

log = logging.getLogger(__name__)

DATASETS = ("msrvtt", "msvd", "didemo", "activitynet")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".3gp", ".mpg", ".flv")
CONTENT_POS = ("NOUN", "ADJ", "VERB")
SOT, EOT = 49406, 49407

# A compact English stop-word list (spaCy's and NLTK's common core), the fallback textual cue on real data.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours yourself yourselves
    there's it's is's isn't can't won't don't doesn't also another around someone something someone's get gets
    getting got one two""".split()
)


# ------------------------------------------------------------------------------------------------ readers
@dataclass
class VideoItem:
    """One video of a split: its id, its file, its captions (or one paragraph) and its family (-1: none)."""

    video_id: str
    path: Path
    captions: list[str]
    family: int = -1


def _find_video(video_dir: Path, video_id: str) -> Path:
    stem = video_dir / video_id
    if stem.suffix.lower() in VIDEO_EXTS:
        return stem
    for ext in VIDEO_EXTS:
        if stem.with_name(video_id + ext).exists():
            return stem.with_name(video_id + ext)
    return stem.with_name(video_id + ".mp4")  # a missing file is reported when it is read


def _read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"annotation file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _families(root: Path) -> dict[str, int]:
    meta = root / "toyworld.json"
    if not meta.is_file():
        return {}
    return {v["video_id"]: int(v["family"]) for v in _read_json(meta)["videos"]}  # type: ignore[index]


def read_msrvtt(root: str | Path, split: str, video_dir: str = "videos") -> list[VideoItem]:
    """MSR-VTT: ``split`` is ``9k`` or ``7k`` (train CSVs, all captions) or ``1k-A`` (JSFusion test CSV)."""
    root = Path(root)
    vdir, fam = root / video_dir, _families(root)
    if split == "1k-A":
        path = root / "MSRVTT_JSFUSION_test.csv"
        items: dict[str, VideoItem] = {}
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if not row.get("video_id") or row.get("sentence") is None:
                    raise ValueError(f"{path}:{line}: expected columns key,vid_key,video_id,sentence")
                vid = row["video_id"]
                item = items.setdefault(vid, VideoItem(vid, _find_video(vdir, vid), [], fam.get(vid, -1)))
                item.captions.append(row["sentence"])
        return list(items.values())
    if split not in ("9k", "7k"):
        raise ValueError(f"MSR-VTT split must be 9k, 7k or 1k-A, got {split!r}")
    path = root / f"MSRVTT_train.{split}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "video_id" not in rows[0]:
        raise ValueError(f"{path}: expected a video_id column, got {list(rows[0])}")
    data = _read_json(root / "MSRVTT_data.json")
    captions: dict[str, list[str]] = {}
    for k, sen in enumerate(data.get("sentences", [])):  # type: ignore[union-attr]
        if "video_id" not in sen or "caption" not in sen:
            raise ValueError(f"{root / 'MSRVTT_data.json'}: sentences[{k}] lacks video_id or caption")
        captions.setdefault(sen["video_id"], []).append(sen["caption"])
    out = []
    for row in rows:
        vid = row["video_id"]
        if vid not in captions:
            raise ValueError(f"{path}: video {vid} has no sentence in MSRVTT_data.json")
        out.append(VideoItem(vid, _find_video(vdir, vid), captions[vid], fam.get(vid, -1)))
    return out


def read_msvd(root: str | Path, split: str, video_dir: str = "YouTubeClips") -> list[VideoItem]:
    """MSVD: ``raw-captions.json`` (from the official pickle by ``scripts/prepare_data.py``), split lists."""
    root = Path(root)
    if split not in ("train", "val", "test"):
        raise ValueError(f"MSVD split must be train, val or test, got {split!r}")
    caps = _read_json(root / "raw-captions.json")
    ids = [x.strip() for x in (root / f"{split}_list.txt").read_text().splitlines() if x.strip()]
    out = []
    for vid in ids:
        if vid not in caps:  # type: ignore[operator]
            raise ValueError(f"{root / 'raw-captions.json'}: no captions for video {vid} of {split}_list.txt")
        texts = [" ".join(tokens) for tokens in caps[vid]]  # type: ignore[index]
        out.append(VideoItem(vid, _find_video(root / video_dir, vid), texts))
    return out


def read_didemo(root: str | Path, split: str, video_dir: str = "videos") -> list[VideoItem]:
    """DiDeMo paragraph-to-video: the descriptions of each video, in ``times`` order, joined."""
    root = Path(root)
    path = root / f"{split}_data.json"
    rows = _read_json(path)
    grouped: dict[str, list[tuple[float, str]]] = {}
    for k, row in enumerate(rows):  # type: ignore[arg-type]
        if not {"video", "times", "description"} <= set(row):
            raise ValueError(f"{path}: entry {k} needs video, times and description, got {sorted(row)}")
        start = min(t[0] for t in row["times"]) if row["times"] else 0
        grouped.setdefault(row["video"], []).append((start, row["description"].strip()))
    return [
        VideoItem(vid, _find_video(root / video_dir, vid), [" ".join(d for _, d in sorted(descs))])
        for vid, descs in grouped.items()
    ]


def read_activitynet(root: str | Path, split: str, video_dir: str = "videos") -> list[VideoItem]:
    """ActivityNet Captions paragraph-to-video: ``train`` or ``val_1``; the sentences joined in time order."""
    root = Path(root)
    path = root / f"{split}.json"
    data = _read_json(path)
    out = []
    for vid, ann in data.items():  # type: ignore[union-attr]
        if "sentences" not in ann or "timestamps" not in ann:
            raise ValueError(f"{path}: {vid} needs sentences and timestamps")
        order = sorted(range(len(ann["sentences"])), key=lambda i: ann["timestamps"][i][0])
        paragraph = " ".join(ann["sentences"][i].strip() for i in order)
        out.append(VideoItem(vid, _find_video(root / video_dir, vid), [paragraph]))
    return out


READERS = {"msrvtt": read_msrvtt, "msvd": read_msvd, "didemo": read_didemo, "activitynet": read_activitynet}


class _NoObjects(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain containers are allowed")


def convert_msvd_captions(pkl: str | Path, out: str | Path) -> Path:
    """Convert MSVD's ``raw-captions.pkl`` to JSON once, with an unpickler that builds no objects."""
    with open(pkl, "rb") as f:
        caps = _NoObjects(f).load()
    out = Path(out)
    out.write_text(json.dumps({str(k): [list(map(str, c)) for c in v] for k, v in caps.items()}))
    return out


# ------------------------------------------------------------------------------------------- text side
class PosTagger:
    """Is a word a content word (NOUN/ADJ/VERB, not a stop-word)? The DMAE textual cue's tagger.

    ``mode``: ``lexicon`` (the toy world's part-of-speech lexicon, then the stop-word rule for unknown
    words), ``stopwords`` (content = not a stop-word) or ``spacy`` (``en_core_web_md`` as in the code; needs
    spaCy installed).
    """

    def __init__(self, mode: str = "lexicon") -> None:
        if mode not in ("lexicon", "stopwords", "spacy"):
            raise ValueError(f"pos must be lexicon, stopwords or spacy, got {mode!r}")
        self.mode = mode
        self._lex: dict[str, str] = {}
        if mode == "lexicon":
            from common.toyworld import lexicon

            self._lex = {w: e.pos for w, e in lexicon("en").items()}
        self._nlp = None
        if mode == "spacy":
            import spacy  # optional dependency

            self._nlp = spacy.load("en_core_web_md")

    def content(self, words: Sequence[str]) -> list[bool]:
        """One flag per word (words already lower-cased, punctuation attached is ignored)."""
        if self._nlp is not None:
            doc = self._nlp(" ".join(words))
            by_word = [tok.pos_ in CONTENT_POS and not tok.is_stop for tok in doc]
            if len(by_word) == len(words):
                return by_word
        out = []
        for w in words:
            bare = re.sub(r"[^\w']+", "", w)
            if bare in self._lex:
                out.append(self._lex[bare] in CONTENT_POS and bare not in STOP_WORDS)
            else:
                out.append(bool(bare) and bare not in STOP_WORDS and not bare.isdigit())
        return out


class CaptionTokenizer:
    """CLIP BPE ids and DMAE weights of captions (see the module docstring)."""

    def __init__(self, max_words: int = 32, pos: str = "lexicon") -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self.max_words = max_words
        self.bpe = SimpleTokenizer()
        self.tagger = PosTagger(pos)

    def __call__(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        words = text.lower().split()
        flags = self.tagger.content(words)
        ids, weight = [SOT], [1.0]
        for word, is_content in zip(words, flags):
            pieces = self.bpe.encode(word)
            ids += pieces
            weight += [2.0 if is_content else 1.0] * len(pieces)
        ids, weight = ids[: self.max_words - 1] + [EOT], weight[: self.max_words - 1] + [1.0]
        out_ids = torch.zeros(self.max_words, dtype=torch.long)
        out_w = torch.zeros(self.max_words)
        out_ids[: len(ids)] = torch.tensor(ids)
        out_w[: len(weight)] = torch.tensor(weight)
        return out_ids, out_w


class CaptionDrop:
    """TF-IDF caption-drop augmentation (spec §3): drop a few low-scored words of a training caption.

    Per video, a word's score is ``max over the video's captions of tf · idf`` with ``idf = log(N / df)``
    over those ``N`` captions, divided by the video's top score (DEVIATION: jieba's global IDF table is
    replaced by the video's own captions and the scores are scaled to [0, 1] so that the 0.1 threshold is
    meaningful). Droppable: the ``max_drop`` lowest-scored words with score < ``threshold``.
    """

    def __init__(self, max_drop: int = 5, threshold: float = 0.1, max_fraction: float = 0.5) -> None:
        self.max_drop, self.threshold, self.max_fraction = max_drop, threshold, max_fraction

    def scores(self, captions: Sequence[str]) -> dict[str, float]:
        docs = [c.lower().split() for c in captions]
        n = len(docs)
        df = Counter(w for d in docs for w in set(d))
        best: dict[str, float] = {}
        for d in docs:
            for w, c in Counter(d).items():
                best[w] = max(best.get(w, 0.0), c / len(d) * math.log(n / df[w]) if n > 1 else c / len(d))
        top = max(best.values(), default=0.0)
        return {w: (s / top if top > 0 else 0.0) for w, s in best.items()}

    def __call__(self, caption: str, scores: dict[str, float], rng: random.Random) -> str:
        words = caption.split()
        ranked = sorted({w.lower() for w in words}, key=lambda w: (scores.get(w, 0.0), w))
        droppable = [w for w in ranked if scores.get(w, 0.0) < self.threshold][: self.max_drop]
        k = rng.randint(0, min(len(droppable), int(self.max_fraction * len(words))))
        drop = set(rng.sample(droppable, k))
        return " ".join(w for w in words if w.lower() not in drop)  # joined with spaces (spec §6 #5)


# ------------------------------------------------------------------------------------------- datasets
class _ClipLoader:
    """Uniformly sampled uint8 frames of a file; an undecodable video becomes a counted black clip."""

    def __init__(self, num_frames: int, image_size: int, cache: bool = False) -> None:
        self.num_frames, self.image_size = num_frames, image_size
        self.bad = 0
        self.cache: dict[Path, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def __call__(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache is None:
            return self._load(path)
        if path not in self.cache:
            self.cache[path] = self._load(path)
        return self.cache[path]

    def _load(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.zeros(self.num_frames)
        try:
            with VideoReader(path, short_side=self.image_size) as reader:
                n = min(reader.num_frames, self.num_frames)
                frames = reader.get_frames(sample_frame_indices(reader.num_frames, n, "uniform"))
        except VideoDecodeError as exc:
            # A retrieval ground truth cannot swap in another video: a black clip keeps the ranking honest.
            self.bad += 1
            log.warning("undecodable video %s (%s); using a black clip (%d so far)", path, exc, self.bad)
            size = (self.num_frames, 3, self.image_size, self.image_size)
            return torch.zeros(size, dtype=torch.uint8), mask + 1
        h, w = frames.shape[-2:]
        out = torch.zeros(self.num_frames, 3, h, w, dtype=torch.uint8)
        out[:n], mask[:n] = frames, 1
        return out, mask


class TrainPairs(Dataset):
    """``(video, caption)`` pairs; index ``(video_index, caption_index)`` comes from the batch sampler."""

    def __init__(
        self,
        items: list[VideoItem],
        tokenizer: CaptionTokenizer,
        num_frames: int,
        image_size: int,
        caption_drop: bool = False,
        seed: int = 0,
        cache_clips: bool = False,
    ) -> None:
        self.items, self.tokenizer = items, tokenizer
        self.clips = _ClipLoader(num_frames, image_size, cache_clips)
        self.drop = CaptionDrop() if caption_drop else None
        self._scores = [self.drop.scores(it.captions) for it in items] if self.drop else []
        self.seed = seed

    def __len__(self) -> int:
        return sum(len(it.captions) for it in self.items)

    def __getitem__(self, index: tuple[int, int]) -> dict[str, torch.Tensor]:
        v, c = index
        item = self.items[v]
        text = item.captions[c]
        if self.drop is not None:
            text = self.drop(text, self._scores[v], random.Random(int(torch.randint(0, 2**31, (1,)))))
        ids, weight = self.tokenizer(text)
        video, mask = self.clips(item.path)
        return {
            "video": video,
            "video_mask": mask,
            "text_ids": ids,
            "text_weight": weight,
            "video_index": torch.tensor(v),
            "family": torch.tensor(item.family),
        }


class EvalVideos(Dataset):
    """One video with all its captions per item (multi-caption ground truth)."""

    def __init__(
        self,
        items: list[VideoItem],
        tokenizer: CaptionTokenizer,
        num_frames: int,
        image_size: int,
        cache_clips: bool = False,
    ) -> None:
        self.items, self.tokenizer = items, tokenizer
        self.clips = _ClipLoader(num_frames, image_size, cache_clips)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        video, mask = self.clips(item.path)
        toks = [self.tokenizer(c) for c in item.captions]
        return {
            "video": video,
            "video_mask": mask,
            "text_ids": torch.stack([t[0] for t in toks]),
            "text_weight": torch.stack([t[1] for t in toks]),
            "video_index": torch.tensor(index),
            "family": torch.tensor(item.family),
        }


def collate_train(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    batch["text_to_video"] = torch.arange(len(samples))
    return batch


def collate_eval(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = ("video", "video_mask", "video_index", "family")
    batch = {k: torch.stack([s[k] for s in samples]) for k in keys}
    batch["text_ids"] = torch.cat([s["text_ids"] for s in samples])
    batch["text_weight"] = torch.cat([s["text_weight"] for s in samples])
    batch["text_to_video"] = torch.cat(
        [torch.full((len(s["text_ids"]),), i, dtype=torch.long) for i, s in enumerate(samples)]
    )
    return batch


# ------------------------------------------------------------------------------------------- sampler
class UniqueVideoBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(video, caption)`` indices with every video at most once per global batch.

    Round ``r`` of an epoch takes caption ``perm_v[r]`` of every video that has more than ``r`` captions
    (captions are visited in a random order per video), so one epoch visits each pair once. Inside a round the
    videos are shuffled; with families, each family is shuffled and cut into chunks of
    ``family_members_per_batch`` that stay adjacent (and so, but for chunks cut by a batch edge, in one
    batch). Global batches of ``batch_size * world_size`` are cut from the round (the last partial one is
    dropped) and each rank takes its slice.
    """

    def __init__(
        self,
        num_captions: Sequence[int],
        batch_size: int,
        families: Sequence[int] | None = None,
        family_members_per_batch: int = 2,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.num_captions, self.batch_size = list(num_captions), batch_size
        self.families = list(families) if families is not None else None
        self.members = family_members_per_batch
        self.seed, self.epoch = seed, 0
        if num_replicas is None:
            dist_on = dist.is_available() and dist.is_initialized()
            num_replicas = dist.get_world_size() if dist_on else 1
            rank = dist.get_rank() if dist_on else 0
        self.world, self.rank = num_replicas, rank or 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rounds(self) -> list[list[int]]:
        rounds = max(self.num_captions, default=0)
        return [[v for v, n in enumerate(self.num_captions) if n > r] for r in range(rounds)]

    def _order(self, videos: list[int], rng: random.Random) -> list[int]:
        if not self.families or self.members <= 1 or all(f < 0 for f in self.families):
            rng.shuffle(videos)
            return videos
        by_family: dict[int, list[int]] = {}
        for v in videos:
            by_family.setdefault(self.families[v] if self.families[v] >= 0 else -1 - v, []).append(v)
        chunks = []
        for members in by_family.values():
            rng.shuffle(members)
            chunks += [members[i : i + self.members] for i in range(0, len(members), self.members)]
        rng.shuffle(chunks)
        return [v for chunk in chunks for v in chunk]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = random.Random(self.seed * 100003 + self.epoch)
        caption_order = [rng.sample(range(n), n) for n in self.num_captions]
        glob = self.batch_size * self.world
        for r, videos in enumerate(self._rounds()):
            order = self._order(list(videos), rng)
            for start in range(0, len(order) - glob + 1, glob):
                part = order[start + self.rank * self.batch_size : start + (self.rank + 1) * self.batch_size]
                yield [(v, caption_order[v][r]) for v in part]

    def __len__(self) -> int:
        glob = self.batch_size * self.world
        return sum(len(videos) // glob for videos in self._rounds())


# ------------------------------------------------------------------------------------------- datamodule
class TPMCLDataModule(LightningDataModule):
    """Train/val/test loaders for MSR-VTT, MSVD, DiDeMo or ActivityNet (toy MSR-VTT by default).

    Args:
        dataset: ``msrvtt``, ``msvd``, ``didemo`` or ``activitynet``.
        root: the dataset folder (its official layout).
        train_split / val_split / test_split: reader splits (MSR-VTT ``9k``/``7k``/``1k-A``; MSVD
            ``train``/``val``/``test``; DiDeMo ``train``/``val``/``test``; ActivityNet ``train``/``val_1``).
        video_dir: folder of the video files inside ``root`` (None: the reader's default).
        num_frames: frames per clip (linked to the model). max_words: tokens per text (linked to the model).
        image_size: frames are decoded with this short side (then centre-cropped on the device).
        batch_size: per-device training batch; the global batch is ``batch_size x devices``.
        eval_batch_size: videos per evaluation batch.
        family_members_per_batch: family members kept together in a batch (toy world; 1 turns it off).
        caption_drop: TF-IDF caption-drop augmentation in training.
        pos: part-of-speech source of the textual cue: ``lexicon``, ``stopwords`` or ``spacy``.
        toy: generate the toy-world MSR-VTT at ``root`` in ``prepare_data`` (options in ``toy_options``).
        toy_num / toy_seed / toy_options: the toy dataset's size, seed and ``common.toyworld`` writer options.
        num_workers: DataLoader workers. seed: the sampler's seed.
        cache_clips: keep decoded clips in memory (small toy datasets on CPU; every epoch re-reads otherwise).
    """

    def __init__(
        self,
        dataset: str = "msrvtt",
        root: str = "data/toy/tpm_cl_msrvtt",
        train_split: str = "9k",
        val_split: str = "1k-A",
        test_split: str = "1k-A",
        video_dir: str | None = None,
        num_frames: int = 12,
        max_words: int = 32,
        image_size: int = 224,
        batch_size: int = 128,
        eval_batch_size: int = 64,
        family_members_per_batch: int = 2,
        caption_drop: bool = True,
        pos: str = "lexicon",
        toy: bool = False,
        toy_num: int = 2000,
        toy_seed: int = 0,
        toy_options: dict | None = None,
        num_workers: int = 0,
        seed: int = 0,
        cache_clips: bool = False,
    ) -> None:
        super().__init__()
        if dataset not in READERS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        self.save_hyperparameters()
        self.toy_options = dict(toy_options or {})

    def prepare_data(self) -> None:
        if self.hparams.toy:
            from common.toyworld import generate

            generate(
                "msrvtt", out=self.hparams.root, num=self.hparams.toy_num, seed=self.hparams.toy_seed,
                **self.toy_options,
            )  # fmt: skip

    def _read(self, split: str) -> list[VideoItem]:
        kwargs = {"video_dir": self.hparams.video_dir} if self.hparams.video_dir else {}
        return READERS[self.hparams.dataset](self.hparams.root, split, **kwargs)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.tokenizer = CaptionTokenizer(hp.max_words, hp.pos)
        if stage == "fit":
            self.train_items = self._read(hp.train_split)
            self.train_set = TrainPairs(
                self.train_items,
                self.tokenizer,
                hp.num_frames,
                hp.image_size,
                hp.caption_drop,
                hp.seed,
                hp.cache_clips,
            )
        if stage in ("fit", "validate"):
            self.val_set = self._eval_set(hp.val_split)
        if stage in ("test", "predict"):
            self.test_set = self._eval_set(hp.test_split)

    def _eval_set(self, split: str) -> EvalVideos:
        hp = self.hparams
        return EvalVideos(self._read(split), self.tokenizer, hp.num_frames, hp.image_size, hp.cache_clips)

    def train_dataloader(self) -> DataLoader:
        items = self.train_items
        sampler = UniqueVideoBatchSampler(
            [len(it.captions) for it in items],
            self.hparams.batch_size,
            families=[it.family for it in items],
            family_members_per_batch=self.hparams.family_members_per_batch,
            seed=self.hparams.seed,
        )
        if self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            collate_fn=collate_train,
            num_workers=self.hparams.num_workers,
            persistent_workers=False,
        )

    def _eval_loader(self, ds: EvalVideos) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.hparams.eval_batch_size,
            collate_fn=collate_eval,
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)
