"""What makes a resume safe: a checksum of a checkpoint's content, a record of the model it
holds, and the check, before any work, that the folders a run writes to can be written."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import OutputFolderError

__all__ = ["check_writable_folder", "describe_model", "payload_checksum"]


def describe_model(
    model: nn.Module, name: str | None = None, kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a checkpoint records about the model it holds, so that it resumes into no other.

    Args:
        model: The model being trained.
        name: Its registry name, if known; default: the one ``model.pretrained_cfg`` records.
        kwargs: Its builder kwargs, if known; default: those ``model.pretrained_cfg`` records.

    Returns:
        ``{"name": registry name or None, "kwargs": dict, "class": "module.QualName"}``.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    cfg = cfg if isinstance(cfg, Mapping) else {}
    if name is None and isinstance(cfg.get("architecture"), str):
        name = cfg["architecture"]
        kwargs = kwargs if kwargs is not None else cfg.get("model_kwargs")
    cls = type(model)
    return {
        "name": name,
        "kwargs": dict(kwargs or {}),
        "class": f"{cls.__module__}.{cls.__qualname__}",
    }


def payload_checksum(payload: Mapping[str, Any]) -> str:
    """The SHA-256 of a checkpoint's content, every key but ``"checksum"`` itself.

    The content is hashed, not the file's bytes: tensors by dtype, shape and values (in
    logical order, whatever their memory layout or device), other values by ``repr``, dicts
    in order. So the same content gives the same checksum however ``torch.save`` lays it out.

    Args:
        payload: A checkpoint as ``torch.load`` returns it.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != "checksum"})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1).contiguous().cpu()
        digest.update(f"T{value.dtype}{tuple(value.shape)}:".encode())
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}:".encode())
        for k, v in value.items():
            _feed(digest, k)
            _feed(digest, v)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}:".encode())
        for v in value:
            _feed(digest, v)
    else:
        text = repr(value).encode()
        digest.update(f"V{len(text)}:".encode() + text)


def check_writable_folder(path: str | os.PathLike[str], what: str) -> None:
    """Check, before any work, that ``path`` is or can become a folder this process can write.

    Nothing is created: the nearest existing folder on the way gets a probe file, removed at
    once, since permission bits do not tell (a read-only file system, or root).

    Args:
        path: The folder a run will write to.
        what: What it is, for the message, e.g. ``"the checkpoint folder"``.

    Raises:
        OutputFolderError: ``path`` or a folder on the way is a file, or cannot be written.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputFolderError(
            f"Cannot use {path} as {what}: {existing} is a file, not a folder. "
            "Choose another folder."
        )
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".mnist_zoo-probe.", suffix=".tmp")
    except OSError as err:
        raise OutputFolderError(
            f"Cannot use {path} as {what}: {existing} cannot be written ({err.strerror}). "
            "Choose another folder, or make it writable."
        ) from err
    os.close(fd)
    os.unlink(probe)
