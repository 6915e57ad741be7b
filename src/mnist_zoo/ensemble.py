"""Average several models' predictions into one model.

```python
import mnist_zoo
members = [mnist_zoo.create_model(n) for n in ("simplecnn", "deepercnn", "minivgg")]
ensemble = mnist_zoo.Ensemble(members, weights=[1, 1, 2])
mnist_zoo.predict(ensemble, images)   # works like any single model
```

``mnist_zoo.load_pretrained("ensemble")`` loads the pretrained members into one (see
:func:`mnist_zoo.hub.load_pretrained_ensemble`); this module only defines the model, and
imports nothing from the hub.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import InvalidArgumentError
from .inference.prediction import stored_temperature

__all__ = ["PRETRAINED_ENSEMBLES", "PRETRAINED_MEMBERS", "Ensemble", "ensemble_members"]

#: The study's three networks: the architectures every release publishes, and the members of
#: a release's ensemble unless :data:`PRETRAINED_ENSEMBLES` says otherwise.
PRETRAINED_MEMBERS = ("simplecnn", "deepercnn", "minivgg")

#: The members of ``load_pretrained("ensemble", revision=TAG)`` for the releases whose ensemble
#: is not simply the three models of the same tag: pinned weights, as ``"name@tag"``, chosen on
#: the validation split (docs/benchmarks.md). Versions are data, like the registry's pins.
PRETRAINED_ENSEMBLES: dict[str, tuple[str, ...]] = {}


def ensemble_members(release: str) -> tuple[str, ...]:
    """The members of a release's pretrained ensemble, each as ``"name@tag"``.

    Args:
        release: A release tag, e.g. ``"v0.1.0"``.

    Returns:
        :data:`PRETRAINED_ENSEMBLES`'s entry for the tag, else the three
        :data:`PRETRAINED_MEMBERS` at that tag.
    """
    return PRETRAINED_ENSEMBLES.get(release) or tuple(f"{n}@{release}" for n in PRETRAINED_MEMBERS)


class Ensemble(nn.Module):
    """A model whose class probabilities are the (weighted) mean of its members' probabilities.

    ``forward`` returns the log of the averaged probabilities. These behave like logits:
    ``argmax`` gives the ensemble's label and ``softmax`` gives back the averaged
    probabilities exactly, so :func:`mnist_zoo.predict`, accuracy code and
    ``nn.CrossEntropyLoss`` (which then computes the ensemble's negative log-likelihood) all
    work unchanged. Averaging probabilities rather than logits keeps one over-confident member
    from dominating the vote. A member whose ``pretrained_cfg`` records a temperature (see
    :func:`mnist_zoo.inference.stored_temperature`) contributes its calibrated probabilities,
    its logits divided by that temperature, so each member's vote weighs what its confidence
    is worth.

    Args:
        models: The members, each mapping the same input to (N, C) logits.
        weights: Optional non-negative weight per member (not all zero); normalised to sum
            to 1. Defaults to equal weights.

    Attributes:
        members: The member models, in order.
        weights: (M,) normalised weights, a buffer that follows the ensemble across devices.

    Raises:
        TypeError: If ``models`` is a single module or contains something that is not one.
        InvalidArgumentError: If ``models`` is empty, its members record different
            ``num_classes``, or ``weights`` has the wrong length, negative or non-finite
            entries, or sums to zero (a ``ValueError``).
    """

    weights: torch.Tensor

    def __init__(
        self,
        models: Sequence[nn.Module],
        weights: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if isinstance(models, nn.Module) and not isinstance(models, nn.ModuleList):
            raise TypeError("Ensemble takes a list of models; wrap a single model in a list.")
        models = list(models)
        if not models:
            raise InvalidArgumentError("An ensemble needs at least one model.")
        for i, model in enumerate(models):
            if not isinstance(model, nn.Module):
                raise TypeError(f"Member {i} is a {type(model).__name__}, not an nn.Module.")
        classes = [getattr(model, "num_classes", None) for model in models]
        if len(set(classes) - {None}) > 1:
            # Found here, not as a shape error in the first forward pass.
            raise InvalidArgumentError(
                f"The members have different numbers of classes ({classes}): an ensemble "
                "averages the probabilities of one set of classes."
            )
        self.members = nn.ModuleList(models)
        self.register_buffer("weights", _normalised_weights(weights, len(models)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the weighted mean of the members' (calibrated) softmax probabilities.

        Args:
            x: A batch the members accept, e.g. images of shape (N, 1, 28, 28).

        Returns:
            (N, C) log-probabilities; ``softmax`` of them is the weighted mean probability.
        """
        log_probs = torch.stack([torch.log_softmax(_calibrated(m, x), dim=1) for m in self.members])
        log_weights = self.weights.to(log_probs.dtype).log().view(-1, 1, 1)
        # log(sum_i w_i p_i) computed as a log-sum-exp, so tiny probabilities do not underflow
        # to log(0); a zero weight contributes log(0) = -inf, which logsumexp handles.
        return torch.logsumexp(log_probs + log_weights, dim=0)

    def extra_repr(self) -> str:
        """The normalised weights, shown when the ensemble is printed.

        Returns:
            ``"weights=[...]"`` with each weight rounded to 4 decimals.
        """
        return f"weights={[round(w, 4) for w in self.weights.tolist()]}"


def _calibrated(member: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The member's logits, divided by the temperature it records, if it records one."""
    logits = member(x)
    temperature = stored_temperature(member)
    return logits if temperature is None else logits / temperature


def _normalised_weights(weights: Sequence[float] | torch.Tensor | None, n: int) -> torch.Tensor:
    if weights is None:
        return torch.full((n,), 1 / n)
    w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
    if w.ndim != 1 or len(w) != n:
        raise InvalidArgumentError(
            f"Expected {n} weights, one per model, got shape {tuple(w.shape)}."
        )
    if not torch.isfinite(w).all() or (w < 0).any():
        raise InvalidArgumentError(f"Weights must be finite and non-negative, got {w.tolist()}.")
    if w.sum() == 0:
        raise InvalidArgumentError("Weights must not all be zero.")
    return (w / w.sum()).float()
