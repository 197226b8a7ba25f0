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


def test_evaluate_matches_a_direct_cross_entropy_and_refuses_bad_samples():
    import torch.nn.functional as F

    from gnnkit.seq import evaluate
    from gnnkit.seq.tasks import generator

    task = RandomCombinations(5)
    tokens, labels = task.sample(10, generator(0, "validation"))
    model = build_model("rnn", task, hidden_dim=8)
    with torch.no_grad():
        logits = model(tokens)
    expected_loss = F.cross_entropy(logits, labels).item()
    expected_acc = (logits.argmax(1) == labels).float().mean().item()
    for batch_size in (3, 10, 4096):  # batching does not change the result
        loss, acc = evaluate(model, tokens, labels, batch_size=batch_size)
        assert loss == pytest.approx(expected_loss, rel=1e-6) and acc == pytest.approx(expected_acc)
    # each used to fail inside range(), a division or torch's cross-entropy
    for args, kwargs, message in (
        ((tokens, labels), {"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ((tokens[:0], labels[:0]), {}, r"evaluate needs at least one sample"),
        (
            (tokens, torch.full((10,), 7)),
            {},
            r"labels holds class 7, out of range for 5 classes \(valid: 0 \.\. 4\)",
        ),
        ((tokens[:4], labels), {}, r"tokens must be a tensor with one row per label \(10\)"),
        ((tokens, labels.float()), {}, r"1-D torch\.long tensor of classes, got torch\.float32"),
    ):
        with pytest.raises(InputError, match=message):
            evaluate(model, *args, **kwargs)
    assert model.training  # the model's mode is left as it was, refused or not


def test_fit_refuses_wrong_argument_types_before_training():
    task, calls = RandomCombinations(5), []
    config = TrainConfig(max_batches=2, val_samples=8, confirm_samples=0)
    with pytest.raises(InputError, match=r"config must be a gnnkit\.seq\.TrainConfig .* dict"):
        fit(Oracle(5), task, config={"lr": 0.1})  # used to be an AttributeError on .lr
    with pytest.raises(InputError, match=r"callback must be a function .* got int"):
        fit(Oracle(5), task, config=config, callback=5)  # used to fail after the first batch
    with pytest.raises(InputError, match=r"task must be a MemoryTask .* got str"):
        fit(Oracle(5), "randomcomb", config=config)
    with pytest.raises(InputError, match=r"model must be a SequenceClassifier .* got Linear"):
        fit(nn.Linear(2, 2), task, config=config)
    assert fit(Oracle(5), task, config=config, callback=lambda *a: calls.append(a)).batches == 2
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": "lstm"}, r"models must be a list of model names .* got 'lstm'"),  # 'l'
        ({"lengths": 5}, r"lengths must be a list of sequence lengths .* got 5"),  # TypeError
        ({"lengths": (5, 1)}, r"seq_len must be >= 2, got 1"),  # after the T = 5 runs
        ({"run_callback": 5}, r"run_callback must be a function .* got int"),
        ({"models": ("lstm", 3)}, r"unknown model 3"),
    ],
)
def test_a_sweep_refuses_bad_arguments_before_the_first_run(kwargs, message):
    runs = []
    options = {"seeds": 1, "models": ("rnn",), "hidden_dim": 4}
    options["run_callback"] = lambda *run: runs.append(run)
    with pytest.raises(InputError, match=message):
        run_sweep(**{**options, **kwargs})
    assert runs == []


def test_summarize_refuses_what_run_sweep_did_not_return():
    from gnnkit.seq import summarize

    run = {"model": "rnn", "seq_len": 5, "converged": True, "batches_to_converge": 40}
    run.update(report_rule_batch=30, val_loss=0.5, val_acc=0.75)
    with pytest.raises(InputError, match=r"runs\[0\] has no 'model', 'seq_len'"):
        summarize([{}])  # used to be a KeyError
    with pytest.raises(InputError, match=r"runs\[1\] has no 'val_acc'; pass the dicts"):
        summarize([run, {k: v for k, v in run.items() if k != "val_acc"}])
    with pytest.raises(InputError, match=r"runs\[1\] must be a dict from run_sweep, got int"):
        summarize([run, 5])
    with pytest.raises(InputError, match=r"runs must be a list of the run dicts"):
        summarize(5)  # used to be a TypeError
    row = summarize([run])[0]
    assert (row["model"], row["seq_len"], row["seeds"], row["converged"]) == ("rnn", 5, 1, 1)
    assert row["val_acc"] == [0.75, 0.0] and row["batches"] == [40, 0.0]
