"""Data-parallel training under ``torchrun``: process group, DDP wrapper, reductions.

Started by ``torchrun``, the Trainer joins the process group by itself (NCCL on CUDA, Gloo on
the CPU); every helper here is a no-op in a single process.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["all_gather", "all_reduce_sum", "barrier", "broadcast_weights", "setup", "wrap"]


def setup(device: torch.device) -> tuple[int, int]:
    """Join the process group when started by ``torchrun``.

    Args:
        device: This process's device; CUDA uses the NCCL backend, anything else Gloo.

    Returns:
        ``(rank, world_size)``: ``(0, 1)`` outside ``torchrun``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """The model to run the training step through: DDP across processes, else the model.

    Args:
        model: The model being trained.
        device: Its device.
        world_size: The number of processes.

    Returns:
        ``DistributedDataParallel(model)`` when ``world_size > 1``, else ``model``.
    """
    if world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """Sum ``t`` over all processes, in place.

    Args:
        t: A tensor on this process's device.
        world_size: The number of processes; with 1 nothing happens.

    Returns:
        ``t``, now holding the sum.
    """
    if world_size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather(value: Any, world_size: int) -> list[Any]:
    """Every process's ``value``, in rank order (a picklable object, small).

    Args:
        value: This process's value.
        world_size: The number of processes; with 1 nothing is sent.

    Returns:
        ``[value of rank 0, value of rank 1, ...]``.
    """
    if world_size == 1:
        return [value]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_weights(model: nn.Module, world_size: int) -> None:
    """Give every process rank 0's weights and buffers (BatchNorm statistics are per process).

    Args:
        model: The model, the same architecture on every process.
        world_size: The number of processes; with 1 nothing happens.
    """
    if world_size > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)


def barrier(world_size: int) -> None:
    """Wait until every process gets here.

    Args:
        world_size: The number of processes; with 1 nothing happens.
    """
    if world_size > 1:
        dist.barrier()
