"""``export``: a model to an ONNX or ``torch.export`` (``.pt2``) file, checked before it is kept.

```python
from mnist_zoo.export import export
export(model, "minivgg.onnx")                  # ONNX, dynamic batch, checked in ONNX Runtime
export(model, "minivgg.pt2", format="pt2")     # torch.export, checked in PyTorch
```

Every export runs the same steps: trace a copy of the model in eval mode on the CPU (the
model itself is not changed), with a dynamic batch dimension; serialise it with its metadata
(:mod:`mnist_zoo.export.metadata`) to a temporary file beside the target; read that file
back, run it on :func:`~mnist_zoo.export.metadata.check_images` at batch sizes 1, 7 and 16
(ONNX Runtime for ``.onnx``, ``torch.export.load`` for ``.pt2``) and compare with the model's
own fp32 logits; only then rename it into place (:mod:`mnist_zoo.atomic`). A file whose logits
differ by more than ``atol + rtol * |logit|`` (:data:`ATOL`, :data:`RTOL`), or whose labels
differ at all, is deleted and an :class:`~mnist_zoo.errors.ExportError` says by how much.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_writer
from ..errors import ExportError, InvalidArgumentError, MissingDependencyError
from ..inference import eval_mode
from .metadata import check_images as default_check_images
from .metadata import export_metadata

__all__ = [
    "ATOL",
    "CHECK_BATCH_SIZES",
    "EXPORT_FORMATS",
    "EXTRA_HINT",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "RTOL",
    "compare_logits",
    "export",
    "require",
]

#: The formats :func:`export` writes: ONNX (a graph any ONNX runtime runs) and ``torch.export``.
EXPORT_FORMATS = ("onnx", "pt2")
#: The absolute and relative tolerance on logits: an export is kept only when every logit is
#: within ``ATOL + RTOL * |logit|`` of the model's own fp32 logit (and every label agrees).
ATOL = 1e-4
RTOL = 1e-4
#: The batch sizes an export is run at before it is kept: one image, an odd batch, the whole
#: check batch. Any batch size works; these show the batch dimension really is dynamic.
CHECK_BATCH_SIZES = (1, 7, 16)
#: The names of the ONNX graph's input and output.
ONNX_INPUT = "images"
ONNX_OUTPUT = "logits"
#: What to install for ONNX export and ONNX Runtime.
EXTRA_HINT = 'pip install "mnist-zoo[export]"'
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def require(*packages: str) -> list[ModuleType]:
    """Import the optional packages ONNX export needs, or say which extra installs them.

    Args:
        *packages: Module names, e.g. ``"onnx"``, ``"onnxruntime"``.

    Returns:
        The imported modules, in order.

    Raises:
        MissingDependencyError: One of them is not installed (an ``ImportError``); the
            message names the ``export`` extra.
    """
    modules = []
    for name in packages:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as err:
            raise MissingDependencyError(
                f"ONNX export and ONNX Runtime need the packages {', '.join(_ONNX_PACKAGES)}; "
                f"{name} is not installed: {EXTRA_HINT}"
            ) from err
    return modules


def export(
    model: nn.Module,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    opset: int | None = None,
    check: bool = True,
    check_images: torch.Tensor | None = None,
    name: str | None = None,
) -> Path:
    """Export ``model`` to ``path``, run the file, and keep it only if it gives the same logits.

    The file takes what the model takes, float (N, 1, 28, 28) images in [0, 1] with the
    standardisation inside, for any N, and returns (N, classes) logits. Its metadata records
    the model's name, the mnist_zoo version, the SHA-256 of its weights and where they came
    from, the class labels and the input convention (:mod:`mnist_zoo.export.metadata`). An
    :class:`~mnist_zoo.Ensemble` exports as one graph.

    Args:
        model: Any zoo model or ensemble; it is not changed (a CPU copy is traced).
        path: The file to write; its folder must exist. An existing file is replaced only
            once the new one passed its check.
        format: ``"onnx"`` (needs the ``export`` extra) or ``"pt2"`` (``torch.export``).
            Default: the one ``path``'s extension names (``.onnx``, ``.pt2``), else ONNX.
        opset: The ONNX opset; default: the exporter's own default.
        check: Run the written file on the check batch and refuse it beyond the tolerance.
            ``False`` skips that (not recommended: the file is then unverified).
        check_images: The (N, 1, 28, 28) float images in [0, 1] to check on, instead of
            :func:`~mnist_zoo.export.metadata.check_images` (e.g. real MNIST test images); the
            file is run on the first 1 and 7 of them and on all of them.
        name: The model name to record, instead of the one ``model.pretrained_cfg`` gives.

    Returns:
        The path written.

    Raises:
        InvalidArgumentError: An unknown ``format``, or one that ``path``'s extension
            contradicts, a bad ``opset`` or badly shaped ``check_images`` (a ``ValueError``).
        FileNotFoundError: ``path``'s folder does not exist (checked before any work).
        MissingDependencyError: ``format="onnx"`` without the ``export`` extra.
        ExportError: The exporter refused the model, or the file's logits or labels differ
            from the model's beyond the tolerance; nothing was left at ``path``.
        OSError: The file cannot be written.
    """
    path = Path(path)
    format = _checked_format(format, path)
    if not path.parent.is_dir():  # found before the export runs, not when the file is written
        raise FileNotFoundError(f"No folder {path.parent} to write {path.name} in: create it.")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 7):
        raise InvalidArgumentError(f"opset must be an ONNX opset number, got {opset!r}.")
    images = _checked_images(check_images)
    traced = _cpu_eval_copy(model)
    with torch.inference_mode():
        expected = traced(images).float()
    metadata = export_metadata(model, expected.shape[1], name)
    metadata["tolerance"] = (
        f"checked at batch sizes {_batch_sizes(len(images))}: |logit - pytorch| <= "
        f"{ATOL:g} + {RTOL:g} * |pytorch|, same labels"
        if check
        else "not checked"
    )
    if format == "onnx":
        data = _onnx_bytes(traced, images, opset, metadata)
        runner = _onnx_runner
    else:
        data = _pt2_bytes(traced, images, metadata)
        runner = _pt2_runner
    with atomic_writer(path) as f:
        f.write(data)
        f.flush()
        if check:
            run = runner(_read_back(f))
            for n in _batch_sizes(len(images)):
                compare_logits(run(images[:n]), expected[:n], f"{path.name} at batch size {n}")
    return path


def _checked_format(format: str | None, path: Path) -> str:
    """The format to write ``path`` in; a file named for the other format is refused."""
    named = path.suffix.lower().lstrip(".")
    named = named if named in EXPORT_FORMATS else None
    if format is None:
        format = named or "onnx"
    if format not in EXPORT_FORMATS:
        raise InvalidArgumentError(
            f"Unknown export format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}."
        )
    if named not in (None, format):
        raise InvalidArgumentError(
            f"{path.name} has the .{named} extension, but the format asked is {format}: name "
            f"the file {path.stem}.{format}, or ask for {named}."
        )
    return format


def _checked_images(images: torch.Tensor | None) -> torch.Tensor:
    if images is None:
        return default_check_images()
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InvalidArgumentError(f"check_images must be an (N, 1, 28, 28) tensor, got {got}.")
    if len(images) == 0:
        raise InvalidArgumentError("check_images is empty.")
    images = images.detach().cpu()
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _batch_sizes(count: int) -> list[int]:
    return sorted({min(n, count) for n in (1, 7, count)})


def _cpu_eval_copy(model: nn.Module) -> nn.Module:
    """A CPU fp32 copy of ``model`` in eval mode, without gradients; ``model`` is untouched."""
    with eval_mode(model):
        traced = copy.deepcopy(model)
    return traced.float().cpu().eval().requires_grad_(False)


def compare_logits(got: np.ndarray | torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Raise unless ``got`` matches ``expected`` within :data:`ATOL` and :data:`RTOL`.

    Args:
        got: The logits the exported file gave.
        expected: The model's own fp32 logits for the same images.
        what: The file and batch, for the message.

    Raises:
        ExportError: A different shape, a logit beyond the tolerance, or a different label.
    """
    got = torch.as_tensor(np.asarray(got)).float()
    if got.shape != expected.shape:
        raise ExportError(
            f"{what}: the exported file returns shape {tuple(got.shape)}, the model "
            f"{tuple(expected.shape)}; the file was not kept."
        )
    excess = (got - expected).abs() - (ATOL + RTOL * expected.abs())
    labels = int((got.argmax(1) != expected.argmax(1)).sum())
    if bool((excess > 0).any()) or labels or not bool(torch.isfinite(got).all()):
        worst = float((got - expected).abs().max())
        raise ExportError(
            f"{what}: the exported file's logits differ from the model's by up to {worst:.3g} "
            f"(allowed: {ATOL:g} + {RTOL:g} * |logit|) and {labels} label(s) differ; the file "
            "was not kept. Export with format='pt2', or report the model and the torch and "
            "onnx versions."
        )


