"""Download the four MNIST files from the well-known mirrors, verified and written atomically.

Each file is streamed through :func:`mnist_zoo.atomic.atomic_writer` to a temporary name in the
target folder, its MD5 checked against the published value, and only then renamed into place.
An interrupted or corrupt download therefore never leaves a half-written file under a real name.

```python
from mnist_zoo.data import download_mnist
download_mnist("data/mnist")   # the four .gz files, skipping those already there
```
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..atomic import atomic_writer
from ..errors import DownloadError, InvalidArgumentError
from .files import KINDS, SPLITS, candidate_names, default_root, find_mnist_file

__all__ = ["MIRRORS", "MNIST_MD5S", "DownloadError", "download_mnist"]

log = logging.getLogger(__name__)

#: Base URLs tried in turn for every file, in torchvision's order.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Published MD5s of the mirrors' .gz files (of the compressed bytes, not the content).
MNIST_MD5S: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

_CHUNK_SIZE = 1 << 16


def download_mnist(
    root: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
    md5s: Mapping[str, str] | None = None,
) -> list[Path]:
    """Make sure the four MNIST files are in ``root``, downloading the missing ones.

    A file already present under any accepted naming (see
    :func:`mnist_zoo.data.candidate_names`) is not downloaded again. Each missing file is
    tried on every mirror in turn until one delivers it complete with the expected MD5.

    Args:
        root: Folder to download into, created if needed. Defaults to
            :func:`mnist_zoo.data.default_root`.
        mirrors: Base URLs to try in order; defaults to :data:`MIRRORS`.
        timeout: Seconds to wait on each connection and read before giving up on a mirror.
        md5s: Expected MD5 of each ``.gz`` file by name; defaults to :data:`MNIST_MD5S`.

    Returns:
        The paths of the four files (the existing ones where present).

    Raises:
        DownloadError: No mirror delivered one of the files intact (a ``ConnectionError``).
        InvalidArgumentError: ``md5s`` lacks one of the files to download (a ``ValueError``).
        OSError: ``root`` cannot be created or written to.
    """
    root = default_root() if root is None else Path(root).expanduser()
    # Looked up at call time so the module constants can be swapped (tests, private mirrors).
    mirrors = MIRRORS if mirrors is None else tuple(mirrors)
    md5s = MNIST_MD5S if md5s is None else md5s
    root.mkdir(parents=True, exist_ok=True)

    paths = []
    for split in SPLITS:
        for kind in KINDS:
            existing = find_mnist_file(root, split, kind)
            if existing is not None:
                paths.append(existing)
                continue
            # The mirrors use the original naming, gzip-compressed.
            name = candidate_names(split, kind)[0] + ".gz"
            if name not in md5s:
                raise InvalidArgumentError(
                    f"No MD5 given for {name}; md5s must cover all four files"
                )
            paths.append(_download_file(name, root, mirrors, md5s[name], timeout))
    return paths


def _download_file(name: str, root: Path, mirrors: Sequence[str], md5: str, timeout: float) -> Path:
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        log.info("Downloading %s", url)
        try:
            return _fetch_verified(url, root / name, md5, timeout)
        # OSError covers URLError/HTTPError, timeouts and dropped connections; HTTPException
        # covers malformed responses; ValueError an unusable URL.
        except (OSError, http.client.HTTPException, ValueError) as error:
            failures.append(f"  {url}: {type(error).__name__}: {error}")
            log.warning("Failed to download %s: %s", url, error)
    tried = "\n".join(failures) or "  (no mirrors given)"
    raise DownloadError(f"Could not download {name} into {root}; every mirror failed:\n{tried}")


def _fetch_verified(url: str, target: Path, md5: str, timeout: float) -> Path:
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    # Raising inside the block discards the temporary file and leaves ``target`` untouched.
    with atomic_writer(target) as out, urllib.request.urlopen(url, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        while chunk := response.read(_CHUNK_SIZE):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
        # http.client returns a short body without complaint when the server hangs up early.
        if declared is not None and declared.isdigit() and received != int(declared):
            raise OSError(f"connection closed after {received} of {declared} bytes")
        if digest.hexdigest() != md5.lower():
            raise ValueError(f"MD5 mismatch: expected {md5}, got {digest.hexdigest()}")
    return target
