"""Predict digits with any zoo model, from MNIST arrays or from photos and scans of digits.

```python
import mnist_zoo
model = mnist_zoo.create_model("simplecnn")
pred = mnist_zoo.predict(model, ["three.png", "seven.jpg"])
pred.labels, pred.confidence       # tensor([3, 7]), tensor([0.99, 0.97])
```

**When preprocessing applies.** The models expect MNIST's convention: a 28x28 white digit on
a black background, scaled so its longer side is 20 px and centred by its centre of mass.

* PIL images and file paths are photos or scans, so :func:`predict` always runs them through
  :func:`preprocess`, whatever their size.
* Arrays and tensors that are already 28x28 are taken to follow MNIST's convention and are used
  as they are (uint8 0-255 or float 0-1). Arrays of any other size are run through
  :func:`preprocess` image by image.
* ``predict(..., preprocess=None)`` turns preprocessing off: every input must then be 28x28.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

__all__ = ["ImageInput", "Prediction", "load_image", "predict", "preprocess"]

#: One picture: a PIL image, a path to an image file, or an array / tensor of pixels.
ImageInput: TypeAlias = Image.Image | str | os.PathLike | np.ndarray | torch.Tensor

#: MNIST's geometry: the digit's longer side is scaled to 20 px inside a 28x28 frame, and the
#: centre of mass sits on pixel (14, 14) (the measured mean over MNIST's test set is 13.99, 14.01).
SIZE = 28
BOX = 20
CENTRE = 14

#: A picture whose darkest (or brightest) pixel differs from the paper by less than this, on a
#: 0-1 scale, has no ink on it.
_MIN_CONTRAST = 0.1
#: Pixels fainter than this fraction of the ink's contrast are paper (texture, noise, shading).
_PAPER_FLOOR = 0.2
#: Stroke width in output pixels, estimated as 2 * area / perimeter of the ink before resizing.
#: On MNIST's test digits (upscaled 4x, as if scanned) this gives a median of 1.6 px and a 1st
#: percentile of 0.8 px. A digit drawn with a finer pen than that is thickened to the median,
#: to look like the digits the models learned from.
_MIN_STROKE = 0.8
_TARGET_STROKE = 1.6
#: Thickening is done at this multiple of the output resolution, which keeps it cheap and
#: resolution-independent for large photos.
_WORK_SCALE = 4


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
        """The predicted labels as a list of Python ints."""
        return self.labels.tolist()

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __iter__(self) -> Iterator[int]:
        return iter(self.tolist())


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file, applying its EXIF orientation (phone photos are often stored rotated).

    Args:
        path: Path of a PNG, JPEG or any other format Pillow reads.

    Returns:
        The fully loaded image; the file is closed.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        ValueError: If the file is not an image Pillow can read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {str(path)!r}.")
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise ValueError(f"{str(path)!r} is not an image file Pillow can read.") from None


def preprocess(image: ImageInput) -> torch.Tensor:
    """Bring a picture of one handwritten digit to MNIST's convention.

    The steps, in order:

    1. Greyscale in [0, 1]. Transparent images are composited on white first, as a viewer
       shows them.
    2. Paper and ink. The median of the border pixels is the paper's colour. The ink is
       whichever extreme, darkest or brightest pixel, lies further from it, so dark ink on
       light or grey paper is inverted and a white digit on black is not. Subtracting the paper
       and dividing by the ink's contrast maps paper to 0 and the strongest ink to 1; values
       below 0.2 (paper texture, noise, shading) become 0.
    3. Crop to the bounding box of the remaining ink.
    4. Strokes thinner than 0.8 px at the final scale (a fine pen on a large picture) are
       thickened to MNIST's typical 1.6 px.
    5. Resize (Lanczos, antialiased) so the longer side is 20 px, keeping the aspect ratio.
    6. Paste into a black 28x28 frame at the integer offset that puts the centre of mass
       closest to pixel (14, 14), as LeCun et al. did for MNIST, moving it only as far as
       keeps all ink inside the frame.

    Args:
        image: A PIL image, a path to an image file, or a greyscale numpy array / torch tensor
            of shape (H, W) or (1, H, W), either uint8 0-255 or float 0-1.

    Returns:
        A float32 tensor of shape (1, 28, 28) in [0, 1]: a white digit on black.

    Raises:
        ValueError: If the picture is blank (no ink), not an image file, or an array of the
            wrong shape or with values outside the allowed range.
        TypeError: For an unsupported input type or array dtype.
        FileNotFoundError: If a path does not exist.
    """
    pixels = _greyscale(image)
    if pixels.size == 0:
        raise ValueError(f"The image is empty: its size is {pixels.shape[1]}x{pixels.shape[0]}.")
    ink = _crop_to_ink(_ink(pixels))
    scale = BOX / max(ink.shape)
    ink = _thicken_thin_strokes(ink, scale)
    digit = _resize_longer_side(ink, BOX)
    return torch.from_numpy(_centre_by_mass(digit)).unsqueeze(0)


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
        ValueError: For an empty batch, a wrong shape, NaN or infinite values, float values
            outside [0, 1], a blank picture, a file that is not an image, or a non-28x28 input
            with preprocessing off.
        TypeError: For unsupported input types or dtypes.
        FileNotFoundError: If a path does not exist.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    batch = _to_batch(images, preprocess)
    if device is None:
        device = _device_of(model)
    else:
        model.to(device)

    # Saving every submodule's flag, not just the root's, keeps a deliberately frozen part
    # (e.g. batch norm left in eval mode while fine-tuning) frozen after the call.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            chunks = [
                _softmax_rows(model(chunk.to(device)), len(chunk)).cpu()
                for chunk in batch.split(batch_size)
            ]
    finally:
        for module, training in modes:
            module.training = training
    # Concatenating outside inference mode returns ordinary tensors, which callers may
    # modify in place or use in autograd.
    probs = torch.cat(chunks)
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
        raise ValueError("No images to predict: the list is empty.")
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
    pixels = _greyscale(item)
    _require_mnist_size(pixels.shape)
    return torch.from_numpy(pixels).view(1, 1, SIZE, SIZE)


def _array_batch(
    array: np.ndarray | torch.Tensor,
    preprocess: Callable[[ImageInput], torch.Tensor] | None,
) -> torch.Tensor:
    """An (H, W), (N, H, W) or (N, 1, H, W) array as an (N, 1, 28, 28) float batch."""
    x = _as_unit_float(array)
    shape = tuple(x.shape)
    if x.ndim == 2:
        x = x[None]
    elif x.ndim == 3:
        if shape[-1] in (3, 4) and min(shape[:2]) > 4:
            raise ValueError(
                f"Got an array of shape {shape}, which looks like a colour (H, W, C) image. "
                "Pass greyscale (H, W) arrays, or PIL.Image.fromarray(array) to convert."
            )
    elif x.ndim == 4:
        if shape[1] != 1:
            raise ValueError(
                f"Expected a 4-D batch of shape (N, 1, H, W), got {shape}: greyscale images "
                "have one channel."
            )
        x = x[:, 0]
    else:
        raise ValueError(
            f"Expected an array of shape (H, W), (N, H, W) or (N, 1, H, W), got {x.ndim} "
            f"dimensions {shape}."
        )
    if x.shape[0] == 0:
        raise ValueError(f"No images to predict: the batch of shape {shape} is empty.")
    if tuple(x.shape[1:]) == (SIZE, SIZE):
        return x.unsqueeze(1)
    if preprocess is None:
        _require_mnist_size(tuple(x.shape[1:]))
    return torch.cat([_checked_preprocess_output(preprocess(img)) for img in x])


def _checked_preprocess_output(out: torch.Tensor) -> torch.Tensor:
    """A preprocess function's (28, 28) or (1, 28, 28) result as a (1, 1, 28, 28) batch."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) not in ((SIZE, SIZE), (1, SIZE, SIZE)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"preprocess must return a (1, 28, 28) tensor, got {got}.")
    return _as_unit_float(out).reshape(1, 1, SIZE, SIZE).cpu()


