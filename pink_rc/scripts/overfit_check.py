"""Sanity check of the whole toy path: can the tiny model memorise a few grounding examples?

``python -m pink_rc.scripts.overfit_check [--n 16] [--steps 400]`` trains the tiny stage-2 model (vision tower
included) on ``n`` fixed VisualGrounding prompts of the toy train split, then decodes them greedily and prints
the train-set REC accuracy. 1.0 shows that prompts, labels, the image slot, generation and parsing work
end to end, so a toy run that stays at the constant-box prior is a learning problem, not a plumbing one.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pink_rc.data import chat_prompt, collate, make_task, with_answer
from pink_rc.metrics import iou, parse_box
from pink_rc.model import IM_PATCH, PinkConfig, PinkModel
from pink_rc.scripts.grounding_probe import TINY_LLM, TINY_VISION, toy_data


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--steps", type=int, default=400)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dm = toy_data("data/toy/pink_rc", 1500, {"min_objects": 2, "max_objects": 4, "large_prob": 0.8})
    tok = dm.tokenizer
    model = PinkModel(
        PinkConfig(
            llm_config={**TINY_LLM, "vocab_size": tok.num_orig_tokens},
            vision_config=TINY_VISION,
            adapter_rank=4,
        ),
        len(tok),
        tok.num_orig_tokens,
    )
    model.set_trainable(2, train_llm=True)
    model.vision.requires_grad_(True)
    rng = np.random.default_rng(0)
    items = []
    for rec in dm.train_records[: args.n]:
        q, a = make_task(rec, "VisualGrounding", rng)
        ids, labels = with_answer(tok, chat_prompt(tok, q, 64), a)
        items.append(
            {"input_ids": ids, "labels": labels, "pixel_values": dm.images(rec["image"]), "q": q, "a": a}
        )
    batch = collate([{k: it[k] for k in ("input_ids", "labels", "pixel_values")} for it in items], 0)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=2e-3)
    im = tok.convert_tokens_to_ids(IM_PATCH)
    for step in range(args.steps):
        loss = model(
            batch["input_ids"], batch["attention_mask"], batch["pixel_values"], im, batch["labels"]
        ).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    model.eval()
    prompts = collate(
        [{"input_ids": chat_prompt(tok, it["q"], 64), "pixel_values": it["pixel_values"]} for it in items],
        0,
        left=True,
    )
    out = model.generate(
        prompts["input_ids"], prompts["attention_mask"], prompts["pixel_values"], im, tok.eos_token_id, 28
    )
    texts = tok.batch_decode(out, skip_special_tokens=True)
    hits = [iou(parse_box(t, 64, 64)[0], parse_box(it["a"], 64, 64)[0]) > 0.5 for t, it in zip(texts, items)]
    acc = sum(hits) / len(hits)
    print(f"train-set REC accuracy after {args.steps} steps on {args.n} prompts: {acc:.2f}")
    return acc


if __name__ == "__main__":
    main()
