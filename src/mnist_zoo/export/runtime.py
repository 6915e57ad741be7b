"""``OnnxModel``: an exported ONNX file run with ONNX Runtime, with the package's ``predict``.

```python
from mnist_zoo.export import OnnxModel
model = OnnxModel("minivgg.onnx")
model.predict(["three.png", "seven.jpg"]).labels      # as mnist_zoo.predict(model, ...)
logits = model.logits(test.images)                    # (N, 10) float32, uint8 or float input
model.metadata["weights_sha256"]                      # what the file says about itself
```

Its :meth:`~OnnxModel.predict` takes every input :func:`mnist_zoo.predict` takes (arrays,
tensors, PIL images, paths, lists of them), converts them the same way and returns the same
:class:`~mnist_zoo.inference.Prediction`; only the network runs in ONNX Runtime instead of
PyTorch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import check_pixels, to_float_images
from ..errors import ExportError, InvalidArgumentError
from ..inference import Prediction, preprocess
from ..inference.batched import check_batch_size
from ..inference.prediction import _to_batch
from ..inference.preprocessing import ImageInput
from .writer import require

__all__ = ["OnnxModel"]


class OnnxModel:
    """An ONNX file exported by :func:`~mnist_zoo.export.export`, run in ONNX Runtime.

    Args:
        source: The ``.onnx`` file, or its bytes.
        threads: ONNX Runtime's intra-op threads; default: ``$OMP_NUM_THREADS`` when it is a
            positive integer (as PyTorch reads it), else ONNX Runtime's own choice (the
            physical cores).
        providers: ONNX Runtime execution providers, in order of preference; default
            ``["CPUExecutionProvider"]``.

    Attributes:
        session: The ``onnxruntime.InferenceSession``.
        metadata: The file's ``metadata_props`` (see :mod:`mnist_zoo.export.metadata`); empty
            for a file that records none.
        temperature: The temperature the file records (its ``temperature`` metadata), which
            :meth:`predict` divides the logits by; ``None`` when it records none.
        source: The file's path, or ``None`` when made from bytes.

    Raises:
        MissingDependencyError: ``onnxruntime`` is not installed (the ``export`` extra).
        ExportError: ONNX Runtime cannot load the file.
        FileNotFoundError: ``source`` names no file.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        (ort,) = require("onnxruntime")
        self.source = None if isinstance(source, bytes) else Path(source)
        if self.source is not None and not self.source.is_file():
            raise FileNotFoundError(f"No ONNX file at {self.source}.")
        options = ort.SessionOptions()
        threads = _env_threads() if threads is None else threads
        if threads is not None:
            options.intra_op_num_threads = threads
        model = source if isinstance(source, bytes) else os.fspath(source)
        try:
            self.session = ort.InferenceSession(
                model, options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:  # ONNX Runtime's own exception types
            where = self.source or "the ONNX bytes"
            raise ExportError(f"ONNX Runtime cannot load {where}: {err}") from err
        meta = self.session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map)
        self.temperature = _temperature(self.metadata, self.source)
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name

    def __repr__(self) -> str:
        name = self.metadata.get("model", "model")
        return f"OnnxModel({name!r}, source={str(self.source) if self.source else None!r})"

    def logits(self, images: torch.Tensor | np.ndarray, *, batch_size: int = 500) -> torch.Tensor:
        """The file's logits for a batch of images in the package's convention.

        Args:
            images: (N, 1, 28, 28) images, uint8 0-255 or float in [0, 1].
            batch_size: How many images ONNX Runtime runs at once.

        Returns:
            (N, classes) float32 logits on the CPU.

        Raises:
            InvalidArgumentError: ``images`` is not (N, 1, 28, 28) or is empty, or
                ``batch_size`` is not a positive integer (a ``ValueError``).
            ImageError: Float images with NaN, infinite values or values more than 0.5
                outside [0, 1], as the model refuses them (a ``ValueError``).
        """
        check_batch_size(batch_size)
        x = torch.as_tensor(images)
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28) or len(x) == 0:
            raise InvalidArgumentError(
                f"Expected (N, 1, 28, 28) images with N > 0, got {tuple(x.shape)}; use "
                "predict() for pictures, paths and other layouts."
            )
        x = x.detach().cpu()
        check_pixels(x, tolerance=0.5)  # as the model itself checks them
        x = to_float_images(x)
        chunks = [
            self.session.run([self._output], {self._input: chunk.contiguous().numpy()})[0]
            for chunk in x.split(batch_size)
        ]
        return torch.from_numpy(np.concatenate(chunks)).float()

    __call__ = logits

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        batch_size: int = 256,
        preprocess: Callable[[ImageInput], torch.Tensor] | None = preprocess,
        calibrated: bool = True,
    ) -> Prediction:
        """Classify one or more images, as :func:`mnist_zoo.predict` does, in ONNX Runtime.

        Args:
            images: Every input :func:`mnist_zoo.predict` accepts: a PIL image, a path, an
                array or tensor, or a list of those.
            batch_size: How many images ONNX Runtime runs at once.
            preprocess: As for :func:`mnist_zoo.predict`; ``None`` turns preprocessing off.
            calibrated: Divide the logits by the file's :attr:`temperature` before the softmax
                (as ``predict`` does with the model's stored one), when it records one; the
                labels are the same either way.

        Returns:
            A :class:`~mnist_zoo.inference.Prediction`: labels and probabilities, on the CPU.

        Raises:
            ImageError: An input :func:`mnist_zoo.predict` would refuse (a ``ValueError``).
            InvalidArgumentError: An empty batch or a bad ``batch_size`` (a ``ValueError``).
        """
        check_batch_size(batch_size)
        logits = self.logits(_to_batch(images, preprocess), batch_size=batch_size)
        if calibrated and self.temperature is not None:
            logits = logits / self.temperature
        probs = torch.softmax(logits, 1)
        return Prediction(labels=probs.argmax(dim=1), probs=probs)

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Run the session on raw inputs, as ``InferenceSession.run(None, feeds)`` does.

        Args:
            feeds: Input name to numpy array; the input is named ``"images"``.

        Returns:
            The outputs, as numpy arrays.
        """
        return self.session.run(None, feeds)


def _temperature(metadata: dict[str, str], source: Path | None) -> float | None:
    """The ``temperature`` a file's metadata records, checked: a finite number > 0."""
    text = metadata.get("temperature")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ExportError(
            f"{source or 'The ONNX file'} records a temperature of {text!r}, not a finite number "
            "> 0: export the model again (mnist_zoo.export.export)."
        )
    return value


def _env_threads() -> int | None:
    """``$OMP_NUM_THREADS`` as a thread count, or ``None`` when unset or not a positive integer.

    ONNX Runtime's own thread pool ignores the variable, so a process limited to one thread
    (a pinned training job, a test worker beside another) would otherwise run one spinning
    thread per core and slow its neighbours down.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
