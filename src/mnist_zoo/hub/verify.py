"""What is checked before a Hub file is trusted, whether it came from the Hub or a local folder.

In the order the checks run:

1. **size, before a byte is read**: the file must be a regular file (not a device, a pipe or a
   link to one) of the size its pin records, or, without a pin, no larger than its
   architecture's fp32 state dict plus :data:`HEADER_ALLOWANCE` (:func:`read_limited`,
   :func:`size_limit`); a ``config.json`` no larger than :data:`MAX_CONFIG_BYTES`;
2. **SHA-256, before a byte is parsed**: against the pin, the config or the Hub's ETag, in hex,
   case-insensitively (:func:`same_sha256`);
3. **the config, before a model is built**: a newer mnist_zoo's config is refused
   (:func:`check_library_version`);
4. **the tensors, before they are loaded**: the keys, shapes and dtypes of the architecture's
   own state dict, and finite values only (:func:`check_state_dict`). Nothing is ever cast.

Weights are only ever parsed from safetensors; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..errors import (
    ChecksumMismatchError,
    CorruptWeightsError,
    IncompatibleConfigError,
    WeightsMismatchError,
)
from ..registry import ModelEntry, get_model_entry

__all__ = [
    "HEADER_ALLOWANCE",
    "MAX_CONFIG_BYTES",
    "check_architecture",
    "check_library_version",
    "check_state_dict",
    "nonfinite_tensors",
    "read_limited",
    "released_tag",
    "same_sha256",
    "size_limit",
]

#: The most a ``config.json`` may hold; the zoo's are a few KiB.
MAX_CONFIG_BYTES = 1 << 20
#: Room for a safetensors file's header on top of its tensors' bytes, in an unpinned file.
HEADER_ALLOWANCE = 1 << 20

_VERSION = re.compile(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def read_limited(
    path: str | os.PathLike[str], *, size: int | None = None, limit: int | None = None
) -> bytes:
    """Read a whole file, after checking that it is a regular file of an expected size.

    The checks use the opened file's own status, so they hold for what is read: a link to
    ``/dev/zero``, a pipe or a file larger than allowed is refused without reading a byte.

    Args:
        path: The file; a symbolic link is followed.
        size: Its exact expected size in bytes, or ``None``.
        limit: The most it may hold, in bytes, when ``size`` is ``None``; ``None``: no limit.

    Returns:
        The file's bytes.

    Raises:
        ChecksumMismatchError: The file's size is not ``size``: it cannot hold the pinned bytes.
        CorruptWeightsError: It is not a regular file, is larger than ``limit``, or changed
            size while being read.
        OSError: It cannot be opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)  # non-blocking, so that opening a pipe cannot hang
    with contextlib.closing(os.fdopen(fd, "rb", buffering=0)) as f:
        info = os.fstat(fd)
        where = _describe(path)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptWeightsError(f"{where} is not a regular file; it was not read.")
        if size is not None and info.st_size != size:
            raise ChecksumMismatchError(
                f"{where} has {info.st_size:,} bytes, but {size:,} are expected; it was not read."
            )
        if size is None and limit is not None and info.st_size > limit:
            raise CorruptWeightsError(
                f"{where} has {info.st_size:,} bytes, more than the {limit:,} it can hold; "
                "it was not read."
            )
        data = f.read(info.st_size + 1)  # one byte more shows a file that grew meanwhile
    if len(data) != info.st_size:
        raise CorruptWeightsError(f"{where} changed size while it was read; it was not loaded.")
    return data


def _describe(path: str | os.PathLike[str]) -> str:
    real = os.path.realpath(path)
    return f"{os.fspath(path)} (a link to {real})" if real != os.path.abspath(path) else str(path)


def same_sha256(actual: str, expected: object) -> bool:
    """Whether two hex SHA-256 digests are the same, ignoring case and surrounding blanks.

    Args:
        actual: A digest, as :func:`hashlib.sha256` gives it.
        expected: A recorded one (a pin, a config's ``sha256``); anything but a string differs.

    Returns:
        ``True`` when they are equal.
    """
    return isinstance(expected, str) and actual.strip().lower() == expected.strip().lower()


def released_tag(entry: ModelEntry, sha256: str) -> str | None:
    """The release of ``entry`` whose pinned weights file has this SHA-256, if any.

    Args:
        entry: The registry entry of the architecture.
        sha256: A weights file's digest.

    Returns:
        The tag, the default release first (a later release may ship an earlier one's file
        unchanged), or ``None`` when no release pins that file.
    """
    tags = sorted(entry.releases, key=lambda tag: tag != entry.default_release)
    return next((tag for tag in tags if same_sha256(sha256, entry.releases[tag].sha256)), None)


