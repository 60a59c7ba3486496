"""Pink's data: real-format readers, the RC instruction tasks and prompts, the DataModule (spec §3-§4).

Readers (each raises a clear error naming the file and line or key on bad input):

* :func:`read_pink_jsonl`: region-level sources, one image a line ``{id, image, width, height, objects: [{id,
  bbox xyxy, category, name, description}], relations: [{subject, predicate, object}], caption}`` (the
  Visual Genome annotations Pink's task sampler reads, gathered per image; the toy ``pink_rc`` writer's
  format).
* :func:`read_refcoco`: ``lichengunc/refer``'s ``instances.json`` + ``refs(<split_by>).json`` (the JSON
  form that ``make data-pink_rc`` converts the official pickle to) -> ``{exp_id, ref_id, image_id, image,
  sentence, bbox xyxy, width, height, boxes}`` per sentence of a split.
* :func:`read_llava`: LLaVA JSON lists ``{id, image, conversations: [{from, value}]}``, ``<image>`` removed.
* :func:`read_objects365_filtered`: the bootstrapped Objects365 jsonl (``generate_gounding_caption`` sic).
* :func:`read_vqav2_jsonl`, :func:`read_aokvqa`, :func:`read_flickr30k_shikra`: the stage-2 VQA-style sources.

Batch contract (``dict``):

* train, stages 1-2: ``input_ids (B, L)`` right-padded, ``attention_mask (B, L)``, ``labels (B, L)`` (-100 on
  BOS, system prompt, image tokens and instruction; the answer and its ``</s>`` supervised), ``pixel_values
  (B, 3, S, S)``.
* train, stage 0 (toy CLIP): ``pixel_values``, ``text_ids (B, T)`` padded with 0.
* val/test: ``input_ids``/``attention_mask`` left-padded prompts, ``pixel_values``, and lists ``task``,
  ``target`` (box xyxy pixels, count or predicate), ``size`` ``(W, H)``, ``candidates`` (all GT boxes).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from pink_rc.metrics import box_area, format_box, format_boxes
from pink_rc.model import CLIP_MEAN, CLIP_STD, IM_PATCH, MARKERS

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------- readers


def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _jsonl(path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: not found")
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing key(s) {missing}; expected {list(required)}")
        rows.append(row)
    return rows


def read_pink_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Region-level per-image records (see the module docstring)."""
    rows = _jsonl(Path(path), ("image", "width", "height", "objects"))
    for n, row in enumerate(rows, 1):
        for obj in row["objects"]:
            if len(obj.get("bbox", [])) != 4:
                raise ValueError(f"{path}: record {n}: object {obj.get('id')} needs bbox [x0,y0,x1,y1]")
        row.setdefault("relations", [])
    return rows


def read_refcoco(root: str | Path, split: str, split_by: str = "unc") -> list[dict[str, Any]]:
    """REC samples of one split from ``instances.json`` and ``refs(<split_by>).json`` under ``root``."""
    root = Path(root)
    inst = _load_json(root / "instances.json")
    refs_path = root / f"refs({split_by}).json"
    if not refs_path.is_file() and (root / f"refs({split_by}).p").is_file():
        raise FileNotFoundError(
            f"{refs_path}: not found; run `make data-pink_rc` to convert refs({split_by}).p"
        )
    refs = _load_json(refs_path)
    images = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    by_image: dict[int, list[list[float]]] = {}
    for a in inst["annotations"]:
        x, y, w, h = a["bbox"]
        by_image.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    out = []
    for ref in refs:
        if ref.get("split") != split:
            continue
        try:
            ann, im = anns[ref["ann_id"]], images[ref["image_id"]]
        except KeyError as e:
            raise ValueError(f"{refs_path}: ref {ref.get('ref_id')} names unknown id {e}") from None
        x, y, w, h = ann["bbox"]
        for sent in ref["sentences"]:
            out.append(
                {
                    "exp_id": sent["sent_id"],
                    "ref_id": ref["ref_id"],
                    "image_id": ref["image_id"],
                    "image": im["file_name"],
                    "sentence": sent["sent"],
                    "bbox": [x, y, x + w, y + h],
                    "width": im["width"],
                    "height": im["height"],
                    "boxes": by_image[ref["image_id"]],
                }
            )
    return out


