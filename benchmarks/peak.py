"""The machine's practical peak: the GFLOP/s of a large matrix multiply, timed in the same run.

``throughput.py`` and ``inference.py`` state what share of it a model reaches.
"""

from __future__ import annotations

import time

import torch


def matmul_gflops(dtype: torch.dtype, seconds: float) -> float:
    """GFLOP/s of a 2048 x 2048 matrix multiply in ``dtype``, after one warm-up multiply.

    Args:
        dtype: The precision, e.g. ``torch.float32`` or ``torch.bfloat16``.
        seconds: How long to keep multiplying.

    Returns:
        The rate, in GFLOP/s.
    """
    n = 2048
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9
