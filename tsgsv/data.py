"""TSGSV data: annotation readers, feature files, streaming windows and the DataModule (spec §4).

Repo annotation format (``<root>/{train,val,test}.json``, as in the official code's ``data/<ds>/``)::

    {"<video>": {"duration": s, "duration_frame": T, "timestamps": [[s, e], ...], "sentences": [...],
                 "anno_ids": [...]}}

Converters from the original formats: :func:`convert_anet_captions` (``train.json``/``val_1.json``/
``val_2.json``, ``"v_<id>" -> {duration, timestamps, sentences}``), :func:`convert_tacos` (2D-TAN JSON,
``video -> {num_frames, fps, timestamps in frames, sentences}``) and :func:`convert_mad` (``MAD_{split}.json``
keyed by annotation id: ``movie, sentence, ext_timestamps, movie_duration``).

Features: video HDF5 keyed by video name, ``(T, D)``; sentences ``<lm>_language_tokens_features_<split>.hdf5``
keyed by annotation id, ``(L, D)`` (MAD: ``CLIP_frames_features_5fps.h5`` and
``CLIP_language_tokens_features.h5``).

Batch contract (``dict[str, Tensor]``):

* training (:class:`TrainWindows`): ``long (B, Ml, Dv)``, ``long_mask (B, Ml)``, ``short (B, Ms, Dv)``,
  ``short_mask``, ``future (B, Mf, Dv)``, ``future_mask``, ``sent (B, Ls, Dt)``, ``sent_len (B,)``,
  ``labels (B, Ms, 3)`` (Gaussian start / end / relevance targets, spec §3).
* evaluation (:class:`EvalQueries`): ``video (B, T, Dv)`` padded, ``video_mask (B, T)``, ``sent``,
  ``sent_len``, ``duration (B,)``, ``gt (B, 2)`` seconds, ``num_steps (B,)``, ``index (B,)``.

Windowing: training windows end every ``M_s`` steps with a random phase drawn per item, so every epoch sees
a new phase (spec: "random phase in [0, 8) redrawn every epoch"); evaluation runs every step. Videos with at
most ``min_video_len`` steps are dropped; timestamps are clipped to ``[0, duration]``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from tsgsv.losses import soft_labels
from tsgsv.model import make_windows

log = logging.getLogger(__name__)

ANET_SPLIT_MAP = {"train": "train", "val_1": "val", "val_2": "test"}


def video_feature_file() -> str:
    return "video_features.hdf5"


def _read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _need(item: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in item]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; expected {list(keys)}")


def _feature_lengths(video_h5: str | Path | None) -> dict[str, int]:
    if video_h5 is None or not Path(video_h5).is_file():
        return {}
    with h5py.File(video_h5, "r") as h5:
        return {k: int(h5[k].shape[0]) for k in h5}


def _write(out: str | Path | None, data: dict) -> None:
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(data, indent=1) + "\n")


def convert_anet_captions(
    path: str | Path, video_h5: str | Path | None = None, out: str | Path | None = None
) -> dict[str, dict]:
    """ActivityNet Captions ``{"v_<id>": {duration, timestamps, sentences}}`` -> repo format.

    ``duration_frame`` comes from the video feature file (videos without features are skipped, with a log
    line); annotation ids are ``<video>_<k>``.
    """
    data = _read_json(path)
    lengths = _feature_lengths(video_h5)
    repo, missing = {}, 0
    for vid, item in data.items():
        _need(item, ("duration", "timestamps", "sentences"), f"{path}: video {vid!r}")
        if len(item["timestamps"]) != len(item["sentences"]):
            raise ValueError(f"{path}: video {vid!r} has {len(item['timestamps'])} timestamps and "
                             f"{len(item['sentences'])} sentences")  # fmt: skip
        if video_h5 is not None and vid not in lengths:
            missing += 1
            continue
        repo[vid] = {
            "duration": float(item["duration"]),
            "duration_frame": lengths.get(vid, -1),
            "timestamps": [[float(s), float(e)] for s, e in item["timestamps"]],
            "sentences": [str(s).strip() for s in item["sentences"]],
            "anno_ids": [f"{vid}_{k}" for k in range(len(item["sentences"]))],
        }
    if missing:
        log.warning("%s: %d videos have no features in %s and were skipped", path, missing, video_h5)
    _write(out, repo)
    return repo


def convert_tacos(
    path: str | Path, video_h5: str | Path | None = None, out: str | Path | None = None
) -> dict[str, dict]:
    """2D-TAN TACoS ``{video: {num_frames, fps, timestamps (frames), sentences}}`` -> repo format."""
    data = _read_json(path)
    lengths = _feature_lengths(video_h5)
    repo = {}
    for vid, item in data.items():
        _need(item, ("num_frames", "fps", "timestamps", "sentences"), f"{path}: video {vid!r}")
        fps = float(item["fps"])
        name = vid[:-4] if vid.endswith(".avi") else vid
        repo[name] = {
            "duration": float(item["num_frames"]) / fps,
            "duration_frame": lengths.get(name, -1),
            "timestamps": [[float(s) / fps, float(e) / fps] for s, e in item["timestamps"]],
            "sentences": [str(s).strip() for s in item["sentences"]],
            "anno_ids": [f"{name}_{k}" for k in range(len(item["sentences"]))],
        }
    _write(out, repo)
    return repo


def convert_mad(
    path: str | Path, fps: float = 5.0, video_h5: str | Path | None = None, out: str | Path | None = None
) -> dict[str, dict]:
    """MAD ``{anno_id: {movie, sentence, ext_timestamps, movie_duration}}`` -> repo format (per movie)."""
    data = _read_json(path)
    lengths = _feature_lengths(video_h5)
    repo: dict[str, dict] = {}
    for aid, item in data.items():
        _need(item, ("movie", "sentence", "ext_timestamps", "movie_duration"), f"{path}: annotation {aid!r}")
        movie = str(item["movie"])
        entry = repo.setdefault(
            movie,
            {
                "duration": float(item["movie_duration"]),
                "duration_frame": lengths.get(movie, int(round(float(item["movie_duration"]) * fps))),
                "timestamps": [],
                "sentences": [],
                "anno_ids": [],
            },
        )
        entry["timestamps"].append([float(t) for t in item["ext_timestamps"]])
        entry["sentences"].append(str(item["sentence"]).strip())
        entry["anno_ids"].append(str(aid))
    _write(out, repo)
    return repo


@dataclass
class Query:
    """One (video, sentence) pair with its moment in seconds."""

    video: str
    anno_id: str
    sentence: str
    duration: float
    num_steps: int
    start: float
    end: float

    @property
    def step_moment(self) -> tuple[float, float]:
        """The moment in feature-step units: ``time / duration * (T - 1)``."""
        scale = (self.num_steps - 1) / self.duration
        return self.start * scale, self.end * scale


def read_queries(path: str | Path, min_video_len: int = 70) -> list[Query]:
    """Queries of a repo-format file; videos with ``duration_frame <= min_video_len`` are dropped."""
    data = _read_json(path)
    out, dropped = [], 0
    for vid, item in data.items():
        _need(item, ("duration", "duration_frame", "timestamps", "sentences", "anno_ids"), f"{path}: {vid!r}")
        if int(item["duration_frame"]) <= min_video_len:
            dropped += 1
            continue
        d = float(item["duration"])
        for (s, e), sent, aid in zip(item["timestamps"], item["sentences"], item["anno_ids"]):
            s, e = min(max(float(s), 0.0), d), min(max(float(e), 0.0), d)
            out.append(Query(vid, str(aid), sent, d, int(item["duration_frame"]), min(s, e), max(s, e)))
    if dropped:
        log.info("%s: dropped %d videos with <= %d feature steps", path, dropped, min_video_len)
    return out


class FeatureStore:
    """Lazy HDF5 reader (one handle per process) with an optional in-memory cache."""

    def __init__(self, path: str | Path, cache: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"feature file not found: {self.path}")
        self.cache = cache
        self._h5: h5py.File | None = None
        self._mem: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self._mem:
            return self._mem[key]
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        if key not in self._h5:
            raise KeyError(f"{self.path}: no features for {key!r}")
        arr = np.asarray(self._h5[key], dtype=np.float32)
        if self.cache:
            self._mem[key] = arr
        return arr

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_h5": None}


def _sentence(store: FeatureStore, key: str, max_len: int) -> tuple[torch.Tensor, int]:
    s = torch.from_numpy(store[key][:max_len])
    return s, s.shape[0]


class TrainWindows(Dataset):
    """Training windows: each query's video cut into windows whose short memories tile it (stride ``M_s``)."""

    def __init__(
        self,
        queries: list[Query],
        videos: FeatureStore,
        sentences: FeatureStore,
        long_mem: int,
        short_mem: int,
        future_mem: int,
        max_sent_len: int,
        balance: bool = False,
        pos_expansion: float = 2.0,
        neg_span_ratio: float = 21.0,
        seed: int = 0,
    ) -> None:
        self.queries, self.videos, self.sentences = queries, videos, sentences
        self.mem = (long_mem, short_mem, future_mem)
        self.max_sent_len = max_sent_len
        self.index: list[tuple[int, int]] = []
        rng = np.random.default_rng(seed)
        for qi, q in enumerate(queries):
            ks = list(range(-(-q.num_steps // short_mem)))
            if balance:
                ks = balanced_windows(q, short_mem, pos_expansion, neg_span_ratio, rng)
            self.index += [(qi, k) for k in ks]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        qi, k = self.index[i]
        q = self.queries[qi]
        long_mem, short_mem, future_mem = self.mem
        video = torch.from_numpy(self.videos[q.video])
        phase = int(torch.randint(0, short_mem, (1,)))
        end = torch.tensor([k * short_mem + phase + short_mem - 1])
        w = make_windows(
            video, torch.ones(len(video), dtype=torch.bool), end, long_mem, short_mem, future_mem
        )
        s, e = q.step_moment
        labels = soft_labels(w["short_steps"][0], torch.tensor(s), torch.tensor(e))
        sent, n = _sentence(self.sentences, q.anno_id, self.max_sent_len)
        item = {k: v[0] for k, v in w.items() if k != "short_steps"}
        return {**item, "sent": sent, "sent_len": torch.tensor(n), "labels": labels}


def balanced_windows(
    q: Query, short_mem: int, pos_expansion: float, neg_span_ratio: float, rng: np.random.Generator
) -> list[int]:
    """MAD balance: windows meeting ``[s - a*l, e + a*l]``, plus about ``r*l`` steps of the others."""
    s, e = q.step_moment
    span = max(e - s, 1.0)
    lo, hi = s - pos_expansion * span, e + pos_expansion * span
    ks = np.arange(-(-q.num_steps // short_mem))
    first, last = ks * short_mem, ks * short_mem + short_mem - 1
    near = (last >= lo) & (first <= hi)
    others = ks[~near]
    n_neg = min(len(others), int(round(neg_span_ratio * span / short_mem)))
    picked = rng.choice(others, size=n_neg, replace=False) if n_neg else np.zeros(0, dtype=int)
    return sorted(int(k) for k in np.concatenate([ks[near], picked]))


class EvalQueries(Dataset):
    """One item per query: the whole video's features (streamed by the model) and the query."""

    def __init__(
        self, queries: list[Query], videos: FeatureStore, sentences: FeatureStore, max_sent_len: int
    ) -> None:
        self.queries, self.videos, self.sentences = queries, videos, sentences
        self.max_sent_len = max_sent_len

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        q = self.queries[i]
        sent, n = _sentence(self.sentences, q.anno_id, self.max_sent_len)
        return {
            "video": torch.from_numpy(self.videos[q.video]),
            "sent": sent,
            "sent_len": torch.tensor(n),
            "duration": torch.tensor(q.duration),
            "gt": torch.tensor([q.start, q.end]),
            "num_steps": torch.tensor(q.num_steps),
            "index": torch.tensor(i),
        }


def pad_stack(tensors: list[torch.Tensor], length: int | None = None) -> torch.Tensor:
    """Zero-pad ``(L_i, D)`` tensors along dim 0 to ``length`` (default: the longest) and stack."""
    n = length or max(t.shape[0] for t in tensors)
    out = tensors[0].new_zeros(len(tensors), n, *tensors[0].shape[1:])
    for i, t in enumerate(tensors):
        out[i, : min(n, t.shape[0])] = t[:n]
    return out


def collate(samples: list[dict[str, torch.Tensor]], max_sent_len: int) -> dict[str, torch.Tensor]:
    """Stack a batch; sentences are padded to ``max_sent_len`` (the code's fixed padded length)."""
    out: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        if key == "sent":
            out[key] = pad_stack(vals, max_sent_len)
        elif key == "video":
            out[key] = pad_stack(vals)
            lengths = torch.tensor([v.shape[0] for v in vals])
            out["video_mask"] = torch.arange(out[key].shape[1])[None] < lengths[:, None]
        else:
            out[key] = torch.stack(vals)
    return out


class _Collate:
    def __init__(self, max_sent_len: int) -> None:
        self.max_sent_len = max_sent_len

    def __call__(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate(samples, self.max_sent_len)


class TSGSVDataModule(LightningDataModule):
    """Streaming grounding data in the repo format; the toy world (ActivityNet Captions layout) by default.

    Args:
        root: folder with ``{split}.json``, the video feature file and the sentence feature files.
        dataset: ``anet``, ``tacos`` or ``mad`` (names the real layout; see ``make data-tsgsv``).
        train_splits: repo-format splits to train on (TACoS parity: ``[train, val]``).
        val_split, test_split: evaluation splits.
        video_features: video HDF5 file name under ``root``.
        sentence_features: sentence HDF5 name pattern (``{split}`` is replaced), or one file for all splits.
        long_mem, short_mem, future_mem: memory sizes (linked from the model config).
        max_sent_len: padded sentence length (linked to the model).
        min_video_len: videos with at most this many steps are dropped (spec §6 #6).
        val_subsample: fraction of validation queries used for model selection (seeded).
        balance_windows: MAD's positive/negative window balance for training.
        toy: generate the toy world and its features under ``root`` in ``prepare_data`` when missing.
        toy_num, toy_seed, toy_options: the ``anet_captions`` writer's arguments.
        toy_features: options of :mod:`tsgsv.scripts.extract_features` (``video_dim``, ``sent_dim``, ...).
    """

    def __init__(
        self,
        root: str = "data/anet",
        dataset: str = "anet",
        train_splits: list[str] | None = None,
        val_split: str = "val",
        test_split: str = "test",
        video_features: str = "video_features.hdf5",
        sentence_features: str = "bert_language_tokens_features_{split}.hdf5",
        long_mem: int = 64,
        short_mem: int = 8,
        future_mem: int = 64,
        max_sent_len: int = 20,
        min_video_len: int = 70,
        val_subsample: float = 1.0,
        balance_windows: bool = False,
        batch_size: int = 64,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        cache_features: bool = True,
        seed: int = 0,
        toy: bool = False,
        toy_num: int = 300,
        toy_seed: int = 0,
        toy_options: dict[str, Any] | None = None,
        toy_features: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dataset not in ("anet", "tacos", "mad"):
            raise ValueError(f"dataset must be anet, tacos or mad, got {dataset!r}")
        self.root = Path(root)
        self.dataset = dataset
        self.train_splits = list(train_splits or ["train"])
        self.val_split, self.test_split = val_split, test_split
        self.video_features, self.sentence_features = video_features, sentence_features
        self.mem = (long_mem, short_mem, future_mem)
        self.max_sent_len, self.min_video_len = max_sent_len, min_video_len
        self.val_subsample, self.balance_windows = val_subsample, balance_windows
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.cache_features, self.seed = num_workers, cache_features, seed
        self.toy, self.toy_num, self.toy_seed = toy, toy_num, toy_seed
        self.toy_options = dict(toy_options or {})
        self.toy_features = dict(toy_features or {})
        self._stores: dict[str, FeatureStore] = {}

    # --------------------------------------------------------------------------------- preparation
    def prepare_data(self) -> None:
        if self.toy:
            prepare_toy(self.root, self.toy_num, self.toy_seed, self.toy_options, self.toy_features)

    def _store(self, name: str) -> FeatureStore:
        if name not in self._stores:
            self._stores[name] = FeatureStore(self.root / name, self.cache_features)
        return self._stores[name]

    def _sent_store(self, split: str) -> FeatureStore:
        return self._store(self.sentence_features.format(split=split))

    def queries(self, split: str) -> list[Query]:
        return read_queries(self.root / f"{split}.json", self.min_video_len)

    def setup(self, stage: str) -> None:
        videos = self._store(self.video_features)
        if stage == "fit":
            parts = [
                TrainWindows(
                    self.queries(s),
                    videos,
                    self._sent_store(s),
                    *self.mem,
                    self.max_sent_len,
                    balance=self.balance_windows,
                    seed=self.seed,
                )  # fmt: skip
                for s in self.train_splits
            ]
            self.train_set = torch.utils.data.ConcatDataset(parts)
        if stage in ("fit", "validate"):
            q = self.queries(self.val_split)
            if self.val_subsample < 1.0:
                rng = np.random.default_rng(self.seed)
                keep = np.sort(rng.choice(len(q), max(1, round(len(q) * self.val_subsample)), replace=False))
                q = [q[i] for i in keep]
            self.val_set = EvalQueries(q, videos, self._sent_store(self.val_split), self.max_sent_len)
        if stage in ("test", "predict"):
            q = self.queries(self.test_split)
            self.test_set = EvalQueries(q, videos, self._sent_store(self.test_split), self.max_sent_len)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
            num_workers=self.num_workers, collate_fn=_Collate(self.max_sent_len),
            persistent_workers=self.num_workers > 0,
        )  # fmt: skip

    def _eval(self, ds: EvalQueries) -> DataLoader:
        return DataLoader(
            ds, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers,
            collate_fn=_Collate(self.max_sent_len),
        )  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return self._eval(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval(self.test_set)


def prepare_toy(root: Path, num: int, seed: int, options: dict[str, Any], features: dict[str, Any]) -> Path:
    """Toy chain: ``anet_captions`` videos in ``<root>/raw``, then features and repo-format json in ``root``.

    Cached: kept when ``<root>/toy_stamp.json`` records the same arguments.
    """
    from common.toyworld import generate
    from tsgsv.scripts import extract_features

    root = Path(root)
    stamp = {"num": num, "seed": seed, "options": options, "features": features}
    stamp_file = root / "toy_stamp.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return root
    raw = generate("anet_captions", root / "raw", num=num, seed=seed, progress=True, **options)
    for f in root.glob("*.hdf5"):
        f.unlink()
    args = ["--anet-root", str(raw), "--out", str(root)]
    for k, v in features.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    extract_features.main(args)
    stamp_file.write_text(json.dumps(stamp, indent=1) + "\n")
    return root


def group_by_video(queries: list[Query]) -> dict[str, list[int]]:
    """Query indices per video."""
    out: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        out[q.video].append(i)
    return dict(out)
