"""Batch sources: what the Trainer iterates over, one epoch at a time.

A dataset that holds its images in memory (``MNIST``, a pair of tensors, a ``Subset`` of
either) takes the fast path, :class:`TensorBatches`: the whole set is moved to the device once
as uint8, each batch is a slice of a shuffled index, converted to float there and augmented as
a whole batch. Any other ``Dataset`` or ``DataLoader`` goes through :class:`LoaderBatches`.

Every source gets what it needs as explicit arguments (device, batch size, seed, rank, world
size, augmentation, memory format); the order of the images and their augmentation depend on
``(seed, epoch)`` only, so a resumed run replays them exactly. Under ``torchrun`` each process
takes its share of every global batch, order and augmentation included, so that N processes
with batch B train on exactly the batches of one process with batch N x B.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import to_float_images
from ..errors import InvalidArgumentError
from ..evaluation import check_targets
from ..inference.preprocessing import check_pixels
from .augment import Augmentation

__all__ = [
    "BatchSource",
    "LoaderBatches",
    "TensorBatches",
    "TensorData",
    "batch_source",
    "check_not_empty",
    "in_memory",
    "materialise",
    "split_validation",
]


@dataclass
class TensorData:
    """A labelled set held in memory.

    Attributes:
        images: (N, 1, 28, 28), uint8 or float in [0, 1].
        targets: (N,), int64.
    """

    images: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)


def in_memory(data: Any) -> TensorData | None:
    """The images and targets of ``data`` as tensors, when it holds them in memory.

    Args:
        data: An ``(images, targets)`` pair of tensors, anything with ``images`` and
            ``targets`` tensors (``MNIST``), a ``Subset`` of either, or anything else.

    Returns:
        The tensors (images with a channel axis), or ``None`` for any other ``data``.

    Raises:
        InvalidArgumentError: The tensors have the wrong shapes, or the targets are not
            integer labels of at least 0.
        ImageError: Float images outside [0, 1], NaN or infinite (a ``ValueError``).
        TypeError: Integer images other than uint8.
    """
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        images, targets = data
    elif isinstance(getattr(data, "images", None), torch.Tensor) and isinstance(
        getattr(data, "targets", None), torch.Tensor
    ):
        images, targets = data.images, data.targets
    elif isinstance(data, torch.utils.data.Subset):
        parent = in_memory(data.dataset)
        if parent is None:
            return None
        idx = torch.as_tensor(list(data.indices), dtype=torch.long)
        return TensorData(parent.images[idx], parent.targets[idx])
    else:
        return None
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or len(images) != len(targets):
        raise InvalidArgumentError(
            f"Expected images (N, 1, 28, 28) and targets (N,), got {tuple(images.shape)} "
            f"and {tuple(targets.shape)}."
        )
    # Wrong values would train without an error: 0-255 floats, or 3.7 read as class 3.
    check_pixels(images)
    check_targets(targets)
    return TensorData(images, targets.long())


def check_not_empty(data: Any, what: str, num_classes: int | None = None) -> None:
    """Refuse an empty dataset up front, with a message that says which one.

    Args:
        data: Anything :meth:`Trainer.fit` takes; an iterable without a length passes.
        what: Which set it is, for the message ("training", "validation", ...).
        num_classes: The model's number of classes: labels in memory must be below it.

    Raises:
        InvalidArgumentError: ``data`` holds no images, or a label that is not a class.
    """
    tensors = in_memory(data)
    if tensors is not None and num_classes is not None:
        try:
            check_targets(tensors.targets, num_classes)
        except InvalidArgumentError as err:
            raise InvalidArgumentError(f"The {what} dataset: {err}") from None
    try:
        n = len(tensors if tensors is not None else data)
    except TypeError:
        return  # an iterable loader without a length: nothing to check up front
    if n == 0:
        raise InvalidArgumentError(f"The {what} dataset is empty.")


def split_validation(train: Any, val: Any, *, val_size: int, seed: int) -> tuple[Any, Any]:
    """Carve ``val_size`` images out of ``train`` for validation, unless ``val`` is given.

    The split depends on ``seed`` only, so every run and every resume sees the same one.

    Args:
        train: The training data, in any form :meth:`Trainer.fit` takes.
        val: Validation data given by the caller, or ``None``.
        val_size: Images to hold out when ``val`` is ``None``; 0 for no validation.
        seed: Fixes which images are held out.

    Returns:
        ``(train, val)``: unchanged when ``val`` is given or ``val_size`` is 0.

    Raises:
        InvalidArgumentError: ``train`` is a ``DataLoader`` (it cannot be split), or
            ``val_size`` leaves no training images.
    """
    if val is not None or val_size == 0:
        return train, val
    if isinstance(train, DataLoader):
        raise InvalidArgumentError(
            "Cannot carve a validation split out of a DataLoader: pass val=..., or "
            "val_size=0 to train without validation."
        )
    tensors = in_memory(train)
    n = len(tensors if tensors is not None else train)
    if val_size >= n:
        raise InvalidArgumentError(
            f"val_size={val_size} leaves no training data out of {n} images."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx = perm[:val_size].sort().values
    train_idx = perm[val_size:].sort().values
    if tensors is not None:
        return (
            TensorData(tensors.images[train_idx], tensors.targets[train_idx]),
            TensorData(tensors.images[val_idx], tensors.targets[val_idx]),
        )
    return (
        torch.utils.data.Subset(train, train_idx.tolist()),
        torch.utils.data.Subset(train, val_idx.tolist()),
    )


def materialise(data: Any) -> TensorData:
    """Read a whole ``Dataset`` or ``DataLoader`` into memory.

    Args:
        data: A ``Dataset`` of ``(image, label)`` or a ``DataLoader`` of batches.

    Returns:
        All images and labels, concatenated.
    """
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=1000)
    images, targets = zip(*((x, y) for x, y in loader), strict=True)
    return TensorData(torch.cat(images), torch.cat(targets).long())


class BatchSource:
    """Yields (float images on the device, int64 labels on the device) for one epoch.

    Args:
        training: Shuffle, drop the last partial batch and augment (training), or go through
            the data in order (validation).
        device: Where the batches go.
        batch_size: Images per batch, per process.
        seed: Fixes the order and the augmentation, with the epoch and the rank.
        rank: This process's rank under ``torchrun`` (0 otherwise).
        world_size: The number of processes (1 otherwise).
        augment: Applied to training batches; ``None`` for none.
        channels_last: Give the batches the channels-last memory format.

    Attributes:
        steps_per_epoch: The number of batches one epoch yields (per process).
    """

    steps_per_epoch: int

    def __init__(
        self,
        *,
        training: bool,
        device: torch.device,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        augment: Augmentation | None = None,
        channels_last: bool = False,
    ) -> None:
        self.training = training
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.augment = augment
        self.channels_last = channels_last

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch.

        Args:
            epoch: The 0-based epoch; with the seed and the rank it fixes order and augmentation.

        Yields:
            ``(images, labels)``: float images in [0, 1] and int64 labels, on the device.

        Raises:
            NotImplementedError: Always; the subclasses yield the batches.
        """
        raise NotImplementedError

    def _augment_generator(self, epoch: int) -> torch.Generator:
        # Depends on (seed, epoch) only: a resumed run replays the same augmentation. Every
        # process draws the numbers of the whole global batch and uses its share of them.
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 31 + 1)

    def _prepare(self, x: torch.Tensor, aug_gen: torch.Generator) -> torch.Tensor:
        """Float in [0, 1], augmented when training, in the requested memory format."""
        x = to_float_images(x)
        if self.training and self.augment is not None:
            x = self.augment(x, aug_gen, share=(self.rank, self.world_size))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class TensorBatches(BatchSource):
    """The fast path: the whole set on the device as uint8, batches sliced by a shuffled index.

    Args:
        data: The images and labels.
        **options: The keyword arguments of :class:`BatchSource`.
    """

    def __init__(self, data: TensorData, **options: Any) -> None:
        super().__init__(**options)
        self.images = data.images.to(self.device)
        self.targets = data.targets.to(self.device)
        n = len(data)
        if self.training:
            # Every process gets an equal shard so that DDP steps stay in lock-step.
            self.per_rank = n // self.world_size
            self.steps_per_epoch = self.per_rank // self.batch_size
        else:
            self.steps_per_epoch = math.ceil(n / self.world_size / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch (see :meth:`BatchSource.epoch`).

        Args:
            epoch: The 0-based epoch.

        Yields:
            ``(images, labels)`` on the device.
        """
        n = len(self.targets)
        bs = self.batch_size
        if self.training:
            # Order and augmentation depend on (seed, epoch) only: a resumed run replays them.
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=gen)
            # Global batch i is perm[i * world * bs:][: world * bs] and each process takes its
            # share of it: together they train on exactly the batches of one process with the
            # global batch size.
            steps, world = self.steps_per_epoch, self.world_size
            order = perm[: steps * world * bs].view(steps, world, bs)[:, self.rank].reshape(-1)
        else:
            order = torch.arange(self.rank, n, self.world_size)
        order = order.to(self.device)
        aug_gen = self._augment_generator(epoch)
        for i in range(self.steps_per_epoch if self.training else math.ceil(len(order) / bs)):
            idx = order[i * bs : (i + 1) * bs]
            yield self._prepare(self.images[idx], aug_gen), self.targets[idx]


class LoaderBatches(BatchSource):
    """The general path: any Dataset of (image, label), or a DataLoader, used as given.

    Args:
        data: A ``Dataset`` (sharded by a ``DistributedSampler``) or a ``DataLoader`` (used as
            it is: its own batch size and order).
        num_workers: DataLoader workers for a ``Dataset``.
        **options: The keyword arguments of :class:`BatchSource`.

    Raises:
        TypeError: ``data`` is neither a ``Dataset`` nor a ``DataLoader``.
    """

    def __init__(self, data: Any, *, num_workers: int = 0, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(data, DataLoader):
            self.loader, self.sampler = data, None
        elif isinstance(data, Dataset):
            self.sampler = torch.utils.data.DistributedSampler(
                data, num_replicas=self.world_size, rank=self.rank,
                shuffle=self.training, seed=self.seed, drop_last=self.training,
            )  # fmt: skip
            self.loader = DataLoader(
                data, batch_size=self.batch_size, sampler=self.sampler, drop_last=self.training,
                num_workers=num_workers,
            )  # fmt: skip
        else:
            raise TypeError(
                "Expected an MNIST dataset, an (images, targets) pair of tensors, a Dataset or "
                f"a DataLoader, got {type(data).__name__}."
            )
        self.steps_per_epoch = len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch (see :meth:`BatchSource.epoch`).

        Args:
            epoch: The 0-based epoch.

        Yields:
            ``(images, labels)`` on the device.
        """
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        aug_gen = self._augment_generator(epoch)
        for step, (x, y) in enumerate(self.loader):
            x = x.to(self.device, non_blocking=True)
            if x.ndim == 3:
                x = x.unsqueeze(1)
            y = torch.as_tensor(y).to(self.device, non_blocking=True)
            if step == 0:
                # A dataset's transform errs on every item alike: its first batch shows it,
                # and checking only that one keeps the loop free of a sync per step.
                check_pixels(x)
                check_targets(y)
            yield self._prepare(x, aug_gen), y.long()


def batch_source(data: Any, *, num_workers: int = 0, **options: Any) -> BatchSource:
    """The right batch source for ``data``: in memory if it can be, else through a DataLoader.

    Args:
        data: Anything :meth:`Trainer.fit` takes.
        num_workers: DataLoader workers, for data that is not held in memory.
        **options: The keyword arguments of :class:`BatchSource`.

    Returns:
        A :class:`TensorBatches` or a :class:`LoaderBatches`.

    Raises:
        TypeError: ``data`` is not a form the Trainer takes.
    """
    tensors = in_memory(data)
    if tensors is not None:
        return TensorBatches(tensors, **options)
    return LoaderBatches(data, num_workers=num_workers, **options)
