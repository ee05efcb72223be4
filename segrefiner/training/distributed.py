"""Processes and devices: one training process per GPU, launched by ``torchrun``.

Single node::

    torchrun --standalone --nproc_per_node=8 -m segrefiner train --config configs/segrefiner_lr.yaml

Several nodes (run on every node, same ``--rdzv-id`` and endpoint, e.g. the first node)::

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d \\
        --rdzv-endpoint=node0.example:29400 --rdzv-id=segrefiner-lr \\
        -m segrefiner train --config configs/segrefiner_lr.yaml

``data.batch_size`` is the global batch and must be divisible by the total process count. A
process started without torchrun's environment (``RANK``/``WORLD_SIZE``) trains alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from segrefiner.errors import InputError
from segrefiner.training.config import RuntimeConfig


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized: bool = False  # whether this process set up the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_ranks() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment, ``(0, 1, 0)`` without."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def resolve_device(runtime: RuntimeConfig, local_rank: int = 0) -> torch.device:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise InputError("runtime.device is 'cuda' but CUDA is not available")
    if runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


def setup(runtime: RuntimeConfig) -> DistContext:
    """Read torchrun's environment, pick the device and join the process group (when there
    are several processes). Call :func:`teardown` at the end."""
    rank, world_size, local_rank = env_ranks()
    device = resolve_device(runtime, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    initialized = False
    if world_size > 1 and not dist.is_initialized():
        backend = runtime.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        initialized = True
    return DistContext(rank, world_size, local_rank, device, initialized)


def teardown(ctx: DistContext) -> None:
    if ctx.initialized and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over processes (in place; returned for convenience)."""
    if ctx.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def default_nproc(runtime: RuntimeConfig) -> int:
    """Processes per node: ``runtime.nproc``, else one per visible GPU, else 1."""
    if runtime.nproc:
        return runtime.nproc
    if runtime.device != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def torchrun_command(
    nproc: int,
    module: str,
    args: Sequence[str],
    *,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
    python: str | None = None,
) -> list[str]:
    """The command line that runs ``python -m <module> <args>`` in ``nproc`` processes.

    One node: ``--standalone`` (a local rendezvous on a free port). Several nodes: a c10d
    rendezvous at ``rdzv_endpoint`` (``host:port``) under ``rdzv_id``; run the same command on
    every node.
    """
    cmd = [python or sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1 and rdzv_endpoint is None:
        cmd += ["--standalone", "--nnodes=1"]
    else:
        if not rdzv_endpoint:
            raise InputError("several nodes need a rendezvous endpoint (host:port)")
        cmd += [
            f"--nnodes={nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={rdzv_id or 'segrefiner'}",
        ]
    cmd += [f"--nproc-per-node={nproc}", "-m", module, *args]
    return cmd
