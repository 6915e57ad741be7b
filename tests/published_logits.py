"""The published models' fp32 logits on the full MNIST test set, computed once per session.

tests/test_fast_predict.py compares the fast path with them, tests/test_export.py the exported
ONNX files, tests/test_pretrained.py and tests/test_releases.py the cards; MiniVGG alone takes
tens of seconds in fp32 on a small CPU, so they share one computation per weights file (a
release folder that copies another tag's file shares that file's).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

import mnist_zoo
from mnist_zoo.hub import sha256_file
from mnist_zoo.inference.batched import batched_logits
from mnist_zoo.models import DEFAULT_RELEASE

HUB = Path(__file__).resolve().parents[1] / "hub"


def folder_of(name: str) -> Path:
    """hub/NAME for ``"name"`` or ``"name@<default release>"``, else hub/TAG/NAME."""
    base, _, tag = name.partition("@")
    return HUB / base if tag in ("", DEFAULT_RELEASE) else HUB / tag / base


@functools.cache
def published_model(name: str) -> nn.Module:
    """The model of hub/NAME (or of ``"name@tag"``'s folder), in eval mode (shared: do not
    modify it)."""
    return mnist_zoo.load_pretrained(folder_of(name)).eval()


@functools.cache
def mnist_test_set(root: Path) -> mnist_zoo.MNIST:
    return mnist_zoo.MNIST(root, split="test")


@functools.cache
def _weights_sha256(folder: Path) -> str:
    return sha256_file(folder / "model.safetensors")


#: Logits by (the weights' SHA-256, data folder): a tag that copies another's file reuses them.
_LOGITS: dict[tuple[str, Path], torch.Tensor] = {}


def fp32_logits(name: str, root: Path) -> torch.Tensor:
    """The exact fp32 logits of hub/NAME (or of ``"name@tag"``'s folder) on the full test set
    in ``root`` (shared: do not modify)."""
    key = (_weights_sha256(folder_of(name)), root)
    if key not in _LOGITS:
        images = mnist_test_set(root).images
        # Batches of 32, below CPU_MAX_BATCH: each runs whole, its activations in the caches.
        _LOGITS[key] = batched_logits(published_model(name), images, batch_size=32)
    return _LOGITS[key]
