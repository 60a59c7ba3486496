"""Data for M2-Encoder: image-text jsonl readers, bilingual batches and the evaluation sets (spec section 4).

Formats read:

* Image-text jsonl, the released evaluation format (``prj/M2_Encoder/data/*.jsonl``): one
  ``{"image": path, "caption": [str, ...]}`` per line; ``image`` is relative to ``image_root``. Used for the
  retrieval test sets (COCO / Flickr30K Karpathy test, COCO-CN, Flickr30K-CN) and, one file per language,
  for training pairs (BM-6B is not released).
* Zero-shot classification: a jsonl of ``{"image": path, "label": int}``, class names (one per line) and
  prompt templates (one per line, ``{}`` marks the class name) per language. ``scripts/prepare_data.py``
  writes them for ImageNet (folder layout) and the toy world (scene classes).

Toy default: :meth:`M2EncoderDataModule.prepare_data` writes the toy world's ``imagetext`` dataset
(``common.toyworld.generate``), the scene-classification split from its ``toyworld.json`` and trains a
SentencePiece model on the toy English and Chinese training captions, all cached under ``root``.

Batch contract (``dict[str, Tensor]``):

* train: ``image`` (B, 3, S, S) normalised with mean = std = 0.5; ``text_ids``, ``text_masks`` (B, L; 1 =
  token) and ``text_word_starts`` (B, L bool) of one caption per image, all in one language per batch
  (``lang``: ``"en"`` or ``"zh"``; each step draws its language uniformly, spec section 8); ``index`` (B,).
* eval: ``image`` (B, 3, S, S) and ``index`` (B,) of one evaluation image set (one dataloader per set; the
  texts and class prompts are read from :attr:`M2EncoderDataModule.eval_sets` and encoded at epoch end).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from m2_encoder.tokenizer import BilingualTokenizer, train_sentencepiece

log = logging.getLogger(__name__)

LANGS = ("en", "zh")
MAX_BAD_IMAGE_RETRIES = 10


# ------------------------------------------------------------------------------------------------ readers


def _jsonl_objects(path: str | Path, what: str) -> Iterator[tuple[Path, int, Any, str]]:
    """Yield ``(path, line number, parsed object, raw line)`` for each non-blank line of a jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path.resolve()}")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield path, n, json.loads(line), line
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def read_imagetext_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read ``{"image": str, "caption": [str, ...]}`` lines (a bare string caption is accepted).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not JSON or lacks the keys, naming the file and line.
    """
    records = []
    for file, n, item, line in _jsonl_objects(path, "image-text jsonl"):
        if not isinstance(item, dict) or "image" not in item or "caption" not in item:
            raise ValueError(
                f'{file}:{n}: expected {{"image": path, "caption": [str, ...]}}, got {line[:80]!r}'
            )
        caps = item["caption"]
        caps = [caps] if isinstance(caps, str) else caps
        if not caps or not all(isinstance(c, str) for c in caps):
            raise ValueError(f"{file}:{n}: 'caption' must be a non-empty list of strings")
        records.append({"image": str(item["image"]), "caption": list(caps)})
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def read_labels_jsonl(path: str | Path) -> list[tuple[str, int]]:
    """Read zero-shot classification lines ``{"image": str, "label": int}``."""
    out = []
    for file, n, item, line in _jsonl_objects(path, "zero-shot label file"):
        try:
            out.append((str(item["image"]), int(item["label"])))
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f'{file}:{n}: expected {{"image": path, "label": int}}, got {line[:80]!r}'
            ) from None
    return out


def read_lines(path: str | Path, what: str) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file (class names, prompt templates)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path.resolve()}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no {what}")
    if what == "templates" and not all("{}" in t for t in lines):
        raise ValueError(f"{path}: every template must contain '{{}}' for the class name")
    return lines


# ------------------------------------------------------------------------------------------- transforms


def image_transform(image_size: int, train: bool, augment: bool = True) -> Any:
    """Eval: bicubic resize to S x S, Normalize(0.5, 0.5). Train: RandomResizedCrop(S, 0.8-1), h-flip,
    RandAugment(2, 7) (torchvision's op set: DEVIATION, the released one is a subset), Normalize(0.5, 0.5)."""
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    norm = [T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]
    if not train or not augment:
        return T.Compose([T.Resize((image_size, image_size), interpolation=bicubic), *norm])
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(0.8, 1.0), interpolation=bicubic),
            T.RandomHorizontalFlip(),
            T.RandAugment(num_ops=2, magnitude=7),
            *norm,
        ]
    )


