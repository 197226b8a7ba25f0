"""Mini-batch node classification on sampled neighbourhoods, for graphs too big for full batch.

One epoch is one pass over the training nodes in a fresh random order, then one evaluation:

1. The shuffled training nodes are cut into steps of ``batch_size x shards`` seeds, where
   ``shards = accumulate x world_size``. Each step's seeds are split into ``shards`` nearly
   equal parts (:func:`torch.tensor_split`); a last step too small to give every shard a
   seed is merged into the step before it.
2. Per shard, :class:`gnnkit.sampling.NeighborSampler` samples the seeds' neighbourhood
   (fan-outs ``k_1..k_L``). The model runs on that subgraph and the loss is the summed
   cross-entropy of its seeds. Every shard's gradient is added up, scaled by
   ``1 / seeds in the step``, and the optimiser takes one step. The objective is therefore
   the mean cross-entropy over the step's seeds, however they are sharded.
3. Evaluation (``model.eval()``, no gradient): one forward on the *whole* graph. It is exact,
   not sampled: an inference forward keeps no activations for a backward pass. Then come the
   loss and accuracy of every split, and model selection as in :mod:`gnnkit.train.loop` (the
   first epoch with the highest validation accuracy; the test accuracy at that epoch).

Randomness. Shard ``q`` of step ``s`` of epoch ``e`` samples from a generator seeded with
:func:`gnnkit.sampling.neighbor.derive_seed` of ``(seed, e, s, q)``, and seeds torch's global
generator with the same value for dropout. The epoch's order comes from ``(seed, e)``. Hence:

- A run is reproducible, and resumes bit for bit without saving generator states.
- A run of ``N`` processes under :mod:`gnnkit.train.distributed` (each rank ``r`` takes shards
  ``r * accumulate .. (r + 1) * accumulate - 1``) computes the same steps as one process with
  ``accumulate = N``. Only the order of floating-point sums differs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import CheckpointError, InputError
from gnnkit.sampling.neighbor import NeighborSampler, check_fanouts, derive_seed
from gnnkit.train.checkpoint import _first_difference, run_identity
from gnnkit.train.inputs import NodeInputs
from gnnkit.train.loop import (
    HISTORY_KEYS,
    TrainConfig,
    TrainResult,
    _check_run,
    _copy_state,
    _Evaluator,
    _finished,
    _optimizer,
    _record_epoch,
    _report_epoch,
)
from gnnkit.utils.io import atomic_torch_save, safe_torch_load

__all__ = [
    "MINIBATCH_CHECKPOINT_FORMAT",
    "SamplingConfig",
    "disable_graph_caches",
    "fit_minibatch",
]

logger = logging.getLogger(__name__)

#: Written into every mini-batch checkpoint; a file with another value is refused.
MINIBATCH_CHECKPOINT_FORMAT = "gnnkit.train.minibatch/1"


@dataclass(frozen=True)
class SamplingConfig:
    """How mini-batches are drawn.

    Args:
        fanouts (tuple of int, optional): in-neighbours sampled per node at each hop, one per
            layer of the model; ``-1`` keeps every neighbour. (default: ``(15, 10, 5)``)
        batch_size (int, optional): seeds per shard (per process and micro-batch).
            (default: ``1024``)
        accumulate (int, optional): shards per optimiser step in each process. Their
            gradients add up before the step (gradient accumulation). (default: ``1``)
        replace (bool, optional): sample neighbours with replacement. (default: ``False``)
    """

    fanouts: tuple[int, ...] = (15, 10, 5)
    batch_size: int = 1024
    accumulate: int = 1
    replace: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "fanouts", check_fanouts(self.fanouts))
        for name in ("batch_size", "accumulate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.replace, bool):
            raise InputError(f"replace must be True or False, got {self.replace!r}")


class World:
    """This process's place among the training processes (one process: rank 0 of 1).

    :mod:`gnnkit.train.distributed` passes one built on ``torch.distributed``; the methods
    here are the only collectives the trainer needs.
    """

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: Tensor) -> Tensor:
        """``value`` summed over the processes."""
        return value

    def broadcast(self, values: list[Any]) -> list[Any]:
        """Rank 0's ``values`` on every process."""
        return values

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every process rank 0's buffers (batch-norm statistics)."""

    def no_sync(self, module: nn.Module) -> contextlib.AbstractContextManager:
        """Suspend gradient synchronisation for a micro-batch that is not the step's last."""
        return contextlib.nullcontext()


