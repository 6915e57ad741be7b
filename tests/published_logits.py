"""The published models' fp32 logits on the full MNIST test set, computed once per session.

tests/test_fast_predict.py compares the fast path with them and tests/test_export.py the
exported ONNX files; MiniVGG alone takes tens of seconds in fp32 on a small CPU, so the two
share one computation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

import mnist_zoo
from mnist_zoo.inference.batched import batched_logits

HUB = Path(__file__).resolve().parents[1] / "hub"


@functools.cache
def published_model(name: str) -> nn.Module:
    """The model of hub/NAME, in eval mode (shared: do not modify it)."""
    return mnist_zoo.load_pretrained(HUB / name).eval()


@functools.cache
def mnist_test_set(root: Path) -> mnist_zoo.MNIST:
    return mnist_zoo.MNIST(root, split="test")


@functools.cache
def fp32_logits(name: str, root: Path) -> torch.Tensor:
    """hub/NAME's exact fp32 logits on the full test set in ``root`` (shared: do not modify)."""
    return batched_logits(published_model(name), mnist_test_set(root).images, batch_size=500)
