"""Training harness for full-batch node classification.

>>> from gnnkit.data import load
>>> from gnnkit.models import GCN
>>> from gnnkit.train import TrainConfig, fit, node_inputs, seed_everything
>>> inputs = node_inputs(load("karate"))             # row-normalised features, index splits
>>> seed_everything(0)
>>> model = GCN(inputs.num_features, inputs.num_classes)
>>> result = fit(model, inputs, TrainConfig(epochs=50, lr=0.01, seed=0))
>>> 0.0 <= result.test_acc <= 1.0
True

See :mod:`gnnkit.train.loop` for what one epoch does and how the reported epoch is selected,
and :mod:`gnnkit.train.checkpoint` for what a checkpoint holds.
"""

from gnnkit.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from gnnkit.train.inputs import NodeInputs, node_inputs, normalize_features
from gnnkit.train.loop import (
    HISTORY_KEYS,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
    fit,
    seed_everything,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "HISTORY_KEYS",
    "NodeInputs",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "fit",
    "load_checkpoint",
    "node_inputs",
    "normalize_features",
    "save_checkpoint",
    "seed_everything",
]