def disable_graph_caches(model: nn.Module) -> int:
    """Turn off per-graph caching in every layer of ``model``; returns how many layers had it.

    Mini-batches change the graph at every step. gnnkit's layers check their cache, but
    PyG's ``GCNConv(cached=True)`` reuses the first graph's normalisation blindly, which is
    wrong on the next subgraph and fails when the sizes differ. Every module with a boolean
    ``cached`` attribute gets ``cached = False``, and its cached tensors are dropped.
    """
    changed = 0
    for module in model.modules():
        if isinstance(getattr(module, "cached", None), bool):
            changed += int(module.cached)
            module.cached = False
            for name in ("_cached_edge_index", "_cached_adj_t"):
                if hasattr(module, name):
                    setattr(module, name, None)
            cache = getattr(module, "_cache", None)
            if cache is not None and hasattr(cache, "clear"):
                cache.clear()
    return changed


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` of dense or sparse (COO / CSR) features; sparse stays sparse."""
    if x.layout == torch.strided:
        return x.index_select(0, index)
    coo = x if x.layout == torch.sparse_coo else x.to_sparse_coo()
    rows = coo.index_select(0, index)
    return rows.to_sparse_csr() if x.layout == torch.sparse_csr else rows


def _step_bounds(num_seeds: int, step_size: int, shards: int) -> list[tuple[int, int]]:
    """Start and end of each step's slice of the epoch order (every shard gets a seed)."""
    if num_seeds < shards:
        raise InputError(
            f"the training split has {num_seeds} node(s), fewer than the {shards} shards of a "
            "step (accumulate x processes); lower --accumulate or the number of processes"
        )
    starts = list(range(0, num_seeds, step_size))
    if len(starts) > 1 and num_seeds - starts[-1] < shards:
        starts.pop()  # merge a last step too small to split
    return list(zip(starts, [*starts[1:], num_seeds], strict=True))


@dataclass
class _State:
    history: dict[str, list[float]] = field(
        default_factory=lambda: {key: [] for key in HISTORY_KEYS}
    )
    epoch_times: list[float] = field(default_factory=list)
    best: dict[str, float] = field(
        default_factory=lambda: {
            "epoch": 0,
            "val_acc": -math.inf,
            "test_acc": 0.0,
            "train_acc": 0.0,
        }
    )
    best_state: dict[str, Tensor] | None = None
    epoch: int = 0
    finished: str | None = None


def _identity(
    model: nn.Module,
    inputs: NodeInputs,
    config: TrainConfig,
    sampling: SamplingConfig,
    shards: int,
) -> dict[str, Any]:
    options = config.identity()
    options["sampling"] = {
        "fanouts": list(sampling.fanouts),
        "batch_size": sampling.batch_size,
        "shards": shards,  # accumulate x processes: the trajectory depends on this alone
        "replace": sampling.replace,
    }
    return run_identity(model, options, inputs.fingerprint())


def _load(path: Path, identity: dict[str, Any], epochs: int) -> tuple[dict[str, Any], _State]:
    state = safe_torch_load(path, what="checkpoint")
    if not isinstance(state, dict) or state.get("format") != MINIBATCH_CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a gnnkit mini-batch checkpoint (format {found!r}, "
            f"expected {MINIBATCH_CHECKPOINT_FORMAT!r}); delete it or choose another path"
        )
    missing = [
        k
        for k in ("run", "seed", "epoch", "model", "optimizer", "history", "best")
        if k not in state
    ]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: no {', '.join(missing)}")
    difference = _first_difference(state["run"], identity, "run")
    if difference:
        raise CheckpointError(
            f"checkpoint {path} was written by a different model, configuration or dataset "
            f"({difference.removeprefix('run.')}); resume with the same settings, or delete "
            "the checkpoint to start afresh"
        )
    if state["epoch"] > epochs:
        raise CheckpointError(
            f"checkpoint {path} has already trained {state['epoch']} epochs, more than the "
            f"{epochs} asked for; ask for at least {state['epoch']} epochs"
        )
    run = _State(
        history={key: list(state["history"][key]) for key in HISTORY_KEYS},
        epoch_times=list(state.get("epoch_times", [])),
        best=dict(state["best"]),
        best_state=state.get("best_state"),
        epoch=int(state["epoch"]),
        finished=state.get("finished"),
    )
    if run.finished == "epochs" and epochs > run.epoch:
        run.finished = None  # a finished run asked for more epochs: it continues
    return state, run


def fit_minibatch(
    model: nn.Module,
    inputs: NodeInputs,
    config: TrainConfig | None = None,
    sampling: SamplingConfig | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
    _world: World | None = None,
    _module: nn.Module | None = None,
) -> TrainResult:
    """Train a node classifier on sampled mini-batches; evaluate on the whole graph.

    ``model(x, edge_index)`` must return one row of logits per node of the graph it is given.
    Each step gives it a sampled subgraph. Its graph caches are turned off first
    (:func:`disable_graph_caches`). See the module docstring for the schedule, the evaluation
    and the seeding.

    Args:
        model (torch.nn.Module): the classifier, on the inputs' device.
        inputs (NodeInputs): from :func:`gnnkit.train.node_inputs`.
        config (TrainConfig, optional): epochs, optimiser, patience, seed (``None``: one
            drawn from torch's generator) and checkpoint interval. (default: ``TrainConfig()``)
        sampling (SamplingConfig, optional): fan-outs, batch size, accumulation.
            (default: ``SamplingConfig()``)
        checkpoint (str or PathLike, optional): write checkpoints here (atomically; in a
            multi-process run, rank 0 alone writes). (default: none)
        resume (bool, optional): continue from ``checkpoint`` if it exists. The result equals
            an uninterrupted run's. A checkpoint of a different model, configuration,
            dataset or number of shards is refused. (default: ``False``)
        progress (bool, optional): a tqdm bar over epochs on stderr (rank 0). (default: ``False``)
        callback (callable, optional): called after every epoch, as in
            :func:`gnnkit.train.fit`. (default: none)

    Returns:
        TrainResult: as :func:`gnnkit.train.fit`'s; ``history["loss"]`` is the epoch's mean
        training cross-entropy over all training nodes (dropout on).

    Raises:
        NonFiniteLossError: a loss became NaN or infinite (the message names the epoch).
        CheckpointError: ``resume`` met a corrupt or foreign checkpoint.
    """
    config = config or TrainConfig()
    sampling = sampling or SamplingConfig()
    world = _world or World()
    module = _module or model
    if not isinstance(config, TrainConfig):
        raise InputError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(sampling, SamplingConfig):
        raise InputError(f"sampling must be a SamplingConfig, got {type(sampling).__name__}")
    device, path = _check_run(model, inputs, checkpoint, resume)
    disable_graph_caches(model)

    shards = sampling.accumulate * world.size
    bounds = _step_bounds(
        inputs.train_idx.numel(), sampling.batch_size * shards, shards
    )  # checked before any work
    identity = _identity(model, inputs, config, sampling, shards)
    optimizer = _optimizer(model, config)
    sampler = NeighborSampler(
        inputs.edge_index, inputs.num_nodes, sampling.fanouts, replace=sampling.replace
    )

    run = _State()
    resumed_from = 0
    seed = config.seed
    if resume and path is not None and path.exists():
        saved, run = _load(path, identity, config.epochs)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        seed = int(saved["seed"])  # the drawn seed of a run started with seed=None
        resumed_from = run.epoch
        logger.info("resuming %s from epoch %d", path, run.epoch)
    elif seed is None:
        seed = int(world.broadcast([int(torch.randint(0, 2**62, ()).item())])[0])

    def write_checkpoint() -> None:
        if path is None or not world.is_main:
            return
        atomic_torch_save(
            {
                "format": MINIBATCH_CHECKPOINT_FORMAT,
                "run": identity,
                "seed": seed,
                "epoch": run.epoch,
                "finished": run.finished,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": run.history,
                "epoch_times": run.epoch_times,
                "best": run.best,
                "best_state": run.best_state,
            },
            path,
        )

    evaluate = _Evaluator(inputs)
    x, y, train_idx = inputs.x, inputs.y, inputs.train_idx
    mine = range(world.rank * sampling.accumulate, (world.rank + 1) * sampling.accumulate)
    bar = None
    if progress and world.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=run.epoch, desc="epochs", leave=False, unit="ep")

    try:
        if run.finished == "patience":
            run.epoch = config.epochs  # a finished run: nothing left to train
        while run.epoch < config.epochs:
            epoch = run.epoch + 1
            tick = time.perf_counter()
            model.train()
            order_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, epoch))
            order = train_idx[torch.randperm(train_idx.numel(), generator=order_gen, device=device)]
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            for step, (start, end) in enumerate(bounds):
                parts = torch.tensor_split(order[start:end], shards)
                scale = world.size / (end - start)  # DDP averages over processes
                optimizer.zero_grad(set_to_none=True)
                for i, shard in enumerate(mine):
                    seeds = parts[shard]
                    shard_seed = derive_seed(seed, epoch, step, shard)
                    generator = torch.Generator(device=sampler.device).manual_seed(shard_seed)
                    sub = sampler.sample(seeds, generator)
                    torch.manual_seed(shard_seed)  # this shard's dropout
                    last = i == sampling.accumulate - 1
                    with contextlib.nullcontext() if last else world.no_sync(module):
                        out = module(_rows(x, sub.node_ids), sub.edge_index)  # (n, C)
                        loss = F.cross_entropy(out[: sub.batch_size], y[seeds], reduction="sum")
                        (loss * scale).backward()
                    loss_sum += loss.detach()
                optimizer.step()
            train_loss = world.sum(loss_sum) / train_idx.numel()
            world.sync_buffers(model)

            values: list[float] = []
            if world.is_main:
                model.eval()
                with torch.no_grad():
                    values = evaluate(model(x, inputs.edge_index), train_loss)
            values = world.broadcast(values)
            run.epoch_times.append(time.perf_counter() - tick)
            run.epoch = epoch

            improved = _record_epoch(
                run.history, run.best, values, epoch=epoch, lr=config.lr, path=path
            )
            if improved and config.restore_best:
                run.best_state = _copy_state(model)
            run.finished = _finished(config, epoch, run.best)
            if run.finished or epoch % config.checkpoint_every == 0:
                write_checkpoint()
            _report_epoch(bar, callback, epoch, values, run.epoch_times[-1])
            if run.finished == "patience":
                break
    finally:
        if bar is not None:
            bar.close()

    if config.restore_best and run.best_state is not None:
        model.load_state_dict(run.best_state)
    return TrainResult(
        best_epoch=int(run.best["epoch"]),
        val_acc=float(run.best["val_acc"]),
        test_acc=float(run.best["test_acc"]),
        train_acc=float(run.best["train_acc"]),
        epochs_run=len(run.history["loss"]),
        stopped_early=run.finished == "patience",
        history=run.history,
        epoch_times=run.epoch_times,
        resumed_from=resumed_from,
    )


def sampling_identity(sampling: SamplingConfig) -> dict[str, Any]:
    """The sampling options as a JSON-ready dict (for reports)."""
    out = asdict(sampling)
    out["fanouts"] = list(sampling.fanouts)
    return out
