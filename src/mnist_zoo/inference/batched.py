"""The batched-inference primitives: a model's logits for many images, exact or fast.

:func:`mnist_zoo.predict`, :func:`mnist_zoo.evaluate_model` and the ensemble all run models
through :func:`batched_logits`, so they agree on train/eval mode, batching, devices, precision
and the uint8-to-float conversion. :func:`predict_logits` adds the fast path that
``predict(..., precision="auto")`` takes where the hardware has one.

```python
from mnist_zoo.inference.batched import batched_logits, eval_mode, predict_logits
logits = batched_logits(model, test.images, batch_size=1000)   # (N, 10) float32, exact
logits = predict_logits(model, test.images, batch_size=500)    # the fast path where it pays
with eval_mode(model):                                         # every flag restored after
    out = model(x)
```

**The fast path.** On a CPU with native bf16 (AVX512-BF16 or AMX) and on CUDA, a batch runs
under bf16 autocast (fp16 on CUDA devices without bf16) in the channels-last memory format,
through a copy of the model prepared once for inference: in eval mode, without gradients,
with each batch norm folded into the convolution before it, its weights channels-last. The
copy is made on the first fast call and kept beside the model (weakly: it goes when the model
goes); the model itself is not changed. It is rebuilt when a parameter or buffer of the model
is replaced or modified in place (an optimizer step, ``load_state_dict``, ``model.to``): the
cache compares each tensor's storage and version counter. A write through ``tensor.data``
bypasses the version counter; call :func:`clear_fast_copies` after one.

The fast path is a model's default only where it was measured to be harmless: on the full
MNIST test set it may change at most :data:`MAX_LABELS_CHANGED` of the labels and move the
accuracy by at most :data:`MAX_ACCURACY_CHANGE` points against fp32 (:data:`FAST_PATH_CHECKS`,
measured by ``benchmarks/inference.py``). Batches smaller than :data:`FAST_PATH_MIN_BATCH`
take the exact fp32 path, where bf16 does not pay for itself.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from ..data import to_float_images
from ..devices import autocast_context, select_precision
from ..errors import InvalidArgumentError

__all__ = [
    "CPU_MAX_BATCH",
    "FAST_PATH_CHECKS",
    "FAST_PATH_MIN_BATCH",
    "MAX_ACCURACY_CHANGE",
    "MAX_LABELS_CHANGED",
    "FastPathCheck",
    "batched_logits",
    "check_batch_size",
    "clear_fast_copies",
    "eval_mode",
    "fast_copy",
    "model_device",
    "predict_logits",
    "resolve_precision",
]


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
    if not any(training for _, training in modes):  # already in eval mode: nothing to switch
        yield model
        return
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
    for tensor in chain(model.parameters(), model.buffers()):
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
        batch_size: How many images are moved to ``device`` and converted at once; on the
            CPU the model runs on pieces of at most :data:`CPU_MAX_BATCH` of them.
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
    return _logits_in_batches(model, images, batch_size, device, precision, channels_last=False)


#: On the CPU, the most images the model runs on at once, whatever ``batch_size`` asks for
#: (``None``: no limit). A batch of 1,000 MNIST images makes MiniVGG's first activations 200 MB,
#: far beyond the caches; in pieces of 64 the exact fp32 path ran 1.5x (MiniVGG) to 1.7x
#: (SimpleCNN) faster on one core of a Xeon, with the same labels on 3,000 test images
#: (``python benchmarks/cpu_batches.py``). The logits may differ from one large batch's in the
#: last bits, as any two batch sizes' may. Other devices run whole batches.
CPU_MAX_BATCH: int | None = 64


def _pieces(batch: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``batch`` cut into pieces of at most :data:`CPU_MAX_BATCH` images on the CPU."""
    if device.type != "cpu" or CPU_MAX_BATCH is None or len(batch) <= CPU_MAX_BATCH:
        return (batch,)
    return batch.split(CPU_MAX_BATCH)


def _logits_in_batches(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    precision: str,
    *,
    channels_last: bool,
) -> torch.Tensor:
    """The loop both paths share: batches to ``device``, to float, through ``model``."""
    with eval_mode(model), torch.inference_mode():
        chunks = []
        for chunk in images.split(batch_size):
            batch = to_float_images(chunk.to(device))
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast_context(device, precision):
                logits = torch.cat([model(piece).float() for piece in _pieces(batch, device)])
            if logits.ndim != 2 or logits.shape[0] != len(batch):
                raise InvalidArgumentError(
                    f"The model must return (N, classes) logits, got {tuple(logits.shape)}."
                )
            chunks.append(logits)
    # Concatenated outside inference mode: the result is an ordinary tensor, which callers
    # may modify in place or use in autograd.
    return torch.cat(chunks)


