"""The training engine (gnnkit.train.engine): loop, cadence, selection, stopping, checkpoints.

A toy task (a linear model on noise, with dropout so that every epoch draws random numbers)
stands in for the real ones; the node, graph, link, sequence and citation tests check each
task on top of the engine, and tests/test_pinned.py that their numbers did not change.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from gnnkit.errors import CheckpointError, InputError
from gnnkit.train import NonFiniteLossError, Run, Task, interleave, round_order
from gnnkit.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from gnnkit.train.engine import _better


class Toy(Task):
    """One Adam step per epoch on a fixed regression; scores scripted by ``scores``."""

    monitor = (("score", "max"), ("val_loss", "min"))

    def __init__(self, scores=None, seed=0, stop_at=None, loss=None):
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.1)
        self.x, self.y = torch.randn(16, 4), torch.randn(16, 1)
        self.scores, self.stop_at, self.loss = scores, stop_at, loss
        self.trained, self.evaluated, self.ended = [], [], []

    def identity(self):
        return {"task": "toy", "shape": list(self.x.shape)}

    def train_epoch(self, epoch):
        self.trained.append(epoch)
        self.model.train()
        out = self.model(F.dropout(self.x, 0.5, training=True))  # draws from torch's RNG
        loss = F.mse_loss(out, self.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        noise = random.random()  # and from Python's
        value = self.loss(epoch) if self.loss else float(loss.detach())
        return {"loss": value, "noise": noise}

    def should_stop(self):
        return "converged" if self.trained and self.trained[-1] == self.stop_at else None

    def evaluate(self, epoch):
        self.evaluated.append(epoch)
        score, val_loss = self.scores[epoch - 1] if self.scores else (0.5, 1.0 / epoch)
        return {"score": score, "val_loss": val_loss}

    def on_epoch_end(self, epoch, finished):
        self.ended.append((epoch, finished))


def weights(task):
    return [p.detach().clone() for p in task.model.parameters()]


def test_better_is_lexicographic_and_nan_never_wins():
    monitor = (("score", "max"), ("loss", "min"))
    assert _better({"score": 0.1, "loss": 9.0}, {}, monitor)
    assert _better({"score": 0.6, "loss": 9.0}, {"score": 0.5, "loss": 1.0}, monitor)
    assert _better({"score": 0.5, "loss": 0.9}, {"score": 0.5, "loss": 1.0}, monitor)
    assert not _better({"score": 0.5, "loss": 1.0}, {"score": 0.5, "loss": 1.0}, monitor)
    assert not _better({"score": math.nan, "loss": 0.0}, {}, monitor)
    assert not _better({"score": 0.5, "loss": math.nan}, {"score": 0.5, "loss": 1.0}, monitor)


def test_cadence_selection_and_restoring_the_best_epoch():
    scores = [(0.1, 1.0), (0.7, 2.0), (0.7, 1.5), (0.3, 0.1), (0.2, 0.1)]
    task = Toy(scores)
    kept = {}
    run = Run(task, epochs=5, eval_every=2, restore_best=True)
    original_step = run.step

    def step():
        record = original_step()
        kept[record["epoch"]] = weights(task)
        return record

    run.step = step
    result = run.run()
    assert task.evaluated == [2, 4, 5]  # every 2 epochs and after the last
    assert result.history["eval_epoch"] == [2, 4, 5] and len(result.history["loss"]) == 5
    assert result.best == {"epoch": 2, "score": 0.7, "val_loss": 2.0}
    assert result.finished == "epochs" and result.epochs_run == 5
    for got, want in zip(weights(task), kept[2], strict=True):
        assert torch.equal(got, want)
    assert len(result.epoch_times) == len(result.train_times) == 5
    assert len(result.eval_times) == 3 and result.run_time == math.fsum(result.epoch_times)
    every = Run(Toy(scores), epochs=5, eval_every=1).run()
    assert every.best["epoch"] == 3  # a tie on the score goes to the lower loss
    only_last = Toy(scores)
    Run(only_last, epochs=5, eval_every=0).run()
    assert only_last.evaluated == [5]


def test_patience_and_the_tasks_own_stop():
    scores = [(0.5, 1.0), (0.4, 1.0), (0.4, 1.0), (0.9, 1.0), (0.1, 1.0)]
    task = Toy(scores)
    result = Run(task, epochs=5, patience=2).run()
    assert result.finished == "patience" and result.epochs_run == 3
    assert task.ended[-1] == (3, "patience")
    task = Toy(stop_at=2)
    result = Run(task, epochs=5, eval_every=0).run()
    assert result.finished == "converged" and task.trained == [1, 2]
    assert task.evaluated == [2]  # the run's last epoch is always evaluated


def test_a_non_finite_loss_names_the_epoch_and_keeps_the_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    task = Toy(loss=lambda epoch: math.inf if epoch == 3 else 1.0)
    run = Run(task, epochs=5, checkpoint=path, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match=r"non-finite at epoch 3 \(loss=inf\).*lr=0.1"):
        run.run()
    assert load_checkpoint(path)["epoch"] == 2
    with pytest.raises(NonFiniteLossError, match=r"last checkpoint .* is unchanged"):
        Run(Toy(loss=lambda epoch: math.nan), epochs=2, checkpoint=path).run()


def test_resume_after_an_interruption_is_bit_identical(tmp_path):
    straight = Toy()
    whole = Run(straight, epochs=6, seed=3).run()

    path = tmp_path / "run.pt"
    first = Toy()
    stopped = Run(first, epochs=6, seed=3, checkpoint=path, callback=lambda r: r["epoch"] == 2)
    partial = stopped.run()
    assert stopped.interrupted and partial.finished is None and partial.epochs_run == 2
    assert load_checkpoint(path)["finished"] is None
    random.random(), torch.rand(5)  # whatever happens in between
    second = Toy()
    with torch.no_grad():
        second.model.weight.fill_(7.0)  # other weights: the checkpoint restores them
    resumed = Run(second, epochs=6, seed=3, checkpoint=path, resume=True).run()
    assert resumed.resumed_from == 2 and resumed.epochs_run == 6
    assert resumed.history == whole.history
    for got, want in zip(weights(second), weights(straight), strict=True):
        assert torch.equal(got, want)


def test_a_finished_run_goes_on_when_asked_for_more_epochs(tmp_path):
    path = tmp_path / "run.pt"
    Run(Toy(), epochs=3, seed=0, checkpoint=path).run()
    assert load_checkpoint(path)["finished"] == "epochs"
    again = Run(Toy(), epochs=3, seed=0, checkpoint=path, resume=True)
    assert again.done and again.run().epochs_run == 3
    more = Run(Toy(), epochs=5, seed=0, checkpoint=path, resume=True).run()
    assert more.epochs_run == 5 and more.resumed_from == 3
    with pytest.raises(CheckpointError, match="already trained 5 epochs, more than the 4"):
        Run(Toy(), epochs=4, checkpoint=path, resume=True)
    run = Run(Toy(), epochs=2)
    run.run()
    run.extend(4)
    assert not run.done and run.run().epochs_run == 4
    with pytest.raises(InputError, match="already trained 4 epochs, more than 3"):
        run.extend(3)


def test_foreign_and_alien_checkpoints_are_refused(tmp_path):
    path = tmp_path / "run.pt"
    Run(Toy(), epochs=1, checkpoint=path).run()
    assert load_checkpoint(path)["format"] == CHECKPOINT_FORMAT

    class Other(Toy):
        def identity(self):
            return {"task": "other", "shape": [16, 4]}

    with pytest.raises(CheckpointError, match=r"different model.*task: 'toy' in the checkpoint"):
        Run(Other(), epochs=2, checkpoint=path, resume=True)
    torch.save({"format": "something else"}, path)
    with pytest.raises(CheckpointError, match="not a gnnkit training checkpoint"):
        Run(Toy(), epochs=2, checkpoint=path, resume=True)
    with pytest.raises(InputError, match="resume=True needs a checkpoint path"):
        Run(Toy(), epochs=2, resume=True)


def test_interleaved_runs_draw_what_each_would_draw_alone():
    alone = {seed: Run(Toy(seed=seed), epochs=4, seed=seed).run() for seed in (1, 2)}
    runs = {seed: Run(Toy(seed=seed), epochs=4, seed=seed) for seed in (1, 2)}
    assert interleave(runs) is None
    for seed, run in runs.items():
        assert run.result().history == alone[seed].history
    assert round_order(["a", "b"], 0) == ["a", "b"] and round_order(["a", "b"], 1) == ["b", "a"]


def test_the_engine_names_are_the_same_objects_from_every_module_that_exports_them():
    import gnnkit.train as train
    from gnnkit.train import engine, interleaving, task

    for name in ("Task", "RunResult"):
        assert getattr(engine, name) is getattr(task, name) is getattr(train, name), name
    for name in ("interleave", "round_order"):
        assert getattr(engine, name) is getattr(interleaving, name) is getattr(train, name), name
    assert callable(train.interleave)  # the function, not the module gnnkit.train.interleaving


def test_a_time_budget_stops_with_a_checkpoint_and_resumes(tmp_path):
    path = tmp_path / "run.pt"
    run = Run(Toy(), epochs=50, checkpoint=path, time_budget_s=1e-9)
    result = run.run()
    assert result.finished == "time-budget" and result.epochs_run == 1
    assert load_checkpoint(path)["finished"] == "time-budget"
    rest = Run(Toy(), epochs=3, checkpoint=path, resume=True).run()
    assert rest.finished == "epochs" and rest.epochs_run == 3
    runs = {"a": Run(Toy(), epochs=50), "b": Run(Toy(), epochs=50)}
    assert interleave(runs, time_budget_s=1e-9) == "time-budget"
    assert {run.finished for run in runs.values()} == {"time-budget"}


def test_bad_settings_are_refused():
    for kwargs, message in (
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"epochs": 2, "eval_every": -1}, "eval_every must be an integer >= 0"),
        ({"epochs": 2, "patience": 0}, "patience must be an integer >= 1"),
    ):
        with pytest.raises(InputError, match=message):
            Run(Toy(), **kwargs)
    run = Run(Toy(), epochs=1)
    run.run()
    with pytest.raises(InputError, match="already trained all 1 epochs"):
        run.step()


def test_a_checkpoint_of_gnnkit_0_1_says_so(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "gnnkit.train.node/1", "run": {}}, path)
    with pytest.raises(CheckpointError, match=r"written by gnnkit 0\.1 .*start the run afresh"):
        Run(Toy(), epochs=2, checkpoint=path, resume=True)


def test_seed_everything_refuses_what_no_generator_takes():
    import numpy as np

    from gnnkit.train import seed_everything

    # each used to fail inside Python's, NumPy's or torch's seeding with an unrelated error
    for seed, message in (
        ("1", r"seed must be an integer, got '1'"),  # TypeError: not all arguments converted
        (1.5, r"seed must be an integer, got 1\.5"),  # numpy casting TypeError
        (None, r"seed must be an integer, got None"),
        (True, r"seed must be an integer, got True"),
        (2**70, r"seed must be a 64-bit integer .* got 1180591620717411303424"),  # Overflow
    ):
        with pytest.raises(InputError, match=message):
            seed_everything(seed)
    for seed in (-1, 2**64 - 1):  # every seed torch takes still works
        seed_everything(seed)
    seed_everything(np.int64(5))  # a NumPy integer too (Python's random.seed refused it)
    first = torch.rand(2)
    seed_everything(5)
    assert torch.equal(torch.rand(2), first)


def test_run_refuses_bad_options_before_training():
    for kwargs, message in (
        ({"seed": "x"}, r"seed must be an integer or None, got 'x'"),
        ({"seed": 2**70}, r"seed must be a 64-bit integer"),
        ({"time_budget_s": -1}, r"time_budget_s must be a finite number > 0 or None, got -1"),
        ({"time_budget_s": math.nan}, r"time_budget_s must be a finite number > 0 .* got nan"),
        ({"time_budget_s": 0}, r"time_budget_s must be a finite number > 0"),
        ({"progress_unit": 5}, r"progress_unit must be a str .* got int"),
        ({"resume": "yes"}, r"resume must be True or False, got 'yes'"),
        ({"restore_best": "no"}, r"restore_best must be True or False, got 'no'"),
        ({"main_process": 1}, r"main_process must be True or False, got 1"),
    ):
        task = Toy()
        with pytest.raises(InputError, match=message):
            Run(task, epochs=2, **kwargs)
        assert task.trained == []
    with pytest.raises(InputError, match=r"task must be a Task .* got Linear"):
        Run(torch.nn.Linear(2, 2), epochs=2)  # used to be an AttributeError on .model


def test_interleave_refuses_a_list_and_a_nan_budget_but_takes_a_spent_one():
    with pytest.raises(InputError, match=r"runs must be a dict of name -> Run, got list"):
        interleave([Run(Toy(), epochs=2)])  # used to be an AttributeError on .values
    with pytest.raises(InputError, match=r"time_budget_s must be a finite number or None"):
        interleave({"a": Run(Toy(), epochs=2)}, time_budget_s=math.nan)
    # a budget already spent (what the benchmark harness passes on) still stops cleanly
    runs = {"a": Run(Toy(), epochs=50), "b": Run(Toy(), epochs=50)}
    assert interleave(runs, time_budget_s=-1.0) == "time-budget"
    assert [run.epoch for run in runs.values()] == [1, 1]
