"""Node classification: gnnkit's model side by side with PyG's (``gnnkit bench node``).

gnnkit's model and the references of ``compare`` (``"pyg"``, PyG's example model;
``"pyg-tuned"``, the strongest configuration of PyG's layers, :mod:`gnnkit.bench.pyg_tuned`;
or both) go through the same harness (:func:`gnnkit.train.fit`) with the same seeds, in the
same process, interleaved run by run (even runs in order, odd runs reversed, so none always
runs on a warmer machine; :mod:`gnnkit.bench.harness`). Before the timed runs each
implementation trains a few untimed warm-up epochs (:data:`WARMUP_EPOCHS`).

What the table (:class:`~gnnkit.bench.node_result.NodeBenchResult`) reports, per implementation:

- test accuracy: mean +- sample standard deviation over the runs of the test accuracy at the
  epoch with the best validation accuracy (see :mod:`gnnkit.train.node`), or under a
  ``protocol`` the epoch its rule keeps (:mod:`gnnkit.train.protocols`; both implementations);
- run time: the median over runs of one whole run's time (every epoch's training step plus
  its evaluation of all splits; data preparation, checkpoint writes excluded);
- epoch time: the median over all epochs of all runs;
- peak memory: the largest rise of the process's resident memory during a run (model
  construction and training; the prepared inputs, built once beforehand, are not counted and
  are reported separately as ``inputs_mb`` in the JSON).

The speed ratio over each reference is its median run time divided by gnnkit's.

Two other modes train through other harnesses. Everything else stays the same: seeds,
interleaving, the table and the JSON, which gains ``"mode"``.

- **Mini-batch** (``sampling``): :func:`gnnkit.train.minibatch.fit_minibatch`. It trains on
  sampled neighbourhoods (GraphSAGE's sampler, Hamilton et al., arXiv 1706.02216) and
  evaluates on the whole graph, for graphs whose training does not fit in memory.
- **Multi-process** (``sampling`` and ``distributed``, every rank calling this):
  :func:`gnnkit.train.distributed.fit_distributed`, ``DistributedDataParallel`` over the
  initialised process group. Rank 0's peak memory is the one reported.

On ogbn-arxiv, ``model="gcn"`` is OGB's arxiv recipe (:data:`gnnkit.recipes.DATASET_RECIPES`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from gnnkit.bench import harness
from gnnkit.bench.node_result import NodeBenchResult, RunRecord
from gnnkit.errors import InputError
from gnnkit.utils.checks import check_int
from gnnkit.utils.tensors import MIB, describe_layout, tensor_mib

__all__ = ["WARMUP_EPOCHS", "default_warmup_epochs", "run_node_benchmark"]

logger = logging.getLogger(__name__)

#: Untimed warm-up epochs per implementation before the timed runs, by training mode (the
#: only definition: ``gnnkit bench node --warmup`` and :func:`run_node_benchmark` default to it).
WARMUP_EPOCHS = {"full-batch": 5, "mini-batch": 1}


def default_warmup_epochs(sampling: Any = None) -> int:
    """The warm-up epochs of the mode: :data:`WARMUP_EPOCHS` of full-batch or mini-batch."""
    return WARMUP_EPOCHS["full-batch" if sampling is None else "mini-batch"]


def run_node_benchmark(
    data: Any,
    *,
    dataset: str,
    model: str,
    compare: str | list[str] | None = None,
    runs: int = 10,
    epochs: int | None = None,
    seed: int = 0,
    patience: int | None = None,
    device: str | torch.device = "cpu",
    warmup_epochs: int | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    progress: bool = False,
    sampling: Any = None,
    distributed: bool = False,
    protocol: str | None = None,
    cuda_graph: bool = False,
) -> NodeBenchResult:
    """Train ``model`` (and the references of ``compare``) ``runs`` times on ``data``.

    Run ``r`` uses seed ``seed + r`` for every implementation. See the module docstring for
    what is measured.

    Args:
        data (torch_geometric.data.Data): a node dataset (:func:`gnnkit.data.load`).
        dataset (str): its name (labels and checkpoint names).
        model (str): a key of :data:`gnnkit.recipes.NODE_RECIPES`.
        compare (str or list of str, optional): the references to train beside gnnkit:
            ``"pyg"`` (the reference ``pyg-<model>``), ``"pyg-tuned"`` (``pyg-tuned-<model>``,
            full batch only), a comma list or a list of them. (default: none)
        runs (int, optional): seeds per implementation. (default: ``10``)
        epochs (int, optional): epochs per run, at most. (default: a protocol's, else the recipe's)
        seed (int, optional): seed of the first run. (default: ``0``)
        patience (int, optional): early-stopping patience. (default: none)
        device (str or torch.device, optional): where to train. (default: ``"cpu"``)
        warmup_epochs (int, optional): untimed epochs per implementation before the runs.
            (default: ``None``, the mode's :data:`WARMUP_EPOCHS`: 5, or 1 with ``sampling``)
        checkpoint_dir (str or Path, optional): write each run's checkpoints here.
        checkpoint_every (int, optional): epochs between checkpoints. (default: ``10``)
        resume (bool, optional): continue runs from their checkpoints in ``checkpoint_dir``.
        progress (bool, optional): show a progress bar over the runs. (default: ``False``)
        sampling (SamplingConfig, optional): train on sampled mini-batches
            (:func:`gnnkit.train.minibatch.fit_minibatch`) instead of the whole graph.
            (default: full batch)
        distributed (bool, optional): train data-parallel over the initialised
            ``torch.distributed`` process group (mini-batch only; every rank calls this).
            (default: ``False``)
        protocol (str, optional): a paper's protocol for every run, a key of
            :data:`gnnkit.train.protocols.PROTOCOLS` (full-batch only). (default: none)
        cuda_graph (bool, optional): gnnkit's runs capture their training step as a CUDA graph
            (``TrainConfig(cuda_graph=True)``; CUDA, full batch); the references train as
            their examples do, eagerly. (default: ``False``)
    """
    # First statement: ``locals()`` holds exactly the keyword arguments above.
    arguments = {name: value for name, value in locals().items() if name != "data"}
    return _NodeBench(data, _Options(**arguments)).run()


@dataclass(frozen=True)
class _Options:
    """The keyword arguments of :func:`run_node_benchmark`, grouped."""

    dataset: str
    model: str
    compare: Any
    runs: int
    epochs: int | None
    seed: int
    patience: int | None
    device: Any
    warmup_epochs: int | None
    checkpoint_dir: Any
    checkpoint_every: int
    resume: bool
    progress: bool
    sampling: Any
    distributed: bool
    protocol: str | None
    cuda_graph: bool


class _NodeBench:
    """One node benchmark: checked options, recipes, prepared inputs and the mode's trainer."""

    def __init__(self, data: Any, options: _Options) -> None:
        from gnnkit.recipes import get_recipe
        from gnnkit.train.protocols import make_protocol

        o = self.options = options
        harness.check_runs(o.runs)
        warmup = default_warmup_epochs(o.sampling) if o.warmup_epochs is None else o.warmup_epochs
        check_int("warmup_epochs", warmup, 0)
        self.warmup_epochs = warmup
        self.recipe = get_recipe("node", o.model, o.dataset)
        references = harness.parse_compare(o.compare)
        if o.distributed and o.sampling is None:
            raise InputError("--distributed trains on mini-batches: add --mini-batch")
        if o.sampling is not None and "pyg-tuned" in references:
            raise InputError(
                "--compare pyg-tuned caches the whole graph (GCNConv(cached=True)): it trains "
                "full batch; drop --mini-batch or pyg-tuned"
            )
        if o.cuda_graph and o.sampling is not None:
            raise InputError("--cuda-graph captures a full-batch step: drop --mini-batch")
        self.recipes = harness.implementations(self.recipe, o.compare)
        harness.check_resume(o.resume, o.checkpoint_dir)
        maximum = self.recipe.epochs if o.protocol is None else make_protocol(o.protocol).epochs
        self.epochs = maximum if o.epochs is None else o.epochs
        self.device = harness.resolve_device(o.device)
        self.inputs = {
            impl: _prepare_inputs(data, recipe, self.device)
            for impl, recipe in self.recipes.items()
        }
        self.num_features = self.inputs["gnnkit"].num_features
        self.num_classes = self.inputs["gnnkit"].num_classes
        self.train = _trainer(o.sampling, o.distributed, o.protocol)

    def run(self) -> NodeBenchResult:
        """Warm up, then train every run of every implementation."""
        if self.warmup_epochs:
            self.warm_up()
        seeds = harness.seeds(self.options.seed, self.options.runs)
        return self.result(seeds, self.train_runs(seeds))

    def config(self, impl: str, recipe: Any, run_seed: int, epochs: int) -> Any:
        from gnnkit.train import TrainConfig

        return TrainConfig(
            cuda_graph=self.options.cuda_graph and impl == "gnnkit",
            epochs=epochs,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            patience=self.options.patience,
            seed=run_seed,
            restore_best=False,
            checkpoint_every=self.options.checkpoint_every,
        )

    def build(self, recipe: Any) -> torch.nn.Module:
        return recipe.build(self.num_features, self.num_classes).to(self.device)

    def warm_up(self) -> None:
        """Untimed epochs of each implementation first (caches, allocator, lazy init)."""
        from gnnkit.train import seed_everything

        seed, epochs = self.options.seed, self.warmup_epochs
        for impl, recipe in self.recipes.items():
            seed_everything(seed)
            self.train(
                self.build(recipe), self.inputs[impl], self.config(impl, recipe, seed, epochs)
            )

    def train_runs(self, seeds: list[int]) -> dict[str, list[RunRecord]]:
        """Every run of every implementation, run by run (:func:`gnnkit.train.round_order`)."""
        from gnnkit.train import round_order

        o = self.options
        records: dict[str, list[RunRecord]] = {impl: [] for impl in self.recipes}
        bar = None
        if o.progress:
            from tqdm.auto import tqdm

            total = len(seeds) * len(self.recipes)
            bar = tqdm(total=total, desc=f"{o.model} on {o.dataset}", unit="run", leave=False)
        try:
            for r, run_seed in enumerate(seeds):
                for impl in round_order(self.recipes, r):
                    record = self.train_run(impl, run_seed)
                    records[impl].append(record)
                    logger.debug(
                        "run %d/%d seed %d %s: test %.2f %% (epoch %d), %.3f s",
                        r + 1, o.runs, run_seed, impl, 100 * record.test_acc, record.best_epoch,
                        record.run_time_s,
                    )  # fmt: skip
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return records

    def train_run(self, impl: str, run_seed: int) -> RunRecord:
        """One run, measuring the peak memory of building and training the model."""
        from gnnkit.train import seed_everything
        from gnnkit.utils.memory import release_free_memory
        from gnnkit.utils.timing import PeakRSS

        o, recipe, device = self.options, self.recipes[impl], self.device
        suffix = harness.checkpoint_suffix(o.sampling)
        path = harness.checkpoint_path(
            o.checkpoint_dir, f"{o.dataset}-{o.model}", impl, run_seed, suffix
        )
        seed_everything(run_seed)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        release_free_memory()
        with PeakRSS() as peak:
            net = self.build(recipe)
            config = self.config(impl, recipe, run_seed, self.epochs)
            result = self.train(net, self.inputs[impl], config, checkpoint=path, resume=o.resume)
        device_peak = None
        if device.type == "cuda":
            device_peak = torch.cuda.max_memory_allocated(device) / MIB
        del net
        # A resumed run's earlier epochs ran in another process: this one saw only a part of
        # the run's memory, so it reports none (n/a) rather than too little.
        resumed = bool(result.resumed_from)
        return RunRecord(
            seed=run_seed,
            test_acc=result.test_acc,
            val_acc=result.val_acc,
            best_epoch=result.best_epoch,
            epochs_run=result.epochs_run,
            run_time_s=result.run_time,
            epoch_times_s=result.epoch_times,
            peak_rss_mb=None if resumed else _peak_mb(peak.usage),
            history=result.history,
            resumed_from=result.resumed_from,
            peak_device_mb=None if resumed else device_peak,
        )

    def result(self, seeds: list[int], records: dict[str, list[RunRecord]]) -> NodeBenchResult:
        o, sampling = self.options, self.options.sampling
        return NodeBenchResult(
            dataset=o.dataset,
            model=o.model,
            epochs=self.epochs,
            seeds=seeds,
            device=str(self.device),
            records=records,
            inputs_mb={impl: tensor_mib(inp.x) for impl, inp in self.inputs.items()},
            features={impl: describe_layout(inp.x) for impl, inp in self.inputs.items()},
            label=_mode_label(sampling, o.distributed, o.protocol),
            recipe=self.recipe.name,
            mode="full-batch" if sampling is None else "mini-batch",
            sampling=None if sampling is None else _sampling_json(sampling),
            world_size=_world_size() if o.distributed else 1,
        )


def _prepare_inputs(data: Any, recipe: Any, device: torch.device) -> Any:
    """``node_inputs`` for one recipe, with its graph step (e.g. symmetrised edges) applied."""
    from gnnkit.train import node_inputs

    prepared = node_inputs(data, features=recipe.features, device=device)
    if recipe.graph is None:
        return prepared
    return replace(prepared, edge_index=recipe.graph(prepared.edge_index, prepared.num_nodes))


def _trainer(sampling: Any, distributed: bool, protocol: str | None) -> Any:
    """``train(model, inputs, config, checkpoint=None, resume=False)`` for the chosen mode."""
    if sampling is None:
        from gnnkit.train import fit

        return fit if protocol is None else functools.partial(fit, protocol=protocol)
    if protocol is not None:
        raise InputError("a paper's protocol trains full-batch, as the papers do: no mini-batches")
    if distributed:
        from gnnkit.train.distributed import fit_distributed as fit_sampled
    else:
        from gnnkit.train.minibatch import fit_minibatch as fit_sampled

    def train_sampled(model, inputs, config, checkpoint=None, resume=False):
        return fit_sampled(model, inputs, config, sampling, checkpoint=checkpoint, resume=resume)

    return train_sampled


def _peak_mb(usage: Any) -> float | None:
    """The rise of resident memory in MiB; ``None`` where only the process-lifetime peak exists."""
    if usage is None or not usage.method.startswith("VmHWM"):
        return None
    return usage.increase_bytes / MIB


def _sampling_json(sampling: Any) -> dict[str, Any]:
    return {
        "fanouts": list(sampling.fanouts),
        "batch_size": sampling.batch_size,
        "accumulate": sampling.accumulate,
        "replace": sampling.replace,
    }


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def _mode_label(sampling: Any, distributed: bool, protocol: str | None = None) -> str:
    if sampling is None:
        return "" if protocol is None else f" ({protocol} protocol: stops early)"
    fanouts = ",".join(map(str, sampling.fanouts))
    parts = [f"mini-batch, fan-outs {fanouts}, {sampling.batch_size} seeds per shard"]
    if sampling.accumulate > 1:
        parts.append(f"{sampling.accumulate} shards per step")
    if distributed:
        parts.append(f"{_world_size()} processes")
    return f" ({', '.join(parts)})"
