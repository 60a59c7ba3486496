"""Shared tiny fixtures for the pink_rc tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from pink_rc.model import PinkConfig

TINY_LLM = dict(
    vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=256,
)  # fmt: skip
TINY_VISION = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)


def tiny_config(**kw: object) -> PinkConfig:
    return PinkConfig(llm_config=dict(TINY_LLM), vision_config=dict(TINY_VISION), adapter_rank=4, **kw)


@pytest.fixture(scope="session")
def toy_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from common.toyworld import generate

    base = tmp_path_factory.mktemp("pink_toy")
    pink = generate("pink_rc", base / "pink", num=40, seed=0, size=32)
    ref = generate("refcoco", base / "refcoco", num=40, seed=0, size=32)
    return pink, ref
