"""Calibration figures (NLL, ECE, reliability diagram) and temperature scaling."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_zoo.calibration import (
    ECE_BINS,
    TEMPERATURE_BOUNDS,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_diagram,
)
from mnist_zoo.data import MNIST
from mnist_zoo.errors import InvalidArgumentError, MissingDependencyError
from mnist_zoo.inference.batched import batched_logits

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Guo et al.'s ECE, written out in float64 numpy: bins (lo, hi] over [0, 1]."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def synthetic(n: int, accuracy_of: object, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ten-class predictions with top probability c ~ U(0.1, 1), right with chance f(c)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.1, 1.0, n)
    predicted = rng.integers(0, 10, n)
    probs = np.repeat(((1 - confidence) / 9)[:, None], 10, axis=1)
    probs[np.arange(n), predicted] = confidence
    right = rng.random(n) < accuracy_of(confidence)
    wrong = (predicted + rng.integers(1, 10, n)) % 10
    return probs, np.where(right, predicted, wrong)


def calibrated_logits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits z and labels drawn from softmax(z): calibrated by construction."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 10, generator=gen, dtype=torch.float64) * 2.5
    labels = torch.multinomial(z.softmax(1), 1, generator=gen).squeeze(1)
    return z, labels


# --- NLL and ECE -----------------------------------------------------------------------------


def test_nll_is_cross_entropy() -> None:
    logits, labels = calibrated_logits(500)
    expected = F.cross_entropy(logits.float(), labels)
    assert negative_log_likelihood(logits.float(), labels) == pytest.approx(float(expected), 1e-6)
    assert negative_log_likelihood(logits.numpy(), labels.numpy()) == pytest.approx(
        float(F.cross_entropy(logits, labels)), abs=1e-12
    )


def test_ece_of_calibrated_predictions_is_about_zero() -> None:
    probs, labels = synthetic(200_000, lambda c: c)
    ece = expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels))
    assert ece < 0.01
    assert ece == pytest.approx(reference_ece(probs, labels), abs=1e-12)


def test_ece_of_overconfident_predictions_is_their_gap() -> None:
    probs, labels = synthetic(200_000, lambda c: c**2)
    ece = expected_calibration_error(probs, labels)
    assert ece > 0.1  # E[c - c^2] for c ~ U(0.1, 1) is about 0.15
    assert ece == pytest.approx(reference_ece(probs, labels), abs=1e-12)
    assert expected_calibration_error(probs, labels, num_bins=7) == pytest.approx(
        reference_ece(probs, labels, 7), abs=1e-12
    )


def test_reliability_diagram_bins() -> None:
    probs, labels = synthetic(5_000, lambda c: c, seed=3)
    diagram = reliability_diagram(probs, labels)
    assert len(diagram.bin_edges) == ECE_BINS + 1 and diagram.bin_edges[-1] == 1.0
    assert sum(diagram.counts) == diagram.num_images == 5_000
    assert diagram.counts[0] == 0 and diagram.accuracy[0] is None  # no confidence <= 1/15
    weighted = sum(
        n * abs(a - c)
        for n, a, c in zip(diagram.counts, diagram.accuracy, diagram.confidence, strict=True)
        if n
    )
    assert diagram.ece == pytest.approx(weighted / 5_000)
    assert json.loads(json.dumps(diagram.to_dict()))["counts"] == diagram.counts


def test_a_confidence_on_an_edge_falls_in_the_lower_bin() -> None:
    probs = torch.tensor([[0.5, 0.5], [0.75, 0.25]], dtype=torch.float64)
    diagram = reliability_diagram(probs, torch.tensor([0, 1]), num_bins=4)
    assert diagram.counts == [0, 1, 1, 0]  # (0.25, 0.5] and (0.5, 0.75]
    assert diagram.accuracy == [None, 1.0, 0.0, None]


def test_calibration_rejects_bad_input() -> None:
    logits, labels = calibrated_logits(20)
    with pytest.raises(InvalidArgumentError, match="softmax"):
        expected_calibration_error(logits, labels)  # logits, not probabilities
    with pytest.raises(InvalidArgumentError, match="labels"):
        expected_calibration_error(logits.softmax(1), labels[:5])
    with pytest.raises(InvalidArgumentError, match="num_bins"):
        expected_calibration_error(logits.softmax(1), labels, num_bins=0)
    with pytest.raises(InvalidArgumentError, match="labels must lie"):
        negative_log_likelihood(logits, labels + 10)
    with pytest.raises(InvalidArgumentError, match="empty"):
        negative_log_likelihood(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))


# --- temperature scaling ---------------------------------------------------------------------


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_temperature: float) -> None:
    z, labels = calibrated_logits(20_000)
    observed = z * true_temperature  # over- (T > 1) or under-confident (T < 1) logits
    fitted = fit_temperature(observed.float(), labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    scaled = apply_temperature(observed, fitted)
    assert torch.equal(scaled.argmax(1), observed.argmax(1))
    assert negative_log_likelihood(scaled, labels) < negative_log_likelihood(observed, labels)


def test_fit_temperature_stops_at_the_bounds() -> None:
    logits = torch.eye(10).repeat(10, 1) * 5  # every prediction right: sharper is always better
    labels = torch.arange(10).repeat(10)
    assert fit_temperature(logits, labels) == pytest.approx(TEMPERATURE_BOUNDS[0], rel=1e-4)


def test_apply_temperature_keeps_the_argmax_and_checks_its_argument() -> None:
    logits, _ = calibrated_logits(100)
    for t in (0.1, 1.0, 7.0, np.float32(2.0)):
        assert torch.equal(apply_temperature(logits, t).argmax(1), logits.argmax(1))
    assert torch.allclose(apply_temperature(logits, 2.0), logits / 2)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(InvalidArgumentError, match="temperature"):
            apply_temperature(logits, bad)
    with pytest.raises(InvalidArgumentError, match="number"):
        apply_temperature(logits, "2")  # type: ignore[arg-type]


class Overconfident(nn.Module):
    """A fixed linear classifier whose logits are far too large."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        with torch.no_grad():
            self.linear.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_fit_temperature_of_a_model_on_validation_pairs_and_datasets() -> None:
    torch.manual_seed(0)
    model = Overconfident()
    images = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (200,))
    expected = fit_temperature(batched_logits(model, images), labels)
    assert expected > 1
    assert fit_temperature(model, (images, labels), batch_size=64) == pytest.approx(expected)
    assert fit_temperature(model, (images[:, 0].numpy(), labels.numpy())) == pytest.approx(expected)
    dataset = torch.utils.data.TensorDataset(images.float() / 255, labels)
    assert fit_temperature(model, dataset) == pytest.approx(expected, rel=1e-6)


