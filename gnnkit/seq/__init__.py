"""Sequence models on synthetic memory tasks (the reference report's section 1).

Tasks (:class:`RandomCombinations`, :class:`Palindrome`), models (:class:`VanillaRNN`, the
hand-written :class:`LSTMCell` / :class:`LSTM`, :class:`LSTMClassifier`, :class:`BiLSTM`,
:class:`GRUClassifier`), the report's training protocol (:func:`fit`,
:func:`run_experiment`) and vanishing-gradient measurements (:func:`gradient_norms`).

Example::

    from gnnkit.seq import run_experiment
    result = run_experiment("randomcomb", "lstm", seq_len=10, seed=0)
    result.batches_to_converge, result.val_acc
"""

from gnnkit.seq.classifiers import (
    DEFAULT_FORGET_BIAS,
    DEFAULT_HIDDEN_DIM,
    MODELS,
    BiLSTM,
    GRUClassifier,
    LSTMClassifier,
    SequenceClassifier,
    VanillaRNN,
    build_model,
)
from gnnkit.seq.gradients import gradient_norms
from gnnkit.seq.lstm import LSTM, LSTMCell, lstm_num_params
from gnnkit.seq.memory import TrainConfig, TrainResult, evaluate, fit, run_experiment
from gnnkit.seq.sweep import REPORT_TABLE1, run_table1, summarize
from gnnkit.seq.tasks import TASKS, MemoryTask, Palindrome, RandomCombinations, make_task

__all__ = [
    "DEFAULT_FORGET_BIAS",
    "DEFAULT_HIDDEN_DIM",
    "LSTM",
    "MODELS",
    "REPORT_TABLE1",
    "TASKS",
    "BiLSTM",
    "GRUClassifier",
    "LSTMCell",
    "LSTMClassifier",
    "MemoryTask",
    "Palindrome",
    "RandomCombinations",
    "SequenceClassifier",
    "TrainConfig",
    "TrainResult",
    "VanillaRNN",
    "build_model",
    "evaluate",
    "fit",
    "gradient_norms",
    "lstm_num_params",
    "make_task",
    "run_experiment",
    "run_table1",
    "summarize",
]
