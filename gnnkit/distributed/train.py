"""Partition-parallel full-graph training: one shard per rank, one :class:`~gnnkit.train.Run`.

Every rank loads only its own shard (:func:`gnnkit.distributed.load_shard`), builds the same
model (same seed, then rank 0's parameters broadcast), and trains with
:class:`PartitionTask` on gnnkit's one engine (:class:`~gnnkit.train.Run`):

- **Loss.** Each rank sums the cross-entropy of its own training nodes and divides by the
  *global* number of training nodes; the ranks' losses add up to the full-batch mean.
- **Gradients.** Backward runs through the halo exchanges (their gradients go back to the
  owners), then one ``all_reduce`` sums the parameters' gradients, so every replica takes the
  full-batch step. Dropout masks come from the global node id, and GAT's attention-dropout
  masks from the global edge id (``gnnkit.distributed.dropout``), so the whole run equals
  single-process full-batch training up to float rounding.
- **Evaluation.** Each rank scores its own nodes; correct counts and losses are summed with
  one ``all_reduce``. No rank ever holds the whole graph.
- **Start-up checks.** The world size must equal the number of parts, and every rank must run
  the same gnnkit (:func:`check_same_version`, an ``all_gather`` of :func:`version_hash`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.distributed.halo import PartitionGraph
from gnnkit.distributed.layers import PartitionGAT, PartitionGCN
from gnnkit.distributed.shards import load_shard, version_hash
from gnnkit.errors import InputError
from gnnkit.train.engine import Run, Task
from gnnkit.utils.checks import check_int, check_ints, check_number, check_probability, check_seed
from gnnkit.utils.fields import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_NUMBER,
    OPTIONAL_POSITIVE_INT,
    POSITIVE_INT,
    one_of,
    rule,
    validate_fields,
)

__all__ = [
    "PartitionConfig",
    "PartitionTask",
    "build_model",
    "check_same_version",
    "fit_partitioned",
]

logger = logging.getLogger(__name__)

_SPLITS = ("train", "val", "test")


def _optional_probability(name: str, value: Any) -> None:
    """A dropout rate in [0, 1), or ``None`` for the model's default."""
    if value is not None:
        check_probability(name, value)


def _seed(name: str, value: Any) -> None:
    """A seed every rank shares: an integer ``torch.manual_seed`` takes (``None`` is refused,
    since each rank would draw its own)."""
    check_int(name, value, None)
    check_seed(name, value)


@dataclass
class PartitionConfig:
    """How :func:`fit_partitioned` trains.

    Args:
        model (str, optional): ``"gcn"`` or ``"gat"``. (default: ``"gcn"``)
        hidden (int, optional): hidden width (per head for GAT). (default: ``16`` GCN, ``8`` GAT)
        heads (int, optional): GAT's hidden heads. (default: ``8``)
        dropout (float, optional): feature dropout. (default: ``0.5`` GCN, ``0.6`` GAT)
        attention_dropout (float, optional): GAT's dropout of attention coefficients, keyed by
            global edge id; ``None`` takes ``dropout`` for GAT (the paper's setting). GCN has
            none. (default: ``None``)
        lr (float, optional): Adam's learning rate. (default: ``0.01`` GCN, ``0.005`` GAT)
        weight_decay (float, optional): Adam's weight decay. (default: ``5e-4``)
        epochs (int, optional): (default: ``200``)
        eval_every (int, optional): evaluate after every this many epochs; ``0`` only after
            the last one. (default: ``1``)
        patience (int, optional): early stopping on validation accuracy. (default: none)
        seed (int, optional): parameters and dropout masks. (default: ``0``)
        dtype (str, optional): ``"float32"`` or ``"float64"``. (default: ``"float32"``)
    """

    model: str = field(default="gcn", metadata=one_of("gcn", "gat"))
    hidden: int | None = field(default=None, metadata=OPTIONAL_POSITIVE_INT)
    heads: int = field(default=8, metadata=POSITIVE_INT)
    dropout: float | None = field(default=None, metadata=rule(_optional_probability))
    attention_dropout: float | None = field(default=None, metadata=rule(_optional_probability))
    lr: float | None = field(
        default=None, metadata=rule(check_number, low=0.0, open_low=True, optional=True)
    )
    weight_decay: float = field(default=5e-4, metadata=NON_NEGATIVE_NUMBER)
    epochs: int = field(default=200, metadata=POSITIVE_INT)
    eval_every: int = field(default=1, metadata=NON_NEGATIVE_INT)
    patience: int | None = field(default=None, metadata=OPTIONAL_POSITIVE_INT)
    seed: int = field(default=0, metadata=rule(_seed))
    dtype: str = field(default="float32", metadata=one_of("float32", "float64"))

    def __post_init__(self) -> None:
        validate_fields(self)
        gat = self.model == "gat"
        self.hidden = self.hidden if self.hidden is not None else (8 if gat else 16)
        self.dropout = self.dropout if self.dropout is not None else (0.6 if gat else 0.5)
        if not gat and self.attention_dropout:
            raise InputError(
                f"attention_dropout applies to GAT only, got {self.attention_dropout} for GCN"
            )
        if gat and self.attention_dropout is None:
            self.attention_dropout = self.dropout
        self.lr = self.lr if self.lr is not None else (0.005 if gat else 0.01)


