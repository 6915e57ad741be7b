"""The models' fast layers: drop-in versions of PyTorch layers, with the same results, faster.

Each gives bitwise the outputs and gradients of the plain layer it replaces, so the published
weights train again bit for bit; only the time changes (``benchmarks/fast_layers.py`` times
and checks both). A printed model, its state dict and its module types read as the plain
layers' do.

* :class:`Features` runs each ReLU -> max-pool pair pool-first, on a quarter of the values.
* :class:`Flatten` hands its gradient back channels-last when training channels-last.
* :class:`MaxPool2d` pools a CPU feature map by elementwise maxima where no gradient is
  recorded: PyTorch's max-pool kernel is slow in the default memory format.

:func:`with_plain_layers` returns a copy built from the plain layers, for comparisons.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["Features", "Flatten", "MaxPool2d", "with_plain_layers"]

# torch.compiler.is_compiling arrived in torch 2.3; before it, tracing takes the maxima too.
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


class Features(nn.Sequential):
    """The convolutional layers, in the study's order; a ReLU followed by a max-pool runs after it.

    Max-pooling and ReLU commute exactly: ``max(relu(a)) == relu(max(a))``, and the backward
    passes agree too (the gradient reaches the same single position of each window, or is 0 in
    both). Pooling first runs the ReLU, forward and backward, on a quarter of the values. With
    :class:`Flatten`, this makes SimpleCNN's bf16 channels-last training step 1.17x faster on a
    2-core CPU (``benchmarks/fast_layers.py``). The modules, their order when printed and the
    state dict are those of a plain ``nn.Sequential``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers in order, swapping each ReLU -> MaxPool2d pair (same result).

        Args:
            x: The input of the first layer.

        Returns:
            The output of the last layer.
        """
        layers = list(self)
        i = 0
        while i < len(layers):
            if (
                i + 1 < len(layers)
                and type(layers[i]) is nn.ReLU
                and type(layers[i + 1]) in (nn.MaxPool2d, MaxPool2d)
                and not layers[i + 1].return_indices
            ):
                x = layers[i](layers[i + 1](x))
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


class Flatten(nn.Flatten):
    """``nn.Flatten`` whose gradient goes back in the memory format its input came in.

    Flattening a channels-last feature map copies it to (N, C*H*W) in channel-major order, and
    the gradient of that copy comes back channel-major too. The max-pool's backward then
    converts its saved channels-last input and the gradient to one layout, twice the traffic
    of converting the small gradient once here.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flatten as ``nn.Flatten`` does; when training channels-last, return grads in kind.

        Args:
            x: The tensor to flatten.

        Returns:
            ``x`` flattened from ``start_dim`` to ``end_dim``.
        """
        if (
            x.requires_grad
            and x.ndim == 4
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            x.register_hook(_to_channels_last)
        return super().forward(x)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools 2x2 windows of a CPU tensor by elementwise maxima at inference.

    PyTorch's CPU max-pool kernel is slow in the default (NCHW) memory format. The maximum of
    each window's four values, taken over four strided views with ``torch.maximum``, is the
    same number, bit for bit (a maximum does not round), and is several times faster. This
    path is taken only where it can change nothing: a plain CPU tensor in the default memory
    format, a 2x2 window with stride 2 and no padding, dilation, ``ceil_mode`` or indices, and
    no gradient recorded through the pool. With a gradient, ``nn.MaxPool2d``'s backward sends
    a tied window's gradient to one position where ``torch.maximum`` would split it, so
    training keeps PyTorch's kernel, as do channels-last tensors (where the kernel is fast)
    and tracing (``torch.export``, ``torch.compile``, ``torch.jit.trace``), so that exported
    graphs hold one max-pool node as before.

    Args and attributes are those of ``nn.MaxPool2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` as ``nn.MaxPool2d`` does.

        Args:
            x: A (N, C, H, W) or (C, H, W) tensor.

        Returns:
            The pooled tensor, bitwise ``nn.MaxPool2d``'s (and its indices if asked for).
        """
        if not self._by_maxima(x):
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        top = torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2])
        bottom = torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2])
        return torch.maximum(top, bottom)

    def _by_maxima(self, x: torch.Tensor) -> bool:
        """Whether ``x`` may be pooled by elementwise maxima (see the class docstring)."""
        pair = nn.modules.utils._pair
        return (
            type(x) is torch.Tensor  # not a fake, functional or traced tensor of an export
            and x.device.type == "cpu"
            and x.ndim in (3, 4)
            and min(x.shape[-2:]) >= 2  # smaller maps are the kernel's error to raise
            and x.is_contiguous()
            and not (torch.is_grad_enabled() and x.requires_grad)
            and pair(self.kernel_size) == (2, 2)
            and pair(self.stride if self.stride is not None else self.kernel_size) == (2, 2)
            and pair(self.padding) == (0, 0)
            and pair(self.dilation) == (1, 1)
            and not self.ceil_mode
            and not self.return_indices
            and not torch.jit.is_tracing()
            and not _is_compiling()
        )


def _to_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def with_plain_layers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` built from plain ``nn.Sequential``, ``nn.Flatten`` and ``nn.MaxPool2d``.

    The weights, state-dict keys, outputs and gradients are the same; only the speed-ups of
    :class:`Features`, :class:`Flatten` and :class:`MaxPool2d` are gone. The tests and
    ``benchmarks/fast_layers.py`` compare the two.

    Args:
        model: Any module; it is not changed.

    Returns:
        A deep copy with every :class:`Features`, :class:`Flatten` and :class:`MaxPool2d`
        replaced.
    """
    plain = copy.deepcopy(model)
    # Children first: a Features is rebuilt from children that are already plain.
    for parent in reversed(list(plain.modules())):
        for attr, sub in list(parent.named_children()):
            if isinstance(sub, Features):
                setattr(parent, attr, nn.Sequential(*sub))
            elif isinstance(sub, Flatten):
                setattr(parent, attr, nn.Flatten(sub.start_dim, sub.end_dim))
            elif isinstance(sub, MaxPool2d):
                setattr(parent, attr, nn.MaxPool2d(
                    sub.kernel_size, sub.stride, sub.padding, sub.dilation,
                    return_indices=sub.return_indices, ceil_mode=sub.ceil_mode,
                ))  # fmt: skip
    return plain
