"""Export a model to a file that runs without mnist_zoo: ONNX (any ONNX runtime) or ``.pt2``.

```python
import mnist_zoo
from mnist_zoo.export import OnnxModel, export

model = mnist_zoo.load_pretrained("minivgg")
export(model, "minivgg.onnx")               # checked in ONNX Runtime before it is kept
onnx_model = OnnxModel("minivgg.onnx")       # or any ONNX runtime, from any language
onnx_model.predict("three.png").labels       # the package's predict, in ONNX Runtime
```

The exported graph keeps the package's input convention, float (N, 1, 28, 28) images in
[0, 1] with the standardisation inside, for any batch size N, and carries its provenance in
its metadata. ONNX export and ONNX Runtime need the ``export`` extra
(``pip install "mnist-zoo[export]"``: onnx, onnxscript, onnxruntime); ``.pt2`` needs only
PyTorch.

The modules: :mod:`~mnist_zoo.export.writer` (:func:`export` and the check every file passes),
:mod:`~mnist_zoo.export.metadata` (what a file says about itself, and the check batch) and
:mod:`~mnist_zoo.export.runtime` (:class:`OnnxModel`).
"""

from __future__ import annotations

from ..errors import ExportError, MissingDependencyError
from .metadata import INPUT_CONVENTION, check_images, export_metadata, weights_sha256
from .runtime import OnnxModel
from .writer import (
    ATOL,
    CHECK_BATCH_SIZES,
    EXPORT_FORMATS,
    EXTRA_HINT,
    ONNX_INPUT,
    ONNX_OUTPUT,
    RTOL,
    compare_logits,
    export,
    require,
)

__all__ = [
    "ATOL",
    "CHECK_BATCH_SIZES",
    "EXPORT_FORMATS",
    "EXTRA_HINT",
    "INPUT_CONVENTION",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "RTOL",
    "ExportError",
    "MissingDependencyError",
    "OnnxModel",
    "check_images",
    "compare_logits",
    "export",
    "export_metadata",
    "require",
    "weights_sha256",
]
