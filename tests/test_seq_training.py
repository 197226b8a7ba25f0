"""The memory-task protocol on the engine: early stopping, confirmation, determinism, convergence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gnnkit.errors import InputError
from gnnkit.seq import (
    Palindrome,
    RandomCombinations,
    SequenceClassifier,
    TrainConfig,
    build_model,
    fit,
    run_experiment,
    run_sweep,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Oracle(SequenceClassifier):
    """Names the missing number exactly (or, with ``wrong=True``, never): tests the protocol."""

    def __init__(self, seq_len: int, wrong: bool = False) -> None:
        super().__init__(seq_len, seq_len, embed_dim=1, hidden_dim=1)
        self.seq_len = seq_len
        self.wrong = wrong
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, tokens):
        seen = torch.zeros(tokens.size(0), self.seq_len).scatter_(1, tokens, 1.0)
        missing = 1.0 - seen if not self.wrong else seen
        return self.scale * 10.0 * missing


def test_a_perfect_model_stops_after_patience_batches():
    task = RandomCombinations(6)
    result = fit(Oracle(6), task, config=TrainConfig(patience=3))
    assert result.converged and result.batches_to_converge == 3 == result.report_rule_batch
    assert result.batches == 3 and len(result.loss) == len(result.accuracy) == 3
    assert result.accuracy == [1.0, 1.0, 1.0]
    assert result.checks == [[3, 4096 * 4, 0]]  # confirmed on 16,384 fresh samples
    assert result.val_acc == 1.0


def test_a_model_that_is_never_right_never_stops():
    result = fit(Oracle(5, wrong=True), RandomCombinations(5), config=TrainConfig(max_batches=7))
    assert not result.converged and result.batches_to_converge is None
    assert result.report_rule_batch is None and result.batches == 7
    assert result.val_acc == 0.0 and result.checks == []


def test_short_lstm_run_converges_on_t5():
    result = run_experiment("randomcomb", "lstm", 5, seed=0)
    assert result.converged
    assert result.val_acc == 1.0
    assert result.report_rule_batch <= result.batches_to_converge < 2000
    assert result.accuracy[-3:] == [1.0, 1.0, 1.0]
    assert result.loss[-1] < result.loss[0]


def test_report_rule_alone_stops_at_the_first_streak():
    config = TrainConfig(confirm_samples=0)
    result = run_experiment("randomcomb", "bilstm", 5, seed=1, hidden_dim=64, config=config)
    assert result.converged and result.checks == []
    assert result.batches_to_converge == result.report_rule_batch == result.batches
    first_streak = next(
        i + 3 for i in range(len(result.accuracy)) if result.accuracy[i : i + 3] == [1.0] * 3
    )
    assert result.batches_to_converge == first_streak


def test_runs_are_deterministic_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    config = TrainConfig(max_batches=4)
    first = run_experiment("palindrome", "rnn", 6, seed=3, hidden_dim=16, config=config)
    second = run_experiment("palindrome", "rnn", 6, seed=3, hidden_dim=16, config=config)
    other = run_experiment("palindrome", "rnn", 6, seed=4, hidden_dim=16, config=config)
    assert first.loss == second.loss and first.val_loss == second.val_loss
    assert first.loss != other.loss
    assert torch.equal(torch.get_rng_state(), state)


def test_result_to_dict():
    result = fit(Oracle(4), RandomCombinations(4), config=TrainConfig(confirm_samples=0))
    full = result.to_dict()
    assert full["loss"] == result.loss and full["batches_to_converge"] == 3
    assert "loss" not in result.to_dict(history=False)


def test_bad_training_arguments():
    with pytest.raises(InputError, match=r"TrainConfig.batch_size must be an integer >= 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(InputError, match=r"TrainConfig.lr must be a finite number > 0"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(InputError, match=r"TrainConfig.confirm_samples must be an integer >= 0"):
        TrainConfig(confirm_samples=-1)
    with pytest.raises(InputError, match="seed must be an integer >= 0, got -1"):
        run_experiment("randomcomb", "lstm", 5, seed=-1)
    with pytest.raises(InputError, match="unknown model 'cnn'"):
        run_experiment("randomcomb", "cnn", 5)
    with pytest.raises(InputError, match="unknown task 'sort'"):
        run_experiment("sort", "lstm", 5)
    with pytest.raises(InputError, match="seq_len must be >= 2, got 1"):
        run_experiment("palindrome", "lstm", 1)
    with pytest.raises(InputError, match="needs 10 tokens and 10 classes"):
        fit(Oracle(5), Palindrome(5))


def _final_batch_loss(model, task, seed, batches):
    """The loss ``model`` gives now on training batch ``batches`` of the stream of ``seed``."""
    stream = task.stream(128, seed=seed)
    for _ in range(batches):
        tokens, labels = next(stream)
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(tokens), labels).item()


def test_the_stopping_batch_leaves_the_weights_that_scored_it():
    task = RandomCombinations(5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("lstm", task)
    result = fit(model, task, seed=0)
    assert result.converged
    # the last batch's update was skipped: the model still gives that batch's recorded loss
    assert _final_batch_loss(model, task, 0, result.batches) == result.loss[-1]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("lstm", task)
    budget = fit(model, task, seed=0, config=TrainConfig(max_batches=5))
    assert not budget.converged and budget.batches == 5
    # out of budget, the last batch's update is taken before the validation
    assert _final_batch_loss(model, task, 0, 5) != budget.loss[-1]


def test_callback_sees_every_batch_and_cannot_stop_the_run():
    calls = []

    def callback(batch, loss, accuracy):
        calls.append((batch, loss, accuracy))
        return True  # tqdm's update() returns True; it must not interrupt the run

    config = TrainConfig(max_batches=4)
    result = run_experiment("palindrome", "rnn", 5, hidden_dim=8, config=config, callback=callback)
    assert result.batches == 4
    curves = zip(result.loss, result.accuracy, strict=True)
    assert calls == [(i + 1, loss, acc) for i, (loss, acc) in enumerate(curves)]


def test_the_protocol_as_an_engine_task():
    from gnnkit.seq.memory import SequenceClassifierTask
    from gnnkit.train.engine import Run

    task = RandomCombinations(6)
    training = SequenceClassifierTask(Oracle(6), task, TrainConfig(), seed=0)
    result = Run(training, epochs=10, eval_every=0).run()
    assert result.finished == "converged" and result.epochs_run == 3
    assert result.history["eval_epoch"] == [3] and result.history["val_acc"] == [1.0]
    assert training.converged_at == training.report_rule_batch == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": ("rnn", "lstm", "rnn")}, "models lists 'rnn' twice; give each once"),
        ({"lengths": (5, 5)}, "lengths lists 5 twice; give each once"),
    ],
)
def test_a_sweep_refuses_a_model_or_length_given_twice(kwargs, message):
    # a repeat would be the same seeded runs, counted twice in the mean +- std
    runs = []
    with pytest.raises(InputError, match=message):
        run_sweep(seeds=1, **kwargs, run_callback=lambda *run: runs.append(run))
    assert runs == []  # refused before the first run
