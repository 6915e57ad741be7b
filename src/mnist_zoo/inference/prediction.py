"""Classify images with any zoo model: :class:`Prediction` and :func:`predict`.

```python
import mnist_zoo
model = mnist_zoo.create_model("simplecnn")
pred = mnist_zoo.predict(model, ["three.png", "seven.jpg"])
pred.labels, pred.confidence       # tensor([3, 7]), tensor([0.99, 0.97])
```

Every input kind is turned into one (N, 1, 28, 28) float batch here, preprocessing pictures
with :func:`mnist_zoo.inference.preprocess` where the package documentation says so; the model
then runs through :func:`mnist_zoo.inference.batched.predict_logits`: the fast path (bf16
autocast, channels-last) where the hardware has it and the model's default allows it, the
exact fp32 path otherwise or with ``precision="fp32"``.

**Calibrated probabilities.** A model whose ``pretrained_cfg`` records a ``"temperature"`` (the
scalar fitted on its validation split and stored in ``config.json``) has its logits divided by
it before the softmax: the probabilities then mean what they say, while the labels (and hence
accuracy) stay exactly those of the raw logits. ``predict(..., calibrated=False)`` gives the
raw softmax. :func:`stored_temperature` reads the value.

**Test-time augmentation.** ``predict(..., tta=True)`` averages the probabilities over the views
of :mod:`mnist_zoo.inference.tta` (the image, four one-pixel shifts, two 8-degree rotations;
never flips). The temperature, when there is one, then divides the log of the averaged
probabilities.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..devices import select_device, select_precision
from ..errors import ImageError, InvalidArgumentError
from .batched import check_batch_size, model_device, predict_logits
from .preprocessing import SIZE, ImageInput, as_unit_float, greyscale, preprocess
from .tta import tta_logits

__all__ = ["Prediction", "predict", "stored_temperature"]


@dataclass(frozen=True, eq=False)
class Prediction:
    """The output of :func:`predict` for N images.

    Attributes:
        labels: (N,) int64 predicted digit per image.
        probs: (N, C) float32 class probabilities per image (each row sums to 1).
    """

    labels: torch.Tensor
    probs: torch.Tensor

    @property
    def confidence(self) -> torch.Tensor:
        """(N,) probability of the predicted label, i.e. the largest probability per image."""
        return self.probs.max(dim=1).values

    def tolist(self) -> list[int]:
        """The predicted labels as a list of Python ints.

        Returns:
            One label per image, in order.
        """
        return self.labels.tolist()

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __iter__(self) -> Iterator[int]:
        return iter(self.tolist())


def predict(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    preprocess: Callable[[ImageInput], torch.Tensor] | None = preprocess,
    precision: str = "auto",
    tta: bool = False,
    calibrated: bool = True,
) -> Prediction:
    """Classify one or more images with ``model``.

    See the module documentation for which inputs are preprocessed. The model runs in eval mode
    under ``torch.inference_mode``; each submodule's training flag is restored afterwards.

    ``precision="auto"`` takes the fastest path the machine has where it is the model's
    default: bf16 autocast with the channels-last layout on a CPU with native bf16 and on CUDA,
    through a copy of the model prepared once (see :mod:`mnist_zoo.inference.batched`), for
    batches of at least ``FAST_PATH_MIN_BATCH`` images; fp32 otherwise. The labels it gives
    were checked against fp32 on the full MNIST test set for the published weights
    (``FAST_PATH_CHECKS``). ``precision="fp32"`` forces the exact path. With ``tta=True``,
    ``"auto"`` takes the exact fp32 path (the fast path was checked without TTA).

    Args:
        model: A classifier taking (N, 1, 28, 28) float images in [0, 1] and returning logits,
            such as any model from :func:`mnist_zoo.create_model` or an ``Ensemble``.
        images: A PIL image, a path, a list of those (or of arrays), a numpy array or a torch
            tensor. Arrays are uint8 0-255 or float 0-1 (either byte order) and may be (H, W)
            one image; (N, H, W) or (N, 1, H, W) N images; (H, W, C) one picture or
            (N, H, W, C) N pictures with C = 1, 3 or 4 channels last (grey, RGB, RGBA,
            brought to grey as Pillow's ``convert("L")`` does, RGBA on white). The rule for
            a 3-D array: a last dimension of 1, 3 or 4 with both other sides at least 8 is
            one channel-last picture, so (28, 28, 3) is one picture; anything else is N
            images, so (3, 28, 28) is three. Every image must be at least 8x8 pixels.
        batch_size: How many images go through the model at once.
        device: Where to run: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
            ``torch.device``. Defaults to the device of the model's parameters; if given, the
            model is moved there (in place, as ``model.to(device)`` does).
        preprocess: Applied to PIL images and paths as given, and to each image of an array
            that is not 28x28 as an (H, W) float tensor in [0, 1]. Must return a (1, 28, 28)
            tensor. ``None`` turns preprocessing off; inputs must then already be 28x28.
        precision: ``"auto"``, ``"fp32"`` (exact), or ``"bf16"`` / ``"fp16"`` (the fast path
            at that precision, for any batch size; fp16 needs CUDA).
        tta: Average the probabilities over the test-time augmentation views of
            :data:`mnist_zoo.inference.tta.TTA_VIEWS` (shifts and small rotations, no flips).
        calibrated: Divide the logits by the temperature ``model.pretrained_cfg`` records, if
            it records one, before the softmax. Labels do not depend on it.

    Returns:
        A :class:`Prediction` with one label and one row of probabilities per image, on the CPU.

    Raises:
        ImageError: For a wrong shape, NaN or infinite values, float values outside [0, 1],
            a blank picture, a file that is not an image or is truncated, a picture file with
            more pixels than :func:`mnist_zoo.inference.load_image` accepts (a
            ``PictureTooLargeError``), or a non-28x28 input with preprocessing off (a
            ``ValueError``). With several inputs, the message starts with the failing one's
            position, e.g. ``images[2]: ...``, and nothing is returned for the others.
        InvalidArgumentError: For an empty batch, a ``batch_size`` that is not a positive
            integer, a ``preprocess`` that returns the wrong shape, an unknown ``precision`` or
            one the device cannot run, a model that does not return (N, classes) logits
            (a ``ValueError``), or a recorded temperature that is not a positive number.
        DeviceNotAvailableError: ``device`` names a device this machine does not have (a
            ``RuntimeError``).
        TypeError: For unsupported input types or dtypes.
        FileNotFoundError: If a path does not exist.
    """
    check_batch_size(batch_size)
    batch = _to_batch(images, preprocess)
    if device is not None:
        device = select_device(device)  # a device this machine lacks is named, not asserted
        model.to(device)
    if tta:
        where = model_device(model) if device is None else device
        exact = "fp32" if precision == "auto" else select_precision(precision, where)
        logits = tta_logits(model, batch, batch_size=batch_size, device=where, precision=exact)
    else:
        logits = predict_logits(
            model, batch, batch_size=batch_size, device=device, precision=precision
        )
    logits = logits.cpu()
    labels = logits.argmax(dim=1)  # from the raw logits: a temperature never changes a label
    temperature = stored_temperature(model) if calibrated else None
    probs = torch.softmax(logits if temperature is None else logits / temperature, dim=1)
    return Prediction(labels=labels, probs=probs)


def stored_temperature(model: nn.Module) -> float | None:
    """The temperature ``model.pretrained_cfg`` records, or ``None`` when it records none.

    :func:`mnist_zoo.hub.load_pretrained` sets it from ``config.json`` for weights saved with
    a fitted temperature (see :func:`mnist_zoo.calibration.fit_temperature`).

    Args:
        model: Any module; one without a ``pretrained_cfg`` has no temperature.

    Returns:
        The temperature as a float, or ``None``.

    Raises:
        InvalidArgumentError: The recorded value is not a positive, finite number.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    value = cfg.get("temperature") if isinstance(cfg, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidArgumentError(
            f"The model's pretrained_cfg records temperature {value!r}, not a positive number: "
            "fit one with mnist_zoo.calibration.fit_temperature, or remove the key."
        )
    return float(value)


# --- Turning inputs into a batch --------------------------------------------------------------


def _to_batch(
    images: ImageInput | Sequence[ImageInput],
    preprocess: Callable[[ImageInput], torch.Tensor] | None,
) -> torch.Tensor:
    """Every input kind as one (N, 1, 28, 28) float32 tensor in [0, 1]."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return _array_batch(images, preprocess)
    if isinstance(images, (Image.Image, str, os.PathLike)):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise TypeError(
            "images must be a PIL image, a path, a numpy array, a torch tensor or a list of "
            f"those, got {type(images).__name__}."
        )
    if not images:
        raise InvalidArgumentError("No images to predict: the list is empty.")
    parts = []
    for index, item in enumerate(images):
        try:
            parts.append(_item_batch(item, preprocess))
        except ImageError as err:
            if len(images) > 1 and err.args:  # say which input, keeping the error's class
                err.args = (f"images[{index}]: {err.args[0]}", *err.args[1:])
            raise
    return torch.cat(parts)


def _item_batch(
    item: ImageInput, preprocess: Callable[[ImageInput], torch.Tensor] | None
) -> torch.Tensor:
    """One item of a list of inputs as an (n, 1, 28, 28) batch on the CPU."""
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return _array_batch(item, preprocess).cpu()
    if isinstance(item, (Image.Image, str, os.PathLike)):
        return _picture(item, preprocess)
    raise TypeError(
        "Each image must be a PIL image, a path, a numpy array or a torch tensor, "
        f"got {type(item).__name__}."
    )


def _picture(
    item: Image.Image | str | os.PathLike,
    preprocess: Callable[[ImageInput], torch.Tensor] | None,
) -> torch.Tensor:
    """A PIL image or path as a (1, 1, 28, 28) batch."""
    if preprocess is not None:
        return _checked_preprocess_output(preprocess(item))
    pixels = greyscale(item)
    _require_mnist_size(pixels.shape)
    return torch.from_numpy(pixels).view(1, 1, SIZE, SIZE)


def _array_batch(
    array: np.ndarray | torch.Tensor,
    preprocess: Callable[[ImageInput], torch.Tensor] | None,
) -> torch.Tensor:
    """An array in any accepted layout (see :func:`predict`) as an (N, 1, 28, 28) float batch."""
    x = as_unit_float(array)
    shape = tuple(x.shape)
    x = _greyscale_images(x)
    if x.shape[0] == 0:
        raise InvalidArgumentError(f"No images to predict: the batch of shape {shape} is empty.")
    if tuple(x.shape[1:]) == (SIZE, SIZE):
        return x.unsqueeze(1)
    if preprocess is None:
        _require_mnist_size(tuple(x.shape[1:]))
    return torch.cat([_checked_preprocess_output(preprocess(img)) for img in x])


#: Channels a channel-last array may have: grey, RGB, RGBA.
_CHANNELS = (1, 3, 4)
#: ITU-R 601-2 luma, the weights of Pillow's ``convert("L")``.
_LUMA = (0.299, 0.587, 0.114)
#: The narrowest side an image in an array may have: a strip narrower than this is no digit.
_MIN_SIDE = 8
_ACCEPTED = (
    "Accepted: (H, W) one image; (N, H, W) or (N, 1, H, W) N images; (H, W, C) one picture "
    "or (N, H, W, C) N pictures with C = 1 (grey), 3 (RGB) or 4 (RGBA) channels last; "
    f"every image at least {_MIN_SIDE}x{_MIN_SIDE} pixels."
)


def _greyscale_images(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in any accepted layout as (N, H, W) greyscale images."""
    shape = tuple(x.shape)
    if x.ndim == 2:
        images = x[None]
    elif x.ndim == 3:
        images = _channels_to_grey(x)[None] if _channel_last(shape) else x
    elif x.ndim == 4 and shape[1] == 1:
        images = x[:, 0]
    elif x.ndim == 4 and _channel_last(shape[1:]):
        images = _channels_to_grey(x)
    elif x.ndim == 4:
        raise ImageError(
            f"Expected a 4-D batch of shape (N, 1, H, W) or (N, H, W, C), got {shape}: "
            f"greyscale images have one channel, and colour channels go last. {_ACCEPTED}"
        )
    else:
        raise ImageError(
            f"Expected an array of shape (H, W) or a batch of images, got {x.ndim} dimensions "
            f"{shape}. {_ACCEPTED}"
        )
    count, height, width = images.shape
    if count and min(height, width) < _MIN_SIDE:
        what = "1 image" if count == 1 else f"{count} images"
        raise ImageError(
            f"An array of shape {shape} reads as {what} of {height}x{width} pixels, too small "
            f"to be a picture of a digit. {_ACCEPTED}"
        )
    return images


def _channel_last(shape: tuple[int, ...]) -> bool:
    """Whether an (A, B, C) shape is one channel-last picture rather than A images of BxC."""
    return shape[-1] in _CHANNELS and min(shape[:2]) >= _MIN_SIDE


def _channels_to_grey(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W, C) float pixels in [0, 1] as (..., H, W) grey, as Pillow's convert("L")."""
    if x.shape[-1] == 1:
        return x[..., 0].contiguous()
    rgb = x[..., :3]
    if x.shape[-1] == 4:  # composited on white, as a viewer shows a transparent picture
        alpha = x[..., 3:]
        rgb = rgb * alpha + (1 - alpha)
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
    return (rgb @ luma).clamp_(0, 1)


def _checked_preprocess_output(out: torch.Tensor) -> torch.Tensor:
    """A preprocess function's (28, 28) or (1, 28, 28) result as a (1, 1, 28, 28) batch."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) not in ((SIZE, SIZE), (1, SIZE, SIZE)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InvalidArgumentError(f"preprocess must return a (1, 28, 28) tensor, got {got}.")
    return as_unit_float(out).reshape(1, 1, SIZE, SIZE).cpu()


def _require_mnist_size(hw: tuple[int, ...]) -> None:
    if tuple(hw) != (SIZE, SIZE):
        raise ImageError(
            f"Images must be 28x28 when preprocessing is off, got {tuple(hw)}. Call "
            "mnist_zoo.preprocess(image) first, or pass preprocess=mnist_zoo.preprocess."
        )
