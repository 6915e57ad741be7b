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

**Probabilities.** ``predict`` divides the logits by the temperature a pretrained model records
(:func:`stored_temperature`) before the softmax, so its probabilities are calibrated; the labels
are those of the raw logits. ``calibrated=False`` gives the raw softmax. ``tta=True`` averages
the probabilities over the test-time augmentation views of :mod:`~mnist_zoo.inference.tta`.

The modules: :mod:`~mnist_zoo.inference.batched` (the batched-inference primitive that
``predict``, :func:`mnist_zoo.evaluate_model` and the ensemble share),
:mod:`~mnist_zoo.inference.preprocessing` (pictures to MNIST's convention),
:mod:`~mnist_zoo.inference.tta` (test-time augmentation: shifts and small rotations, no flips)
and :mod:`~mnist_zoo.inference.prediction` (inputs to a batch, and :class:`Prediction`).
"""

from __future__ import annotations

from .batched import batched_logits, eval_mode
from .prediction import Prediction, predict, stored_temperature
from .preprocessing import ImageInput, load_image, preprocess
from .tta import TTA_VIEWS, TTAModel, augmented_views, tta_logits

__all__ = [
    "TTA_VIEWS",
    "ImageInput",
    "Prediction",
    "TTAModel",
    "augmented_views",
    "batched_logits",
    "eval_mode",
    "load_image",
    "predict",
    "preprocess",
    "stored_temperature",
    "tta_logits",
]
