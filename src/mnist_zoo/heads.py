"""``ZooModel``: the timm-style feature and head API every zoo model shares.

:class:`~mnist_zoo.models.SimpleCNN`, :class:`~mnist_zoo.models.DeeperCNN` and
:class:`~mnist_zoo.models.MiniVGG` subclass it; ``mnist_zoo.models`` re-exports it. It adds
methods only: no module, parameter or random draw, so the models' state dicts and their
seeded initialisation are those of the study.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import InvalidArgumentError

__all__ = ["ZooModel", "check_num_classes"]


def check_num_classes(num_classes: int) -> int:
    """Check a number of classes, the width of a head.

    Args:
        num_classes: The value to check.

    Returns:
        ``num_classes``, unchanged.

    Raises:
        InvalidArgumentError: It is not a positive ``int`` (``True`` is not one).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(f"num_classes must be a positive integer, got {num_classes!r}.")
    return num_classes


class ZooModel(nn.Module):
    """What every zoo model shares: features and head apart, as in timm.

    A zoo model is ``normalize`` (:class:`~mnist_zoo.models.Standardize`), then ``features``
    (the convolutions), then ``classifier``, an ``nn.Sequential`` whose last layer is the
    head, an ``nn.Linear`` (with the ``nn.Dropout`` just before it, if any). ``forward(x)``
    is ``forward_head(forward_features(x))``, to the bit.

    ```python
    model = mnist_zoo.create_model("simplecnn")
    features = model.forward_features(x)     # (N, 128): what the last Linear sees
    logits = model.forward_head(features)    # (N, 10), the same as model(x)
    model.reset_classifier(2)                # a fresh 2-way head; the backbone is kept
    ```
    """

    normalize: nn.Module
    features: nn.Module
    classifier: nn.Sequential

    @property
    def num_classes(self) -> int:
        """The number of outputs: the ``out_features`` of the head."""
        return self.get_classifier().out_features

    @property
    def num_features(self) -> int:
        """The width of :meth:`forward_features`' output: the ``in_features`` of the head."""
        return self.get_classifier().in_features

    def _head_start(self) -> int:
        # The head is the last Linear and the dropout just before it, as timm's head_drop.
        start = len(self.classifier) - 1
        while start > 0 and isinstance(self.classifier[start - 1], nn.Dropout):
            start -= 1
        return start

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features: everything but the head.

        Args:
            x: Float images in [0, 1], shape (N, 1, 28, 28).

        Returns:
            The input of the last ``nn.Linear`` (before its dropout), shape
            (N, :attr:`num_features`): (N, 128) for SimpleCNN, (N, 256) for DeeperCNN,
            (N, 512) for MiniVGG.
        """
        x = self.features(self.normalize(x))
        for layer in list(self.classifier)[: self._head_start()]:
            x = layer(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """The logits for features :meth:`forward_features` returned.

        Args:
            features: Shape (N, :attr:`num_features`).

        Returns:
            Logits of shape (N, :attr:`num_classes`).
        """
        for layer in list(self.classifier)[self._head_start() :]:
            features = layer(features)
        return features

    def get_classifier(self) -> nn.Linear:
        """The head: the final ``nn.Linear``.

        Returns:
            The module itself (not a copy), e.g. to freeze everything else.
        """
        head = self.classifier[-1]
        assert isinstance(head, nn.Linear)
        return head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised ``nn.Linear``, as timm does.

        The new head has the same ``in_features``, device and dtype as the old one, and
        PyTorch's default initialisation (it draws from the global RNG). Every other tensor
        is kept. ``model.pretrained_cfg["model_kwargs"]``, when the model has one, records the
        new ``num_classes``, so :func:`~mnist_zoo.hub.save_pretrained` saves a config that
        loads back with the right head.

        Args:
            num_classes: The number of outputs of the new head.

        Raises:
            InvalidArgumentError: ``num_classes`` is not a positive integer (a ``ValueError``).
        """
        check_num_classes(num_classes)
        old = self.get_classifier()
        self.classifier[-1] = nn.Linear(
            old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype
        )
        cfg = getattr(self, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            cfg["model_kwargs"] = {**(cfg.get("model_kwargs") or {}), "num_classes": num_classes}
