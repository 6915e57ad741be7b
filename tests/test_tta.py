"""Test-time augmentation (mnist_zoo.inference.tta) and the temperature predict applies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import mnist_zoo
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.inference import (
    TTA_VIEWS,
    TTAModel,
    augmented_views,
    batched_logits,
    stored_temperature,
    tta_logits,
)
from mnist_zoo.robustness import evaluate_corruptions

ROOT = Path(__file__).resolve().parents[1]
N = 300  # test images: enough for the accuracy checks, a second or so per pass

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """The checked-in pinned SimpleCNN, without its stored temperature (tests set their own)."""
    loaded = mnist_zoo.load_pretrained(str(ROOT / "hub" / "simplecnn"))
    loaded.pretrained_cfg.pop("temperature", None)
    return loaded


@pytest.fixture(scope="module")
def test_set(mnist_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    test = mnist_zoo.MNIST(mnist_root, split="test")
    return test.images[:N], test.targets[:N]


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    """(row, column) of an (H, W) image's ink."""
    rows, cols = torch.meshgrid(
        torch.arange(image.shape[0], dtype=torch.float64),
        torch.arange(image.shape[1], dtype=torch.float64),
        indexing="ij",
    )
    mass = image.double().sum()
    return float((rows * image).sum() / mass), float((cols * image).sum() / mass)