def size_limit(builder: Callable[..., nn.Module], kwargs: Mapping[str, Any]) -> int:
    """The most an unpinned weights file of this architecture may hold, in bytes.

    That is its state dict's size in the architecture's own dtypes (fp32 for the zoo), plus
    :data:`HEADER_ALLOWANCE`. The model is built on the ``meta`` device, which allocates
    nothing and draws no random numbers (on the CPU if its builder cannot do that).

    Args:
        builder: The architecture's builder.
        kwargs: The builder kwargs the config records.

    Returns:
        The limit in bytes.

    Raises:
        TypeError: The builder rejects ``kwargs``.
    """
    try:
        with torch.device("meta"):
            skeleton = builder(**kwargs)
    except (RuntimeError, NotImplementedError):  # a builder that needs real tensors
        skeleton = builder(**kwargs)
    tensors = skeleton.state_dict().values()
    return sum(t.numel() * t.element_size() for t in tensors) + HEADER_ALLOWANCE


def check_library_version(config: Mapping[str, Any], source: str) -> None:
    """Refuse a config written by a newer mnist_zoo than this one.

    Args:
        config: The ``config.json`` content.
        source: Where it came from, for the message.

    Raises:
        IncompatibleConfigError: Its ``library_version`` is newer than this mnist_zoo's.
    """
    written = config.get("library_version")
    if isinstance(written, str) and _release(written) > _release(__version__):
        raise IncompatibleConfigError(
            f"{source} was written by mnist_zoo {written}, newer than this mnist_zoo "
            f"{__version__}; it may describe weights this version cannot read correctly. "
            "Upgrade: pip install -U mnist-zoo."
        )


def check_architecture(
    entry: ModelEntry, claimed: str, model: nn.Module, kwargs: Mapping[str, Any], source: str
) -> None:
    """Refuse a config that names another architecture than the registered one it is loaded as.

    The architecture comes from the registry: a config may only name the entry itself, or a
    registered alias of it (another name whose builder makes the same class with the same
    tensors). So a config cannot present SimpleCNN weights as MiniVGG's.

    Args:
        entry: The registry entry the weights are loaded as.
        claimed: The architecture the config names.
        model: ``entry``'s model, as built for the config's kwargs.
        kwargs: Those kwargs.
        source: Where the config came from, for the message.

    Raises:
        IncompatibleConfigError: ``claimed`` is neither ``entry`` nor an alias of it.
    """
    if claimed.lower() == entry.name:
        return
    try:
        other = get_model_entry(claimed)
        with torch.device("meta"):
            reference = other.builder(**kwargs)
    except Exception:  # unknown, or it cannot be built with these kwargs: not an alias
        reference = None
    if type(reference) is type(model) and _signature(reference) == _signature(model):
        return
    raise IncompatibleConfigError(
        f"The config.json of {source} says the weights are {claimed!r}, but they are loaded as "
        f"the registered {entry.name!r}, a different architecture: refused, since a config "
        f"cannot relabel weights. Load them as {claimed!r} or from a local folder instead."
    )


def _signature(model: nn.Module | None) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    if model is None:
        return []
    return [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]


def _release(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(version)
    if match is None:
        return (0, 0, 0)
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Check that ``state`` has exactly ``model``'s keys, shapes and dtypes, and finite values.

    ``load_state_dict(strict=True)`` would refuse a wrong key or shape too, but with a wall of
    text, and it would silently cast fp16, int8 or bool tensors; this names the first offender
    of each kind, so the cause is obvious, and casts nothing.

    Args:
        model: The model the tensors are meant for.
        state: The tensors.
        what: How to name the model in the message.

    Raises:
        WeightsMismatchError: A key is missing or unexpected, or a shape or dtype differs.
        CorruptWeightsError: A floating-point tensor holds NaN or infinity.
    """
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    got = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    problems = []
    if missing := [k for k in expected if k not in got]:
        problems.append(
            f"{len(missing)} missing key(s), first {missing[0]!r} (model expects shape "
            f"{expected[missing[0]][0]})"
        )
    if unexpected := [k for k in got if k not in expected]:
        problems.append(
            f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r} (shape "
            f"{got[unexpected[0]][0]})"
        )
    common = [k for k in expected if k in got]
    if wrong := [k for k in common if got[k][0] != expected[k][0]]:
        problems.append(
            f"{len(wrong)} shape mismatch(es), first {wrong[0]!r}: the weights have "
            f"{got[wrong[0]][0]}, the model expects {expected[wrong[0]][0]}"
        )
    if wrong := [k for k in common if got[k][1] != expected[k][1]]:
        problems.append(
            f"{len(wrong)} dtype mismatch(es), first {wrong[0]!r}: the weights are "
            f"{got[wrong[0]][1]}, the model expects {expected[wrong[0]][1]} (nothing is cast)"
        )
    if problems:
        raise WeightsMismatchError(
            f"The weights do not fit {what}: {'; '.join(problems)}. Were they saved from another "
            "architecture or with other model_kwargs?"
        )
    if bad := nonfinite_tensors(state):
        raise CorruptWeightsError(
            f"The weights for {what} hold NaN or infinite values in {len(bad)} tensor(s), first "
            f"{bad[0]!r}: they are broken (a diverged training run?) and were not loaded."
        )


def nonfinite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors in ``state`` that hold NaN or infinity.

    Args:
        state: A state dict.

    Returns:
        The offending keys, in order.
    """
    return [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
