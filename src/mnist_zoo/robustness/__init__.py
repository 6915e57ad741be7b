"""Robustness: MNIST-C's corruptions of the test set and a model's accuracy under each.

```python
import mnist_zoo
from mnist_zoo.robustness import evaluate_corruptions

test = mnist_zoo.MNIST(split="test")
result = evaluate_corruptions(model, test.images, test.targets)
print(result.format())          # accuracy per corruption, the mean, NLL and ECE on clean data
```

:mod:`~mnist_zoo.robustness.corruptions` holds the 15 corruptions of MNIST-C (Mu & Gilmer,
2019), :mod:`~mnist_zoo.robustness.suite` builds the corrupted test sets and scores a model on
them. docs/robustness.md describes the method and where it departs from MNIST-C.
"""

from __future__ import annotations

from .corruptions import CORRUPTIONS, MNIST_C_SEVERITY, Corruption
from .suite import (
    SuiteResult,
    corrupt,
    corrupted_test_set,
    corruption_rng,
    evaluate_corruptions,
)

__all__ = [
    "CORRUPTIONS",
    "MNIST_C_SEVERITY",
    "Corruption",
    "SuiteResult",
    "corrupt",
    "corrupted_test_set",
    "corruption_rng",
    "evaluate_corruptions",
]
