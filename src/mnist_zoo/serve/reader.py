"""Read one picture with every served model: what the page's answers are computed by.

```python
from mnist_zoo.serve.reader import DigitReader
reader = DigitReader.load(["hub/simplecnn", "hub/deepercnn", "hub/minivgg"])
reading = reader.read(picture_bytes)     # PNG/JPEG bytes of one digit
reading.answer.label, reading.warnings    # the ensemble's digit, plain-language cautions
```

Every number comes from the library's own calls, so the page shows exactly what a script
would get: :func:`mnist_zoo.preprocess` makes the 28x28 image, :func:`mnist_zoo.predict` runs
each model on it, and :class:`mnist_zoo.Ensemble` of the loaded models gives the answer.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

# The package's public API only: what the page shows is what a user's script gets.
from .. import Ensemble, Prediction, load_pretrained, predict, preprocess
from ..errors import ImageError, InvalidArgumentError, PictureTooLargeError

__all__ = [
    "DEFAULT_MODELS",
    "LOW_CONFIDENCE",
    "MAX_PIXELS",
    "DigitReader",
    "ModelReading",
    "PictureTooLargeError",
    "Reading",
    "decode_picture",
]

#: What ``mnist-zoo serve`` loads without ``--model``: the three pinned pretrained models.
DEFAULT_MODELS: tuple[str, ...] = ("simplecnn", "deepercnn", "minivgg")
#: Below this probability for its digit, the answer comes with a low-confidence warning. The
#: pretrained models learned with label smoothing 0.1, so a clear digit scores about 0.9-0.95.
LOW_CONFIDENCE = 0.7
#: The largest picture decoded, in pixels (a 24-megapixel phone photo fits); bigger ones are
#: refused before their pixels are decoded, so a small file cannot unpack into gigabytes.
MAX_PIXELS = 25_000_000
#: The name the answer of several models is shown under.
ENSEMBLE_NAME = "ensemble"


@dataclass(frozen=True)
class ModelReading:
    """One model's reading of the picture.

    Attributes:
        name: The model's name on the page.
        label: The predicted digit.
        probs: The ten class probabilities.
    """

    name: str
    label: int
    probs: list[float]

    @property
    def confidence(self) -> float:
        """The probability of the predicted digit."""
        return self.probs[self.label]


@dataclass(frozen=True)
class Reading:
    """Everything the page shows about one picture.

    Attributes:
        pixels: The 28x28 image the models saw, as 784 uint8 values, row by row (white ink
            on black, MNIST's convention), exactly what the collect button saves.
        models: One reading per served model, in the order they were given.
        answer: The ensemble's reading when several models are served, else the only model's.
        warnings: Plain sentences for the page: the models disagree, the answer is unsure.
    """

    pixels: list[int]
    models: list[ModelReading]
    answer: ModelReading
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The reading as the JSON object the page receives.

        Returns:
            A dict with ``pixels``, ``models`` and ``answer`` (each model as ``name``,
            ``label``, ``probs``, ``confidence``), ``agree`` and ``warnings``.
        """

        def one(reading: ModelReading) -> dict[str, Any]:
            return {
                "name": reading.name,
                "label": reading.label,
                "probs": reading.probs,
                "confidence": reading.confidence,
            }

        return {
            "pixels": self.pixels,
            "models": [one(m) for m in self.models],
            "answer": one(self.answer),
            "agree": len({m.label for m in self.models}) == 1,
            "warnings": self.warnings,
        }


def decode_picture(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the bytes of an image file, turned upright by its EXIF orientation.

    This is what :func:`mnist_zoo.load_image` does for a file on disk, for bytes received
    over HTTP.

    Args:
        data: The content of a PNG, JPEG or any other file Pillow reads.
        max_pixels: Refuse pictures with more pixels than this.

    Returns:
        The fully loaded image.

    Raises:
        ImageError: The bytes are not an image Pillow can read, or are truncated.
        PictureTooLargeError: The picture has more than ``max_pixels`` pixels.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(
            "This is not an image file (PNG, JPEG, ...) that Pillow can read."
        ) from None
    except Image.DecompressionBombError as err:
        raise PictureTooLargeError(f"The picture is too large to decode: {err}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PictureTooLargeError(
            f"The picture is {width}x{height} pixels; the limit is {max_pixels / 1e6:g} "
            "megapixels. Send a smaller copy."
        )
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"The image file is damaged or truncated ({err}).") from None


class DigitReader:
    """Several models reading the same digit, safe to call from many server threads.

    Args:
        models: ``(name, model)`` pairs, each model as returned by
            :func:`mnist_zoo.load_pretrained`. With two or more, an
            :class:`~mnist_zoo.Ensemble` of them (equal weights) gives the answer.
        low_confidence: Warn when the answer's probability is below this.

    Raises:
        InvalidArgumentError: No models, a repeated name, or ``low_confidence`` outside [0, 1].
    """

    def __init__(
        self, models: Sequence[tuple[str, nn.Module]], low_confidence: float = LOW_CONFIDENCE
    ) -> None:
        names = [name for name, _ in models]
        if not names:
            raise InvalidArgumentError("Serve at least one model.")
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"Each model needs its own name, got {names}.")
        if ENSEMBLE_NAME in names and len(names) > 1:
            raise InvalidArgumentError(
                f"{ENSEMBLE_NAME!r} names the answer of several models; rename that model."
            )
        if not 0 <= low_confidence <= 1:
            raise InvalidArgumentError(f"low_confidence must be in [0, 1], got {low_confidence}.")
        self.models = list(models)
        self.ensemble: nn.Module | None = (
            Ensemble([m for _, m in models]).eval() if len(models) > 1 else None
        )
        self.low_confidence = low_confidence
        # predict() flips and restores the models' training flags, and the ensemble shares
        # its members with the single models: one model run at a time keeps that consistent.
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, names_or_folders: Sequence[str | os.PathLike[str]] = DEFAULT_MODELS
    ) -> DigitReader:
        """Load models by registry name or Hub folder with :func:`mnist_zoo.load_pretrained`.

        A model is shown under the name given, or a folder's last component
        (``hub/minivgg`` is shown as ``minivgg``); a repeated name gets a number.

        Args:
            names_or_folders: Pretrained model names, ``"ensemble"``, or Hub-layout folders.

        Returns:
            The reader, on the CPU.

        Raises:
            UnknownModelError: A name is neither registered nor a folder.
            HubError: A model could not be loaded (a subclass says why).
        """
        models: list[tuple[str, nn.Module]] = []
        for item in names_or_folders:
            name = Path(item).name or os.fspath(item)
            taken = {n for n, _ in models} | (
                {ENSEMBLE_NAME} if len(names_or_folders) > 1 else set()
            )
            unique, n = name, 2
            while unique in taken:
                unique, n = f"{name} ({n})", n + 1
            models.append((unique, load_pretrained(item)))
        return cls(models)

    @property
    def names(self) -> list[str]:
        """The served models' names, then ``"ensemble"`` when there are several."""
        return [n for n, _ in self.models] + ([ENSEMBLE_NAME] if self.ensemble else [])

    def read(self, picture: bytes | Image.Image) -> Reading:
        """Preprocess a picture and let every model read it.

        Args:
            picture: The bytes of an image file, or a PIL image.

        Returns:
            The 28x28 input, each model's reading, the answer and the warnings.

        Raises:
            ImageError: Not an image, too large, or blank (no digit on it).
        """
        image = decode_picture(picture) if isinstance(picture, bytes) else picture
        try:
            x = preprocess(image)
        except ValueError as err:  # a blank picture: the message says so
            raise ImageError(str(err)) from None
        batch = x.unsqueeze(0)
        with self._lock:
            readings = [_reading(name, predict(m, batch)) for name, m in self.models]
            answer = (
                _reading(ENSEMBLE_NAME, predict(self.ensemble, batch))
                if self.ensemble is not None
                else readings[0]
            )
        pixels = torch.round(x[0] * 255).to(torch.uint8).flatten().tolist()
        return Reading(pixels, readings, answer, self._warnings(readings, answer))

    def _warnings(self, readings: list[ModelReading], answer: ModelReading) -> list[str]:
        warnings = []
        if len({r.label for r in readings}) > 1:
            votes = ", ".join(f"{r.name} reads {r.label}" for r in readings)
            warnings.append(f"The models disagree: {votes}.")
        if answer.confidence < self.low_confidence:
            warnings.append(
                f"Low confidence: {answer.name} is only {100 * answer.confidence:.0f}% sure "
                f"it is a {answer.label}. Try drawing it larger or more clearly."
            )
        return warnings


def _reading(name: str, prediction: Prediction) -> ModelReading:
    probs = [round(p, 6) for p in prediction.probs[0].tolist()]
    return ModelReading(name, int(prediction.labels[0]), probs)
