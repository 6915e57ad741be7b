"""evaluate_model and its metrics: exact counts on small, hand-made cases, and the shared
batched-inference path (eval mode, batching, uint8 input) it has with predict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mnist_zoo
from mnist_zoo.errors import InvalidArgumentError
from mnist_zoo.evaluation import EvaluationResult, confusion_matrix, evaluate_model, most_confused
from mnist_zoo.inference.batched import batched_logits

pytestmark = pytest.mark.usefixtures("one_thread")


class PixelVote(nn.Module):
    """Predicts the class whose index is the brightest of the first ten pixels: a model whose
    every answer is known in advance."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * self.scale


def images_for(labels: list[int]) -> torch.Tensor:
    """uint8 images on which PixelVote predicts ``labels``."""
    images = torch.zeros(len(labels), 1, 28, 28, dtype=torch.uint8)
    for i, label in enumerate(labels):
        images[i, 0, 0, label] = 255
    return images


@pytest.fixture
def result() -> EvaluationResult:
    predicted = [0, 1, 2, 3, 3, 5, 5, 5, 8, 9]
    targets = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    return evaluate_model(PixelVote(), images_for(predicted), targets, batch_size=3)


def test_confusion_matrix_counts_true_rows_and_predicted_columns() -> None:
    confusion = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_most_confused_orders_by_count_and_skips_zeros() -> None:
    confusion = torch.tensor([[5, 2, 0], [3, 5, 0], [0, 1, 5]])
    assert most_confused(confusion, k=5) == [(1, 0, 3), (0, 1, 2), (2, 1, 1)]
    assert most_confused(confusion, k=1) == [(1, 0, 3)]
    assert most_confused(torch.eye(3, dtype=torch.long)) == []


def test_metrics_of_a_known_model(result: EvaluationResult) -> None:
    assert result.accuracy == pytest.approx(0.7)
    assert result.num_images == 10 and result.num_errors == 3
    assert list(result.errors()) == [4, 6, 7]
    assert result.predictions.tolist() == [0, 1, 2, 3, 3, 5, 5, 5, 8, 9]
    assert result.per_class_accuracy == [1, 1, 1, 1, 0, 1, 0, 0, 1, 1]
    # Equal counts come in no particular order.
    assert sorted(result.most_confused(5)) == [(4, 3, 1), (6, 5, 1), (7, 5, 1)]
    assert len(result.most_confused(2)) == 2
    torch.testing.assert_close(result.probabilities.sum(1), torch.ones(10))
    logits = PixelVote()(images_for(result.predictions.tolist()).float() / 255)
    expected_loss = nn.functional.cross_entropy(logits, result.targets).item()
    assert result.loss == pytest.approx(expected_loss)


def test_to_dict_and_format(result: EvaluationResult) -> None:
    metrics = result.to_dict()
    assert list(metrics) == [
        "test_accuracy",
        "test_loss",
        "num_test_images",
        "per_class_accuracy",
        "confused_pairs",
    ]
    assert sorted(metrics["confused_pairs"]) == [[4, 3, 1], [6, 5, 1], [7, 5, 1]]
    report = result.format()
    assert report.startswith("accuracy  70.00%  (7/10, 3 errors)")
    assert "  4 -> 3: 1" in report


def test_uint8_and_float_images_score_the_same() -> None:
    torch.manual_seed(0)
    model = mnist_zoo.create_model("simplecnn")
    images = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)
    targets = torch.randint(0, 10, (20,))
    as_uint8 = evaluate_model(model, images, targets)
    as_float = evaluate_model(model, images.float() / 255, targets)
    assert torch.equal(as_uint8.probabilities, as_float.probabilities)
    assert as_uint8.loss == as_float.loss


def test_goes_through_the_batched_primitive() -> None:
    torch.manual_seed(0)
    model = mnist_zoo.create_model("deepercnn", batch_norm=True)
    images = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    result = evaluate_model(model, images, torch.zeros(12, dtype=torch.long), batch_size=5)
    logits = batched_logits(model, images, batch_size=5)
    assert torch.equal(result.probabilities, logits.softmax(1))
    assert not result.probabilities.is_inference()


def test_runs_in_eval_mode_and_restores_every_flag() -> None:
    # Today's predict and evaluate_model agree: a frozen part stays frozen afterwards.
    torch.manual_seed(0)
    model = mnist_zoo.create_model("minivgg").train()
    model.features.eval()
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    try:
        evaluate_model(model, images_for([1, 2]), torch.tensor([1, 2]))
    finally:
        hook.remove()
    assert seen == [False]
    assert model.training and model.classifier.training
    assert not model.features.training and not model.features[1].training


def test_bad_arguments_are_invalid_argument_errors() -> None:
    model = PixelVote()
    with pytest.raises(InvalidArgumentError, match="3 images but 2 targets"):
        evaluate_model(model, images_for([1, 2, 3]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="empty set of images"):
        evaluate_model(model, images_for([]), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        evaluate_model(model, images_for([1]), torch.tensor([1]), batch_size=0)


def test_values_that_would_score_silently_wrong_are_refused() -> None:
    model, labels = PixelVote(), torch.tensor([1, 2, 3])
    images = images_for([1, 2, 3])
    with pytest.raises(mnist_zoo.errors.ImageError, match="Divide 0-255 values by 255"):
        evaluate_model(model, images.float(), labels)  # 0-255 floats
    with pytest.raises(mnist_zoo.errors.ImageError, match="NaN or infinite"):
        evaluate_model(model, torch.full((3, 1, 28, 28), float("nan")), labels)
    with pytest.raises(TypeError, match="Integer images must be uint8"):
        evaluate_model(model, images.int(), labels)
    with pytest.raises(InvalidArgumentError, match="integer class labels, got torch.float32"):
        evaluate_model(model, images, labels.float())
    # The bound is the model's classes, from the logits: PixelVote has ten.
    with pytest.raises(InvalidArgumentError, match="class labels 0 to 9, got labels from 1 to 10"):
        evaluate_model(model, images, torch.tensor([1, 2, 10]))
    with pytest.raises(InvalidArgumentError, match="got labels from -1 to 2"):
        evaluate_model(model, images, torch.tensor([1, 2, -1]))
    # A zoo model says how many classes it has: refused before it runs.
    five = mnist_zoo.create_model("simplecnn", num_classes=5)
    with pytest.raises(InvalidArgumentError, match="class labels 0 to 4"):
        evaluate_model(five, images, torch.tensor([1, 2, 7]))
    assert evaluate_model(model, images.float() / 255, labels).accuracy == 1.0
