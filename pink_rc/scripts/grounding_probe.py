"""Toy diagnostic: how fast does the tiny model learn VisualGrounding, and what holds it back?

``python -m pink_rc.scripts.grounding_probe [--min-objects 1 --max-objects 1] [--lr 5e-4] [--steps 3000]``
writes (once) a toy ``pink_rc`` dataset with the given object counts, then trains the tiny model of
``tiny.yaml`` (every weight trainable, the vision tower included; no stage 0/1) on VisualGrounding prompts of
random training images, and every ``--every`` steps decodes 100 validation and 100 training prompts greedily
and prints REC accuracy at IoU > 0.5. Not Pink's recipe: a probe of learnability, one knob at a time.

Also: ``--train-images N`` (a subset), ``--val-root`` (validate on another probe folder, e.g. 2-4 objects
while training on 1-4), ``--turns K`` (K grounding turns per conversation), ``--layers``, ``--heads``,
``--hidden``, ``--rope-theta``, ``--init-range`` (the LLM's init std), ``--caption-steps`` with
``--position-captions`` (a caption warm-up first), and two diagnostics that leave Pink's recipe on purpose:
``--prompt question-first`` (the instruction before the image) and ``--oracle-words`` (each patch inside an
object also carries the LLM's embeddings of that object's colour and shape words). Train REC is scored on
training images with at least two objects (when there are any), like the 2-4-object val images.
Results: ``pink_rc/README.md``, "Grounding probes".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from pink_rc.data import (
    INST_END,
    ImageStore,
    PinkDataModule,
    caption_prompt,
    chat_prompt,
    collate,
    conversation,
    encode,
    make_task,
    read_pink_jsonl,
    with_answer,
)
from pink_rc.metrics import iou, parse_box
from pink_rc.model import IM_PATCH, PinkConfig, PinkModel

# The tiny model's sizes, read from tiny.yaml so the probe and the toy run cannot drift apart.
_TINY = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml").read_text())["model"]
TINY_LLM, TINY_VISION = _TINY["config"]["llm_config"], _TINY["config"]["vision_config"]


def toy_data(root: str, num: int, options: dict) -> PinkDataModule:
    """The stage-2 DataModule over toy data in ``root`` (the ``pink_rc`` and ``refcoco`` writers, once)."""
    dm = PinkDataModule(stage=2, root=root, refcoco_root=root + "_refcoco", toy=True, toy_num=num,
                        toy_options=options, image_size=64, num_patches=64, max_length=256)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    return dm


def grounding_items(records: list[dict], rng: np.random.Generator) -> list[tuple[dict, str, str]]:
    """One (record, instruction, answer) VisualGrounding draw per record that has a described object."""
    out = []
    for rec in records:
        pair = make_task(rec, "VisualGrounding", rng)
        if pair is not None:
            out.append((rec, *pair))
    return out


def expression_kind(question: str) -> str:
    """``colour``, ``shape``, ``colour+shape`` or ``other``: what a toy expression names."""
    from common.toyworld.scene import COLOURS, SHAPES

    words = set(question.replace("<des>", " ").replace("</des>", " ").split())
    kind = "+".join(k for k, vocab in (("colour", COLOURS), ("shape", SHAPES)) if words & set(vocab))
    return kind or "other"


def question_first_prompt(tok, instruction: str, num_patches: int) -> list[int]:  # noqa: ANN001
    """Diagnostic only (not Pink's template): the instruction before the image, so a patch can see it."""
    im = tok.convert_tokens_to_ids(IM_PATCH)
    return (
        [tok.bos_token_id]
        + encode(tok, "[INST] " + instruction + "\n")
        + encode(tok, "Image: ")
        + [im] * num_patches
        + encode(tok, INST_END)
    )


PROMPT = {"pink": chat_prompt, "question-first": question_first_prompt}


def oracle_word_ids(tok, rec: dict, grid: int = 8, cell: int = 8) -> torch.Tensor:  # noqa: ANN001
    """Diagnostic: ``(grid * grid, 2)`` token ids of the colour and shape words of the object whose box holds
    each patch centre (the last such object in the record wins), -1 where none."""
    out = torch.full((grid * grid, 2), -1, dtype=torch.long)
    for o in rec["objects"]:
        colour, shape = o["name"].split()
        x0, y0, x1, y1 = o["bbox"]
        for i in range(grid):
            for j in range(grid):
                cx, cy = j * cell + cell / 2, i * cell + cell / 2
                if x0 <= cx <= x1 and y0 <= cy <= y1:
                    out[i * grid + j] = torch.tensor(tok.convert_tokens_to_ids([colour, shape]))
    return out


def add_oracle_words(model: PinkModel) -> None:
    """Diagnostic: the projected patches plus the LLM's own input embeddings of their object's colour and
    shape words (``model.oracle_ids``, set per batch), i.e. vision features already aligned with the words."""
    base = model.image_features

    def image_features(pixel_values: torch.Tensor) -> torch.Tensor:
        ids = model.oracle_ids
        emb = (model.llm.get_input_embeddings()(ids.clamp(min=0)) * (ids >= 0).unsqueeze(-1)).sum(2)
        feats = base(pixel_values)  # the words scaled to the patch's norm, so they are not swamped
        scale = feats.norm(dim=-1, keepdim=True) / emb.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        return feats + emb * scale.detach()

    model.image_features = image_features


def rec_accuracy(  # noqa: ANN001
    model: PinkModel, tok, items, images: ImageStore, im: int, prompt=chat_prompt, oracle: bool = False
) -> dict[str, float]:
    """Greedy REC of ``(record, question, answer)`` items.

    ``rec``: IoU > 0.5 (a malformed answer wrong); ``object``: the answer overlaps the described object more
    than any other object of the image (binding, whatever the box precision); ``rec/<kind>`` per
    :func:`expression_kind`. ``prompt`` builds each prompt; ``oracle``: the model has
    :func:`add_oracle_words`.
    """
    model.eval()
    if oracle:
        model.oracle_ids = torch.stack([oracle_word_ids(tok, r) for r, _, _ in items])
    batch = collate(
        [
            {"input_ids": prompt(tok, q, model.num_patches), "pixel_values": images(r["image"])}
            for r, q, _ in items
        ],
        tok.pad_token_id,
        left=True,
    )
    with torch.no_grad():
        out = model.generate(
            batch["input_ids"], batch["attention_mask"], batch["pixel_values"], im, tok.eos_token_id, 28
        )
    hits, right, kinds = [], [], {}
    for text, (r, q, ans) in zip(tok.batch_decode(out, skip_special_tokens=True), items, strict=True):
        box, err = parse_box(text, r["width"], r["height"])
        target = parse_box(ans, r["width"], r["height"])[0]
        hit = not err and iou(box, target) > 0.5
        hits.append(hit)
        kinds.setdefault(expression_kind(q), []).append(hit)
        if not err:
            best = max(r["objects"], key=lambda o: iou(box, o["bbox"]))
            right.append(iou(box, best["bbox"]) > 0 and iou(best["bbox"], target) > 0.99)
        else:
            right.append(False)
    model.train()
    out = {"rec": float(np.mean(hits)), "object": float(np.mean(right))}
    return out | {f"rec/{k}": float(np.mean(v)) for k, v in sorted(kinds.items())}


def main(argv: list[str] | None = None) -> dict[int, tuple[float, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--root", default=None, help="toy data folder (default data/toy/pink_rc_probe_<min>-<max>)"
    )
    p.add_argument(
        "--val-root",
        default=None,
        help="validation data of another probe folder (e.g. 2-4 objects "
        "while training on 1-4); '' evaluates on the training images only",
    )
    p.add_argument("--num", type=int, default=1500, help="toy images (80 %% train)")
    p.add_argument("--min-objects", type=int, default=2)
    p.add_argument("--max-objects", type=int, default=4)
    p.add_argument("--train-images", type=int, default=0, help="> 0: train on the first N images only")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--sincos", type=float, default=1.0, help="model.config.toy_pos_sincos (0: CLIP's init)")
    p.add_argument("--position-captions", action="store_true", help="writer option position_captions")
    p.add_argument("--caption-steps", type=int, default=0, help="first train on the (position) captions")
    p.add_argument("--turns", type=int, default=1, help="grounding turns per training conversation")
    p.add_argument("--layers", type=int, default=2, help="toy LLM layers")
    p.add_argument("--heads", type=int, default=4, help="toy LLM attention heads")
    p.add_argument("--hidden", type=int, default=0, help="> 0: toy LLM width (MLP 2.7x), else tiny.yaml's")
    p.add_argument("--rope-theta", type=float, default=10000.0, help="toy LLM RoPE base")
    p.add_argument("--prompt", choices=tuple(PROMPT), default="pink", help="question-first: a diagnostic")
    p.add_argument("--init-range", type=float, default=0.0, help="> 0: the toy LLM's initializer_range")
    p.add_argument("--oracle-words", action="store_true", help="diagnostic: see add_oracle_words")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    root = args.root or f"data/toy/pink_rc_probe_{args.min_objects}-{args.max_objects}"
    opts = {"min_objects": args.min_objects, "max_objects": args.max_objects, "large_prob": 0.8}
    if args.position_captions:
        opts["position_captions"] = True
    dm = toy_data(root, args.num, opts)
    tok = dm.tokenizer
    cfg = PinkConfig(
        llm_config={
            **TINY_LLM,
            "vocab_size": tok.num_orig_tokens,
            "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads,
            "rope_theta": args.rope_theta,
            **({"initializer_range": args.init_range} if args.init_range else {}),
            **(
                {"hidden_size": args.hidden, "intermediate_size": args.hidden * 27 // 10}
                if args.hidden
                else {}
            ),
        },
        vision_config=TINY_VISION,
        adapter_rank=4,
        toy_pos_sincos=args.sincos,
    )
    model = PinkModel(cfg, len(tok), tok.num_orig_tokens)
    model.set_trainable(2, train_llm=True, train_vision=True)
    if args.oracle_words:
        add_oracle_words(model)
    im, P = tok.convert_tokens_to_ids(IM_PATCH), model.num_patches
    rng = np.random.default_rng(args.seed)
    train = [r for r in dm.train_records if any(o.get("description") for o in r["objects"])]
    if args.train_images:
        train = train[: args.train_images]
    eval_rng = np.random.default_rng(1234)
    # train prompts scored like the val ones: on images with >= 2 objects when there are such images
    multi = [r for r in train if len(r["objects"]) >= 2] or train
    train_items = grounding_items(multi[:100], eval_rng)
    val_items, val_images = train_items, dm.images
    if args.val_root != "":
        vroot = Path(args.val_root or root)
        val_items = grounding_items(read_pink_jsonl(vroot / "val.jsonl")[:100], eval_rng)
        val_images = ImageStore(vroot, 64)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))
    results, t0 = {}, time.time()
    caps = [(c["image"], c["conversations"][-1]["value"]) for c in dm.captions]
    for step in range(1 - args.caption_steps, args.steps + 1):
        rows, recs = [], []
        for i in rng.integers(len(caps) if step <= 0 else len(train), size=args.batch_size):
            if step <= 0:  # caption warm-up: the image, then its caption
                image, (ids, labels) = caps[i][0], with_answer(tok, caption_prompt(tok, P), caps[i][1])
            else:
                (_, q, ans), *more = grounding_items([train[i]] * args.turns, rng)
                more = [(q2, a2) for _, q2, a2 in more]
                image, (ids, labels) = (
                    train[i]["image"],
                    conversation(tok, PROMPT[args.prompt](tok, q, P), ans, more),
                )
            rows.append({"input_ids": ids, "labels": labels, "pixel_values": dm.images(image)})
            recs.append(train[i] if step > 0 else {"objects": []})
        if args.oracle_words:
            model.oracle_ids = torch.stack([oracle_word_ids(tok, r) for r in recs])
        b = collate(rows, tok.pad_token_id)
        loss = model(b["input_ids"], b["attention_mask"], b["pixel_values"], im, b["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step > 0 and (step % args.every == 0 or step == args.steps):
            prompt, oracle = PROMPT[args.prompt], args.oracle_words
            scores = rec_accuracy(model, tok, val_items, val_images, im, prompt, oracle)
            tr_scores = rec_accuracy(model, tok, train_items, dm.images, im, prompt, oracle)
            val, tr = scores["rec"], tr_scores["rec"]
            results[step] = (val, tr)
            print(
                f"step {step}: loss {loss.item():.3f}, val REC {val:.2f}, train REC {tr:.2f} "
                f"({time.time() - t0:.0f} s); right object val {scores['object']:.2f} "
                f"train {tr_scores['object']:.2f}; "
                "val by expression: "
                + ", ".join(f"{k[4:]} {v:.2f}" for k, v in scores.items() if k.startswith("rec/")),
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