def _read_back(f: BinaryIO) -> bytes:
    """The bytes written so far to ``f``, read back from the file itself."""
    # The temporary file was opened read-write (tempfile.mkstemp); a second file object on the
    # same descriptor reads what is on disk without closing it.
    with open(f.fileno(), "rb", closefd=False) as reader:
        reader.seek(0)
        return reader.read()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines and its notes about absent optional packages."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _dynamic_batch() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim("batch", min=1)},)


def _example(images: torch.Tensor) -> torch.Tensor:
    # Traced at batch 2: a batch of 1 would be specialised to 1 instead of kept dynamic.
    return images[:2] if len(images) >= 2 else images.expand(2, -1, -1, -1)


def _onnx_bytes(
    model: nn.Module, images: torch.Tensor, opset: int | None, metadata: dict[str, str]
) -> bytes:
    onnx, _, _ = require(*_ONNX_PACKAGES)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model,
                (_example(images),),
                dynamo=True,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_shapes=_dynamic_batch(),
                opset_version=opset,
                verbose=False,
            )
    except Exception as err:  # the exporter raises many kinds; all mean "cannot export this"
        raise ExportError(f"torch.onnx.export could not export the model: {err}") from err
    proto = program.model_proto
    proto.doc_string = f"mnist_zoo {metadata['model']}: {metadata['input']}"
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _onnx_runner(data: bytes) -> Any:
    (ort,) = require("onnxruntime")
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's own exception types
        raise ExportError(f"ONNX Runtime cannot load the exported file: {err}") from err
    return lambda x: session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0]


def _pt2_bytes(model: nn.Module, images: torch.Tensor, metadata: dict[str, str]) -> bytes:
    try:
        with _quiet_exporter():
            program = torch.export.export(
                model, (_example(images),), dynamic_shapes=_dynamic_batch()
            )
    except Exception as err:
        raise ExportError(f"torch.export could not export the model: {err}") from err
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={"mnist_zoo.json": json.dumps(metadata)})
    return buffer.getvalue()


def _pt2_runner(data: bytes) -> Any:
    try:
        module = torch.export.load(io.BytesIO(data)).module()
    except Exception as err:
        raise ExportError(f"torch.export.load cannot load the exported file: {err}") from err

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run
