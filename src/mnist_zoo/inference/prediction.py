"""Classify images with any zoo model: :class:`Prediction` and :func:`predict`.

```python
import mnist_zoo
model = mnist_zoo.create_model("simplecnn")
pred = mnist_zoo.predict(model, ["three.png", "seven.jpg"])
pred.labels, pred.confidence       # tensor([3, 7]), tensor([0.99, 0.97])
```

Every input kind is turned into one (N, 1, 28, 28) float batch here, preprocessing pictures
with :func:`mnist_zoo.inference.preprocess` where the package documentation says so; the model
then runs through :func:`mnist_zoo.inference.batched.batched_logits`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import ImageError, InvalidArgumentError
from .batched import batched_logits, check_batch_size
from .preprocessing import SIZE, ImageInput, as_unit_float, greyscale, preprocess

__all__ = ["Prediction", "predict"]


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
) -> Prediction:
    """Classify one or more images with ``model``.

    See the module documentation for which inputs are preprocessed. The model runs in eval mode
    under ``torch.inference_mode``; each submodule's training flag is restored afterwards.

    Args:
        model: A classifier taking (N, 1, 28, 28) float images in [0, 1] and returning logits,
            such as any model from :func:`mnist_zoo.create_model` or an ``Ensemble``.
        images: A PIL image, a path, a list of those (or of arrays), a numpy array or a torch
            tensor. Arrays may be (H, W), (N, H, W) or (N, 1, H, W), uint8 0-255 or float 0-1.
        batch_size: How many images go through the model at once.
        device: Where to run. Defaults to the device of the model's parameters; if given, the
            model is moved there (in place, as ``model.to(device)`` does).
        preprocess: Applied to PIL images and paths as given, and to each image of an array
            that is not 28x28 as an (H, W) float tensor in [0, 1]. Must return a (1, 28, 28)
            tensor. ``None`` turns preprocessing off; inputs must then already be 28x28.

    Returns:
        A :class:`Prediction` with one label and one row of probabilities per image, on the CPU.

    Raises:
        ImageError: For a wrong shape, NaN or infinite values, float values outside [0, 1],
            a blank picture, a file that is not an image, or a non-28x28 input with
            preprocessing off (a ``ValueError``).
        InvalidArgumentError: For an empty batch, a ``batch_size`` that is not a positive
            integer, a ``preprocess`` that returns the wrong shape, or a model that does not
            return (N, classes) logits (a ``ValueError``).
        TypeError: For unsupported input types or dtypes.
        FileNotFoundError: If a path does not exist.
    """
    check_batch_size(batch_size)
    batch = _to_batch(images, preprocess)
    if device is not None:
        model.to(device)
    logits = batched_logits(model, batch, batch_size=batch_size, device=device)
    probs = torch.softmax(logits, dim=1).cpu()
    return Prediction(labels=probs.argmax(dim=1), probs=probs)


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
    for item in images:
        if isinstance(item, (np.ndarray, torch.Tensor)):
            parts.append(_array_batch(item, preprocess).cpu())
        elif isinstance(item, (Image.Image, str, os.PathLike)):
            parts.append(_picture(item, preprocess))
        else:
            raise TypeError(
                "Each image must be a PIL image, a path, a numpy array or a torch tensor, "
                f"got {type(item).__name__}."
            )
    return torch.cat(parts)


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
    """An (H, W), (N, H, W) or (N, 1, H, W) array as an (N, 1, 28, 28) float batch."""
    x = as_unit_float(array)
    shape = tuple(x.shape)
    if x.ndim == 2:
        x = x[None]
    elif x.ndim == 3:
        if shape[-1] in (3, 4) and min(shape[:2]) > 4:
            raise ImageError(
                f"Got an array of shape {shape}, which looks like a colour (H, W, C) image. "
                "Pass greyscale (H, W) arrays, or PIL.Image.fromarray(array) to convert."
            )
    elif x.ndim == 4:
        if shape[1] != 1:
            raise ImageError(
                f"Expected a 4-D batch of shape (N, 1, H, W), got {shape}: greyscale images "
                "have one channel."
            )
        x = x[:, 0]
    else:
        raise ImageError(
            f"Expected an array of shape (H, W), (N, H, W) or (N, 1, H, W), got {x.ndim} "
            f"dimensions {shape}."
        )
    if x.shape[0] == 0:
        raise InvalidArgumentError(f"No images to predict: the batch of shape {shape} is empty.")
    if tuple(x.shape[1:]) == (SIZE, SIZE):
        return x.unsqueeze(1)
    if preprocess is None:
        _require_mnist_size(tuple(x.shape[1:]))
    return torch.cat([_checked_preprocess_output(preprocess(img)) for img in x])


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
