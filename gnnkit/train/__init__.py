"""Training: one engine (:mod:`gnnkit.train.engine`) and the tasks it trains.

>>> from gnnkit.data import load
>>> from gnnkit.models import GCN
>>> from gnnkit.train import TrainConfig, fit, node_inputs, seed_everything
>>> inputs = node_inputs(load("karate"))             # row-normalised features, index splits
>>> seed_everything(0)
>>> model = GCN(inputs.num_features, inputs.num_classes)
>>> result = fit(model, inputs, TrainConfig(epochs=50, lr=0.01, seed=0))
>>> 0.0 <= result.test_acc <= 1.0
True

:class:`Run` owns the loop, model selection, early stopping, checkpoints and random state;
a :class:`Task` trains one epoch and evaluates. gnnkit's tasks: full-batch node
classification (:func:`fit`), mini-batch and distributed node classification
(:mod:`gnnkit.train.minibatch`, :mod:`gnnkit.train.distributed`), graph property
prediction (:mod:`gnnkit.train.graph`) and link prediction (:mod:`gnnkit.train.link`); the
sequence models and the citation study bring their own tasks (:mod:`gnnkit.seq`,
:mod:`gnnkit.citation`).
"""

from gnnkit.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from gnnkit.train.engine import (
    NonFiniteLossError,
    Run,
    RunResult,
    Task,
    interleave,
    round_order,
    seed_everything,
)
from gnnkit.train.graphed import CapturedStep
from gnnkit.train.inputs import NodeInputs, node_inputs, normalize_features
from gnnkit.train.node import HISTORY_KEYS, NodeTask, TrainConfig, TrainResult, fit

__all__ = [
    "CHECKPOINT_FORMAT",
    "HISTORY_KEYS",
    "CapturedStep",
    "NodeInputs",
    "NodeTask",
    "NonFiniteLossError",
    "Run",
    "RunResult",
    "Task",
    "TrainConfig",
    "TrainResult",
    "fit",
    "interleave",
    "load_checkpoint",
    "node_inputs",
    "normalize_features",
    "round_order",
    "save_checkpoint",
    "seed_everything",
]