def read_llava(path: str | Path) -> list[dict[str, Any]]:
    """LLaVA caption/instruction data: ``{id, image, conversations}`` with the ``<image>`` tag removed."""
    data = _load_json(Path(path))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{id, image, conversations}}")
    out = []
    for n, item in enumerate(data):
        conv = item.get("conversations")
        if not conv or any(t.get("from") not in ("human", "gpt") for t in conv):
            raise ValueError(f"{path}: item {n}: conversations must alternate from human|gpt")
        turns = [{"from": t["from"], "value": t["value"].replace("<image>", "").strip()} for t in conv]
        out.append({"id": item.get("id"), "image": item.get("image"), "conversations": turns})
    return out


def read_objects365_filtered(path: str | Path) -> list[dict[str, Any]]:
    """Bootstrapped Objects365 jsonl (spec §4): keeps the author's ``generate_gounding_caption`` spelling."""
    return _jsonl(Path(path), ("image_id", "anno", "pred", "orig_width", "orig_height"))


def read_vqav2_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """VQAv2 jsonl ``{image_path, question, annotation{multiple_choice_answer}}``; prompt ``<qes>q</qes>``."""
    rows = _jsonl(Path(path), ("image_path", "question", "annotation"))
    return [
        {
            "image": r["image_path"],
            "question": f"<qes>{r['question']}</qes>",
            "answer": r["annotation"]["multiple_choice_answer"],
        }
        for r in rows
    ]


def read_aokvqa(path: str | Path, rng: np.random.Generator | None = None) -> list[dict[str, Any]]:
    """A-OKVQA json: choices shuffled into ``<opt>``, target "The answer is X."."""
    rng = rng or np.random.default_rng(0)
    out = []
    for item in _load_json(Path(path)):
        order = rng.permutation(len(item["choices"]))
        letters = "ABCDEFGH"
        opts = "\n".join(f"{letters[k]}. {item['choices'][j]}" for k, j in enumerate(order))
        answer = letters[int(np.where(order == item["correct_choice_idx"])[0][0])]
        out.append(
            {
                "image": f"{int(item['image_id']):012d}.jpg",
                "question": f"<qes>{item['question']}</qes> <opt>{opts}</opt>",
                "answer": f"The answer is {answer}.",
            }
        )
    return out


def read_flickr30k_shikra(path: str | Path) -> list[dict[str, Any]]:
    """Flickr30k Entities in Shikra's jsonl: ``<ph_st>..<ph_ed>`` phrases with their boxes."""
    return _jsonl(Path(path), ("image_id", "sentence", "boxes", "boxes_seq"))


# ------------------------------------------------------------------------------------- RC task sampler

TEMPLATES: dict[str, list[str]] = {
    "VisualGrounding": [
        "Where is <des>{d}</des>? Answer with a bounding box.",
        "Give the bounding box of <des>{d}</des>.",
        "Locate <des>{d}</des> in the image.",
    ],
    "RegionGroundingCaption": [
        "Describe the region <loc>{b}</loc>.",
        "What is in <loc>{b}</loc>?",
        "Give a short description of <loc>{b}</loc>.",
    ],
    "Relation-1": ["What is the relation between <loc>{b}</loc> and <loc>{b2}</loc>?"],
    "Relation-2": ["Find the objects that are <rel>{p}</rel> <loc>{b}</loc>. Give their boxes."],
    "Relation-3": ["Name the objects that are <rel>{p}</rel> <loc>{b}</loc>."],
    "Relation-4": ["List the objects that are <rel>{p}</rel> <loc>{b}</loc> with their boxes."],
    "CoarseLocation-1": ["List the objects at the {q} of {a} with their boxes."],
    "CoarseLocation-2": ["Name the objects at the {q} of {a}."],
    "CoarseLocation-3": ["Give the boxes of the objects at the {q} of {a}."],
    "Detection-1": ["Detect all <cls>{c}</cls> in the image.", "Find every <cls>{c}</cls>."],
    "Detection-2": ["Find all objects of the same class as <loc>{b}</loc>."],
    "Counting-1": ["How many <cls>{c}</cls> are there?", "Count the <cls>{c}</cls> in the image."],
    "Counting-2": ["How many objects of the same class as <loc>{b}</loc> are there?"],
}
TASKS = tuple(TEMPLATES)
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
COMMON_PREDICATES = ("on", "has", "wearing", "of", "in")  # accepted with p = 0.2 (spec §3)


