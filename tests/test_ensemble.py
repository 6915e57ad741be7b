"""Ensemble: probability averaging, weights, compatibility with predict(), and errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mnist_zoo import create_model
from mnist_zoo.ensemble import Ensemble
from mnist_zoo.inference import predict

pytestmark = pytest.mark.usefixtures("one_thread")


def seeded(name: str = "simplecnn", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name).eval()


class FixedProbs(nn.Module):
    """A stand-in model that predicts the same probabilities for every image."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(probs).log())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_identical_members_equal_one_model(images: torch.Tensor) -> None:
    model = seeded()
    ensemble = Ensemble([copy.deepcopy(model) for _ in range(3)]).eval()
    with torch.no_grad():
        expected = torch.softmax(model(images), dim=1)
        got = torch.softmax(ensemble(images), dim=1)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(predict(ensemble, images).probs, predict(model, images).probs)


def test_forward_is_log_of_mean_probabilities(images: torch.Tensor) -> None:
    members = [seeded(seed=s) for s in range(3)]
    ensemble = Ensemble(members).eval()
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(images), dim=1) for m in members]).mean(0)
        out = ensemble(images)
    assert out.shape == (6, 10)
    torch.testing.assert_close(out, mean.log())
    torch.testing.assert_close(out.exp().sum(1), torch.ones(6))


def test_weighted_average_math() -> None:
    a, b = FixedProbs([0.7, 0.2, 0.1]), FixedProbs([0.1, 0.1, 0.8])
    ensemble = Ensemble([a, b], weights=[3, 1])
    torch.testing.assert_close(ensemble.weights, torch.tensor([0.75, 0.25]))
    probs = ensemble(torch.zeros(2, 1, 28, 28)).exp()
    expected = torch.tensor(
        [0.75 * 0.7 + 0.25 * 0.1, 0.75 * 0.2 + 0.25 * 0.1, 0.75 * 0.1 + 0.25 * 0.8]
    )
    torch.testing.assert_close(probs, expected.expand(2, -1))


def test_probabilities_are_averaged_not_logits() -> None:
    # Averaging logits would give class 0 a probability of 0.85, as the confident member's
    # extreme logit outweighs two members that lean to class 1.
    confident, unsure = FixedProbs([0.999, 0.001]), FixedProbs([0.3, 0.7])
    third = FixedProbs([0.3, 0.7])
    probs = Ensemble([confident, unsure, third])(torch.zeros(1, 1, 28, 28)).exp()
    torch.testing.assert_close(probs, torch.tensor([[0.533, 0.467]]), atol=1e-3, rtol=0)


def test_zero_weight_ignores_a_member() -> None:
    a, b = FixedProbs([0.9, 0.1]), FixedProbs([1e-30, 1.0])
    out = Ensemble([a, b], weights=torch.tensor([1.0, 0.0]))(torch.zeros(1, 1, 28, 28))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.exp(), torch.tensor([[0.9, 0.1]]))


def test_tiny_probabilities_do_not_underflow_to_minus_infinity() -> None:
    sure = FixedProbs([1.0, 1e-40])
    out = Ensemble([sure, sure])(torch.zeros(1, 1, 28, 28))
    assert torch.isfinite(out).all()


def test_is_a_module_with_members_and_weights_in_its_state() -> None:
    members = [seeded(), seeded(seed=1)]
    ensemble = Ensemble(members, weights=[1, 3])
    assert isinstance(ensemble.members, nn.ModuleList)
    assert list(ensemble.members) == members
    state = ensemble.state_dict()
    assert "weights" in state and "members.1.classifier.3.bias" in state
    assert "weights=[0.25, 0.75]" in repr(ensemble)
    ensemble.train()
    assert all(m.training for m in members)


def test_predict_restores_members_training_mode(images: torch.Tensor) -> None:
    ensemble = Ensemble([seeded(), seeded(seed=1)]).train()
    pred = predict(ensemble, images)
    assert len(pred) == 6
    assert ensemble.training and all(m.training for m in ensemble.members)


def test_ensemble_of_different_architectures(images: torch.Tensor) -> None:
    ensemble = Ensemble([seeded("simplecnn"), seeded("deepercnn")])
    assert predict(ensemble, images).probs.shape == (6, 10)


def test_gradients_flow_to_members() -> None:
    member = seeded()
    loss = Ensemble([member])(torch.rand(2, 1, 28, 28)).logsumexp(1).sum()
    loss.backward()
    assert member.classifier[3].weight.grad is not None


@pytest.mark.parametrize(
    "models,weights,error,pattern",
    [
        ([], None, ValueError, "at least one model"),
        (nn.Linear(2, 2), None, TypeError, "wrap a single model in a list"),
        ([nn.Linear(2, 2), "simplecnn"], None, TypeError, "Member 1 is a str, not an nn.Module"),
        ([nn.Linear(2, 2)] * 2, [1.0], ValueError, r"Expected 2 weights.*got shape \(1,\)"),
        ([nn.Linear(2, 2)] * 2, [[1.0, 1.0]], ValueError, "Expected 2 weights"),
        ([nn.Linear(2, 2)] * 2, [1.0, -0.5], ValueError, "finite and non-negative"),
        ([nn.Linear(2, 2)] * 2, [1.0, float("nan")], ValueError, "finite and non-negative"),
        ([nn.Linear(2, 2)] * 2, [0, 0], ValueError, "must not all be zero"),
        (
            [seeded(), create_model("simplecnn", num_classes=5)],
            None,
            ValueError,
            r"different numbers of classes \(\[10, 5\]\)",
        ),
    ],
)
def test_invalid_construction(
    models: object, weights: object, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        Ensemble(models, weights)  # type: ignore[arg-type]