# --- The fast path ------------------------------------------------------------------------------

#: The largest fraction of the test set's labels the fast path may change against fp32 and still
#: be a model's default (0.05 %: 5 of MNIST's 10,000 test images).
MAX_LABELS_CHANGED = 0.0005
#: The largest change of test accuracy, in percentage points, the fast path may cause and still
#: be a model's default (0.02 points: 2 of 10,000 images).
MAX_ACCURACY_CHANGE = 0.02
#: Batches smaller than this take the exact fp32 path under ``precision="auto"``. On a 2-core
#: Xeon with AMX the fast path ran 16 images 1.9x (SimpleCNN) to 3.8x (MiniVGG) faster than
#: fp32, but 2 images only 1.0x to 1.4x; below 16, a few pictures (the command line, the
#: drawing page) get exact probabilities instead. Every chunk of a call has at most
#: ``batch_size`` images, so the smaller of the two decides.
FAST_PATH_MIN_BATCH = 16


@dataclass(frozen=True)
class FastPathCheck:
    """What the fast path did to a model's published weights on the full MNIST test set.

    Attributes:
        labels_changed: Test images whose label differs from the fp32 path's.
        accuracy_change: Fast-path accuracy minus fp32 accuracy, in percentage points.
        images: The number of test images compared.
        precision: The autocast precision that was measured.
    """

    labels_changed: int
    accuracy_change: float
    images: int = 10_000
    precision: str = "bf16"

    @property
    def passes(self) -> bool:
        """Whether both changes are within the limits, so the fast path may be the default.

        The limits are :data:`MAX_LABELS_CHANGED` and :data:`MAX_ACCURACY_CHANGE`.
        """
        return (
            self.labels_changed <= MAX_LABELS_CHANGED * self.images
            and abs(self.accuracy_change) <= MAX_ACCURACY_CHANGE
        )


#: The fast path against fp32 on the full MNIST test set, per registered name, with the
#: default release's weights (``python benchmarks/inference.py`` measures it again and says
#: when this table is out of date). A name whose check does not pass takes fp32 under
#: ``precision="auto"``; a model the table does not name takes the fast path.
FAST_PATH_CHECKS: dict[str, FastPathCheck] = {
    "simplecnn": FastPathCheck(labels_changed=0, accuracy_change=0.0),
    "deepercnn": FastPathCheck(labels_changed=0, accuracy_change=0.0),
    "minivgg": FastPathCheck(labels_changed=1, accuracy_change=-0.01),
    "ensemble": FastPathCheck(labels_changed=0, accuracy_change=0.0),
}


def _model_name(model: nn.Module) -> str | None:
    """The registered name a model records in ``pretrained_cfg`` (``None`` if it records none)."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict):
        return None
    name = cfg.get("name") or cfg.get("architecture")
    return name if isinstance(name, str) else None


def resolve_precision(
    model: nn.Module, precision: str, device: torch.device, batch: int | None = None
) -> str:
    """The precision :func:`predict_logits` runs ``model`` at: "fp32", "bf16" or "fp16".

    ``"auto"`` is the device's fast precision (see :func:`mnist_zoo.devices.select_precision`:
    bf16 on a CPU with native bf16 and on CUDA, fp32 elsewhere), unless the model's
    :data:`FAST_PATH_CHECKS` entry does not pass, or ``batch`` is below
    :data:`FAST_PATH_MIN_BATCH`: then it is ``"fp32"``. An explicit precision is returned as
    it is, once the device is known to run it.

    Args:
        model: The model; its ``pretrained_cfg`` names its entry in :data:`FAST_PATH_CHECKS`.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: Where the model runs.
        batch: The size of the largest chunk, if known.

    Returns:
        The resolved precision.

    Raises:
        InvalidArgumentError: An unknown precision, or one the device cannot run (a
            ``ValueError``).
    """
    resolved = select_precision(precision, device)
    if precision != "auto" or resolved == "fp32":
        return resolved
    check = FAST_PATH_CHECKS.get(_model_name(model) or "")
    if check is not None and not check.passes:
        return "fp32"
    if batch is not None and batch < FAST_PATH_MIN_BATCH:
        return "fp32"
    return resolved


class _FastCopy:
    """A prepared copy of a model and the fingerprint of the tensors it was made from."""

    def __init__(self, model: nn.Module) -> None:
        self.fingerprint = _fingerprint(model)
        self.model = _prepare(model)


#: Model -> its prepared copy; weak keys, so a copy goes when its model goes.
_FAST_COPIES: weakref.WeakKeyDictionary[nn.Module, _FastCopy] = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple[tuple[int, int, int], ...]:
    # id, storage and version counter of every tensor: replacing a tensor, moving the model
    # or modifying a tensor in place (optimizer steps, load_state_dict) changes one of them.
    return tuple(
        (id(t), t.data_ptr(), t._version) for t in chain(model.parameters(), model.buffers())
    )


def _prepare(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference: eval, no grad, batch norm folded, channels-last."""
    prepared = copy.deepcopy(model).eval().requires_grad_(False)
    for module in prepared.modules():
        if isinstance(module, nn.Sequential):
            _fold_batch_norms(module)
    return prepared.to(memory_format=torch.channels_last)


