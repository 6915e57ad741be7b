"""The MNIST-C corruptions and the suite: each corruption changes real test digits the way it
is meant to, deterministically, and the suite scores a model on them with the labels kept."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mnist_zoo.data import MNIST
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.inference.batched import batched_logits
from mnist_zoo.robustness import (
    CORRUPTIONS,
    MNIST_C_SEVERITY,
    SuiteResult,
    corrupt,
    corrupted_test_set,
    corruption_rng,
    evaluate_corruptions,
)
from mnist_zoo.robustness import _imageops as ops

pytestmark = pytest.mark.usefixtures("one_thread")

MNIST_C_ORDER = [
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
]
SEED_FREE = {"scale", "brightness", "stripe", "canny_edges"}  # no random draws at all
N = 300


@pytest.fixture(scope="module")
def test_set(mnist_root: Path) -> tuple[np.ndarray, np.ndarray]:
    test = MNIST(mnist_root, split="test")
    return test.images[:N, 0].numpy().copy(), test.targets[:N].numpy().copy()


@pytest.fixture(scope="module")
def images(test_set: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return test_set[0]


@pytest.fixture(scope="module")
def corrupted(images: np.ndarray) -> dict[str, np.ndarray]:
    before = images.copy()
    out = {name: corrupt(images, name, seed=0) for name in CORRUPTIONS}
    assert np.array_equal(images, before), "a corruption modified its input"
    return out


def _coords() -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:28, 0:28].astype(np.float64)


def centre_of_mass(x: np.ndarray) -> np.ndarray:
    """(N, 2) ink-weighted (row, column) centres."""
    rows, cols = _coords()
    mass = x.sum(axis=(1, 2)).astype(np.float64)
    return np.stack([(x * rows).sum((1, 2)) / mass, (x * cols).sum((1, 2)) / mass], 1)


def second_moments(x: np.ndarray) -> np.ndarray:
    """(N, 3) central moments (rows-rows, rows-cols, cols-cols) of the ink."""
    rows, cols = _coords()
    com = centre_of_mass(x)
    dr = rows - com[:, 0, None, None]
    dc = cols - com[:, 1, None, None]
    mass = x.sum(axis=(1, 2)).astype(np.float64)
    return np.stack([(x * a * b).sum((1, 2)) / mass for a, b in ((dr, dr), (dr, dc), (dc, dc))], 1)


def high_frequency(x: np.ndarray) -> np.ndarray:
    """Per-image energy of the differences between neighbouring pixels."""
    x = x.astype(np.float64)
    return (np.diff(x, axis=1) ** 2).sum((1, 2)) + (np.diff(x, axis=2) ** 2).sum((1, 2))


# --- every corruption ------------------------------------------------------------------------


def test_registry_holds_mnist_c_corruptions_in_order() -> None:
    assert list(CORRUPTIONS) == MNIST_C_ORDER
    assert list(MNIST_C_SEVERITY) == MNIST_C_ORDER
    assert all(callable(f) and f.__doc__ for f in CORRUPTIONS.values())


@pytest.mark.parametrize("name", MNIST_C_ORDER)
def test_output_is_uint8_images_of_the_same_shape(
    name: str, images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted[name]
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert not np.array_equal(out, images)


@pytest.mark.parametrize("name", MNIST_C_ORDER)
def test_same_seed_same_bytes_other_seed_other_bytes(
    name: str, images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    subset = images[:40]
    again = corrupt(subset, name, seed=0)
    assert again.tobytes() == corrupt(subset, name, seed=0).tobytes()
    assert np.array_equal(corrupt(images, name, seed=0), corrupted[name])
    other = corrupt(subset, name, seed=1)
    assert np.array_equal(other, again) == (name in SEED_FREE)


def test_each_corruption_has_its_own_stable_stream() -> None:
    draws = {name: corruption_rng(name, 0).integers(0, 2**32, size=4) for name in CORRUPTIONS}
    assert len({d.tobytes() for d in draws.values()}) == len(CORRUPTIONS)
    # The derivation is SHA-256 of the name, not Python's salted hash(): fixed across runs.
    key = int.from_bytes(hashlib.sha256(b"fog").digest()[:8], "little")
    expected = np.random.default_rng([0, key]).integers(0, 2**32, size=4)
    assert np.array_equal(draws["fog"], expected)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 28, 28), np.float32),
        np.zeros((2, 32, 32), np.uint8),
        np.zeros((28, 28), np.uint8),
    ],
)
def test_rejects_images_that_are_not_uint8_batches(bad: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError, match="uint8"):
        corrupt(bad, "shot_noise")


def test_rejects_unknown_names_and_bad_seeds(images: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError, match="Known corruptions: shot_noise"):
        corrupt(images[:2], "frost")
    for seed in (-1, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="seed"):
            corrupt(images[:2], "rotate", seed=seed)


# --- each corruption does what it says -------------------------------------------------------


def test_shot_noise_is_poisson_with_rate_three(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["shot_noise"]
    assert set(np.unique(out)) <= {0, 85, 170, 255}  # Poisson(3x) / 3: thirds only
    assert np.all(out[images == 0] == 0)
    dimmed = (out[images == 255] < 255).mean()
    assert 0.36 < dimmed < 0.49  # P(Poisson(3) < 3) = 0.423


def test_impulse_noise_flips_17_percent_to_black_or_white(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["impulse_noise"]
    changed = out != images
    assert set(np.unique(out[changed])) <= {0, 255}
    assert 0.075 < (out[images == 0] == 255).mean() < 0.095  # salt: 0.17 / 2
    assert 0.075 < (out[images == 255] == 0).mean() < 0.095  # pepper


def test_glass_blur_smooths_vertically_and_keeps_the_ink(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["glass_blur"].astype(np.float64)
    x = images.astype(np.float64)
    # MNIST-C blurs along the rows axis only (see glass_blur's docstring): vertical detail
    # goes, horizontal detail mostly stays.
    vertical = (np.diff(out, axis=1) ** 2).sum() / (np.diff(x, axis=1) ** 2).sum()
    horizontal = (np.diff(out, axis=2) ** 2).sum() / (np.diff(x, axis=2) ** 2).sum()
    assert vertical < 0.55 and horizontal > 0.7
    assert abs(out.sum() / x.sum() - 1) < 0.05
    assert np.abs(centre_of_mass(out) - centre_of_mass(x)).max() < 1.5


def test_motion_blur_smears_and_trails(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["motion_blur"]
    assert np.mean(high_frequency(out) < 0.6 * high_frequency(images)) > 0.95
    # One-sided kernel along an angle in [-45, 45] degrees: ink moves towards the left.
    shift = centre_of_mass(out) - centre_of_mass(images)
    assert np.all(shift[:, 1] < -1.0)
    assert np.abs(shift[:, 0]).max() < np.abs(shift[:, 1]).max()


def test_shear_tilts_the_ink_both_ways(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["shear"]
    before, after = second_moments(images), second_moments(out)
    # Shearing columns by -sin(s) per row changes cov(row, col) by about sin(s) var(row).
    change = (after[:, 1] - before[:, 1]) / before[:, 0]
    assert np.mean(np.abs(np.abs(change) - np.sin(0.4)) < 0.15) > 0.9
    assert 0.3 < np.mean(change > 0) < 0.7
    assert np.abs(centre_of_mass(out) - centre_of_mass(images)).max() < 2.5


def test_scale_shrinks_to_70_percent_about_the_centre(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["scale"]
    mass = out.sum((1, 2)) / images.sum((1, 2)).astype(np.float64)
    assert np.allclose(mass, 0.49, atol=0.05)
    spread = second_moments(out)[:, [0, 2]] / second_moments(images)[:, [0, 2]]
    assert np.allclose(np.median(spread, axis=0), 0.49, atol=0.05)
    offset = lambda a: np.abs(centre_of_mass(a) - 13.5)  # noqa: E731
    assert np.allclose(offset(out), 0.7 * offset(images), atol=0.3)


def test_rotate_turns_the_principal_axis_by_0_4_rad(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["rotate"]

    def orientation(x: np.ndarray) -> np.ndarray:
        rr, rc, cc = second_moments(x).T
        return 0.5 * np.arctan2(2 * rc, cc - rr)

    rr, rc, cc = second_moments(images).T
    spread = np.sqrt((cc - rr) ** 2 + 4 * rc**2) / (cc + rr)
    elongated = spread > 0.5  # a clear principal axis: ones, sevens, ...
    assert elongated.sum() > 30
    turn = orientation(out) - orientation(images)
    turn = (turn + np.pi / 2) % np.pi - np.pi / 2
    assert np.allclose(np.abs(turn[elongated]), 0.4, atol=0.1)
    assert 0.2 < np.mean(turn[elongated] > 0) < 0.8
    assert np.abs(centre_of_mass(out) - centre_of_mass(images)).max() < 2.5


def test_brightness_adds_half_the_range(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["brightness"].astype(np.float64)
    assert np.abs(out - np.minimum(images + 127.5, 255)).max() <= 0.5
    assert out.mean() > images.mean() + 100


def test_translate_moves_by_three_pixels_in_each_axis(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["translate"]
    shift = centre_of_mass(out) - centre_of_mass(images)
    inside = (out.sum((1, 2)) == images.sum((1, 2))).nonzero()[0]  # no ink pushed off
    assert len(inside) > N // 2
    assert np.allclose(np.abs(shift[inside]), 3.0, atol=1e-6)
    assert len({tuple(np.sign(s)) for s in shift[inside]}) == 4


def test_stripe_inverts_the_outer_columns(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["stripe"]
    assert np.array_equal(out[:, :, 7:21], images[:, :, 7:21])
    assert np.array_equal(out[:, :, :7], 255 - images[:, :, :7])
    assert np.array_equal(out[:, :, 21:], 255 - images[:, :, 21:])


def test_fog_covers_the_background_smoothly(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["fog"].astype(np.float64)
    background = images == 0
    assert (out[background] > 0).mean() > 0.95
    assert out.mean() > images.mean() + 40
    assert out[images == 255].mean() > out[background].mean() + 30  # the digit shows through
    # Fog is a low-frequency layer: neighbouring background pixels stay close.
    both = background[:, :, 1:] & background[:, :, :-1]
    assert np.abs(np.diff(out, axis=2))[both].mean() < 12


def test_spatter_paints_grey_mud(images: np.ndarray, corrupted: dict[str, np.ndarray]) -> None:
    out = corrupted["spatter"].astype(np.int64)
    x = images.astype(np.int64)
    changed = out != x
    assert np.mean(changed.any(axis=(1, 2))) > 0.9
    # Mud blends each pixel towards grey 63, never past it.
    assert np.all(np.abs(out - 63) <= np.abs(x - 63) + 1)
    assert np.all(out[changed & (x == 0)] <= 64)


@pytest.mark.parametrize("name", ["dotted_line", "zigzag"])
def test_lines_add_ink_where_the_digit_had_none(
    name: str, images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted[name]
    assert np.all(out >= images)
    added = (out > 0) & (images == 0)
    assert np.all(added.sum((1, 2)) >= 5)


def test_dotted_line_is_dashed(images: np.ndarray, corrupted: dict[str, np.ndarray]) -> None:
    out = corrupted["dotted_line"]
    gaps = [c for c in range(28) if c % 4 in (0, 1)] + [27]
    assert np.array_equal(out[:, :, gaps], images[:, :, gaps])


def test_canny_edges_trace_the_digit_outline(
    images: np.ndarray, corrupted: dict[str, np.ndarray]
) -> None:
    out = corrupted["canny_edges"]
    assert set(np.unique(out)) == {0, 255}
    edges = out == 255
    assert np.all(edges.sum((1, 2)) > 10)
    ink = images > 127
    boundary = ops._dilate(ink) & ops._dilate(~ink)  # one pixel either side of the outline
    near = ops._dilate(boundary)
    assert edges[~near].sum() / edges.sum() < 0.02


# --- the image operations match their SciPy / scikit-image definitions -----------------------


def test_gaussian_filter_of_an_impulse_is_the_truncated_kernel() -> None:
    x = np.zeros((1, 28, 28))
    x[0, 14, 14] = 1.0
    out = ops.gaussian_filter(x, (1.5, 0.0), "nearest")
    taps = np.arange(-6, 7)  # radius int(4 * 1.5 + 0.5)
    kernel = np.exp(-0.5 * taps**2 / 1.5**2)
    assert np.allclose(out[0, 8:21, 14], kernel / kernel.sum())
    assert out[0, :, 13].sum() == 0 and out[0, 7, 14] == 0


def test_affine_warp_by_the_identity_and_integer_shifts_is_exact(images: np.ndarray) -> None:
    x = images[:5] / 255.0
    eye = np.broadcast_to(np.eye(2), (5, 2, 2))
    assert np.array_equal(ops.warp_affine(x, eye, np.zeros((5, 2))), x)
    shifted = ops.warp_affine(x, eye, np.tile([2.0, -1.0], (5, 1)))  # reads (c + 2, r - 1)
    assert np.array_equal(shifted[:, 1:, :-2], x[:, :-1, 2:])
    assert np.all(shifted[:, 0] == 0) and np.all(shifted[:, :, -2:] == 0)


# --- the suite -------------------------------------------------------------------------------


class NearestMean(nn.Module):
    """A classifier without training: the class whose mean image is nearest."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        super().__init__()
        x = torch.from_numpy(images).reshape(len(images), -1).double() / 255
        means = torch.stack([x[torch.from_numpy(labels) == c].mean(0) for c in range(10)])
        self.linear = nn.Linear(784, 10)
        with torch.no_grad():
            self.linear.weight.copy_(means.float() * 20)
            self.linear.bias.copy_(-10 * (means**2).sum(1).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def model(test_set: tuple[np.ndarray, np.ndarray]) -> NearestMean:
    return NearestMean(*test_set)


def test_corrupted_test_set_keeps_labels_and_container(
    test_set: tuple[np.ndarray, np.ndarray], corrupted: dict[str, np.ndarray]
) -> None:
    images, labels = test_set
    out, same = corrupted_test_set(images, labels, "zigzag", seed=0)
    assert same is labels and np.array_equal(out, corrupted["zigzag"])
    tensor = torch.from_numpy(images).unsqueeze(1)
    targets = torch.from_numpy(labels)
    out_t, same_t = corrupted_test_set(tensor, targets, "zigzag", seed=0)
    assert same_t is targets
    assert out_t.shape == (N, 1, 28, 28) and out_t.dtype == torch.uint8
    assert np.array_equal(out_t[:, 0].numpy(), corrupted["zigzag"])
    with pytest.raises(InvalidArgumentError, match="labels"):
        corrupted_test_set(images, labels[:-1], "zigzag")


def test_evaluate_corruptions_scores_each_set(
    model: NearestMean, test_set: tuple[np.ndarray, np.ndarray], corrupted: dict[str, np.ndarray]
) -> None:
    images, labels = test_set
    names = ["rotate", "stripe", "rotate", "fog"]
    result = evaluate_corruptions(model, images, torch.from_numpy(labels), names, batch_size=128)
    assert isinstance(result, SuiteResult)
    assert list(result.corruption_accuracy) == ["rotate", "stripe", "fog"]

    def accuracy(x: np.ndarray) -> float:
        logits = batched_logits(model, torch.from_numpy(x).unsqueeze(1))
        return float((logits.argmax(1).numpy() == labels).mean())

    assert result.clean_accuracy == pytest.approx(accuracy(images))
    assert result.clean_accuracy > 0.6
    for name, acc in result.corruption_accuracy.items():
        assert acc == pytest.approx(accuracy(corrupted[name]))
    assert result.mean_accuracy == pytest.approx(np.mean(list(result.corruption_accuracy.values())))
    assert result.mean_accuracy < result.clean_accuracy
    assert result.nll > 0 and 0 <= result.ece <= 1
    assert result.temperature is None and result.ece_scaled is None
    figures = json.loads(json.dumps(result.to_dict()))
    assert figures["corruption_accuracy"]["fog"] == result.corruption_accuracy["fog"]
    assert figures["ece_bins"] == 15 and figures["num_images"] == N
    text = result.format()
    assert all(name in text for name in names) and "mean" in text and "ECE" in text


def test_evaluate_corruptions_temperature_changes_calibration_only(
    model: NearestMean, test_set: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = test_set
    plain = evaluate_corruptions(model, images, labels, ["translate"])
    scaled = evaluate_corruptions(model, images, labels, ["translate"], temperature=4.0)
    assert scaled.clean_accuracy == plain.clean_accuracy
    assert scaled.corruption_accuracy == plain.corruption_accuracy
    assert (scaled.nll, scaled.ece) == (plain.nll, plain.ece)
    assert scaled.temperature == 4.0 and scaled.nll_scaled != plain.nll
    assert "after temperature 4.000" in scaled.format()


def test_evaluate_corruptions_rejects_bad_arguments(
    model: NearestMean, test_set: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = test_set
    with pytest.raises(InvalidArgumentError, match="frost"):
        evaluate_corruptions(model, images, labels, ["fog", "frost"])
    with pytest.raises(InvalidArgumentError, match="at least one"):
        evaluate_corruptions(model, images, labels, [])
    with pytest.raises(InvalidArgumentError, match="labels"):
        evaluate_corruptions(model, images, labels[:10], ["fog"])
    with pytest.raises(InvalidArgumentError, match="uint8"):
        evaluate_corruptions(model, images / 255.0, labels, ["fog"])
    with pytest.raises(InvalidArgumentError, match="temperature"):
        evaluate_corruptions(model, images, labels, ["fog"], temperature=0.0)
    with pytest.raises(InvalidArgumentError, match="clean_logits of shape"):
        evaluate_corruptions(model, images, labels, ["fog"], clean_logits=torch.zeros(N - 1, 10))


def test_evaluate_corruptions_takes_clean_logits_already_computed(
    model: NearestMean, test_set: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = test_set
    plain = evaluate_corruptions(model, images, labels, ["fog"], temperature=2.0)
    logits = batched_logits(model, torch.from_numpy(images).unsqueeze(1))
    given = evaluate_corruptions(
        model, images, labels, ["fog"], temperature=2.0, clean_logits=logits
    )
    assert given == plain
    # The clean figures are the given logits', not a second pass's.
    wrong = evaluate_corruptions(model, images, labels, ["fog"], clean_logits=-logits)
    assert wrong.clean_accuracy < plain.clean_accuracy
    assert wrong.corruption_accuracy == plain.corruption_accuracy