def _centre(b: Sequence[float]) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def in_quadrant(box: Sequence[float], anchor: Sequence[float], quadrant: str) -> bool:
    """Centre strictly on that side of the anchor's centre in both axes (image y grows downward)."""
    (x, y), (ax, ay) = _centre(box), _centre(anchor)
    up, left = quadrant.startswith("top"), quadrant.endswith("left")
    return (y < ay if up else y > ay) and (x < ax if left else x > ax)


def make_task(record: dict[str, Any], task: str, rng: np.random.Generator) -> tuple[str, str] | None:
    """One (instruction, answer) pair of ``task`` for an image record, or None if the image cannot give it."""
    objs, w, h = record["objects"], record["width"], record["height"]
    if not objs:
        return None
    tpl = TEMPLATES[task][int(rng.integers(len(TEMPLATES[task])))]
    by_id = {o["id"]: o for o in objs}
    fb = lambda o: format_box(o["bbox"], w, h)  # noqa: E731
    if task == "VisualGrounding":
        cands = [o for o in objs if o.get("description")]
        if not cands:
            return None
        o = cands[int(rng.integers(len(cands)))]
        return tpl.format(d=o["description"]), fb(o)
    if task == "RegionGroundingCaption":
        o = objs[int(rng.integers(len(objs)))]
        return tpl.format(b=fb(o)), o.get("description") or o["name"]
    if task.startswith("Relation"):
        rels = record["relations"]
        if not rels:
            return None
        rel = None
        for _ in range(100):
            rel = rels[int(rng.integers(len(rels)))]
            if rel["predicate"] not in COMMON_PREDICATES or rng.random() < 0.2:
                break
        s, o, p = by_id[rel["subject"]], by_id[rel["object"]], rel["predicate"]
        if task == "Relation-1":
            return tpl.format(b=fb(s), b2=fb(o)), f"Object1 is {p} object2."
        subs = [by_id[r["subject"]] for r in rels if r["object"] == o["id"] and r["predicate"] == p]
        q = tpl.format(p=p, b=fb(o))
        boxes, names = [x["bbox"] for x in subs], [x["name"] for x in subs]
        if task == "Relation-2":
            return q, format_boxes(boxes, w, h)
        if task == "Relation-3":
            order = sorted(range(len(subs)), key=lambda k: box_area(boxes[k]))
            return q, ", ".join(names[k] for k in order)
        return q, format_boxes(boxes, w, h, names)
    if task.startswith("CoarseLocation"):
        anchor = objs[int(rng.integers(len(objs)))]
        quad = QUADRANTS[int(rng.integers(4))]
        use_des = anchor.get("description") and rng.random() < 0.5
        a = f"<des>{anchor['description']}</des>" if use_des else f"<loc>{fb(anchor)}</loc>"
        hits = [o for o in objs if o is not anchor and in_quadrant(o["bbox"], anchor["bbox"], quad)]
        q = tpl.format(q=quad, a=a)
        if not hits:
            return q, "N/A"
        boxes, names = [x["bbox"] for x in hits], [x["name"] for x in hits]
        if task == "CoarseLocation-1":
            return q, format_boxes(boxes, w, h, names)
        if task == "CoarseLocation-2":
            order = sorted(range(len(hits)), key=lambda k: box_area(boxes[k]))
            return q, ", ".join(names[k] for k in order)
        return q, format_boxes(boxes, w, h)
    classes: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        classes.setdefault(o["category"], []).append(o)
    # Detection and Counting: a count value uniformly among those present, then a class with that count.
    counts = sorted({len(v) for v in classes.values()})
    if task == "Detection-2":
        counts = [c for c in counts if c >= 2]
        if not counts:
            return None
    n = counts[int(rng.integers(len(counts)))]
    names = sorted(c for c, v in classes.items() if len(v) == n)
    cls = names[int(rng.integers(len(names)))]
    inst = classes[cls]
    one = inst[int(rng.integers(len(inst)))]
    if task == "Detection-1":
        return tpl.format(c=cls), format_boxes([x["bbox"] for x in inst], w, h)
    if task == "Detection-2":
        return tpl.format(b=fb(one)), format_boxes([x["bbox"] for x in inst], w, h)
    if task == "Counting-1":
        return tpl.format(c=cls), str(n)
    return tpl.format(b=fb(one)), str(n)


