"""Tests for the MNIST dataset: the real data's documented facts, and every bad-input case."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mnist_zoo import errors
from mnist_zoo.data import (
    MNIST,
    MNIST_MEAN,
    MNIST_STD,
    IDXFormatError,
    MNISTFormatError,
    MNISTNotFoundError,
    candidate_names,
    default_root,
    find_mnist_file,
    require_mnist,
    to_float_images,
    write_idx,
)

# From ../shared/data/mnist/README.md.
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CLASS_COUNTS = {"train": TRAIN_CLASS_COUNTS, "test": TEST_CLASS_COUNTS}


# --- The real data, under each naming and compression ------------------------------------------


@pytest.fixture(scope="session", params=["gzip", "plain", "kaggle"])
def real_root(request: pytest.FixtureRequest) -> Path:
    """The real MNIST as original .gz files, original plain files, and Kaggle plain files."""
    return request.getfixturevalue(f"mnist_{request.param}_root")


@pytest.fixture(scope="session")
def real_train(mnist_gzip_root: Path) -> MNIST:
    return MNIST(mnist_gzip_root, split="train")


def test_decompressed_content_matches_sha256sums(
    mnist_root: Path, mnist_contents: dict[str, bytes]
) -> None:
    sums_file = mnist_root / "SHA256SUMS"
    if not sums_file.is_file():
        pytest.skip(f"no SHA256SUMS in {mnist_root}")
    expected = dict(reversed(line.split()) for line in sums_file.read_text().splitlines() if line)
    assert set(expected) == set(mnist_contents)
    for name, content in mnist_contents.items():
        assert hashlib.sha256(content).hexdigest() == expected[name], name


@pytest.mark.parametrize("split", ["train", "test"])
def test_real_split_matches_readme(real_root: Path, split: str) -> None:
    dataset = MNIST(real_root, split=split)
    expected_counts = CLASS_COUNTS[split]
    assert len(dataset) == sum(expected_counts) == {"train": 60_000, "test": 10_000}[split]
    assert dataset.images.dtype == torch.uint8
    assert dataset.images.shape == (len(dataset), 1, 28, 28)
    assert dataset.targets.dtype == torch.int64
    assert dataset.targets.shape == (len(dataset),)
    assert torch.bincount(dataset.targets, minlength=10).tolist() == expected_counts
    assert dataset.split == split and dataset.root == real_root


def test_real_train_pixel_mean_and_std(real_train: MNIST) -> None:
    # Via a histogram of the 256 pixel values: exact, and no 376 MB float64 copy.
    counts = torch.bincount(real_train.images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    std = ((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt()
    assert round(mean.item(), 4) == 0.1307
    assert round(std.item(), 4) == 0.3081


def test_item_is_float_image_in_unit_range_and_long_label(real_train: MNIST) -> None:
    image, label = real_train[0]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
    assert image.min().item() >= 0.0 and image.max().item() == 1.0
    assert torch.equal(image, real_train.images[0].float() / 255)
    assert label.dtype == torch.long and label.ndim == 0
    assert label.item() == 5  # the well-known first training digit


def test_works_with_dataloader(real_train: MNIST) -> None:
    images, labels = next(iter(DataLoader(real_train, batch_size=8)))
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (8,) and labels.dtype == torch.long


# --- Small synthetic folders -------------------------------------------------------------------


def make_split(
    root: Path,
    images: np.ndarray,
    labels: np.ndarray,
    split: str = "train",
    naming: int = 0,
) -> Path:
    """Write a split into ``root`` under ``candidate_names(...)[naming]``."""
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / candidate_names(split, "images")[naming], images)
    write_idx(root / candidate_names(split, "labels")[naming], labels)
    return root


def tiny_images(n: int, size: int = 28) -> np.ndarray:
    return (np.arange(n * size * size) % 256).astype(np.uint8).reshape(n, size, size)


@pytest.mark.parametrize("naming", [0, 1, 2, 3])
def test_every_naming_is_found(tmp_path: Path, naming: int) -> None:
    make_split(tmp_path, tiny_images(3), np.array([1, 2, 3], np.uint8), "test", naming)
    dataset = MNIST(tmp_path, split="test")
    assert dataset.targets.tolist() == [1, 2, 3]
    assert np.array_equal(dataset.images[:, 0].numpy(), tiny_images(3))


def test_item_values(tmp_path: Path) -> None:
    images = np.zeros((2, 28, 28), np.uint8)
    images[1, 0, 0], images[1, 27, 27] = 255, 51
    make_split(tmp_path, images, np.array([0, 9], np.uint8))
    dataset = MNIST(tmp_path)
    image, label = dataset[-1]
    assert image[0, 0, 0].item() == 1.0 and image[0, 27, 27].item() == pytest.approx(0.2)
    assert label.item() == 9
    assert len(dataset.classes) == 10 and dataset.classes[0] == "0 - zero"


def test_default_root_is_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MNIST_ZOO_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root() == tmp_path / ".cache" / "mnist_zoo" / "mnist"


def test_default_root_honours_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    make_split(tmp_path, tiny_images(1), np.array([4], np.uint8))
    monkeypatch.setenv("MNIST_ZOO_DATA", str(tmp_path))
    assert default_root() == tmp_path
    assert MNIST().root == tmp_path


# --- Bad input ---------------------------------------------------------------------------------


def test_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown split 'validation'; valid splits are 'train', "):
        MNIST(tmp_path, split="validation")


def test_missing_files(tmp_path: Path) -> None:
    names = ", ".join(candidate_names("train", "images"))
    pattern = (
        f"MNIST train images not found in {re.escape(str(tmp_path))} "
        f"\\(looked for {re.escape(names)}\\). Pass download=True, or set MNIST_ZOO_DATA"
    )
    with pytest.raises(MNISTNotFoundError, match=pattern) as info:
        MNIST(tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    # What is missing and where, for a front end to retell in its own terms.
    assert info.value.root == tmp_path and info.value.missing == ("train images",)
    assert info.value.retold("pass --data DIR") == (
        f"MNIST train images not found in {tmp_path}; pass --data DIR."
    )


def test_require_mnist_names_every_missing_file_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", tiny_images(2))
    with pytest.raises(MNISTNotFoundError, match="download_mnist") as info:
        require_mnist(tmp_path)
    assert info.value.missing == ("train images", "train labels", "test labels")
    assert info.value.root == tmp_path
    make_split(tmp_path, tiny_images(2), np.zeros(2, np.uint8), split="train", naming=1)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    assert require_mnist(tmp_path) == tmp_path  # either naming, gzip or not
    monkeypatch.setenv("MNIST_ZOO_DATA", str(tmp_path))
    assert require_mnist() == tmp_path


def test_missing_labels_only(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", tiny_images(2))
    with pytest.raises(MNISTNotFoundError, match="MNIST test labels not found .*t10k-labels-idx1"):
        MNIST(tmp_path, split="test")


def test_length_mismatch(tmp_path: Path) -> None:
    make_split(tmp_path, tiny_images(5), np.zeros(4, np.uint8))
    with pytest.raises(
        MNISTFormatError,
        match="train-images-idx3-ubyte holds 5 images but train-labels-idx1-ubyte holds 4 labels",
    ):
        MNIST(tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    make_split(tmp_path, tiny_images(3), np.array([1, 10, 2], np.uint8))
    with pytest.raises(
        MNISTFormatError,
        match=r"train-labels-idx1-ubyte: labels must be 0-9, found 10 at index 1 \(1 labels",
    ):
        MNIST(tmp_path)


def test_images_not_28x28(tmp_path: Path) -> None:
    make_split(tmp_path, tiny_images(2, size=27), np.zeros(2, np.uint8))
    with pytest.raises(
        MNISTFormatError,
        match=r"train-images-idx3-ubyte: expected uint8 images of 28x28 .* shape \(2, 27, 27\)",
    ):
        MNIST(tmp_path)


def test_images_not_uint8(tmp_path: Path) -> None:
    make_split(tmp_path, tiny_images(2).astype(np.float32), np.zeros(2, np.uint8))
    with pytest.raises(MNISTFormatError, match="expected uint8 images .* got float32"):
        MNIST(tmp_path)


def test_labels_not_one_dimensional(tmp_path: Path) -> None:
    make_split(tmp_path, tiny_images(2), np.zeros((2, 1), np.uint8))
    with pytest.raises(
        MNISTFormatError, match=r"train-labels-idx1-ubyte: expected uint8 labels of shape \(N,\)"
    ):
        MNIST(tmp_path)


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_without_images_is_refused(tmp_path: Path, split: str) -> None:
    # Issue 10: zero-item IDX files are valid IDX, but no MNIST split.
    make_split(tmp_path, tiny_images(0), np.zeros(0, np.uint8), split)
    prefix = "train" if split == "train" else "t10k"
    with pytest.raises(MNISTFormatError, match=rf"{prefix}-images-idx3-ubyte holds no images"):
        MNIST(tmp_path, split=split)


def test_corrupt_idx_file(tmp_path: Path) -> None:
    make_split(tmp_path, tiny_images(2), np.zeros(2, np.uint8))
    images_file = tmp_path / "train-images-idx3-ubyte"
    images_file.write_bytes(images_file.read_bytes()[:-1])
    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte: data is shorter"):
        MNIST(tmp_path)


def test_bad_split_and_kind_are_invalid_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="Unknown split 'validation'"):
        MNIST(tmp_path, split="validation")
    with pytest.raises(errors.InvalidArgumentError, match="Unknown kind 'pixels'"):
        candidate_names("train", "pixels")
    with pytest.raises(errors.InvalidArgumentError, match="Unknown split 'dev'"):
        find_mnist_file(tmp_path, "dev", "images")


def test_the_errors_are_the_packages_own() -> None:
    assert MNISTFormatError is errors.MNISTFormatError
    assert MNISTNotFoundError is errors.MNISTNotFoundError
    assert issubclass(MNISTNotFoundError, errors.MnistZooError)
    assert issubclass(MNISTNotFoundError, FileNotFoundError)
    assert issubclass(MNISTFormatError, ValueError)


# --- The uint8-to-float conversion ---------------------------------------------------------------


def test_to_float_images_scales_uint8_and_passes_floats_through() -> None:
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert to_float_images(pixels).tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert to_float_images(pixels).dtype == torch.float32
    assert pixels.tolist() == [0, 51, 255]  # the input is left alone
    floats = torch.tensor([0.5, 2.0])
    assert to_float_images(floats) is floats  # already float32: no copy, no scaling
    assert to_float_images(floats.double()).dtype == torch.float32


def test_items_use_the_shared_conversion(tmp_path: Path) -> None:
    images = (np.arange(2 * 28 * 28) % 256).astype(np.uint8).reshape(2, 28, 28)
    make_split(tmp_path, images, np.array([0, 1], np.uint8))
    dataset = MNIST(tmp_path)
    assert torch.equal(dataset[1][0], to_float_images(dataset.images[1]))


def test_pixel_statistics_constants() -> None:
    assert (MNIST_MEAN, MNIST_STD) == (0.1307, 0.3081)
