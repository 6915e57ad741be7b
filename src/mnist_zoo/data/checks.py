"""The study's data checks: is this folder the real, intact MNIST?

```python
from mnist_zoo.data import check_mnist
report = check_mnist("path/to/mnist")
print(report.format())
assert report.passed
```

Measured on the real MNIST: 60,000 / 10,000 images of 28x28 uint8; labels exactly 0-9; train
classes from 5,421 (digit 5) to 6,742 (digit 1), test classes from 892 (5) to 1,135 (1); no
test image's bytes appear in train, and no image is repeated within either split; train pixel
mean 0.1307 and std 0.3081 after scaling to [0, 1].
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IDXFormatError, MNISTNotFoundError
from .files import MNIST_MEAN, MNIST_STD, SPLIT_SIZES, SPLITS, _locate, _resolve_root
from .idx import read_idx

__all__ = ["CheckResult", "DataCheckReport", "check_mnist"]

_DIGITS = set(range(10))
# Half a unit in the 4th decimal: the constants are the measured values rounded to 4 places.
_STAT_TOLERANCE = 5e-5

_Arrays = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images, labels)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one data check.

    Attributes:
        name: Short name of the check, e.g. ``"counts"``.
        passed: Whether the data passed it.
        detail: What was measured, or what went wrong; may span several lines.
    """

    name: str
    passed: bool
    detail: str


@dataclass
class DataCheckReport:
    """All data checks run on one folder.

    Attributes:
        checks: The results, in the order they were run.
        root: The folder that was checked.
    """

    checks: list[CheckResult] = field(default_factory=list)
    root: Path | None = None

    @property
    def passed(self) -> bool:
        """True when there is at least one check and every check passed."""
        return bool(self.checks) and all(check.passed for check in self.checks)

    def format(self) -> str:
        """Return the report as a plain-text table, one row per check, with a summary line.

        Returns:
            The table, lines separated by newlines, without a trailing newline.
        """
        width = max([len("check"), *(len(check.name) for check in self.checks)])
        indent = " " * (width + 10)  # under the detail column
        lines = [f"MNIST data checks in {self.root}", ""]
        lines.append(f"{'check':<{width}}  status  detail")
        lines.append(f"{'-' * width}  ------  {'-' * 6}")
        for check in self.checks:
            status = "PASS" if check.passed else "FAIL"
            first, *rest = check.detail.splitlines() or [""]
            lines.append(f"{check.name:<{width}}  {status:<6}  {first}")
            lines.extend(indent + line for line in rest)
        failed = sum(not check.passed for check in self.checks)
        lines.append("")
        if failed:
            lines.append(f"{failed} of {len(self.checks)} checks failed.")
        else:
            lines.append(f"All {len(self.checks)} checks passed.")
        return "\n".join(lines)


def check_mnist(root: str | os.PathLike[str] | None = None) -> DataCheckReport:
    """Run the study's data checks on the MNIST files in ``root``.

    The checks: each split loads; counts are 60,000 / 10,000; images are uint8 28x28 and
    labels uint8; the label set is exactly 0-9; the class distribution (per-class counts,
    largest and smallest class) has all ten classes; no test image is byte-for-byte identical
    to a train image (the real MNIST has none, so any is a failure: a sign of mixed-up files);
    the train pixel mean and std, scaled to [0, 1], match the 0.1307 / 0.3081 the models
    standardise with. Exact duplicates within a split are reported but do not fail the check.

    Problems never raise: a missing or corrupt file becomes a failed check carrying the error
    message, and checks that need a split that did not load fail as "not run".

    Args:
        root: The folder holding the files, under either naming. Defaults to
            :func:`mnist_zoo.data.default_root`.

    Returns:
        The report; ``report.passed`` tells whether every check passed.
    """
    root = _resolve_root(root)
    report = DataCheckReport(root=root)
    arrays: _Arrays = {}
    for split in SPLITS:
        report.checks.append(_load(root, split, arrays))

    checks: list[tuple[str, Callable[[_Arrays], tuple[bool, str]], tuple[str, ...]]] = [
        ("counts", _check_counts, SPLITS),
        ("shape and dtype", _check_shapes, SPLITS),
        ("label set", _check_label_set, SPLITS),
        ("class distribution", _check_class_distribution, SPLITS),
        ("train/test duplicates", _check_duplicates, SPLITS),
        ("train pixel mean/std", _check_pixel_stats, ("train",)),
    ]
    for name, check, needs in checks:
        missing = [split for split in needs if split not in arrays]
        if missing:
            detail = f"not run: could not load {' and '.join(missing)}"
            report.checks.append(CheckResult(name, False, detail))
            continue
        try:
            passed, detail = check(arrays)
        # A check tool must report whatever is wrong with the data, not crash on it.
        except Exception as error:
            passed, detail = False, f"{type(error).__name__}: {error}"
        report.checks.append(CheckResult(name, passed, detail))
    return report


