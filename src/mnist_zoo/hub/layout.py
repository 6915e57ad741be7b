"""What a Hub folder holds: the names of its files, and how their bytes are fingerprinted.

The layout itself is drawn in the package's docstring (:mod:`mnist_zoo.hub`).
"""

from __future__ import annotations

import hashlib
import os
import re

__all__ = ["CARD_NAME", "CONFIG_NAME", "HUB_FILES", "LIBRARY_NAME", "WEIGHTS_NAME", "sha256_file"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
#: The files that make a Hub folder; exactly these are uploaded.
HUB_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)

#: The library name that config.json and the model card's metadata record; the Hub picks the
#: code snippet it shows for a repo by the card's ``library_name``.
LIBRARY_NAME = "mnist-zoo"

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


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