def build_model(config: PartitionConfig, in_channels: int, num_classes: int) -> nn.Module:
    """The model of ``config``, initialised from ``config.seed`` (the same on every rank)."""
    if not isinstance(config, PartitionConfig):
        raise InputError(
            f"build_model expects a PartitionConfig, got {type(config).__name__}; build one with "
            "PartitionConfig(model=..., ...)"
        )
    check_ints(in_channels=in_channels, num_classes=num_classes)
    torch.manual_seed(config.seed)
    assert config.hidden is not None and config.dropout is not None  # set by __post_init__
    if config.model == "gat":
        return PartitionGAT(
            in_channels,
            config.hidden,
            num_classes,
            config.heads,
            config.dropout,
            attention_dropout=config.attention_dropout,
        )
    return PartitionGCN(in_channels, config.hidden, num_classes, config.dropout)


def _sum(values: Tensor) -> Tensor:
    if dist.is_initialized():
        dist.all_reduce(values)
    return values


def check_same_version(expected: str | None = None) -> str:
    """Compare :func:`version_hash` across the ranks; every rank raises on a mismatch.

    Args:
        expected (str, optional): the hash the shards were cut with; only logged when it differs.

    Raises:
        InputError: the ranks run different gnnkit code (one line naming every rank's hash).
    """
    mine = version_hash()
    if expected is not None and expected != mine:
        logger.warning("the shards were cut by gnnkit %s, this is %s", expected, mine)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return mine
    encoded = torch.tensor(list(bytes.fromhex(mine)), dtype=torch.uint8)
    gathered = [torch.empty_like(encoded) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, encoded)
    hashes = [bytes(t.tolist()).hex() for t in gathered]
    if len(set(hashes)) > 1:
        listing = ", ".join(f"rank {r}: {h}" for r, h in enumerate(hashes))
        raise InputError(
            f"the ranks run different gnnkit versions ({listing}); install the same gnnkit on "
            "every machine"
        )
    return mine


