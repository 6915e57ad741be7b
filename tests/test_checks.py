"""Tests for the data checks: what they measure on the real MNIST, and how they report faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_zoo.data import CheckResult, DataCheckReport, candidate_names, check_mnist, write_idx

CHECK_NAMES = [
    "load train",
    "load test",
    "counts",
    "shape and dtype",
    "label set",
    "class distribution",
    "train/test duplicates",
    "train pixel mean/std",
]


def detail(report: DataCheckReport, name: str) -> str:
    (check,) = [check for check in report.checks if check.name == name]
    return check.detail


def failed(report: DataCheckReport) -> set[str]:
    return {check.name for check in report.checks if not check.passed}


@pytest.fixture(scope="module")
def real_report(mnist_gzip_root: Path) -> DataCheckReport:
    return check_mnist(mnist_gzip_root)


def test_real_mnist_passes_every_check(real_report: DataCheckReport) -> None:
    assert [check.name for check in real_report.checks] == CHECK_NAMES
    assert failed(real_report) == set()
    assert real_report.passed


def test_real_mnist_measurements(real_report: DataCheckReport) -> None:
    assert "train: 60,000 images, 60,000 labels" in detail(real_report, "counts")
    assert "test: 10,000 images, 10,000 labels" in detail(real_report, "counts")
    distribution = detail(real_report, "class distribution")
    assert "train: 0:5923 1:6742 2:5958 3:6131 4:5842 5:5421 6:5918 7:6265 8:5851 9:5949" in (
        distribution
    )
    assert "test: 0:980 1:1135 2:1032 3:1010 4:982 5:892 6:958 7:1028 8:974 9:1009" in distribution
    assert "largest 1 (6,742), smallest 5 (5,421)" in distribution
    assert "largest 1 (1,135), smallest 5 (892)" in distribution
    # Measured: the real MNIST has no exact duplicates across or within splits.
    assert detail(real_report, "train/test duplicates").startswith(
        "0 of 10,000 test images also appear in train"
    )
    assert "repeats within train: 0, within test: 0" in detail(real_report, "train/test duplicates")
    assert detail(real_report, "train pixel mean/std").startswith("mean 0.1307 (0.13066")
    assert "std 0.3081 (0.30810" in detail(real_report, "train pixel mean/std")


def test_format_is_a_plain_text_table(real_report: DataCheckReport) -> None:
    text = real_report.format()
    lines = text.splitlines()
    assert lines[0] == f"MNIST data checks in {real_report.root}"
    assert lines[2].split() == ["check", "status", "detail"]
    for name in CHECK_NAMES:
        assert any(line.startswith(name) and "  PASS  " in line for line in lines), name
    # Continuation lines of a multi-line detail align under the detail column.
    test_row = next(line for line in lines if line.lstrip().startswith("test: 0:980"))
    assert test_row.index("test:") == lines[2].index("detail")
    assert lines[-1] == "All 8 checks passed."


def test_format_counts_failures() -> None:
    report = DataCheckReport([CheckResult("a", True, "fine"), CheckResult("b", False, "")])
    assert not report.passed
    assert report.format().splitlines()[-1] == "1 of 2 checks failed."
    assert not DataCheckReport([]).passed  # nothing checked is not a pass


def test_missing_folder_is_a_failed_check_not_a_traceback(tmp_path: Path) -> None:
    report = check_mnist(tmp_path / "nowhere")
    assert not report.passed
    assert failed(report) == set(CHECK_NAMES)
    assert "MNIST train images not found in" in detail(report, "load train")
    assert "train-images-idx3-ubyte.gz" in detail(report, "load train")
    assert detail(report, "counts") == "not run: could not load train and test"
    assert "FAIL" in report.format()


def test_corrupt_file_is_a_failed_check(mnist_gzip_root: Path, tmp_path: Path) -> None:
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((mnist_gzip_root / name).read_bytes())
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-100])
    report = check_mnist(tmp_path)
    assert "corrupt gzip data" in detail(report, "load test")
    assert str(images) in detail(report, "load test")
    assert "train pixel mean/std" in failed(report)


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    write_idx(root / candidate_names(split, "images")[0], images)
    write_idx(root / candidate_names(split, "labels")[0], labels)


def test_faults_in_small_synthetic_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (10, 27, 27), dtype=np.uint8)
    write_split(tmp_path, "train", train, np.array([*range(10), *range(10)], np.uint8))
    write_split(tmp_path, "test", test, np.array([*range(9), 10], np.uint8))
    report = check_mnist(tmp_path)
    assert failed(report) == {
        "counts",
        "shape and dtype",
        "label set",
        "class distribution",
        "train pixel mean/std",
    }
    assert "train: 20 images, 20 labels (expected 60,000)" in detail(report, "counts")
    assert "test: images uint8 (10, 27, 27)" in detail(report, "shape and dtype")
    assert detail(report, "label set") == "train: exactly 0-9\ntest: unexpected [10], missing [9]"
    assert "test: 0:1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:0" in detail(report, "class distribution")


def test_test_image_found_in_train_fails(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    test[3] = train[7]
    train[5] = train[6]
    labels = np.arange(10, dtype=np.uint8)
    write_split(tmp_path, "train", train, labels)
    write_split(tmp_path, "test", test, labels)
    report = check_mnist(tmp_path)
    assert "train/test duplicates" in failed(report)
    assert detail(report, "train/test duplicates") == (
        "1 of 10 test images also appear in train (exact bytes)\n"
        "repeats within train: 1, within test: 0"
    )


def test_non_uint8_images_fail_checks_without_raising(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    write_split(tmp_path, "train", np.zeros((10, 28, 28), np.float32), labels)
    write_split(tmp_path, "test", np.zeros((10, 28, 28), np.uint8), labels)
    report = check_mnist(tmp_path)
    assert detail(report, "train pixel mean/std") == (
        "ValueError: pixel statistics need uint8 images, got float32"
    )


def test_root_defaults_to_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MNIST_ZOO_DATA", str(tmp_path))
    report = check_mnist()
    assert report.root == tmp_path
    assert str(tmp_path) in detail(report, "load train")
