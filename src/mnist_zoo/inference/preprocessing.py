"""Bring a photo or scan of one handwritten digit to MNIST's convention.

```python
from mnist_zoo.inference import load_image, preprocess
x = preprocess(load_image("three.jpg"))   # (1, 28, 28) float32, a white digit on black
```

MNIST's convention: a 28x28 white digit on a black background, scaled so its longer side is
20 px and centred by its centre of mass. :func:`preprocess` lists the steps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..data import check_pixels, to_float_images
from ..errors import ImageError, PictureTooLargeError

__all__ = [
    "BOX",
    "CENTRE",
    "MAX_PIXELS",
    "SIZE",
    "ImageInput",
    "as_unit_float",
    "check_pixels",
    "greyscale",
    "load_image",
    "preprocess",
]

#: One picture: a PIL image, a path to an image file, or an array / tensor of pixels.
ImageInput: TypeAlias = Image.Image | str | os.PathLike | np.ndarray | torch.Tensor

#: MNIST's geometry: the digit's longer side is scaled to 20 px inside a 28x28 frame, and the
#: centre of mass sits on pixel (14, 14) (the measured mean over MNIST's test set is 13.99, 14.01).
SIZE = 28
BOX = 20
CENTRE = 14

#: The most pixels a picture file may have. :func:`load_image` refuses a bigger one from its
#: header, before decoding it: a decompression bomb (a small file that decodes to gigabytes)
#: costs nothing. A 48-megapixel phone photo passes; Pillow's own limit is 89 million.
MAX_PIXELS = 50_000_000

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


def load_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image file, applying its EXIF orientation (phone photos are often stored rotated).

    The picture's size is read from the file's header and checked before any pixel is
    decoded, so a decompression bomb is refused at the cost of reading its header.

    Args:
        path: Path of a PNG, JPEG or any other format Pillow reads.
        max_pixels: Refuse pictures with more pixels than this (width times height).

    Returns:
        The fully loaded image; the file is closed.

    Raises:
        FileNotFoundError: If there is no file at ``path`` (or a folder).
        PictureTooLargeError: If the picture has more than ``max_pixels`` pixels, or more
            than Pillow's own ``Image.MAX_IMAGE_PIXELS`` (an ``ImageError``).
        ImageError: If the file is not an image Pillow can read, or is damaged or truncated
            (a ``ValueError``).
        OSError: If the file cannot be read (no permission, say).
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is a folder, not an image file: pass the pictures in it, "
            f"e.g. {str(path / '*.png')!r}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {str(path)!r}.")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{str(path)!r} is not an image file Pillow can read.") from None
    # The warning is an error only under a warnings filter that says so; the check below
    # refuses such pictures anyway, having a lower limit.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise PictureTooLargeError(f"{str(path)!r} is too large to decode: {err}") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise PictureTooLargeError(
                f"{str(path)!r} is {width}x{height} = {width * height:,} pixels; the limit is "
                f"{max_pixels:,} (a decompression bomb?). Use a smaller copy."
            )
        try:
            image.load()
            return ImageOps.exif_transpose(image)
        # Pillow reports a truncated or damaged file as any of these, depending on the format.
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ImageError(f"{str(path)!r} is damaged or truncated ({err}).") from None


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
        ImageError: If the picture is blank (no ink), not an image file, a damaged or too
            large one (see :func:`load_image`), or an array of the wrong shape or with values
            outside the allowed range (a ``ValueError``).
        TypeError: For an unsupported input type or array dtype.
        FileNotFoundError: If a path does not exist.
    """
    pixels = greyscale(image)
    if pixels.size == 0:
        raise ImageError(f"The image is empty: its size is {pixels.shape[1]}x{pixels.shape[0]}.")
    ink = _crop_to_ink(_ink(pixels))
    scale = BOX / max(ink.shape)
    ink = _thicken_thin_strokes(ink, scale)
    digit = _resize_longer_side(ink, BOX)
    return torch.from_numpy(_centre_by_mass(digit)).unsqueeze(0)


def as_unit_float(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate pixel values and return them as float32 in [0, 1], keeping the shape.

    Args:
        array: Pixels of any shape: uint8 0-255, bool, or float in [0, 1] (a round-off of
            1e-6 outside is clamped), in either byte order.

    Returns:
        A float32 tensor on the input's device; uint8 is divided by 255.

    Raises:
        TypeError: An integer dtype other than uint8, or a numpy dtype that is not a number.
        ImageError: Float values that are NaN, infinite or outside [0, 1] (a ``ValueError``).
    """
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Unsupported array dtype {array.dtype}; use uint8 or float.")
        if not array.dtype.isnative:  # big-endian data read from a file: torch takes native only
            array = array.astype(array.dtype.newbyteorder("="))
        x = torch.from_numpy(np.require(array, requirements=("C", "W")))
    else:
        x = array.detach()
    check_pixels(x)
    if x.dtype in (torch.uint8, torch.bool):
        return to_float_images(x)
    return to_float_images(x).clamp(0, 1)


# --- The preprocessing steps -------------------------------------------------------------------


def greyscale(image: ImageInput) -> np.ndarray:
    """Any single picture as a float32 (H, W) array in [0, 1]: step 1 of :func:`preprocess`.

    Args:
        image: As for :func:`preprocess`.

    Returns:
        The greyscale pixels; transparent images are composited on white first.

    Raises:
        ImageError: An array that is not one (H, W) or (1, H, W) image, a value out of range,
            or a file that is not an image (a ``ValueError``).
        TypeError: An unsupported input type or array dtype.
        FileNotFoundError: A path that does not exist.
    """
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        return _pil_greyscale(image)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        x = as_unit_float(image)
        if x.ndim == 3 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 2:
            raise ImageError(
                f"preprocess takes one greyscale image of shape (H, W), got {tuple(x.shape)}. "
                "For colour arrays use PIL.Image.fromarray(array), or predict, which reads "
                "(H, W, C) arrays."
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
        return as_unit_float(np.asarray(image, dtype=np.float32)).numpy()
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
        raise ImageError(
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
