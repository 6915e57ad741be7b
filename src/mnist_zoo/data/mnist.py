"""The MNIST dataset as the study prepared it, read straight from the IDX files.

```python
from mnist_zoo.data import MNIST
train = MNIST(split="train", download=True)  # root: $MNIST_ZOO_DATA or ~/.cache/mnist_zoo/mnist
image, label = train[0]                      # float32 (1, 28, 28) in [0, 1], int64 0-d tensor
```
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .idx import read_idx

__all__ = [
    "DATA_ENV_VAR",
    "MNIST",
    "SPLITS",
    "MNISTFormatError",
    "MNISTNotFoundError",
    "candidate_names",
    "default_root",
    "find_mnist_file",
]

#: Environment variable naming the folder that holds the MNIST files.
DATA_ENV_VAR = "MNIST_ZOO_DATA"
#: The valid values of ``split``.
SPLITS = ("train", "test")
_PREFIXES = {"train": "train", "test": "t10k"}
_IDX_SUFFIXES = {"images": "idx3", "labels": "idx1"}
_IMAGE_SIZE = (28, 28)


class MNISTFormatError(ValueError):
    """The MNIST files were read as IDX but do not hold a valid MNIST split."""


class MNISTNotFoundError(FileNotFoundError):
    """The MNIST files are not in the folder; the message lists the names looked for."""


def default_root() -> Path:
    """Return the folder MNIST is read from when no root is given.

    Returns:
        ``$MNIST_ZOO_DATA`` when that variable is set and not empty, else
        ``~/.cache/mnist_zoo/mnist``.
    """
    from_env = os.environ.get(DATA_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "mnist_zoo" / "mnist"


def candidate_names(split: str, kind: str) -> list[str]:
    """Return the file names accepted for one MNIST file, in the order they are looked for.

    Both namings in circulation are accepted: the original distribution's
    (``train-images-idx3-ubyte``, optionally ``.gz``) and Kaggle's
    (``train-images.idx3-ubyte``). Plain files come first because they read faster.

    Args:
        split: ``"train"`` or ``"test"``.
        kind: ``"images"`` or ``"labels"``.

    Returns:
        The four candidate names, e.g. for the test labels ``t10k-labels-idx1-ubyte``,
        ``t10k-labels.idx1-ubyte``, ``t10k-labels-idx1-ubyte.gz``, ``t10k-labels.idx1-ubyte.gz``.
    """
    _check_split(split)
    if kind not in _IDX_SUFFIXES:
        raise ValueError(f"Unknown kind {kind!r}; valid kinds are 'images', 'labels'")
    stem = f"{_PREFIXES[split]}-{kind}"
    suffix = _IDX_SUFFIXES[kind]
    original, kaggle = f"{stem}-{suffix}-ubyte", f"{stem}.{suffix}-ubyte"
    return [original, kaggle, f"{original}.gz", f"{kaggle}.gz"]


def find_mnist_file(root: str | os.PathLike[str], split: str, kind: str) -> Path | None:
    """Return the first of :func:`candidate_names` that exists in ``root``, or ``None``.

    Args:
        root: The folder to look in.
        split: ``"train"`` or ``"test"``.
        kind: ``"images"`` or ``"labels"``.
    """
    for name in candidate_names(split, kind):
        path = Path(root) / name
        if path.is_file():
            return path
    return None


def _locate(root: Path, split: str, kind: str) -> Path:
    path = find_mnist_file(root, split, kind)
    if path is None:
        names = ", ".join(candidate_names(split, kind))
        raise MNISTNotFoundError(
            f"MNIST {split} {kind} not found in {root} (looked for {names}). "
            f"Pass download=True, or set {DATA_ENV_VAR} to a folder holding the files."
        )
    return path


def _check_split(split: str) -> None:
    if split not in SPLITS:
        valid = ", ".join(repr(s) for s in SPLITS)
        raise ValueError(f"Unknown split {split!r}; valid splits are {valid}")


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
        ValueError: ``split`` is not one of :data:`SPLITS`.
        MNISTNotFoundError: A file is missing and ``download`` is false.
        IDXFormatError: A file is not valid IDX.
        MNISTFormatError: The files are valid IDX but not a valid MNIST split.
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
        _check_split(split)
        self.split = split
        self.root = default_root() if root is None else Path(root).expanduser()
        if download:
            # Imported here, not at the top: download.py builds on this module's file naming.
            from .download import download_mnist

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
        """Return image ``index`` as float32 (1, 28, 28) in [0, 1] and its label as a 0-d long."""
        return self.images[index].float().div_(255), self.targets[index]

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
