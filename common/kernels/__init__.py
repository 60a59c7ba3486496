"""Fused GPU kernels behind the APIs of ``common`` (Triton), each with a pure-PyTorch path for CPU.

``contrastive_triton`` holds the tiled bidirectional InfoNCE statistics and gradients used by
:mod:`common.contrastive` on CUDA. Importing this package never imports Triton; :func:`triton_available`
says whether the kernels can be used.
"""

from __future__ import annotations

import functools
import importlib.util

__all__ = ["triton_available"]


@functools.cache
def triton_available() -> bool:
    """True when Triton is importable (kernels run on CUDA, or on CPU under the interpreter)."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
    except Exception:  # a broken or mismatched install must not break the PyTorch path
        return False
    return True