def sample_task(
    record: dict[str, Any],
    rng: np.random.Generator,
    tasks: Sequence[str],
    weights: Sequence[float] | None = None,
) -> tuple[str, str, str]:
    """Draw a task (uniformly unless ``weights``), then a template; redraw when the image cannot give it."""
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    for _ in range(50):
        task = tasks[int(rng.choice(len(tasks), p=p))]
        pair = make_task(record, task, rng)
        if pair is not None:
            return task, *pair
    o = record["objects"][0]
    return (
        "RegionGroundingCaption",
        f"Describe the region <loc>{format_box(o['bbox'], record['width'], record['height'])}</loc>.",
        o.get("description") or o["name"],
    )


# ---------------------------------------------------------------------------------------------- prompts

SYS_PREFIX = "[INST] <<SYS>>\nImage: "
SYS_SUFFIX = "\n<</SYS>>\n\n"
INST_END = " [/INST] "


def build_tokenizer(texts: Sequence[str]) -> Any:
    """Toy word-level tokenizer (spec §2): digits, ``.``, ``,``, ``[``, ``]`` split like Llama's digits.

    ``<pad> <unk> <s> </s>`` come first, the words of ``texts`` next (sorted), then ``<im_patch>`` and the 12
    markers as added special tokens; the count before them is the "original" vocabulary.
    """
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Whitespace(),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation("isolated"),
        ]
    )
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    words: set[str] = set("0123456789.,[]")
    for t in [*texts, SYS_PREFIX, SYS_SUFFIX, INST_END, *(s for v in TEMPLATES.values() for s in v)]:
        for m in [*MARKERS, IM_PATCH]:
            t = t.replace(m, " ")
        words.update(w for w, _ in pre.pre_tokenize_str(t))
    vocab = {w: i for i, w in enumerate(specials + sorted(words - set(specials)))}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.add_special_tokens({"additional_special_tokens": [IM_PATCH, *MARKERS]})
    fast.num_orig_tokens = len(vocab)
    return fast


