"""PinkLitModule: stage wiring, the loss, evaluation bookkeeping and the optimiser groups."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pink_rc.data import PinkDataModule
from pink_rc.metrics import format_box
from pink_rc.model import PinkConfig
from pink_rc.module import PinkLitModule

from .conftest import TINY_LLM, TINY_VISION


def _setup(
    toy_roots: tuple[Path, Path], stage: int = 2, **kw: object
) -> tuple[PinkLitModule, PinkDataModule]:
    pink, ref = toy_roots
    dm = PinkDataModule(stage=stage, root=str(pink), refcoco_root=str(ref), image_size=32, num_patches=16,
                        batch_size=4, eval_batch_size=8, val_per_task=10, max_length=200)  # fmt: skip
    dm.setup("fit")
    cfg = PinkConfig(
        llm_config=dict(TINY_LLM), vision_config=dict(TINY_VISION), adapter_rank=4, toy_clip_dim=8
    )
    lit = PinkLitModule(cfg, stage=stage, **kw)
    lit.tokenizer = dm.tokenizer
    lit.configure_model()
    return lit, dm


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_training_step_gives_a_finite_loss_that_backpropagates(
    toy_roots: tuple[Path, Path], stage: int
) -> None:
    lit, dm = _setup(toy_roots, stage)
    dm.trainer = None
    batch = next(iter(dm.train_dataloader()))
    lit.log = lambda *a, **k: None
    loss = lit.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n.split(".")[0] for n, p in lit.model.named_parameters() if p.grad is not None}
    assert grads == {0: {"vision", "toy_clip"}, 1: {"projector"}, 2: {"projector", "adapters", "llm"}}[stage]


def _perfect(task: str, target: object, size: tuple[int, int]) -> str:
    if task == "rec":
        return format_box(target, *size)
    return str(target) if task == "count" else f"Object1 is {target} object2."


def test_perfect_answers_score_one_and_garbage_counts_as_format_errors(toy_roots: tuple[Path, Path]) -> None:
    lit, dm = _setup(toy_roots)
    for batch in dm.val_dataloader():
        answers = [_perfect(*x) for x in zip(batch["task"], batch["target"], batch["size"], strict=True)]
        lit.generate_text = lambda b, answers=answers: answers
        lit._eval_step(batch)
    assert {"rec_hit", "count_hit", "relation_hit"} <= set(lit._eval)
    assert all(v == 1.0 for k, vals in lit._eval.items() if k.endswith("hit") for v in vals)
    assert sum(lit._eval["format_error"]) == 0
    lit._eval = {}
    batch = next(iter(dm.val_dataloader()))
    lit.generate_text = lambda b: ["[0.1, oops"] * len(b["task"])
    lit._eval_step(batch)
    assert all(v == 1.0 for v in lit._eval["format_error"]) and not any(lit._eval["rec_hit"])


def test_chance_level_is_the_random_object_box_baseline(toy_roots: tuple[Path, Path]) -> None:
    lit, dm = _setup(toy_roots)
    lit.trainer = None
    lit._trainer = SimpleNamespace(datamodule=dm)  # what Lightning sets before setup
    lit.setup("fit")
    assert 0.2 < lit.chance_level < 0.6


def test_optimiser_keeps_decay_off_the_embedding_matrices(toy_roots: tuple[Path, Path]) -> None:
    lit, _ = _setup(toy_roots, weight_decay=0.02)
    lit._trainer = SimpleNamespace(estimated_stepping_batches=100)
    opt = lit.configure_optimizers()["optimizer"]
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(lit.model.llm.get_input_embeddings().weight) not in decayed
    assert id(lit.model.adapters["llm_0"].down.weight) in decayed