def letter_l() -> torch.Tensor:
    """An "L": asymmetric left-right and top-bottom, so any mirror image is far from it."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 5:23, 8:11] = 1.0  # the upright, on the left
    x[0, 0, 20:23, 8:20] = 1.0  # the foot, at the bottom, pointing right
    return x


# --------------------------------------------------------------------------------- the views


def test_views_keep_shape_dtype_and_order(test_set: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = test_set[0][:16].float() / 255
    views = augmented_views(x)
    assert views.shape == (len(TTA_VIEWS), 16, 1, 28, 28) and views.dtype == x.dtype
    assert TTA_VIEWS[0] == "identity" and torch.equal(views[0], x)
    assert len(TTA_VIEWS) == 7
    # Every other view really moves the digit.
    assert all(not torch.allclose(view, x) for view in views[1:])


def test_shifts_move_one_pixel_and_fill_with_background() -> None:
    x = letter_l()
    views = dict(zip(TTA_VIEWS, augmented_views(x), strict=True))
    (row, col) = centre_of_mass(x[0, 0])
    expected = {
        "shift_up": (row - 1, col),
        "shift_down": (row + 1, col),
        "shift_left": (row, col - 1),
        "shift_right": (row, col + 1),
    }
    for name, (r, c) in expected.items():
        assert centre_of_mass(views[name][0, 0]) == pytest.approx((r, c)), name
        assert views[name].sum() == x.sum(), name  # nothing lost: the L is inside the frame
    # Zero fill, not torch.roll's wrap-around: a full right column moved right disappears.
    edge = torch.zeros(1, 1, 28, 28)
    edge[..., :, 27] = 1.0
    shifted = dict(zip(TTA_VIEWS, augmented_views(edge), strict=True))
    assert shifted["shift_right"].sum() == 0
    assert torch.equal(shifted["shift_left"][..., :, 26], edge[..., :, 27])


def test_rotations_turn_by_8_degrees_about_the_centre() -> None:
    # A dot 8 px right of the centre (13.5, 13.5) moves up by about 8 * sin(8 deg) = 1.1 px
    # counter-clockwise and down as much clockwise.
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 13:15, 21:23] = 1.0  # centred on (13.5, 21.5)
    views = dict(zip(TTA_VIEWS, augmented_views(x), strict=True))
    ccw_row, ccw_col = centre_of_mass(views["rotate_ccw8"][0, 0])
    cw_row, cw_col = centre_of_mass(views["rotate_cw8"][0, 0])
    assert ccw_row == pytest.approx(13.5 - 1.11, abs=0.15)
    assert cw_row == pytest.approx(13.5 + 1.11, abs=0.15)
    assert ccw_col == pytest.approx(13.5 + 7.92, abs=0.15) and cw_col == pytest.approx(ccw_col)


def test_no_view_is_a_mirror_image() -> None:
    x = letter_l()
    mirrors = {"left-right": x.flip(-1), "top-bottom": x.flip(-2), "both": x.flip(-1, -2)}
    for name, view in zip(TTA_VIEWS, augmented_views(x), strict=True):
        distance = float((view - x).abs().sum())
        for mirror_name, mirror in mirrors.items():
            assert distance < 0.5 * float((view - mirror).abs().sum()), (name, mirror_name)
        # The upright stays on the left, the foot at the bottom.
        row, col = centre_of_mass(view[0, 0])
        assert col < 13.5 and row > 13.5, name


def test_unknown_or_no_views_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="flip_lr"):
        TTAModel(nn.Identity(), ["identity", "flip_lr"])
    with pytest.raises(InvalidArgumentError, match="at least one"):
        augmented_views(torch.zeros(1, 1, 28, 28), [])
    with pytest.raises(InvalidArgumentError, match="float"):
        augmented_views(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


# ------------------------------------------------------------------- TTA on the real model


def test_identity_only_tta_equals_the_plain_logits(
    model: nn.Module, test_set: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images = test_set[0][:100]
    plain = batched_logits(model, images)
    tta = tta_logits(model, images, views=["identity"])
    assert tta.shape == plain.shape == (100, 10)
    torch.testing.assert_close(tta, plain.log_softmax(1), rtol=1e-5, atol=1e-5)


def test_tta_averages_the_probabilities_of_the_views(
    model: nn.Module, test_set: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images = test_set[0][:64]
    out = tta_logits(model, images, batch_size=25)  # batches that do not divide 64
    assert out.shape == (64, 10)
    views = augmented_views(images.float() / 255)
    expected = torch.stack([batched_logits(model, v).softmax(1) for v in views]).mean(0)
    torch.testing.assert_close(out.softmax(1), expected, rtol=1e-4, atol=1e-6)


def test_predict_with_tta_on_the_pinned_model(
    model: nn.Module, test_set: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, targets = test_set
    plain = mnist_zoo.predict(model, images, precision="fp32")
    tta = mnist_zoo.predict(model, images, tta=True)
    assert tta.probs.shape == (N, 10) and tta.labels.shape == (N,)
    torch.testing.assert_close(tta.probs.sum(1), torch.ones(N))
    assert float((tta.labels == targets).double().mean()) >= 0.98
    assert float((tta.labels == plain.labels).double().mean()) >= 0.98
    # Averaging over views changes the probabilities, not just their order.
    assert not torch.allclose(tta.probs, plain.probs, atol=1e-3)
    # A picture file goes through the same views.
    picture = mnist_zoo.predict(model, ROOT / "examples" / "images" / "four.png", tta=True)
    assert picture.tolist() == [4]


def test_evaluate_model_and_the_suite_with_tta(
    model: nn.Module, test_set: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, targets = test_set[0][:100], test_set[1][:100]
    result = mnist_zoo.evaluate_model(model, images, targets, tta=True)
    plain = mnist_zoo.evaluate_model(model, images, targets)
    assert result.tta and not plain.tta
    assert result.accuracy >= 0.98 and result.num_images == 100
    torch.testing.assert_close(result.probabilities, tta_logits(model, images).softmax(1))
    assert result.to_dict()["tta"] is True and "tta" not in plain.to_dict()
    assert "tta       true" in result.format() and "tta" not in plain.format()

    suite = evaluate_corruptions(model, images, targets, ["rotate"], tta=True)
    assert suite.tta and suite.to_dict()["tta"] is True and "tta: true" in suite.format()
    assert suite.clean_accuracy == pytest.approx(result.accuracy)
    assert evaluate_corruptions(model, images, targets, ["rotate"]).to_dict()["tta"] is False


# ------------------------------------------------------------------ the stored temperature


def test_predict_divides_by_the_stored_temperature_and_keeps_the_labels(
    model: nn.Module, test_set: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images = test_set[0][:50]
    logits = batched_logits(model, images)
    raw = mnist_zoo.predict(model, images, precision="fp32")
    try:
        model.pretrained_cfg["temperature"] = 0.5
        assert stored_temperature(model) == 0.5
        scaled = mnist_zoo.predict(model, images, precision="fp32")
        off = mnist_zoo.predict(model, images, precision="fp32", calibrated=False)
        model.pretrained_cfg["temperature"] = -1.0
        with pytest.raises(InvalidArgumentError, match="temperature"):
            mnist_zoo.predict(model, images)
    finally:
        model.pretrained_cfg.pop("temperature", None)
    torch.testing.assert_close(scaled.probs, (logits / 0.5).softmax(1), rtol=1e-4, atol=1e-6)
    assert torch.equal(scaled.labels, raw.labels) and torch.equal(off.labels, raw.labels)
    torch.testing.assert_close(off.probs, raw.probs)
    assert (scaled.confidence >= raw.confidence - 1e-6).all()  # T < 1 sharpens


def test_ensemble_members_contribute_their_calibrated_probabilities(
    test_set: tuple[torch.Tensor, torch.Tensor],
) -> None:
    torch.manual_seed(0)
    members = [mnist_zoo.create_model("simplecnn").eval() for _ in range(2)]
    members[0].pretrained_cfg["temperature"] = 3.0
    ensemble = mnist_zoo.Ensemble(members)
    x = test_set[0][:20].float() / 255
    with torch.no_grad():
        expected = ((members[0](x) / 3.0).softmax(1) + members[1](x).softmax(1)) / 2
        torch.testing.assert_close(ensemble(x).softmax(1), expected, rtol=1e-5, atol=1e-6)
        members[0].pretrained_cfg["temperature"] = None  # as loading records "none stored"
        plain = (members[0](x).softmax(1) + members[1](x).softmax(1)) / 2
        torch.testing.assert_close(ensemble(x).softmax(1), plain, rtol=1e-5, atol=1e-6)
