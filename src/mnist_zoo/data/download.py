"""Download the four MNIST files from the well-known mirrors, verified and written atomically.

Each file is streamed through :func:`mnist_zoo.atomic.atomic_writer` to a temporary name in the
target folder, its MD5 checked against the published value, and only then renamed into place.
An interrupted or corrupt download therefore never leaves a half-written file under a real name.
What a mirror can cost is bounded too: a download stops as soon as it exceeds the file's
published size (:data:`MNIST_SIZES`) or its deadline, and partial files that a killed download
left behind are deleted the next time.

```python
from mnist_zoo.data import download_mnist
download_mnist("data/mnist")   # the four .gz files, skipping those already there
```
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import math
import os
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ..atomic import atomic_writer
from ..errors import DownloadError, InvalidArgumentError
from .files import KINDS, SPLITS, _resolve_root, candidate_names, find_mnist_file

__all__ = ["MIRRORS", "MNIST_MD5S", "MNIST_SIZES", "DownloadError", "download_mnist"]

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

#: Published sizes in bytes of the mirrors' .gz files (the MNIST page lists them; both mirrors
#: serve these very files). A download stops as soon as it exceeds its file's size.
MNIST_SIZES: dict[str, int] = {
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
}

#: Sizes of the decompressed files. A .gz file checked against MD5s other than the published
#: ones (a recompressed copy on a private mirror) may be at most twice its content's size:
#: gzip never makes MNIST larger, so anything bigger is not MNIST.
_CONTENT_SIZES: dict[str, int] = {
    "train-images-idx3-ubyte.gz": 47_040_016,
    "train-labels-idx1-ubyte.gz": 60_008,
    "t10k-images-idx3-ubyte.gz": 7_840_016,
    "t10k-labels-idx1-ubyte.gz": 10_008,
}

#: Partial files are named like the atomic writer's temporaries (``.NAME.*.tmp``); 0.1 of the
#: package wrote ``.NAME.*.part``.
_PARTIAL_SUFFIXES = (".tmp", ".part")
#: A partial file unchanged for this long (or for ``timeout``, if longer) belongs to no running
#: download: a running one writes more often, or gives up.
_STALE_AFTER = 60.0

_CHUNK_SIZE = 1 << 16


def download_mnist(
    root: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
    md5s: Mapping[str, str] | None = None,
    *,
    sizes: Mapping[str, int] | None = None,
    deadline: float = 600.0,
) -> list[Path]:
    """Make sure the four MNIST files are in ``root``, downloading the missing ones.

    A file already present under any accepted naming (see
    :func:`mnist_zoo.data.candidate_names`) is not downloaded again. Each missing file is
    tried on every mirror in turn until one delivers it complete with the expected MD5. A
    mirror is abandoned as soon as it announces or sends more bytes than the file's size,
    stays silent for ``timeout`` seconds, or has not delivered the whole file ``deadline``
    seconds after the request (the deadline is checked as data arrives, and at least every
    ``timeout`` seconds). Partial files that a killed download left in ``root`` are deleted
    first, once they have not changed for a minute (or ``timeout``, if longer), so that a
    download still running in another process keeps its own.

    Args:
        root: Folder to download into, created if needed. Defaults to
            :func:`mnist_zoo.data.default_root`.
        mirrors: Base URLs to try in order; defaults to :data:`MIRRORS`.
        timeout: Seconds to wait on each connection and read before giving up on a mirror.
        md5s: Expected MD5 of each ``.gz`` file by name; defaults to :data:`MNIST_MD5S`.
        sizes: Largest acceptable size in bytes of each ``.gz`` file by name. Defaults to
            :data:`MNIST_SIZES`, the published sizes, when ``md5s`` is not given either; with
            your own ``md5s``, to twice the size of the file's decompressed content.
        deadline: Seconds one file may take from one mirror, from the request to the last
            byte (10 minutes by default, 16 KB/s for the largest file).

    Returns:
        The paths of the four files (the existing ones where present).

    Raises:
        DownloadError: No mirror delivered one of the files intact (a ``ConnectionError``).
        InvalidArgumentError: ``md5s`` or ``sizes`` lacks one of the files to download, or
            ``timeout`` or ``deadline`` is not a positive number of seconds (a ``ValueError``).
        OSError: ``root`` cannot be created or written to.
    """
    _check_seconds("timeout", timeout)
    _check_seconds("deadline", deadline)
    root = _resolve_root(root)
    # Looked up at call time so the module constants can be swapped (tests, private mirrors).
    mirrors = MIRRORS if mirrors is None else tuple(mirrors)
    if sizes is None:
        sizes = MNIST_SIZES if md5s is None else {k: 2 * n for k, n in _CONTENT_SIZES.items()}
    md5s = MNIST_MD5S if md5s is None else md5s
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(root, max(_STALE_AFTER, timeout))

    paths = []
    for split in SPLITS:
        for kind in KINDS:
            existing = find_mnist_file(root, split, kind)
            if existing is not None:
                paths.append(existing)
                continue
            # The mirrors use the original naming, gzip-compressed.
            name = candidate_names(split, kind)[0] + ".gz"
            for table, what in ((md5s, "MD5"), (sizes, "size")):
                if name not in table:
                    raise InvalidArgumentError(
                        f"No {what} given for {name}; {what.lower()}s must cover all four files"
                    )
            limits = _Limits(sizes[name], timeout, deadline)
            paths.append(_download_file(name, root, mirrors, md5s[name], limits))
    return paths


class _Limits(NamedTuple):
    """What one file may cost from one mirror: bytes, seconds of silence, seconds in all."""

    size: int
    timeout: float
    deadline: float


def _check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be a finite number of seconds, got {value!r}")


def _remove_stale_partials(root: Path, older_than: float) -> None:
    """Delete partial downloads of the four files that have not changed for ``older_than`` s."""
    now = time.time()
    for name in MNIST_MD5S:
        for suffix in _PARTIAL_SUFFIXES:
            for partial in root.glob(f".{name}.*{suffix}"):
                with contextlib.suppress(FileNotFoundError):
                    if now - partial.stat().st_mtime > older_than:
                        partial.unlink()
                        log.info("Removed %s, left by an interrupted download", partial)


def _download_file(
    name: str, root: Path, mirrors: Sequence[str], md5: str, limits: _Limits
) -> Path:
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        log.info("Downloading %s", url)
        try:
            return _fetch_verified(url, root / name, md5, limits)
        # OSError covers URLError/HTTPError, timeouts and dropped connections; HTTPException
        # covers malformed responses; ValueError an unusable URL, too many bytes, a wrong MD5.
        except (OSError, http.client.HTTPException, ValueError) as error:
            failures.append(f"  {url}: {type(error).__name__}: {error}")
            log.warning("Failed to download %s: %s", url, error)
    tried = "\n".join(failures) or "  (no mirrors given)"
    raise DownloadError(f"Could not download {name} into {root}; every mirror failed:\n{tried}")


def _fetch_verified(url: str, target: Path, md5: str, limits: _Limits) -> Path:
    start = time.monotonic()
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    timeout = min(limits.timeout, limits.deadline)
    # Raising inside the block discards the temporary file and leaves ``target`` untouched.
    with atomic_writer(target) as out, urllib.request.urlopen(url, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limits.size:
            raise ValueError(
                f"the server announces {declared} bytes, more than the {limits.size} expected"
            )
        # read1 returns what has arrived: a server that drips bytes cannot hold one read open.
        read = getattr(response, "read1", response.read)
        while chunk := read(min(_CHUNK_SIZE, limits.size + 1 - received)):
            received += len(chunk)
            if received > limits.size:
                raise ValueError(f"the server sent more than the {limits.size} bytes expected")
            if time.monotonic() - start > limits.deadline:
                raise TimeoutError(
                    f"the download took longer than its {limits.deadline:g} s deadline "
                    f"({received} of {declared or limits.size} bytes received)"
                )
            out.write(chunk)
            digest.update(chunk)
        # http.client returns a short body without complaint when the server hangs up early.
        if declared is not None and declared.isdigit() and received != int(declared):
            raise OSError(f"connection closed after {received} of {declared} bytes")
        if digest.hexdigest() != md5.lower():
            raise ValueError(f"MD5 mismatch: expected {md5}, got {digest.hexdigest()}")
    return target
