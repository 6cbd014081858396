"""Devices and multi-process training through ``torchrun`` (DDP-style gradient averaging, nccl or gloo).

``resolve_device`` turns a ``--device`` option into a torch device for every command.

Gradients are averaged by hand after each backward pass instead of wrapping the modules in
``DistributedDataParallel``: which parameters receive gradients changes with the schedule (the
proposal CNN only trains from the supervision stage on), and an explicit all-reduce of every
parameter (zeros where unused) keeps all ranks in lock step without ``find_unused_parameters``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``, with a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SystemExit(f"--device {name!r} is not a device name (auto, cpu, cuda, cuda:N)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment (single process otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def close_distributed() -> None:
    """Leave the process group together: every rank waits for the others before tearing it down.

    Without the barrier a rank that finishes first can tear gloo down while another still talks
    to it, and that rank aborts (``terminate called without an active exception``).
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(modules: list[nn.Module], context: DistributedContext) -> None:
    """Average the gradients of ``modules`` over all ranks (missing gradients count as zero)."""
    if context.world_size == 1:
        return
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def broadcast_modules(modules: list[nn.Module], context: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if context.world_size == 1:
        return
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
