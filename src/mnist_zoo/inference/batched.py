"""The one batched-inference primitive: a model's logits for many images, in eval mode.

:func:`mnist_zoo.predict`, :func:`mnist_zoo.evaluate_model` and the ensemble all run models
through :func:`batched_logits`, so they agree on train/eval mode, batching, devices, precision
and the uint8-to-float conversion.

```python
from mnist_zoo.inference.batched import batched_logits, eval_mode
logits = batched_logits(model, test.images, batch_size=1000)   # (N, 10) float32
with eval_mode(model):                                         # every flag restored after
    out = model(x)
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..data import to_float_images
from ..devices import autocast_context
from ..errors import InvalidArgumentError

__all__ = ["batched_logits", "check_batch_size", "eval_mode", "model_device"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for a block, then restore every submodule's own flag.

    Saving each submodule's flag, not just the root's, keeps a deliberately frozen part (e.g.
    batch norm left in eval mode while fine-tuning) frozen after the block. The flags are
    restored also when the block raises.

    Args:
        model: The module to switch.

    Yields:
        ``model``, in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer; the CPU for a model with neither.

    Args:
        model: Any module.

    Returns:
        The device its tensors are on.
    """
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_batch_size(batch_size: int) -> None:
    """Raise unless ``batch_size`` is a positive integer (``True`` is not one).

    Args:
        batch_size: The value to check.

    Raises:
        InvalidArgumentError: It is not a positive ``int`` (a ``ValueError``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}.")


def batched_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Run ``model`` over ``images`` in batches and return its logits as float32.

    The model runs in eval mode (see :func:`eval_mode`) under ``torch.inference_mode``. Each
    batch is moved to ``device``, converted with :func:`mnist_zoo.data.to_float_images` there,
    and run under :func:`mnist_zoo.devices.autocast_context` for ``precision``. The result is
    an ordinary tensor (not an inference tensor), so callers may modify it in place.

    Args:
        model: A classifier taking (N, 1, 28, 28) float images in [0, 1] and returning (N, C)
            logits. It is not moved: it must already be on ``device``.
        images: (N, 1, 28, 28) images, uint8 0-255 or float in [0, 1], on any device.
        batch_size: How many images go through the model at once.
        device: Where the batches go; defaults to the device of the model's parameters.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast).

    Returns:
        (N, C) float32 logits on ``device``.

    Raises:
        InvalidArgumentError: ``images`` is empty, ``batch_size`` is not a positive integer,
            or the model does not return one row of logits per image (a ``ValueError``).
    """
    check_batch_size(batch_size)
    if len(images) == 0:
        raise InvalidArgumentError("Cannot evaluate on an empty set of images.")
    device = model_device(model) if device is None else torch.device(device)
    with eval_mode(model), torch.inference_mode():
        chunks = []
        for chunk in images.split(batch_size):
            batch = to_float_images(chunk.to(device))
            with autocast_context(device, precision):
                logits = model(batch).float()
            if logits.ndim != 2 or logits.shape[0] != len(batch):
                raise InvalidArgumentError(
                    f"The model must return (N, classes) logits, got {tuple(logits.shape)}."
                )
            chunks.append(logits)
    # Concatenated outside inference mode: the result is an ordinary tensor, which callers
    # may modify in place or use in autograd.
    return torch.cat(chunks)