def _load(root: Path, split: str, arrays: _Arrays) -> CheckResult:
    name = f"load {split}"
    try:
        images_path = _locate(root, split, "images")
        labels_path = _locate(root, split, "labels")
        arrays[split] = (read_idx(images_path), read_idx(labels_path))
    except (MNISTNotFoundError, IDXFormatError) as error:
        return CheckResult(name, False, str(error))
    return CheckResult(name, True, f"{images_path.name}, {labels_path.name}")


def _check_counts(arrays: _Arrays) -> tuple[bool, str]:
    passed, parts = True, []
    for split, (images, labels) in arrays.items():
        expected = SPLIT_SIZES[split]
        passed &= len(images) == len(labels) == expected
        parts.append(
            f"{split}: {len(images):,} images, {len(labels):,} labels (expected {expected:,})"
        )
    return passed, "\n".join(parts)


def _check_shapes(arrays: _Arrays) -> tuple[bool, str]:
    passed, parts = True, []
    for split, (images, labels) in arrays.items():
        passed &= images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)
        passed &= labels.dtype == np.uint8 and labels.ndim == 1
        parts.append(
            f"{split}: images {images.dtype} {images.shape}, labels {labels.dtype} {labels.shape}"
        )
    return passed, "\n".join([*parts, "expected: images uint8 (N, 28, 28), labels uint8 (N,)"])


def _check_label_set(arrays: _Arrays) -> tuple[bool, str]:
    passed, parts = True, []
    for split, (_, labels) in arrays.items():
        found = {int(label) for label in np.unique(labels)}
        if found == _DIGITS:
            parts.append(f"{split}: exactly 0-9")
            continue
        passed = False
        problems = []
        if found - _DIGITS:
            problems.append(f"unexpected {sorted(found - _DIGITS)}")
        if _DIGITS - found:
            problems.append(f"missing {sorted(_DIGITS - found)}")
        parts.append(f"{split}: {', '.join(problems)}")
    return passed, "\n".join(parts)


def _check_class_distribution(arrays: _Arrays) -> tuple[bool, str]:
    passed, lines = True, []
    for split, (_, labels) in arrays.items():
        labels = labels.astype(np.int64)
        counts = np.bincount(labels[(labels >= 0) & (labels <= 9)], minlength=10)
        passed &= bool((counts > 0).all())
        per_class = " ".join(f"{digit}:{count}" for digit, count in enumerate(counts))
        largest, smallest = int(counts.argmax()), int(counts.argmin())
        lines.append(
            f"{split}: {per_class}; largest {largest} ({counts[largest]:,}), "
            f"smallest {smallest} ({counts[smallest]:,})"
        )
    return passed, "\n".join(lines)


def _image_hashes(images: np.ndarray) -> list[bytes]:
    # Exact-byte identity; a 128-bit digest keeps memory small and collisions out of reach.
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _check_duplicates(arrays: _Arrays) -> tuple[bool, str]:
    train = _image_hashes(arrays["train"][0])
    test = _image_hashes(arrays["test"][0])
    train_set = set(train)
    shared = sum(digest in train_set for digest in test)
    within_train = len(train) - len(train_set)
    within_test = len(test) - len(set(test))
    detail = (
        f"{shared:,} of {len(test):,} test images also appear in train (exact bytes)\n"
        f"repeats within train: {within_train:,}, within test: {within_test:,}"
    )
    return shared == 0, detail


#: Pixels per np.bincount call in _check_pixel_stats.
_HISTOGRAM_SLICE = 1 << 16


def _check_pixel_stats(arrays: _Arrays) -> tuple[bool, str]:
    images = arrays["train"][0]
    if images.dtype != np.uint8:
        raise ValueError(f"pixel statistics need uint8 images, got {images.dtype}")
    # A 256-bin histogram gives the exact mean and std without a float copy of 47M pixels.
    # np.bincount first copies its input to int64, 376 MB for the train images in one call;
    # in slices of 64K pixels the copy stays in the CPU's caches.
    flat = images.ravel()
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(flat), _HISTOGRAM_SLICE):
        counts += np.bincount(flat[start : start + _HISTOGRAM_SLICE], minlength=256)
    counts = counts.astype(np.float64)
    values = np.arange(256) / 255.0
    total = counts.sum()
    if total == 0:
        raise ValueError("no train pixels to measure")
    mean = float((counts * values).sum() / total)
    std = float(np.sqrt((counts * (values - mean) ** 2).sum() / total))
    passed = abs(mean - MNIST_MEAN) <= _STAT_TOLERANCE and abs(std - MNIST_STD) <= _STAT_TOLERANCE
    detail = (
        f"mean {mean:.4f} ({mean:.6f}), std {std:.4f} ({std:.6f})\n"
        f"expected {MNIST_MEAN} / {MNIST_STD}, the constants the models standardise with"
    )
    return passed, detail
