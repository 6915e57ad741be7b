"""MNIST data: file naming, an IDX reader/writer, the dataset, a verified downloader, the checks.

```python
from mnist_zoo.data import MNIST, check_mnist
train = MNIST(split="train", download=True)
print(check_mnist(train.root).format())
```

The modules, bottom to top: :mod:`~mnist_zoo.data.files` (names, locations and the pixel
statistics), :mod:`~mnist_zoo.data.idx` (the file format), :mod:`~mnist_zoo.data.download`,
:mod:`~mnist_zoo.data.mnist` (the dataset and :func:`to_float_images`) and
:mod:`~mnist_zoo.data.checks`. The exceptions live in :mod:`mnist_zoo.errors` and are
re-exported here.
"""

from __future__ import annotations

from ..errors import (
    DownloadError,
    IDXFileNotFoundError,
    IDXFormatError,
    MNISTFormatError,
    MNISTNotFoundError,
)
from .checks import CheckResult, DataCheckReport, check_mnist
from .download import MIRRORS, MNIST_MD5S, MNIST_SIZES, download_mnist
from .files import (
    DATA_ENV_VAR,
    KINDS,
    MNIST_MEAN,
    MNIST_STD,
    SPLIT_SIZES,
    SPLITS,
    candidate_names,
    default_root,
    find_mnist_file,
    require_mnist,
)
from .idx import IDX_DTYPES, read_idx, write_idx
from .mnist import MNIST, check_pixels, to_float_images

__all__ = [
    "DATA_ENV_VAR",
    "IDX_DTYPES",
    "KINDS",
    "MIRRORS",
    "MNIST",
    "MNIST_MD5S",
    "MNIST_MEAN",
    "MNIST_SIZES",
    "MNIST_STD",
    "SPLITS",
    "SPLIT_SIZES",
    "CheckResult",
    "DataCheckReport",
    "DownloadError",
    "IDXFileNotFoundError",
    "IDXFormatError",
    "MNISTFormatError",
    "MNISTNotFoundError",
    "candidate_names",
    "check_mnist",
    "check_pixels",
    "default_root",
    "download_mnist",
    "find_mnist_file",
    "read_idx",
    "require_mnist",
    "to_float_images",
    "write_idx",
]
