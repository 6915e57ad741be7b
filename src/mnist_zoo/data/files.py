"""Where the MNIST files are and what they are called, and the pixel statistics of the data.

Both the dataset (:mod:`mnist_zoo.data.mnist`) and the downloader
(:mod:`mnist_zoo.data.download`) build on this module, so neither needs the other.

```python
from mnist_zoo.data import candidate_names, default_root, find_mnist_file
find_mnist_file(default_root(), "test", "labels")   # Path(...) or None
candidate_names("test", "labels")[0]                # 't10k-labels-idx1-ubyte'
```
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidArgumentError, MNISTNotFoundError

__all__ = [
    "DATA_ENV_VAR",
    "KINDS",
    "MNIST_MEAN",
    "MNIST_STD",
    "SPLITS",
    "SPLIT_SIZES",
    "candidate_names",
    "check_split",
    "default_root",
    "find_mnist_file",
    "require_mnist",
]

#: Environment variable naming the folder that holds the MNIST files.
DATA_ENV_VAR = "MNIST_ZOO_DATA"
#: The valid values of ``split``.
SPLITS = ("train", "test")
#: The valid values of ``kind``: each split is one file of images and one of labels.
KINDS = ("images", "labels")
#: The number of images in each split, as MNIST publishes them.
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
#: Pixel mean and std of MNIST's 60,000 training images scaled to [0, 1]; the models
#: standardise with them and :func:`mnist_zoo.data.check_mnist` verifies them.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_PREFIXES = {"train": "train", "test": "t10k"}
_IDX_SUFFIXES = {"images": "idx3", "labels": "idx1"}


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


def _resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` as a path with ``~`` expanded, or :func:`default_root` for ``None``."""
    return default_root() if root is None else Path(root).expanduser()


def check_split(split: str) -> None:
    """Raise unless ``split`` is one of :data:`SPLITS`.

    Args:
        split: The split name to check.

    Raises:
        InvalidArgumentError: ``split`` is not ``"train"`` or ``"test"`` (a ``ValueError``).
    """
    if split not in SPLITS:
        valid = ", ".join(repr(s) for s in SPLITS)
        raise InvalidArgumentError(f"Unknown split {split!r}; valid splits are {valid}")


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

    Raises:
        InvalidArgumentError: ``split`` or ``kind`` is not a valid value (a ``ValueError``).
    """
    check_split(split)
    if kind not in _IDX_SUFFIXES:
        raise InvalidArgumentError(f"Unknown kind {kind!r}; valid kinds are 'images', 'labels'")
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

    Returns:
        The path of the file found, or ``None`` when the folder holds none of the names.

    Raises:
        InvalidArgumentError: ``split`` or ``kind`` is not a valid value (a ``ValueError``).
    """
    for name in candidate_names(split, kind):
        path = Path(root) / name
        if path.is_file():
            return path
    return None


def require_mnist(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding MNIST, once each of its four files is found there.

    For code that needs the whole set: it names every missing file at once, before anything
    is read, instead of failing at the first split that is opened.

    Args:
        root: The folder; default :func:`default_root` (``$MNIST_ZOO_DATA`` or
            ``~/.cache/mnist_zoo/mnist``).

    Returns:
        The folder.

    Raises:
        MNISTNotFoundError: A file is missing; its ``missing`` lists every one (a
            ``FileNotFoundError``).
    """
    root = _resolve_root(root)
    missing = [f"{s} {k}" for s in SPLITS for k in KINDS if find_mnist_file(root, s, k) is None]
    if missing:
        raise MNISTNotFoundError(
            f"MNIST {', '.join(missing)} not found in {root}. Download them with "
            f"mnist_zoo.data.download_mnist(root), or set {DATA_ENV_VAR} to a folder holding "
            "the files.",
            root=root,
            missing=missing,
        )
    return root


def _locate(root: Path, split: str, kind: str) -> Path:
    """The path of one MNIST file in ``root``, or an error listing the names looked for."""
    path = find_mnist_file(root, split, kind)
    if path is None:
        names = ", ".join(candidate_names(split, kind))
        raise MNISTNotFoundError(
            f"MNIST {split} {kind} not found in {root} (looked for {names}). "
            f"Pass download=True, or set {DATA_ENV_VAR} to a folder holding the files.",
            root=root,
            missing=[f"{split} {kind}"],
        )
    return path