class _ImageLoader:
    """Open images; a bad file is logged, counted and replaced by the next index (bounded retries)."""

    def __init__(self, image_root: Path, transform: Any) -> None:
        self.image_root = image_root
        self.transform = transform
        self.bad = 0

    def load(self, paths: Sequence[str], index: int) -> tuple[Tensor, int]:
        from PIL import Image

        for attempt in range(MAX_BAD_IMAGE_RETRIES):
            i = (index + attempt) % len(paths)
            path = self.image_root / paths[i]
            try:
                with Image.open(path) as im:
                    return self.transform(im.convert("RGB")), i
            except (OSError, ValueError) as e:
                self.bad += 1
                log.warning("bad image %s (%s); using another sample (%d bad so far)", path, e, self.bad)
        raise RuntimeError(f"{MAX_BAD_IMAGE_RETRIES} bad images in a row from {self.image_root}")


# --------------------------------------------------------------------------------------------- datasets


class ImageTextDataset(Dataset):
    """Training pairs of one language: a random caption of each image, tokenized."""

    def __init__(
        self,
        records: list[dict[str, Any]],
        image_root: Path,
        tokenizer: BilingualTokenizer,
        transform: Any,
        lang: str,
    ) -> None:
        self.records = records
        self.paths = [r["image"] for r in records]
        self.loader = _ImageLoader(image_root, transform)
        self.tokenizer = tokenizer
        self.lang = lang

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, i = self.loader.load(self.paths, index)
        caption = random.choice(self.records[i]["caption"])
        ids, starts = self.tokenizer.encode(caption)
        return {"image": image, "ids": ids, "starts": starts, "index": i, "lang": self.lang}


class ImageListDataset(Dataset):
    """Evaluation images (one set): ``image`` and its position ``index``."""

    def __init__(self, paths: Sequence[str], image_root: Path, transform: Any) -> None:
        self.paths = list(paths)
        self.loader = _ImageLoader(image_root, transform)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, _ = self.loader.load(self.paths, index)
        return {"image": image, "index": index}


def collate_text(items: list[dict[str, Any]], tokenizer: BilingualTokenizer) -> dict[str, Any]:
    n, length = len(items), tokenizer.max_text_len
    ids = torch.full((n, length), tokenizer.pad_id, dtype=torch.long)
    masks = torch.zeros((n, length), dtype=torch.long)
    starts = torch.zeros((n, length), dtype=torch.bool)
    for row, item in enumerate(items):
        k = len(item["ids"])
        ids[row, :k] = torch.tensor(item["ids"])
        masks[row, :k] = 1
        starts[row, :k] = torch.tensor(item["starts"])
    langs = {item["lang"] for item in items}
    if len(langs) != 1:
        raise ValueError(f"a batch must hold one language, got {sorted(langs)}")
    return {
        "image": torch.stack([item["image"] for item in items]),
        "text_ids": ids,
        "text_masks": masks,
        "text_word_starts": starts,
        "index": torch.tensor([item["index"] for item in items]),
        "lang": langs.pop(),
    }


class LanguageBatchSampler(Sampler[list[int]]):
    """Batches of one language each, the language drawn uniformly per step; sharded over ranks.

    Indices address a ``ConcatDataset`` of the per-language datasets (``offsets`` give their starts).
    Every rank draws the same language sequence (seeded by ``seed`` and the epoch) and its own disjoint
    slice of samples.
    All ranks take the same number of steps.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sizes = list(sizes)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        if min(self.sizes) < batch_size * world_size:
            raise ValueError(
                f"each language needs >= batch_size * world_size = {batch_size * world_size} samples"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.sizes) // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        perms = [torch.randperm(n, generator=g).tolist() for n in self.sizes]
        cursors = [0] * len(self.sizes)
        step = self.batch_size * self.world_size
        for _ in range(len(self)):
            lang = int(torch.randint(len(self.sizes), (1,), generator=g))
            if cursors[lang] + step > self.sizes[lang]:
                perms[lang] = torch.randperm(self.sizes[lang], generator=g).tolist()
                cursors[lang] = 0
            chunk = perms[lang][cursors[lang] : cursors[lang] + step]
            cursors[lang] += step
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            yield [self.offsets[lang] + i for i in mine]


# ------------------------------------------------------------------------------------------ eval sets


@dataclass
class RetrievalSet:
    """One language's retrieval test set: images, captions per image (released ``get_data`` layout)."""

    lang: str
    images: list[str]
    captions: list[list[str]]


