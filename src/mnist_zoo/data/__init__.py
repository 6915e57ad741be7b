"""MNIST data: an IDX reader/writer, the dataset, a verified downloader and the data checks.

```python
from mnist_zoo.data import MNIST, check_mnist
train = MNIST(split="train", download=True)
print(check_mnist(train.root).format())
```
"""

from __future__ import annotations

from .checks import CheckResult, DataCheckReport, check_mnist
from .download import MIRRORS, MNIST_MD5S, DownloadError, download_mnist
from .idx import IDX_DTYPES, IDXFileNotFoundError, IDXFormatError, read_idx, write_idx
from .mnist import (
    DATA_ENV_VAR,
    MNIST,
    SPLITS,
    MNISTFormatError,
    MNISTNotFoundError,
    candidate_names,
    default_root,
    find_mnist_file,
)

__all__ = [
    "DATA_ENV_VAR",
    "IDX_DTYPES",
    "MIRRORS",
    "MNIST",
    "MNIST_MD5S",
    "SPLITS",
    "CheckResult",
    "DataCheckReport",
    "DownloadError",
    "IDXFileNotFoundError",
    "IDXFormatError",
    "MNISTFormatError",
    "MNISTNotFoundError",
    "candidate_names",
    "check_mnist",
    "default_root",
    "download_mnist",
    "find_mnist_file",
    "read_idx",
    "write_idx",
]
