"""What an exported file says about itself, and the digits every export is checked on.

The metadata is a flat mapping of strings, stored as ONNX ``metadata_props`` (and as
``mnist_zoo.json`` among a ``.pt2`` archive's extra files):

| key | value |
| --- | --- |
| ``model`` | the registered name (``"minivgg"``, ``"ensemble"``), or the class name |
| ``architecture``, ``model_kwargs`` | how to build it again (``model_kwargs`` as JSON) |
| ``mnist_zoo_version`` | the version that exported it |
| ``weights_sha256`` | SHA-256 of the weights as ``save_pretrained`` writes them |
| ``weights_source`` | where they were loaded from, or why that is not known |
| ``members`` | an ensemble's members: JSON list of name, ``weights_sha256``, source |
| ``labels`` | JSON list: the class of each output column, ``["0", ..., "9"]`` |
| ``input``, ``output`` | the input convention and what the output holds |
| ``tolerance`` | the check the file passed when it was written |
| ``temperature`` | the model's stored temperature (``config.json``'s calibration), if any: \
logits / temperature give calibrated probabilities, which ``OnnxModel.predict`` returns |

``weights_sha256`` is computed from the model's tensors, not copied from its provenance, so it
is true for any model; for weights loaded unchanged from the Hub or a Hub folder it is the
SHA-256 of their ``model.safetensors``, which ``weights_source`` then names.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import safetensors.torch
import torch
from PIL import Image, ImageDraw
from torch import nn

from .._version import __version__
from ..inference.prediction import stored_temperature

__all__ = ["INPUT_CONVENTION", "check_images", "export_metadata", "weights_sha256"]

#: The input every exported graph takes, as its metadata states it.
INPUT_CONVENTION = (
    "images: float32 (N, 1, 28, 28), pixels in [0, 1], a white digit on black as in MNIST "
    "(mnist_zoo.preprocess brings a photo there); any N; standardisation is inside the graph"
)
_OUTPUT = "logits: float32 (N, {classes}); softmax gives the class probabilities"
_ENSEMBLE_OUTPUT = (
    "logits: float32 (N, {classes}), the log of the members' averaged probabilities; softmax "
    "gives those probabilities"
)


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of ``model``'s weights serialised as :func:`mnist_zoo.hub.save_pretrained` does.

    For weights loaded unchanged from a Hub folder or the Hub, this is the SHA-256 of their
    ``model.safetensors``.

    Args:
        model: Any module.

    Returns:
        The hex digest.
    """
    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    return hashlib.sha256(safetensors.torch.save(state, metadata={"format": "pt"})).hexdigest()


def _source(cfg: dict[str, Any], sha256: str) -> str:
    """Where weights with ``sha256`` came from, as ``pretrained_cfg`` records it."""
    recorded = cfg.get("sha256")
    if not recorded:
        return "not loaded from the Hub or a Hub folder"
    origin = (
        f"{cfg['repo_id']}@{cfg['revision']}"
        if cfg.get("repo_id") and cfg.get("revision")
        else str(cfg.get("source") or cfg.get("repo_id") or "a Hub folder")
    )
    if str(recorded).lower() != sha256:
        return f"changed since they were loaded from {origin} (SHA-256 {recorded})"
    return origin


def _member(model: nn.Module) -> dict[str, str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    sha256 = weights_sha256(model)
    name = cfg.get("name") or cfg.get("architecture") or type(model).__name__
    return {"name": str(name), "weights_sha256": sha256, "weights_source": _source(cfg, sha256)}


def export_metadata(model: nn.Module, num_classes: int, name: str | None = None) -> dict[str, str]:
    """The metadata an export of ``model`` carries (see the module documentation for the keys).

    Args:
        model: The model being exported; its ``pretrained_cfg`` gives the provenance.
        num_classes: The number of output columns.
        name: The name to record instead of the one ``pretrained_cfg`` gives.

    Returns:
        The metadata, every value a string.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    members = getattr(model, "members", None)
    is_ensemble = isinstance(members, nn.ModuleList)
    meta = {
        "model": name or str(cfg.get("name") or cfg.get("architecture") or type(model).__name__),
        "mnist_zoo_version": __version__,
        "labels": json.dumps([str(i) for i in range(num_classes)]),
        "input": INPUT_CONVENTION,
        "output": (_ENSEMBLE_OUTPUT if is_ensemble else _OUTPUT).format(classes=num_classes),
    }
    if cfg.get("architecture"):
        meta["architecture"] = str(cfg["architecture"])
        meta["model_kwargs"] = json.dumps(cfg.get("model_kwargs") or {}, sort_keys=True)
    if is_ensemble:
        meta["members"] = json.dumps([_member(m) for m in members])  # type: ignore[union-attr]
        meta["member_weights"] = json.dumps([round(w, 6) for w in model.weights.tolist()])
    else:
        member = _member(model)
        meta["weights_sha256"] = member["weights_sha256"]
        meta["weights_source"] = member["weights_source"]
    temperature = stored_temperature(model)
    if temperature is not None:
        meta["temperature"] = repr(float(temperature))
    return meta


# --- The check batch -----------------------------------------------------------------------------

# Seven-segment strokes on a 3x5 grid (x right, y down): a digit is drawn as these segments,
# slanted and thickened like handwriting, then brought to MNIST's 28x28 geometry.
_SEGMENTS = {
    "a": ((0, 0), (2, 0)), "b": ((2, 0), (2, 2)), "c": ((2, 2), (2, 4)), "d": ((0, 4), (2, 4)),
    "e": ((0, 2), (0, 4)), "f": ((0, 0), (0, 2)), "g": ((0, 2), (2, 2)),
}  # fmt: skip
_DIGITS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")
#: (digit, slant, stroke width, horizontal shift) of the images after the ten upright digits.
_VARIANTS = ((0, 0.3, 14, 0), (1, -0.2, 10, 6), (2, 0.25, 18, -4),
             (7, 0.35, 12, 4), (8, -0.15, 16, 0), (9, 0.2, 11, -6))  # fmt: skip
_SCALE = 4  # drawn at 4x and downsampled, which antialiases the strokes as MNIST's are


def _digit(digit: int, slant: float, width: int, shift: int) -> torch.Tensor:
    """One digit as a (28, 28) float image in [0, 1]: white on black, about 20 px tall."""
    size = 28 * _SCALE
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    top, height, wide = 4 * _SCALE, 20 * _SCALE, 12 * _SCALE

    def point(x: float, y: float) -> tuple[float, float]:
        py = top + y * height / 4
        return size / 2 - wide / 2 + x * wide / 2 + slant * (size / 2 - py) + shift, py

    for segment in _DIGITS[digit]:
        start, end = _SEGMENTS[segment]
        draw.line([point(*start), point(*end)], fill=255, width=width)
        for x, y in (start, end):  # round joints
            cx, cy = point(x, y)
            draw.ellipse([cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2], fill=255)
    small = image.resize((28, 28), Image.Resampling.BOX)
    return torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8).view(28, 28) / 255


@functools.cache
def _check_batch() -> torch.Tensor:
    digits = [_digit(d, 0.1, 12, 0) for d in range(10)] + [_digit(*v) for v in _VARIANTS]
    return torch.stack(digits).unsqueeze(1)


def check_images() -> torch.Tensor:
    """The fixed batch every export is checked on: 16 MNIST-like digits, drawn, not loaded.

    The ten digits upright, then six slanted, shifted and thicker or thinner ones: the same
    pixels on every machine, and no dataset needed.

    Returns:
        A new (16, 1, 28, 28) float32 tensor in [0, 1].
    """
    return _check_batch().clone()