def _fold_batch_norms(sequence: nn.Sequential) -> None:
    """Fold every BatchNorm2d that directly follows a Conv2d in ``sequence`` into the conv."""
    items = list(sequence._modules.items())
    for (conv_key, conv), (bn_key, bn) in zip(items, items[1:], strict=False):
        if (
            type(conv) is nn.Conv2d
            and type(bn) is nn.BatchNorm2d
            and bn.track_running_stats
            and bn.running_mean is not None
        ):
            sequence._modules[conv_key] = torch.nn.utils.fuse_conv_bn_eval(conv, bn)
            del sequence._modules[bn_key]


def fast_copy(model: nn.Module) -> nn.Module:
    """The copy of ``model`` the fast path runs: made on first use, then reused.

    See the module documentation for what the copy is and when it is rebuilt. A model that
    cannot be deep-copied is returned itself (the fast path then runs it as it is, in
    autocast, without the copy's speed-ups).

    Args:
        model: Any module.

    Returns:
        The prepared copy: in eval mode, without gradients, batch norm folded, channels-last.
    """
    cached = _FAST_COPIES.get(model)
    if cached is not None and cached.fingerprint == _fingerprint(model):
        return cached.model
    try:
        fresh = _FastCopy(model)
    except (TypeError, RuntimeError, copy.Error):  # e.g. a module holding a lock or a file
        return model
    _FAST_COPIES[model] = fresh
    return fresh.model


def clear_fast_copies() -> None:
    """Forget every prepared copy, so that the next fast call prepares the model afresh.

    Needed only after writing a model's weights through ``tensor.data``, which the cache
    cannot see (see the module documentation).
    """
    _FAST_COPIES.clear()


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    precision: str = "auto",
) -> torch.Tensor:
    """The logits :func:`mnist_zoo.predict` computes: exact fp32, or the fast path.

    With a precision that resolves to fp32 (see :func:`resolve_precision`) this is
    :func:`batched_logits` on the model itself. Otherwise each batch runs through
    :func:`fast_copy` of the model, channels-last, under autocast.

    Args:
        model: A classifier taking (N, 1, 28, 28) float images in [0, 1]; on ``device``.
        images: (N, 1, 28, 28) images, uint8 0-255 or float in [0, 1], on any device.
        batch_size: How many images are moved to ``device`` and converted at once (on the
            CPU, the model runs on pieces of at most :data:`CPU_MAX_BATCH`).
        device: Where the batches go; defaults to the device of the model's parameters.
        precision: ``"auto"`` (the fast path where it is the model's default), ``"fp32"``
            (the exact path), ``"bf16"`` or ``"fp16"`` (the fast path, forced).

    Returns:
        (N, C) float32 logits on ``device``.

    Raises:
        InvalidArgumentError: ``images`` is empty, ``batch_size`` is not a positive integer,
            the precision is unknown or not available on the device, or the model does not
            return one row of logits per image (a ``ValueError``).
    """
    check_batch_size(batch_size)
    device = model_device(model) if device is None else torch.device(device)
    resolved = resolve_precision(model, precision, device, min(batch_size, len(images)))
    if resolved == "fp32":
        return batched_logits(model, images, batch_size=batch_size, device=device)
    if len(images) == 0:
        raise InvalidArgumentError("Cannot evaluate on an empty set of images.")
    # The prepared copy is in eval mode already; eval_mode is for a model that could not be
    # copied.
    return _logits_in_batches(
        fast_copy(model), images, batch_size, device, resolved, channels_last=True
    )
