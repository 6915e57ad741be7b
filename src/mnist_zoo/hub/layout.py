"""What a Hub folder holds: the names of its files, and how their bytes are fingerprinted.

The layout itself is drawn in the package's docstring (:mod:`mnist_zoo.hub`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "HUB_FILES",
    "LIBRARY_NAME",
    "STAGED_SUFFIX",
    "WEIGHTS_NAME",
    "sha256_file",
    "staged_path",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
#: The files that make a Hub folder; exactly these are uploaded.
HUB_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
#: The weights exported to ONNX (``mnist_zoo.hub.write_onnx``): uploaded too when present.
ONNX_NAME = "model.onnx"

#: The library name that config.json and the model card's metadata record; the Hub picks the
#: code snippet it shows for a repo by the card's ``library_name``.
LIBRARY_NAME = "mnist-zoo"

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")

#: The suffix of the files ``save_pretrained`` stages beside the old set before its switch
#: (see :mod:`mnist_zoo.hub.folder`).
STAGED_SUFFIX = ".staged"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks.

    Args:
        path: The file to hash.

    Returns:
        The 64-character lowercase hex digest.

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def staged_path(folder: Path, filename: str, sha256: str) -> Path:
    """Where a save stages ``filename`` of the set whose weights have SHA-256 ``sha256``.

    Args:
        folder: The Hub folder.
        filename: ``model.safetensors`` or ``README.md``.
        sha256: The new weights' SHA-256 (hex; any case).

    Returns:
        ``folder/.<filename>.<sha256>.staged``.

    Raises:
        ValueError: ``sha256`` is not 64 hex digits (so it can never make a path elsewhere).
    """
    sha256 = sha256.strip().lower()
    if not SHA256_PATTERN.fullmatch(sha256):
        raise ValueError(f"Not a SHA-256: {sha256!r}.")
    return folder / f".{filename}.{sha256}{STAGED_SUFFIX}"
