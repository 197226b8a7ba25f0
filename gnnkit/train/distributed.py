"""Data-parallel mini-batch training across processes, on PyTorch's own distributed stack.

Each process (rank) holds the whole graph and a replica of the model, wrapped in
:class:`torch.nn.parallel.DistributedDataParallel`. At every optimiser step the step's seeds
are split into disjoint shards. Rank ``r`` takes shards ``r * accumulate`` to
``(r + 1) * accumulate - 1``, samples their neighbourhoods and back-propagates. DDP then
averages the gradients over the ranks, so every replica takes the same step. Over an epoch
the ranks cover disjoint parts of the training nodes. The schedule, the seeding and the
evaluation are :func:`gnnkit.train.minibatch.fit_minibatch`'s, and:

- **Equivalence.** ``N`` ranks compute the same steps as one process with
  ``accumulate = N``; only the order of floating-point sums differs.
- **Evaluation.** Rank 0 evaluates on the whole graph after every epoch and broadcasts the
  metrics, so every rank makes the same model-selection and early-stopping decisions.
- **Batch norm.** Its statistics are per rank during training, as in plain DDP
  (``SyncBatchNorm`` needs a GPU). DDP broadcasts rank 0's running statistics at every
  forward, and rank 0's buffers are broadcast again after each epoch, so all replicas end
  identical.
- **Checkpoints.** Only rank 0 writes them, atomically. A resumed run reads the same file on
  every rank, so it must be on a file system they share.

Launch with ``torchrun``; the command line is ``gnnkit bench node --mini-batch --distributed``:

.. code-block:: bash

    torchrun --nproc_per_node=2 -m gnnkit bench node --dataset ogbn-arxiv \\
        --mini-batch --distributed --runs 1

The backend is ``gloo`` on CPU and ``nccl`` on CUDA (one GPU per rank: ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gnnkit.errors import GnnkitError, InputError
from gnnkit.train.inputs import NodeInputs
from gnnkit.train.minibatch import World, fit_minibatch
from gnnkit.train.node import TrainResult
from gnnkit.utils.checks import check_number

__all__ = [
    "MAX_TIMEOUT_S",
    "DistributedWorld",
    "default_backend",
    "fit_distributed",
    "init_distributed",
    "launched_by_torchrun",
    "local_device",
    "shutdown_distributed",
]

#: The environment variables ``torchrun`` sets for every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its rendezvous variables are set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def default_backend(device: str | torch.device) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def local_device(device: str | torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when ``device`` is CUDA, else ``device``."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


#: The longest collective timeout :func:`init_distributed` takes, in seconds (about 31 years:
#: the process group stores it as a ``datetime.timedelta``, which overflows far above it).
MAX_TIMEOUT_S = 1e9


def init_distributed(
    backend: str | None = None,
    *,
    device: str | torch.device = "cpu",
    init_method: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    timeout_s: float = 600.0,
) -> DistributedWorld:
    """Join the process group (once per process) and describe this rank.

    Under ``torchrun`` call it without arguments: rank, world size and rendezvous come from
    the environment (``init_method="env://"``). Elsewhere pass ``init_method`` (for example
    ``"file:///shared/tmp/rendezvous"`` or ``"tcp://host:port"``), ``rank`` and
    ``world_size``.

    Args:
        backend (str, optional): ``"gloo"`` or ``"nccl"``. (default: :func:`default_backend`)
        device (str or torch.device, optional): where this rank trains. (default: ``"cpu"``)
        init_method (str, optional): the rendezvous URL. (default: ``"env://"``)
        rank (int, optional): this process's rank. (default: from the environment)
        world_size (int, optional): the number of processes. (default: from the environment)
        timeout_s (float, optional): how long a collective waits for the other ranks before
            failing, so a dead rank cannot hang the others forever; at most ``MAX_TIMEOUT_S``.
            (default: ``600``)
    """
    check_number("timeout_s", timeout_s, 0.0, MAX_TIMEOUT_S, open_low=True)
    if not dist.is_available():
        raise GnnkitError("this PyTorch build has no torch.distributed; install a standard build")
    if not dist.is_initialized():
        if init_method is None and not launched_by_torchrun():
            raise InputError(
                "distributed training needs several processes: start them with "
                "`torchrun --nproc_per_node=N ...`, or pass init_method, rank and world_size"
            )
        backend = backend or default_backend(device)
        if backend == "nccl" and not torch.cuda.is_available():
            raise InputError("the nccl backend needs CUDA; use gloo on CPU")
        device = local_device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend,
            init_method=init_method or "env://",
            rank=-1 if rank is None else rank,
            world_size=-1 if world_size is None else world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistributedWorld()


def shutdown_distributed() -> None:
    """Leave the process group (a no-op if not in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DistributedWorld(World):
    """:class:`gnnkit.train.minibatch.World` over the default ``torch.distributed`` group."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise InputError("no process group: call gnnkit.train.distributed.init_distributed")
        self.rank = dist.get_rank()
        self.size = dist.get_world_size()

    def sum(self, value: Tensor) -> Tensor:
        total = value.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def broadcast(self, values: list[Any]) -> list[Any]:
        box = [values if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, model: nn.Module) -> None:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def no_sync(self, module: nn.Module) -> contextlib.AbstractContextManager:
        return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``DistributedDataParallel`` over ``model``; building it copies rank 0's parameters
        and buffers to every rank."""
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, broadcast_buffers=True
        )

    def barrier(self) -> None:
        dist.barrier()


def fit_distributed(
    model: nn.Module, inputs: NodeInputs, *args: Any, **options: Any
) -> TrainResult:
    """Train ``model`` data-parallel on this process group; every rank calls it alike.

    The arguments are :func:`~gnnkit.train.minibatch.fit_minibatch`'s (``config``,
    ``sampling``, ``checkpoint``, ``resume``, ``progress``, ``callback``), and so is the
    training, on :class:`DistributedWorld`. ``model`` is this rank's replica, on this rank's
    device (the inputs'); ``inputs`` is the whole graph, identical on every rank.

    The model is wrapped in ``DistributedDataParallel``, whose construction copies rank 0's
    parameters and buffers to every rank, so the replicas start identical whatever each rank
    initialised. Every rank returns the same :class:`~gnnkit.train.TrainResult`, and ``model``
    ends with the same parameters and buffers on every rank. Rank 0 writes the checkpoint and
    shows the progress bar; the callback runs on every rank. A resumed checkpoint must have
    the same number of shards per step (``accumulate x world size``); the number of processes
    may change.
    """
    return fit_minibatch(model, inputs, *args, _world=DistributedWorld(), **options)
