"""Save digits drawn on the page, with their correct labels, as an MNIST-style IDX pair.

The folder ends up holding ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, the
names of MNIST's test files, so the usual readers take it as a test split:

```python
import mnist_zoo
mine = mnist_zoo.MNIST("my-digits", split="test")   # mnist-zoo evaluate minivgg --data my-digits
images = mnist_zoo.read_idx("my-digits/t10k-images-idx3-ubyte")  # (N, 28, 28) uint8
```

Nothing is written until a digit is saved. Each save rewrites both files whole through
:func:`mnist_zoo.atomic.atomic_write`, so each file always holds a complete, valid IDX array.
The images file is replaced first: if the process dies between the two renames, the folder
holds one image without a label, and the next save drops it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import read_idx, write_idx
from ..atomic import atomic_write
from ..data import candidate_names
from ..errors import InvalidArgumentError, MNISTFormatError

__all__ = ["DEFAULT_COLLECT_DIR", "DigitCollector"]

#: Where ``mnist-zoo serve`` saves digits unless ``--collect`` says otherwise.
DEFAULT_COLLECT_DIR = "my-digits"
_SIDE = 28


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``, produced by :func:`mnist_zoo.write_idx` itself."""
    # write_idx only writes to a path; going through it keeps one IDX encoder in the package.
    with tempfile.TemporaryDirectory(prefix="mnist_zoo_idx_") as tmp:
        path = Path(tmp) / "array.idx"
        write_idx(path, array, compress=False)
        return path.read_bytes()


class DigitCollector:
    """Appends labelled 28x28 digits to an IDX pair in a folder; safe across server threads.

    Args:
        folder: Where the pair lives; created on the first save.

    Attributes:
        folder: The folder.
        images_path: ``folder/t10k-images-idx3-ubyte``.
        labels_path: ``folder/t10k-labels-idx1-ubyte``.
    """

    def __init__(self, folder: str | os.PathLike[str] = DEFAULT_COLLECT_DIR) -> None:
        self.folder = Path(folder).expanduser()
        self.images_path = self.folder / candidate_names("test", "images")[0]
        self.labels_path = self.folder / candidate_names("test", "labels")[0]
        self._lock = threading.Lock()

    def count(self) -> int:
        """How many labelled digits the folder holds (0 when it holds none yet).

        Returns:
            The number of labels saved.

        Raises:
            IDXFormatError: A file is there but is not valid IDX.
        """
        with self._lock:
            return len(self._read()[1])

    def add(self, pixels: Sequence[int] | np.ndarray, label: int) -> int:
        """Append one digit and its label to the pair, replacing both files atomically.

        Args:
            pixels: The 28x28 image as 784 values 0-255 (row by row) or a (28, 28) array:
                white ink on black, as :func:`mnist_zoo.preprocess` returns it, scaled by 255.
            label: The digit it shows, 0-9.

        Returns:
            The number of digits in the folder after this one.

        Raises:
            InvalidArgumentError: Not 784 integers in 0-255, or a label outside 0-9.
            IDXFormatError: The existing files are not valid IDX.
            MNISTFormatError: The existing files hold something other than 28x28 digits.
            OSError: The folder cannot be created or written.
        """
        image = _checked_image(pixels)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
            raise InvalidArgumentError(f"The label must be a digit 0-9, got {label!r}.")
        with self._lock:
            images, labels = self._read()
            images = np.concatenate([images[: len(labels)], image[None]])
            labels = np.append(labels, np.uint8(label))
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.images_path, _idx_bytes(images))
            atomic_write(self.labels_path, _idx_bytes(labels))
            return len(labels)

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.labels_path.exists():
            return np.zeros((0, _SIDE, _SIDE), np.uint8), np.zeros(0, np.uint8)
        labels = read_idx(self.labels_path)
        images = read_idx(self.images_path)
        if images.dtype != np.uint8 or images.shape[1:] != (_SIDE, _SIDE) or labels.ndim != 1:
            raise MNISTFormatError(
                f"{self.folder} holds IDX files that are not 28x28 digits with labels; "
                "choose another --collect folder."
            )
        if len(images) < len(labels):
            raise MNISTFormatError(
                f"{self.images_path} holds fewer images ({len(images)}) than "
                f"{self.labels_path.name} has labels ({len(labels)})."
            )
        return images, labels


def _checked_image(pixels: Sequence[int] | np.ndarray) -> np.ndarray:
    try:
        values = np.asarray(pixels)
    except ValueError:  # a ragged list
        values = np.zeros(0, np.float64)
    if values.size != _SIDE * _SIDE or values.dtype.kind not in "iu":
        raise InvalidArgumentError(
            f"A digit is 784 integers (28x28, row by row), got {values.size} values of "
            f"type {values.dtype}."
        )
    if values.min() < 0 or values.max() > 255:
        raise InvalidArgumentError("Pixel values must be integers in 0-255.")
    return values.astype(np.uint8).reshape(_SIDE, _SIDE)
