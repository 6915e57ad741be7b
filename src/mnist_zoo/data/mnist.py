"""The MNIST dataset as the study prepared it, read straight from the IDX files.

```python
from mnist_zoo.data import MNIST
train = MNIST(split="train", download=True)  # root: $MNIST_ZOO_DATA or ~/.cache/mnist_zoo/mnist
image, label = train[0]                      # float32 (1, 28, 28) in [0, 1], int64 0-d tensor
```
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ImageError, MNISTFormatError, MNISTNotFoundError
from .download import download_mnist
from .files import (
    DATA_ENV_VAR,
    SPLITS,
    _locate,
    _resolve_root,
    candidate_names,
    check_split,
    default_root,
    find_mnist_file,
)
from .idx import read_idx

__all__ = [
    "DATA_ENV_VAR",
    "MNIST",
    "SPLITS",
    "MNISTFormatError",
    "MNISTNotFoundError",
    "candidate_names",
    "check_pixels",
    "default_root",
    "find_mnist_file",
    "to_float_images",
]

_IMAGE_SIZE = (28, 28)


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """Images as the models take them: float, with uint8 pixels scaled from 0-255 to [0, 1].

    This is the package's one uint8-to-float conversion: the dataset's items, the Trainer's
    batches, :func:`mnist_zoo.evaluate_model` and :func:`mnist_zoo.predict` all go through it.

    Args:
        images: A tensor of any shape: uint8 0-255 (MNIST's storage), or already float.

    Returns:
        A float32 tensor of the same shape: uint8 divided by 255, anything else cast to float
        as it is (a float32 tensor is returned unchanged, not copied).
    """
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def check_pixels(images: torch.Tensor, *, tolerance: float = 1e-6) -> None:
    """Refuse pixels outside the package's convention, without converting them.

    Args:
        images: Pixels of any shape: uint8 0-255 or bool pass as they are; float must be in
            [0, 1], within ``tolerance``.
        tolerance: How far outside [0, 1] a float may be: by default a float round-off from
            the caller's own scaling. The models' own check allows 0.5, to refuse only images
            in another convention (0-255, standardised, [-1, 1]).

    Raises:
        TypeError: An integer dtype other than uint8.
        ImageError: Float values that are NaN, infinite or outside [0, 1] (a ``ValueError``).
    """
    if images.dtype in (torch.uint8, torch.bool) or images.numel() == 0:
        return
    if not images.is_floating_point():
        raise TypeError(
            f"Integer images must be uint8 (0-255), got {images.dtype}. Convert with "
            ".astype(np.uint8) / .to(torch.uint8), or divide by 255 for floats in [0, 1]."
        )
    # One pass: aminmax propagates NaN, and an infinity is the min or the max.
    low, high = (float(v) for v in torch.aminmax(images.float()))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ImageError("Images contain NaN or infinite values.")
    if low < -tolerance or high > 1 + tolerance:
        hint = (
            " Divide 0-255 values by 255."
            if high <= 255 and low >= 0
            else " Pass pixels in [0, 1]: the models standardise images themselves."
        )
        raise ImageError(f"Float images must be in [0, 1], got values in [{low}, {high}].{hint}")


class MNIST(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """One split of MNIST, loaded whole into memory on construction.

    Items are ``(image, label)``: the image a float32 tensor of shape (1, 28, 28) scaled to
    [0, 1], the label a 0-d ``torch.long`` tensor. Standardisation is left to the models.

    Attributes:
        images: All images as uint8, shape (N, 1, 28, 28).
        targets: All labels as int64, shape (N,).
        classes: The class names, ``"0 - zero"`` to ``"9 - nine"`` as in torchvision.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: The folder the files were read from.

    Args:
        root: Folder holding the IDX files under either naming (see :func:`candidate_names`),
            plain or gzip. Defaults to :func:`default_root`.
        split: ``"train"`` or ``"test"``.
        download: Fetch missing files into ``root`` first (see
            :func:`mnist_zoo.data.download_mnist`).

    Raises:
        InvalidArgumentError: ``split`` is not one of :data:`SPLITS` (a ``ValueError``).
        MNISTNotFoundError: A file is missing and ``download`` is false.
        DownloadError: ``download`` is true and no mirror delivered a missing file.
        IDXFormatError: A file is not valid IDX.
        MNISTFormatError: The files are valid IDX but not a valid MNIST split (no images, a
            shape other than (N, 28, 28), labels outside 0-9, counts that differ).
    """

    classes: list[str] = [
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ]

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        download: bool = False,
    ) -> None:
        check_split(split)
        self.split = split
        self.root = _resolve_root(root)
        if download:
            download_mnist(self.root)
        images_path = _locate(self.root, split, "images")
        labels_path = _locate(self.root, split, "labels")
        images, labels = read_idx(images_path), read_idx(labels_path)
        _validate(images, images_path, labels, labels_path)
        self.images = torch.from_numpy(images).unsqueeze(1)
        self.targets = torch.from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        """Return the number of images in the split."""
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return one item of the split.

        Args:
            index: Position of the image, as for a list (negative counts from the end).

        Returns:
            The image as float32 (1, 28, 28) in [0, 1] and its label as a 0-d long tensor.
        """
        return to_float_images(self.images[index]), self.targets[index]

    def __repr__(self) -> str:
        return f"MNIST(split={self.split!r}, root='{self.root}', n={len(self)})"


def _validate(images: np.ndarray, images_path: Path, labels: np.ndarray, labels_path: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != _IMAGE_SIZE:
        raise MNISTFormatError(
            f"{images_path}: expected uint8 images of 28x28 pixels, shape (N, 28, 28); "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise MNISTFormatError(
            f"{labels_path}: expected uint8 labels of shape (N,); "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if len(images) == 0:
        # Valid IDX, but nothing to train or evaluate on: every metric would divide by zero.
        raise MNISTFormatError(f"{images_path}: {images_path.name} holds no images")
    if len(images) != len(labels):
        raise MNISTFormatError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} holds "
            f"{len(labels)} labels (in {images_path.parent})"
        )
    bad = labels > 9
    if bad.any():
        first = int(np.argmax(bad))
        raise MNISTFormatError(
            f"{labels_path}: labels must be 0-9, found {int(labels[first])} at index {first} "
            f"({int(bad.sum())} labels out of range)"
        )