def _require_mnist_size(hw: tuple[int, ...]) -> None:
    if tuple(hw) != (SIZE, SIZE):
        raise ValueError(
            f"Images must be 28x28 when preprocessing is off, got {tuple(hw)}. Call "
            "mnist_zoo.preprocess(image) first, or pass preprocess=mnist_zoo.preprocess."
        )


def _as_unit_float(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate pixel values and return them as float32 in [0, 1], keeping the shape."""
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Unsupported array dtype {array.dtype}; use uint8 or float.")
        x = torch.from_numpy(np.require(array, requirements=("C", "W")))
    else:
        x = array.detach()
    if x.dtype == torch.uint8:
        return x.float() / 255
    if x.dtype == torch.bool:
        return x.float()
    if not x.is_floating_point():
        raise TypeError(
            f"Integer images must be uint8 (0-255), got {x.dtype}. Convert with "
            ".astype(np.uint8) / .to(torch.uint8), or divide by 255 for floats in [0, 1]."
        )
    x = x.float()
    if x.numel() == 0:
        return x
    if not torch.isfinite(x).all():
        raise ValueError("Images contain NaN or infinite values.")
    low, high = x.min().item(), x.max().item()
    tolerance = 1e-6  # float round-off from the caller's own scaling
    if low < -tolerance or high > 1 + tolerance:
        hint = " Divide 0-255 values by 255." if high <= 255 and low >= 0 else ""
        raise ValueError(f"Float images must be in [0, 1], got values in [{low}, {high}].{hint}")
    return x.clamp(0, 1)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _softmax_rows(logits: torch.Tensor, n: int) -> torch.Tensor:
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(f"The model must return (N, classes) logits, got {tuple(logits.shape)}.")
    return torch.softmax(logits.float(), dim=1)


# --- The preprocessing steps -------------------------------------------------------------------


def _greyscale(image: ImageInput) -> np.ndarray:
    """Any single picture as a float32 (H, W) array in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        return _pil_greyscale(image)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        x = _as_unit_float(image)
        if x.ndim == 3 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 2:
            raise ValueError(
                f"preprocess takes one greyscale image of shape (H, W), got {tuple(x.shape)}. "
                "For colour arrays use PIL.Image.fromarray(array)."
            )
        return x.cpu().numpy()
    raise TypeError(
        "Expected a PIL image, a path, a numpy array or a torch tensor, "
        f"got {type(image).__name__}."
    )


def _pil_greyscale(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # convert("L") clips 16-bit values at 255 instead of rescaling them.
        x = np.asarray(image, dtype=np.float32)
        return np.clip(x / (65535 if x.max() > 255 else 255), 0, 1)
    if image.mode == "F":
        return _as_unit_float(np.asarray(image, dtype=np.float32)).numpy()
    if "A" in image.getbands() or "transparency" in image.info:
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def _ink(pixels: np.ndarray) -> np.ndarray:
    """Ink intensity: 0 where the paper is, 1 for the strongest ink, whatever the polarity."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    paper = float(np.median(border))
    darker, lighter = paper - float(pixels.min()), float(pixels.max()) - paper
    contrast = max(darker, lighter)
    if contrast < _MIN_CONTRAST:
        raise ValueError(
            "No digit found: the image is blank (no pixel differs from the background by "
            f"more than {_MIN_CONTRAST:g})."
        )
    ink = (paper - pixels) if darker > lighter else (pixels - paper)
    ink = np.clip(ink / contrast, 0, 1)
    return np.clip((ink - _PAPER_FLOOR) / (1 - _PAPER_FLOOR), 0, 1).astype(np.float32)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: a stroke of length L and width w has area L*w and a
    perimeter of about 2L, so w is about 2 * area / perimeter."""
    mask = np.pad(ink > 0.5, 1)
    area = mask.sum()
    perimeter = (mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum()
    return 2 * area / perimeter if perimeter else 0.0


def _thicken_thin_strokes(ink: np.ndarray, scale: float) -> np.ndarray:
    """Dilate strokes thinner than ``_MIN_STROKE`` output pixels to ``_TARGET_STROKE``."""
    if _stroke_width(ink) * scale >= _MIN_STROKE:
        return ink
    # Work at a few times the output resolution: large enough for round strokes, small enough
    # that a phone photo needs only a dilation radius of a few pixels.
    work = _resize_longer_side(ink, BOX * _WORK_SCALE) if scale < 1 / _WORK_SCALE else ink
    work_scale = BOX / max(work.shape)
    width = _stroke_width(work)
    radius = max(1, round((_TARGET_STROKE / work_scale - width) / 2))
    return _dilate(work, radius)


def _dilate(ink: np.ndarray, radius: int) -> np.ndarray:
    """Greyscale dilation by a disk, i.e. drawing every stroke again with a round pen."""
    padded = np.pad(ink, radius)
    h, w = ink.shape
    out = np.zeros_like(padded)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius + radius:  # + radius rounds the disk
                out[radius + dy : radius + dy + h, radius + dx : radius + dx + w] = np.maximum(
                    out[radius + dy : radius + dy + h, radius + dx : radius + dx + w], ink
                )
    return out


def _resize_longer_side(ink: np.ndarray, side: int) -> np.ndarray:
    """Antialiased resize to ``side`` px on the longer side, with the strongest ink at 1."""
    h, w = ink.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32)).resize(
        size, Image.Resampling.LANCZOS
    )
    out = np.clip(np.asarray(resized, dtype=np.float32), 0, 1)
    # A stroke narrower than an output pixel comes out faint; MNIST's ink is always full white.
    peak = out.max()
    return out / peak if peak > 0 else out


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    h, w = digit.shape
    total = digit.sum()
    com_y = (digit.sum(axis=1) * np.arange(h)).sum() / total
    com_x = (digit.sum(axis=0) * np.arange(w)).sum() / total
    top = int(np.clip(round(CENTRE - com_y), 0, SIZE - h))
    left = int(np.clip(round(CENTRE - com_x), 0, SIZE - w))
    frame = np.zeros((SIZE, SIZE), dtype=np.float32)
    frame[top : top + h, left : left + w] = digit
    return frame