def tokenizer_from_json(text: str, num_orig_tokens: int) -> Any:
    """Rebuild the toy tokenizer saved in a checkpoint."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(text),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=[IM_PATCH, *MARKERS],
    )
    fast.num_orig_tokens = num_orig_tokens
    return fast


def encode(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def chat_prompt(tok: Any, instruction: str, num_patches: int) -> list[int]:
    """``<s>[INST] <<SYS>>\\nImage: `` + P x ``<im_patch>`` + ``\\n<</SYS>>\\n\\n`` + text + ``[/INST]``."""
    im = tok.convert_tokens_to_ids(IM_PATCH)
    return (
        [tok.bos_token_id]
        + encode(tok, SYS_PREFIX)
        + [im] * num_patches
        + encode(tok, SYS_SUFFIX)
        + encode(tok, instruction)
        + encode(tok, INST_END)
    )


def caption_prompt(tok: Any, num_patches: int) -> list[int]:
    """Stage 1 (no chat template): ``<s>Image: `` + patches + ``\\n``."""
    im = tok.convert_tokens_to_ids(IM_PATCH)
    return [tok.bos_token_id] + encode(tok, "Image: ") + [im] * num_patches + encode(tok, "\n")


def with_answer(tok: Any, prompt: list[int], answer: str) -> tuple[list[int], list[int]]:
    """Input ids and labels: -100 on the prompt; the answer and its ``</s>`` supervised."""
    ans = encode(tok, answer) + [tok.eos_token_id]
    return prompt + ans, [-100] * len(prompt) + ans


def conversation(
    tok: Any, prompt: list[int], answer: str, more: Sequence[tuple[str, str]] = ()
) -> tuple[list[int], list[int]]:
    """Multi-turn ids and labels: the first turn, then ``<s>[INST] q [/INST] a</s>`` per further (q, a) pair.

    Every question is -100; every answer and its ``</s>`` are supervised (spec §3).
    """
    ids, labels = with_answer(tok, prompt, answer)
    for q, a in more:
        turn_ids, turn_labels = with_answer(
            tok, [tok.bos_token_id] + encode(tok, "[INST] " + q + INST_END), a
        )
        ids, labels = ids + turn_ids, labels + turn_labels
    return ids, labels


# ---------------------------------------------------------------------------------------------- datasets


class ImageStore:
    """Decoded images, resized (bicubic, straight to ``size`` x ``size``) and CLIP-normalised, cached."""

    def __init__(self, root: Path, size: int) -> None:
        self.root, self.size, self.cache = Path(root), size, {}
        self.mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(3, 1, 1)
        self.failures = 0

    def __call__(self, rel: str) -> torch.Tensor:
        if rel not in self.cache:
            from PIL import Image

            try:
                arr = np.asarray(Image.open(self.root / rel).convert("RGB"))
            except (OSError, ValueError) as e:
                self.failures += 1
                log.warning("undecodable image %s (%s): using a blank image", self.root / rel, e)
                arr = np.zeros((self.size, self.size, 3), np.uint8)
            x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0  # (3, H, W)
            if x.shape[1:] != (self.size, self.size):
                x = F.interpolate(x[None], size=(self.size, self.size), mode="bicubic", align_corners=False)[
                    0
                ]
            self.cache[rel] = ((x - self.mean) / self.std).contiguous()
        return self.cache[rel]


class RCTrainDataset(Dataset):
    """Stage 2: one RC task drawn per access from an image record (a new draw each epoch)."""

    def __init__(self, records, images, tok, num_patches, max_length, tasks, weights, seed=0) -> None:  # noqa: ANN001
        self.records, self.images, self.tok = records, images, tok
        self.num_patches, self.max_length, self.tasks, self.weights = num_patches, max_length, tasks, weights
        self.seed, self.epoch, self.skipped = seed, 0, 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        for _ in range(10):
            rec = self.records[i]
            _, q, a = sample_task(rec, rng, self.tasks, self.weights)
            ids, labels = with_answer(self.tok, chat_prompt(self.tok, q, self.num_patches), a)
            if len(ids) <= self.max_length:
                break
            self.skipped += 1  # quirk 6: an over-long sample is replaced by a random other one, counted
            i = int(rng.integers(len(self.records)))
        return {"input_ids": ids, "labels": labels, "pixel_values": self.images(rec["image"])}


class CaptionDataset(Dataset):
    """Stage 1 (``Image: `` + patches + ``\\n`` + caption + ``</s>``) or stage 0 (caption ids, toy CLIP)."""

    def __init__(self, items, images, tok, num_patches, max_length, stage) -> None:  # noqa: ANN001
        self.items, self.images, self.tok = items, images, tok
        self.num_patches, self.max_length, self.stage = num_patches, max_length, stage

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        cap = next(t["value"] for t in item["conversations"] if t["from"] == "gpt")
        px = self.images(item["image"])
        if self.stage == 0:
            return {"text_ids": encode(self.tok, cap)[:64], "pixel_values": px}
        ids, labels = with_answer(self.tok, caption_prompt(self.tok, self.num_patches), cap)
        return {"input_ids": ids[: self.max_length], "labels": labels[: self.max_length], "pixel_values": px}


class EvalDataset(Dataset):
    """Fixed prompts for generation: ``{task, instruction, target, size, candidates, image}`` items."""

    def __init__(self, items, images, tok, num_patches) -> None:  # noqa: ANN001
        self.items, self.images, self.tok, self.num_patches = items, images, tok, num_patches

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        ids = chat_prompt(self.tok, it["instruction"], self.num_patches)
        return {**it, "input_ids": ids, "pixel_values": self.images(it["image"])}


def collate(batch: list[dict[str, Any]], pad_id: int = 0, left: bool = False) -> dict[str, Any]:
    """Pad ``input_ids``/``labels``/``text_ids`` (left for generation), stack images, other keys as lists."""
    out: dict[str, Any] = {"pixel_values": torch.stack([b["pixel_values"] for b in batch])}
    for key, fill in (("input_ids", pad_id), ("labels", -100), ("text_ids", 0)):
        if key not in batch[0]:
            continue
        n = max(len(b[key]) for b in batch)
        rows = [
            ([fill] * (n - len(b[key])) + b[key]) if left else (b[key] + [fill] * (n - len(b[key])))
            for b in batch
        ]
        out[key] = torch.tensor(rows, dtype=torch.long)
        if key == "input_ids":
            lens = [len(b[key]) for b in batch]
            mask = [([0] * (n - m) + [1] * m) if left else ([1] * m + [0] * (n - m)) for m in lens]
            out["attention_mask"] = torch.tensor(mask, dtype=torch.long)
    for key in batch[0]:
        if key not in out and key not in ("input_ids", "labels", "text_ids", "pixel_values"):
            out[key] = [b[key] for b in batch]
    return out


def rec_eval_items(samples: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """REC prompts: a random VisualGrounding template with ``<des>expr</des>`` (spec §5)."""
    tpls = TEMPLATES["VisualGrounding"]
    return [
        {
            "task": "rec",
            "image": s["image"],
            "instruction": tpls[int(rng.integers(len(tpls)))].format(d=s["sentence"]),
            "target": s["bbox"],
            "size": (s["width"], s["height"]),
            "candidates": s["boxes"],
        }
        for s in samples
    ]


def rc_eval_items(records: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Counting-1 and Relation-1 prompts, one each per image that can give it."""
    items = []
    for rec in records:
        base = {"image": rec["image"], "size": (rec["width"], rec["height"]), "candidates": []}
        pair = make_task(rec, "Counting-1", rng)
        if pair:
            items.append({**base, "task": "count", "instruction": pair[0], "target": int(pair[1])})
        pair = make_task(rec, "Relation-1", rng)
        if pair:
            pred = pair[1][len("Object1 is ") : -len(" object2.")]
            items.append({**base, "task": "relation", "instruction": pair[0], "target": pred})
    return items


