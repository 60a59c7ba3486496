"""Root test configuration: offline hubs, no W&B, GPU and data tiers, and the DDP teardown fix."""

from __future__ import annotations

import os

# Set before any test module imports transformers, huggingface_hub or wandb: a hub call otherwise
# hangs for about 47 s before failing on a machine with no network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _destroy_process_group():
    """Destroy a process group a test left behind, so the next test and the interpreter exit cleanly."""
    yield
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
