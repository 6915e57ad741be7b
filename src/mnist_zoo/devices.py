"""Devices, numeric precision and seeding: the choices training, evaluation and inference share.

```python
from mnist_zoo.devices import autocast_context, select_device, select_precision

device = select_device("auto")              # cuda, then mps, then cpu
precision = select_precision("auto", device)  # bf16 where the hardware has it, else fp32
with autocast_context(device, precision):
    logits = model(x)
```

An explicitly requested device that does not exist is an error
(:class:`~mnist_zoo.errors.DeviceNotAvailableError`), never a silent fallback to the CPU.
This module sits at the bottom of the package, beside ``errors`` and ``atomic``.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Literal, get_args

import numpy as np
import torch

from .errors import DeviceNotAvailableError, InvalidArgumentError

__all__ = [
    "PRECISIONS",
    "DeviceNotAvailableError",
    "Precision",
    "autocast_context",
    "seed_everything",
    "select_device",
    "select_precision",
]

#: A numeric precision: "auto" is resolved per device by :func:`select_precision`.
Precision = Literal["auto", "fp32", "bf16", "fp16"]
#: The precisions :func:`select_precision` accepts, in the order the docs list them.
PRECISIONS: tuple[str, ...] = get_args(Precision)

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``device``: "auto" picks cuda, then mps, then cpu.

    Under ``torchrun`` "auto" picks the CUDA device of the process's ``LOCAL_RANK``.

    Args:
        device: "auto", "cpu", "cuda", "cuda:N", "mps", or a ``torch.device``.

    Returns:
        The device to use.

    Raises:
        DeviceNotAvailableError: An explicit device that this machine does not have.
        InvalidArgumentError: A device name PyTorch does not know, or an unsupported type.
        TypeError: ``device`` is neither a string nor a ``torch.device``.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}.")
    if device == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InvalidArgumentError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from None
    _check_available(device, resolved)
    return resolved


def _check_available(name: str, device: torch.device) -> None:
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceNotAvailableError(
                f"Device {name!r} was requested but CUDA is not available on this machine. "
                "Use 'cpu', or 'auto' for the best device there is."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceNotAvailableError(
                f"Device {name!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) exist. Use one of them, 'cpu', or 'auto'."
            )
    elif device.type == "mps" and not _mps_available():
        raise DeviceNotAvailableError(
            f"Device {name!r} was requested but MPS is not available on this machine. "
            "Use 'cpu', or 'auto' for the best device there is."
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InvalidArgumentError(
            f"Unsupported device {name!r}: use 'auto', 'cpu', 'cuda' or 'mps'."
        )


def _cpu_supports_bf16() -> bool:
    # Without native bf16 instructions (AVX512-BF16/AMX) autocast still works but is slower
    # than fp32, so "auto" only picks bf16 where the hardware has it.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_precision(precision: str, device: torch.device) -> str:
    """Resolve ``precision`` ("auto", "fp32", "bf16", "fp16") for ``device``.

    "auto" is bf16 autocast on a CPU with native bf16 support and on CUDA devices that have it,
    fp16 with a grad scaler on older CUDA devices, fp32 otherwise (MPS included).

    Args:
        precision: One of :data:`PRECISIONS`.
        device: The device the model runs on.

    Returns:
        "fp32", "bf16" or "fp16".

    Raises:
        InvalidArgumentError: An unknown precision, or one the device cannot run (fp16 off
            CUDA, bf16 on MPS).
    """
    if precision not in PRECISIONS:
        raise InvalidArgumentError(
            f"Unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}."
        )
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and _cpu_supports_bf16():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise InvalidArgumentError(
            "precision='fp16' needs a CUDA device (it uses a grad scaler there)."
        )
    if precision == "bf16" and device.type == "mps":
        raise InvalidArgumentError("precision='bf16' is not supported on MPS; use 'fp32'.")
    return precision


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """An autocast context for ``precision`` on ``device``.

    Args:
        device: The device the model runs on.
        precision: A resolved precision: "fp32" (no autocast), "bf16" or "fp16".

    Returns:
        ``torch.autocast`` for bf16 and fp16, a context that does nothing for fp32.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Call before building a model to fix its init.

    Args:
        seed: Any integer; NumPy gets it modulo 2**32.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