def test_fit_temperature_refuses_the_test_split(mnist_root: Path) -> None:
    test = MNIST(mnist_root, split="test")
    model = Overconfident()
    with pytest.raises(InvalidArgumentError, match="never the test set"):
        fit_temperature(model, test)
    with pytest.raises(InvalidArgumentError, match="never the test set"):
        fit_temperature(model, torch.utils.data.Subset(test, range(100)))
    with pytest.raises(InvalidArgumentError, match="never the test set"):
        fit_temperature(torch.zeros(len(test), 10), test)


def test_fit_temperature_rejects_bad_input() -> None:
    logits, labels = calibrated_logits(50)
    with pytest.raises(TypeError, match="model_or_logits"):
        fit_temperature([[0.0] * 10], labels)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="val_data"):
        fit_temperature(Overconfident(), 3)
    with pytest.raises(InvalidArgumentError, match="labels"):
        fit_temperature(logits, labels[:10])
    bad = logits.clone()
    bad[0, 0] = math.nan
    with pytest.raises(InvalidArgumentError, match="finite"):
        fit_temperature(bad, labels)


# --- the reliability diagram plot ------------------------------------------------------------


def test_plot_reliability_diagram(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    probs, labels = synthetic(2_000, lambda c: c**2, seed=1)
    diagram = reliability_diagram(probs, labels)
    ax = plot_reliability_diagram(diagram, title="overconfident")
    filled = sum(1 for n in diagram.counts if n)
    assert len(ax.patches) == 2 * filled
    assert ax.get_title() == "overconfident"
    assert "ECE" in ax.get_legend().get_texts()[1].get_text()
    ax.figure.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    diagram = reliability_diagram(torch.tensor([[0.9, 0.1]]), torch.tensor([0]))
    with pytest.raises(MissingDependencyError, match=r'pip install "mnist-zoo\[plot\]"'):
        plot_reliability_diagram(diagram)


def test_importing_calibration_does_not_import_matplotlib() -> None:
    code = "import sys, mnist_zoo.calibration; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