# -------------------------------------------------------------------------------------------- DataModule


@dataclass
class ToySpec:
    num: int = 600
    seed: int = 0
    options: dict[str, Any] | None = None


class PinkDataModule(LightningDataModule):
    """Stage 0/1 caption data (LLaVA format), stage 2 RC tasks (Pink jsonl), REC eval on RefCOCO format.

    Args:
        stage: 0 (toy CLIP), 1 (alignment on captions) or 2 (RC instruction tuning).
        root: folder of the Pink-format sources (``train.jsonl``, ``val.jsonl``, ``llava_pretrain.json``).
        refcoco_root: RefCOCO folder (``instances.json``, ``refs(unc).json``, images) for REC evaluation.
        val_split: RefCOCO and Pink split used for validation (``val``); ``test_split`` likewise.
        toy: generate the toy-world datasets into ``root``/``refcoco_root`` when missing.
        toy_num, toy_seed, toy_options: the toy-world writers' arguments (the same for both writers).
        image_size: side the images are resized to (the vision tower's input, linked to the model).
        num_patches: ``<im_patch>`` tokens per image (linked to the model).
        tasks / task_weights: the RC task pool and optional sampling weights (uniform by default, spec §3).
        max_length: longest training sequence; longer samples are replaced (quirk 6).
        val_per_task: cap of REC / counting / relation prompts in validation.
    """

    def __init__(
        self,
        stage: int = 2,
        root: str = "data/pink_rc/pink",
        refcoco_root: str = "data/pink_rc/refcoco",
        val_split: str = "val",
        test_split: str = "test",
        toy: bool = False,
        toy_num: int = 600,
        toy_seed: int = 0,
        toy_options: dict[str, Any] | None = None,
        image_size: int = 224,
        num_patches: int = 256,
        tasks: list[str] | None = None,
        task_weights: list[float] | None = None,
        max_length: int = 2048,
        batch_size: int = 4,
        eval_batch_size: int = 8,
        val_per_task: int = 100,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tasks = list(tasks or TASKS)
        unknown = [t for t in self.tasks if t not in TEMPLATES]
        if unknown:
            raise ValueError(f"data.tasks: unknown task(s) {unknown}; choose from {list(TASKS)}")
        self.tokenizer: Any = None

    def prepare_data(self) -> None:
        if self.hparams.toy:
            from common.toyworld import generate

            opts = self.hparams.toy_options or {}
            for name, root in (("pink_rc", self.hparams.root), ("refcoco", self.hparams.refcoco_root)):
                generate(name, root, num=self.hparams.toy_num, seed=self.hparams.toy_seed, **opts)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return
        hp, root = self.hparams, Path(self.hparams.root)
        self.images = ImageStore(root, hp.image_size)
        self.ref_images = ImageStore(Path(hp.refcoco_root), hp.image_size)
        self.train_records = read_pink_jsonl(root / "train.jsonl")
        self.captions = read_llava(root / "llava_pretrain.json")
        texts = [c["conversations"][-1]["value"] for c in self.captions]
        for rec in self.train_records:
            texts += [rec.get("caption", "")] + [
                f"{o['name']} {o.get('description') or ''}" for o in rec["objects"]
            ]
            texts += [r["predicate"] for r in rec["relations"]]
        texts += ["Object1 is object2.", "N/A", *QUADRANTS, "Describe the image briefly."]
        self.tokenizer = build_tokenizer(texts)
        self.eval_items: dict[str, list[dict[str, Any]]] = {}
        for split in dict.fromkeys((hp.val_split, hp.test_split)):  # once when val and test are one split
            # each split's own stream: its prompts do not depend on the other split (or on set order)
            rng = np.random.default_rng([hp.seed, zlib.crc32(split.encode())])
            rec = rec_eval_items(read_refcoco(hp.refcoco_root, split), rng)[: hp.val_per_task]
            recs = read_pink_jsonl(root / f"{split}.jsonl")
            rc = rc_eval_items(recs, rng)
            count = [x for x in rc if x["task"] == "count"][: hp.val_per_task]
            rel = [x for x in rc if x["task"] == "relation"][: hp.val_per_task]
            self.eval_items[split] = rec + count + rel

    def _loader(self, ds: Dataset, shuffle: bool, left: bool, batch_size: int) -> DataLoader:
        pad = self.tokenizer.pad_token_id
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=lambda b: collate(b, pad, left),
            drop_last=shuffle,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if hp.stage in (0, 1):
            ds: Dataset = CaptionDataset(
                self.captions, self.images, self.tokenizer, hp.num_patches, hp.max_length, hp.stage
            )
        else:
            ds = RCTrainDataset(
                self.train_records,
                self.images,
                self.tokenizer,
                hp.num_patches,
                hp.max_length,
                self.tasks,
                hp.task_weights,
                hp.seed,
            )
            if self.trainer is not None:
                ds.epoch = self.trainer.current_epoch
        self.train_dataset = ds
        return self._loader(ds, True, False, hp.batch_size)

    def _eval_loader(self, split: str) -> DataLoader:
        items = self.eval_items[split]
        stores = {"rec": self.ref_images}
        ds = _MixedEval(
            items,
            {k: stores.get(k, self.images) for k in ("rec", "count", "relation")},
            self.tokenizer,
            self.hparams.num_patches,
        )
        return self._loader(ds, False, True, self.hparams.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.hparams.val_split)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.hparams.test_split)


class _MixedEval(EvalDataset):
    """Eval items whose images live in different roots (RefCOCO for REC, the Pink sources for the rest)."""

    def __init__(self, items, stores, tok, num_patches) -> None:  # noqa: ANN001
        super().__init__(items, None, tok, num_patches)
        self.stores = stores

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        ids = chat_prompt(self.tok, it["instruction"], self.num_patches)
        return {**it, "input_ids": ids, "pixel_values": self.stores[it["task"]](it["image"])}
