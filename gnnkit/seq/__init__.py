"""Recurrent sequence classifiers on synthetic memory tasks.

Tasks that need a long memory (:class:`RandomCombinations`, :class:`Palindrome`); models: a
vanilla tanh RNN (:class:`VanillaRNN`), the LSTM of Hochreiter & Schmidhuber (*Long
Short-Term Memory*, Neural Computation 1997), hand-written (:class:`LSTMCell`,
:class:`LSTM`) and as a classifier (:class:`LSTMClassifier`), the bidirectional LSTM
(:class:`BiLSTM`, after Schuster & Paliwal, *Bidirectional recurrent neural networks*, IEEE
TSP 1997) and a GRU (:class:`GRUClassifier`); a training protocol on the training engine
(:func:`fit`, :func:`run_experiment`), sweeps over models, lengths and seeds
(:func:`run_sweep`, :func:`summarize`) and the vanishing-gradient measurement of Bengio,
Simard & Frasconi (IEEE TNN 1994) (:func:`gradient_norms`). The character-level language
model is :mod:`gnnkit.seq.charlm`.

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
from gnnkit.seq.sweep import run_sweep, summarize
from gnnkit.seq.tasks import TASKS, MemoryTask, Palindrome, RandomCombinations, make_task

__all__ = [
    "DEFAULT_FORGET_BIAS",
    "DEFAULT_HIDDEN_DIM",
    "LSTM",
    "MODELS",
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
    "run_sweep",
    "summarize",
]