@dataclass
class ZeroShotSet:
    """Zero-shot classification: labelled images, class names and templates per language."""

    images: list[str]
    labels: list[int]
    classnames: dict[str, list[str]] = field(default_factory=dict)
    templates: dict[str, list[str]] = field(default_factory=dict)


def shard(n: int, rank: int, world: int) -> list[int]:
    """Indices ``rank, rank + world, ...`` of ``range(n)``, padded with the last to ``ceil(n / world)``."""
    mine = list(range(rank, n, world))
    want = math.ceil(n / world)
    return mine + [mine[-1] if mine else n - 1] * (want - len(mine))


# ---------------------------------------------------------------------------------------- data module


class M2EncoderDataModule(LightningDataModule):
    """Bilingual image-text training pairs and the retrieval / zero-shot evaluation sets.

    Args:
        root: dataset folder; relative file names below are looked up in it.
        train_files: training jsonl per language (``{"en": ..., "zh": ...}``).
        test_files: retrieval test jsonl per language.
        image_root: folder the ``image`` paths are relative to (default ``root``).
        zeroshot_file: ``{"image", "label"}`` jsonl for zero-shot classification (None: skip).
        classnames_files: class names per language (one per line).
        templates_files: prompt templates per language (one per line, ``{}`` = class name).
        tokenizer_model: SentencePiece model path (GLM's ``sp.model`` for the paper).
        max_text_len: text length with ``[CLS]`` and ``<|endoftext|>`` (52).
        eos_id: ``<|endoftext|>``/pad id (None: after the pieces, GLM's 50000).
        cls_id: ``[CLS]`` id (None: ``eos_id + 2``, GLM's 50002).
        image_size: input side.
        batch_size: per-rank batch size.
        num_workers: DataLoader workers.
        train_augment: RandomResizedCrop + flip + RandAugment on training images.
        toy_num: when set, ``prepare_data`` writes a toy-world ``imagetext`` dataset of this many images.
        toy_seed: the toy world's seed.
        toy_vocab_size: SentencePiece vocabulary requested for the toy tokenizer (a soft limit).
        toy_num_test: test images of the toy dataset (None: a fifth of ``toy_num``).
        toy_full_captions: toy captions state the scene and every object with colour and size.
        seed: seed of the language/batch order.
    """

    def __init__(
        self,
        root: str = "data/toy/m2_encoder_imagetext",
        train_files: dict[str, str] | None = None,
        test_files: dict[str, str] | None = None,
        image_root: str | None = None,
        zeroshot_file: str | None = "zeroshot_scene_test.jsonl",
        classnames_files: dict[str, str] | None = None,
        templates_files: dict[str, str] | None = None,
        tokenizer_model: str = "sp_toy.model",
        max_text_len: int = 52,
        eos_id: int | None = None,
        cls_id: int | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        train_augment: bool = True,
        toy_num: int | None = None,
        toy_seed: int = 0,
        toy_vocab_size: int = 1000,
        toy_num_test: int | None = None,
        toy_full_captions: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self.train_files = train_files or {lang: f"train_{lang}.jsonl" for lang in LANGS}
        self.test_files = test_files or {lang: f"test_{lang}.jsonl" for lang in LANGS}
        self.classnames_files = classnames_files or {lang: f"classnames_{lang}.txt" for lang in LANGS}
        self.templates_files = templates_files or {lang: f"templates_{lang}.txt" for lang in LANGS}
        self.image_root = Path(image_root) if image_root else self.root
        self._tokenizer: BilingualTokenizer | None = None
        self.retrieval_sets: dict[str, RetrievalSet] = {}
        self.zeroshot: ZeroShotSet | None = None
        self.train_set: torch.utils.data.ConcatDataset | None = None
        self.eval_names: list[str] = []
        self._eval_paths: dict[str, list[str]] = {}
        self.eval_alias: dict[str, str] = {}

    def path(self, name: str) -> Path:
        p = Path(name)
        return p if p.is_absolute() else self.root / p

    # --- preparation

    def prepare_data(self) -> None:
        """Toy runs: write the toy world, its zero-shot split and the toy SentencePiece model (cached)."""
        if self.hparams.toy_num is None:
            return
        from m2_encoder.toy import prepare_toy

        hp = self.hparams
        prepare_toy(
            self.root, hp.toy_num, hp.toy_seed, hp.toy_vocab_size, hp.toy_num_test, hp.toy_full_captions
        )
        sp = self.path(self.hparams.tokenizer_model)
        if not sp.is_file():
            texts = [
                c
                for lang in LANGS
                for r in read_imagetext_jsonl(self.path(self.train_files[lang]))
                for c in r["caption"]
            ]
            train_sentencepiece(texts, sp.with_suffix(""), self.hparams.toy_vocab_size)

    @property
    def tokenizer(self) -> BilingualTokenizer:
        if self._tokenizer is None:
            self._tokenizer = BilingualTokenizer(
                self.path(self.hparams.tokenizer_model),
                max_text_len=self.hparams.max_text_len,
                eos_id=self.hparams.eos_id,
                cls_id=self.hparams.cls_id,
            )
        return self._tokenizer

    def setup(self, stage: str | None = None) -> None:
        tok = self.tokenizer
        if stage in (None, "fit") and self.train_set is None:
            tf = image_transform(self.hparams.image_size, train=True, augment=self.hparams.train_augment)
            parts = [
                ImageTextDataset(read_imagetext_jsonl(self.path(f)), self.image_root, tok, tf, lang)
                for lang, f in self.train_files.items()
            ]
            self.train_set = torch.utils.data.ConcatDataset(parts)
        if not self.retrieval_sets:
            for lang, f in self.test_files.items():
                recs = read_imagetext_jsonl(self.path(f))
                self.retrieval_sets[lang] = RetrievalSet(
                    lang, [r["image"] for r in recs], [r["caption"] for r in recs]
                )
            if self.hparams.zeroshot_file:
                pairs = read_labels_jsonl(self.path(self.hparams.zeroshot_file))
                zs = ZeroShotSet([p for p, _ in pairs], [label for _, label in pairs])
                for lang in self.classnames_files:
                    zs.classnames[lang] = read_lines(self.path(self.classnames_files[lang]), "class names")
                    zs.templates[lang] = read_lines(self.path(self.templates_files[lang]), "templates")
                    if max(zs.labels) >= len(zs.classnames[lang]):
                        raise ValueError(
                            f"{self.hparams.zeroshot_file}: label {max(zs.labels)} has no class name"
                        )
                self.zeroshot = zs
            # One image set per distinct image list (the toy's EN and ZH test sets share their images).
            sets = {f"retrieval_{lang}": s.images for lang, s in self.retrieval_sets.items()}
            if self.zeroshot is not None:
                sets["zeroshot"] = self.zeroshot.images
            for name, paths in sets.items():
                same = next((n for n, p in self._eval_paths.items() if p == paths), None)
                self._eval_paths[name if same is None else same] = paths
                self.eval_alias[name] = name if same is None else same
            self.eval_names = list(self._eval_paths)

    # --- loaders

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        sampler = LanguageBatchSampler(
            [len(d) for d in self.train_set.datasets], self.hparams.batch_size, self.hparams.seed, rank, world
        )
        if getattr(self, "trainer", None) is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        tok = self.tokenizer
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=lambda items: collate_text(items, tok),
            persistent_workers=self.hparams.num_workers > 0,
        )

    def _eval_loaders(self) -> list[DataLoader]:
        rank, world = self._rank_world()
        tf = image_transform(self.hparams.image_size, train=False)
        loaders = []
        for name in self.eval_names:
            ds = ImageListDataset(self._eval_paths[name], self.image_root, tf)
            sub = torch.utils.data.Subset(ds, shard(len(ds), rank, world))
            loaders.append(
                DataLoader(sub, batch_size=self.hparams.batch_size * 2, num_workers=self.hparams.num_workers)
            )
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()
