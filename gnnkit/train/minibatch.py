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
   loss and accuracy of every split, and model selection as in :mod:`gnnkit.train.node` (the
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
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.sampling.neighbor import NeighborSampler, check_fanouts, derive_seed
from gnnkit.train.checkpoint import run_identity
from gnnkit.train.engine import Run
from gnnkit.train.inputs import NodeInputs
from gnnkit.train.node import (
    HISTORY_KEYS,
    NodeTask,
    TrainConfig,
    TrainResult,
    check_node_run,
    train_result,
)
from gnnkit.utils.checks import check_type
from gnnkit.utils.fields import FLAG, POSITIVE_INT, validate_fields

__all__ = [
    "MiniBatchTask",
    "SamplingConfig",
    "World",
    "check_fanouts_fit",
    "disable_graph_caches",
    "fit_minibatch",
    "message_passing_layers",
]


@dataclass(frozen=True)
class SamplingConfig:
    """How mini-batches are drawn.

    Args:
        fanouts (tuple of int, optional): in-neighbours sampled per node at each hop, one per
            message-passing layer of the model (:func:`check_fanouts_fit`); ``-1`` keeps every
            neighbour. (default: ``(15, 10, 5)``, for a 3-layer model)
        batch_size (int, optional): seeds per shard (per process and micro-batch).
            (default: ``1024``)
        accumulate (int, optional): shards per optimiser step in each process. Their
            gradients add up before the step (gradient accumulation). (default: ``1``)
        replace (bool, optional): sample neighbours with replacement. (default: ``False``)
    """

    fanouts: tuple[int, ...] = (15, 10, 5)
    batch_size: int = field(default=1024, metadata=POSITIVE_INT)
    accumulate: int = field(default=1, metadata=POSITIVE_INT)
    replace: bool = field(default=False, metadata=FLAG)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fanouts", check_fanouts(self.fanouts))
        validate_fields(self)


class World:
    """This process's place among the training processes (one process: rank 0 of 1).

    :mod:`gnnkit.train.distributed` passes one built on ``torch.distributed``; the methods
    here are all the trainer needs of it: the collectives and the model's wrapper.
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

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """What runs the forward pass of ``model`` (on ``device``): the model itself here."""
        return model


def message_passing_layers(model: nn.Module) -> int:
    """How many PyG ``MessagePassing`` layers ``model`` holds (its hops of message passing)."""
    from torch_geometric.nn import MessagePassing

    return sum(isinstance(module, MessagePassing) for module in model.modules())


def check_fanouts_fit(
    model: nn.Module,
    fanouts: tuple[int, ...],
    *,
    option: str = "sampling.fanouts",
    hint: tuple[int, ...] | None = None,
) -> None:
    """Refuse fan-outs whose number differs from the model's message-passing layers.

    Each fan-out samples one hop; a model with ``L`` layers reads ``L`` hops. Fewer fan-outs
    leave the outer layers without their neighbours, more sample hops that no layer reads.

    Args:
        model (torch.nn.Module): the model that trains on the sampled subgraphs.
        fanouts (tuple of int): the fan-outs, one per hop.
        option (str, optional): how the message names the fan-outs; a command-line option
            (``"--fanouts"``) shows them, and its example, as typed on the command line.
            (default: ``"sampling.fanouts"``)
        hint (tuple of int, optional): the example of the message, when it has one fan-out
            per layer. (default: ``10`` per layer)

    NOTE: a model without any ``MessagePassing`` module (its own layers) is not checked. Nor
    does :func:`fit_minibatch` call this: a layer used for several hops (APPNP's ``K``
    propagation steps, one convolution applied twice) needs more fan-outs than it has
    modules. ``gnnkit bench node --mini-batch`` calls it for its recipes, whose layers
    each read one hop.
    """
    layers, count = message_passing_layers(model), len(fanouts)
    if not layers or count == layers:
        return
    example = tuple(hint) if hint is not None and len(hint) == layers else (10,) * layers

    given, fix = f"{option} {tuple(fanouts)}", f"SamplingConfig(fanouts={example})"
    if option.startswith("--"):  # as typed on the command line
        given, fix = (f"{option} {' '.join(map(str, v))}" for v in (fanouts, example))
    raise InputError(
        f"{given}: {count} fan-out(s) for a model with {layers} message-passing layer(s); "
        f"give one fan-out per layer, e.g. {fix}"
    )


def disable_graph_caches(model: nn.Module) -> int:
    """Turn off per-graph caching in every layer of ``model``; returns how many layers had it.

    Mini-batches change the graph at every step. gnnkit's layers check their cache, but
    PyG's ``GCNConv(cached=True)`` reuses the first graph's normalisation blindly, which is
    wrong on the next subgraph and fails when the sizes differ. Every module with a boolean
    ``cached`` attribute gets ``cached = False``, and its cached tensors are dropped: gnnkit's
    layers through their ``clear_cache()``, PyG's ``GCNConv`` by resetting the two attributes
    it caches in (``_cached_edge_index``, ``_cached_adj_t``).
    """
    changed = 0
    for module in model.modules():
        if isinstance(getattr(module, "cached", None), bool):
            changed += int(module.cached)
            module.cached = False
            if callable(getattr(module, "clear_cache", None)):
                module.clear_cache()
            for name in ("_cached_edge_index", "_cached_adj_t"):
                if hasattr(module, name):
                    setattr(module, name, None)
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


class MiniBatchTask(NodeTask):
    """Node classification on sampled mini-batches, evaluated on the whole graph, as a
    :class:`~gnnkit.train.engine.Task` (the schedule and seeding of the module docstring).

    Args:
        model (torch.nn.Module): the classifier (its graph caches are turned off).
        inputs (NodeInputs): the whole graph.
        config (TrainConfig): the optimiser; ``config.seed`` seeds the sampling (``None``:
            a seed drawn from torch's generator, shared by every process).
        sampling (SamplingConfig): fan-outs, batch size, accumulation.
        world (World, optional): this process among the training processes.
            (default: a single process)
        module (torch.nn.Module, optional): what runs the forward pass (the
            ``DistributedDataParallel`` wrapper of ``model``). (default: ``model``)
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: NodeInputs,
        config: TrainConfig,
        sampling: SamplingConfig,
        *,
        world: World | None = None,
        module: nn.Module | None = None,
    ) -> None:
        super().__init__(model, inputs, config)
        disable_graph_caches(model)
        self.sampling, self.world = sampling, world or World()
        self.module = module or model
        self.shards = sampling.accumulate * self.world.size
        self.bounds = _step_bounds(
            inputs.train_idx.numel(), sampling.batch_size * self.shards, self.shards
        )  # checked before any work
        self.sampler = NeighborSampler(
            inputs.edge_index, inputs.num_nodes, sampling.fanouts, replace=sampling.replace
        )
        seed = config.seed
        if seed is None:  # a resumed run reads it from its checkpoint instead
            seed = int(self.world.broadcast([int(torch.randint(0, 2**62, ()).item())])[0])
        self.seed = seed

    def identity(self) -> dict[str, Any]:
        options = self.config.identity()
        options["sampling"] = {
            "fanouts": list(self.sampling.fanouts),
            "batch_size": self.sampling.batch_size,
            "shards": self.shards,  # accumulate x processes: the trajectory depends on this alone
            "replace": self.sampling.replace,
        }
        return run_identity(self.model, options, self.inputs.fingerprint())

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}  # the drawn seed of a run started with seed=None

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        self.seed = int(state["seed"])

    def train_epoch(self, epoch: int) -> dict[str, float]:
        inputs, world, sampling = self.inputs, self.world, self.sampling
        x, y, train_idx, device = inputs.x, inputs.y, inputs.train_idx, inputs.y.device
        mine = range(world.rank * sampling.accumulate, (world.rank + 1) * sampling.accumulate)
        self.model.train()
        order_gen = torch.Generator(device=device).manual_seed(derive_seed(self.seed, epoch))
        order = train_idx[torch.randperm(train_idx.numel(), generator=order_gen, device=device)]
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for step, (start, end) in enumerate(self.bounds):
            parts = torch.tensor_split(order[start:end], self.shards)
            scale = world.size / (end - start)  # DDP averages over processes
            self.optimizer.zero_grad(set_to_none=True)
            for i, shard in enumerate(mine):
                seeds = parts[shard]
                shard_seed = derive_seed(self.seed, epoch, step, shard)
                generator = torch.Generator(device=self.sampler.device).manual_seed(shard_seed)
                sub = self.sampler.sample(seeds, generator)
                torch.manual_seed(shard_seed)  # this shard's dropout
                last = i == sampling.accumulate - 1
                with contextlib.nullcontext() if last else world.no_sync(self.module):
                    out = self.module(_rows(x, sub.node_ids), sub.edge_index)  # (n, C)
                    loss = F.cross_entropy(out[: sub.batch_size], y[seeds], reduction="sum")
                    (loss * scale).backward()
                loss_sum += loss.detach()
            self.optimizer.step()
        self._loss = world.sum(loss_sum) / train_idx.numel()
        world.sync_buffers(self.model)
        return {}

    def evaluate(self, epoch: int) -> dict[str, float]:
        values: dict[str, float] = {}
        if self.world.is_main:
            self.model.eval()
            with torch.no_grad():
                out = self.model(self.inputs.x, self.inputs.edge_index)
                values = dict(zip(HISTORY_KEYS, self.evaluator(out, self._loss), strict=True))
        return self.world.broadcast(values)


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
        sampling (SamplingConfig, optional): fan-outs (one per hop of message passing in
            ``model``: :func:`check_fanouts_fit` checks the usual one layer per hop), batch
            size, accumulation. (default: ``SamplingConfig()``, whose fan-outs
            ``(15, 10, 5)`` fit a 3-layer model)
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
        InputError: a bad argument.
        NonFiniteLossError: a loss became NaN or infinite (the message names the epoch).
        CheckpointError: ``resume`` met a corrupt or foreign checkpoint.
    """
    config = config or TrainConfig()
    sampling = sampling or SamplingConfig()
    world = _world or World()
    check_node_run(model, inputs, config)
    if config.cuda_graph:
        raise InputError(
            "cuda_graph=True captures a full-batch step, whose inputs stay in place; "
            "mini-batches change shape from step to step: leave cuda_graph=False"
        )
    check_type("sampling", sampling, SamplingConfig, "a SamplingConfig")
    module = world.wrap(model, inputs.y.device)
    task = MiniBatchTask(model, inputs, config, sampling, world=world, module=module)
    run = Run(
        task,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        callback=callback,
        main_process=world.is_main,
        **config.run_options(),
    )
    return train_result(run.run())


def sampling_identity(sampling: SamplingConfig) -> dict[str, Any]:
    """The sampling options as a JSON-ready dict (for reports)."""
    out = asdict(sampling)
    out["fanouts"] = list(sampling.fanouts)
    return out