class PartitionTask(Task):
    """One full-batch epoch on this rank's part, and a distributed evaluation.

    Args:
        shard (dict): this rank's shard.
        totals (dict): global node counts per split (``{"train": n, ...}``).
        config (PartitionConfig): the run.
        num_classes (int): output width.
        device (torch.device, optional): where to train. (default: CPU)
    """

    monitor = (("val_acc", "max"), ("val_loss", "min"))
    progress_keys = (("loss", "loss"), ("val", "val_acc"))

    def __init__(
        self,
        shard: dict[str, Tensor],
        totals: dict[str, int],
        config: PartitionConfig,
        num_classes: int,
        device: Any = None,
    ) -> None:
        dtype = getattr(torch, config.dtype)
        self.config, self.totals = config, totals
        self.graph = PartitionGraph(shard, dtype=dtype, device=device)
        self.x = shard["x"].to(device=device, dtype=dtype)
        self.y = shard["y"].to(device).long()
        self.masks = {s: shard[f"{s}_mask"].to(device).bool() for s in _SPLITS}
        self.model = build_model(config, self.x.size(1), num_classes).to(device, dtype)
        if dist.is_initialized():
            for parameter in self.model.parameters():
                dist.broadcast(parameter.data, 0)
        assert config.lr is not None  # set by __post_init__
        self.adam = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.optimizer = self.adam

    def forward(self, step: int) -> Tensor:
        """Logits of this rank's nodes (dropout masks of ``step`` in training mode)."""
        return self.model(self.x, self.graph, seed=self.config.seed, step=step)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.adam.zero_grad()
        mask = self.masks["train"]
        loss = F.cross_entropy(self.forward(epoch)[mask], self.y[mask], reduction="sum")
        loss = loss / max(self.totals["train"], 1)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        flat = _sum(torch.cat([p.grad.reshape(-1) for p in params]))  # type: ignore[union-attr]
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
            offset += n
        self.adam.step()
        return {"loss": float(_sum(loss.detach().clone()))}

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        logits = self.forward(epoch)
        correct = logits.argmax(-1) == self.y
        values = []
        for split in _SPLITS:
            mask = self.masks[split]
            values.append(correct[mask].sum().to(logits.dtype))
            values.append(F.cross_entropy(logits[mask], self.y[mask], reduction="sum"))
        sums = _sum(torch.stack(values)).tolist()
        metrics = {}
        for k, split in enumerate(_SPLITS):
            count = max(self.totals[split], 1)
            metrics[f"{split}_acc"] = sums[2 * k] / count
            metrics[f"{split}_loss"] = sums[2 * k + 1] / count
        return metrics

    def identity(self) -> dict[str, Any]:
        """The model and optimisation settings (not the epoch count: a resumed run may go on)."""
        fixed = asdict(self.config)
        for key in ("epochs", "eval_every", "patience"):
            fixed.pop(key)
        return {"task": "partition", **fixed}


def fit_partitioned(
    shards: str | os.PathLike,
    config: PartitionConfig,
    *,
    dataset: str | None = None,
    device: Any = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Train on a shard folder with the process group already joined (one rank per part).

    Args:
        shards (str or PathLike): the folder ``gnnkit partition`` wrote.
        config (PartitionConfig): the run.
        dataset (str, optional): refuse shards of another dataset. (default: not checked)
        device (torch.device, optional): this rank's device. (default: CPU)
        checkpoint (str or PathLike, optional): rank 0 writes it; every rank resumes from it
            (so it must be on a file system they share). (default: none)
        resume (bool, optional): continue from ``checkpoint``. (default: ``False``)
        progress (bool, optional): a progress bar on rank 0. (default: ``False``)

    Returns:
        dict: the run's history, best evaluation and times, with ``rank``, ``world_size``,
        ``num_local`` and ``num_halo``.

    Raises:
        InputError: the world size differs from the number of parts, the dataset differs, or
            the ranks run different gnnkit code.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    shard, manifest = load_shard(shards, rank, num_parts=world, dataset=dataset)
    check_same_version(manifest.get("version_hash"))
    totals = {s: int(manifest["split_sizes"][s]) for s in _SPLITS}
    task = PartitionTask(shard, totals, config, int(manifest["num_classes"]), device)
    run = Run(
        task,
        epochs=config.epochs,
        eval_every=config.eval_every,
        patience=config.patience,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        main_process=rank == 0,
    )
    result = run.run()
    return {
        "rank": rank,
        "world_size": world,
        "num_local": task.graph.num_local,
        "num_halo": task.graph.plan.num_halo,
        "best": result.best,
        "history": result.history,
        "epoch_times": run.epoch_times,
    }
