"""The papers' training protocols (``gnnkit.train.protocols``): the stopping and keeping rules
on hand-made validation sequences, checked against the authors' loops written out here, and
the protocols on the training engine (``fit(..., protocol=...)``) and the node benchmark.

The command-line refusals of ``--protocol paper``: ``test_cli_errors.py``.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.train.protocols import (
    PROTOCOLS,
    KipfWellingStopping,
    VelickovicStopping,
    make_protocol,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def run_rule(rule, losses, accs=None):
    """Feed ``rule`` the sequences; the 1-based epochs it kept, and the epoch it stopped at."""
    accs = accs if accs is not None else [0.5] * len(losses)
    kept, stopped = [], None
    for epoch, (loss, acc) in enumerate(zip(losses, accs, strict=True), start=1):
        decision = rule.update(loss, acc)
        if decision.keep:
            kept.append(epoch)
        if decision.stop:
            stopped = epoch
            break
    return kept, stopped


# -- Kipf & Welling: the window rule ----------------------------------------------------------


def kipf_loop(losses, window=10):
    """``gcn/train.py``'s loop, as released: the (1-based) epoch it breaks after, or None."""
    cost_val = []
    for epoch, cost in enumerate(losses):
        cost_val.append(cost)
        if epoch > window and cost_val[-1] > np.mean(cost_val[-(window + 1) : -1]):
            return epoch + 1
    return None


def test_kipf_welling_stops_when_the_loss_exceeds_the_mean_of_the_previous_ten():
    # Falling for 14 epochs, then one epoch above the mean of the ten before it.
    losses = [2.0 - 0.1 * t for t in range(14)]  # epochs 1-14: 2.0 ... 0.7
    mean_prev = sum(losses[-10:]) / 10  # epochs 5-14: 1.15
    losses.append(mean_prev + 0.01)  # epoch 15: above the mean
    losses += [0.1] * 5
    kept, stopped = run_rule(KipfWellingStopping(), losses)
    assert stopped == 15 == kipf_loop(losses)
    assert kept == list(range(1, 16))  # every epoch kept: the final model is reported


def test_kipf_welling_does_not_stop_at_a_loss_equal_to_the_mean_or_a_mere_rise():
    # Epoch 13 rises above epoch 12 but stays below the window's mean: no stop.
    losses = [1.0] * 11 + [0.5, 0.6] + [0.55] * 3
    assert run_rule(KipfWellingStopping(), losses)[1] is None is kipf_loop(losses)
    # Equal to the mean is not larger: no stop.
    flat = [1.0] * 30
    assert run_rule(KipfWellingStopping(), flat)[1] is None is kipf_loop(flat)


def test_kipf_welling_checks_from_epoch_twelve_only():
    # A rise at epoch 11 (the first epoch with ten before it) is not checked: epoch > 10
    # counts from 0 in the code. The same rise at epoch 12 stops.
    at_11 = [1.0] * 10 + [5.0] + [1.0] * 5
    assert run_rule(KipfWellingStopping(), at_11)[1] is None is kipf_loop(at_11)
    at_12 = [1.0] * 11 + [5.0] + [1.0] * 5
    assert run_rule(KipfWellingStopping(), at_12)[1] == 12 == kipf_loop(at_12)


@pytest.mark.parametrize("window", [1, 3, 10])
def test_kipf_welling_matches_the_released_loop_on_random_walks(window):
    rng = random.Random(window)
    for _ in range(200):
        losses, value = [], 2.0
        for _ in range(60):
            value = max(0.05, value + rng.gauss(-0.02, 0.05))
            losses.append(value)
        assert run_rule(KipfWellingStopping(window), losses)[1] == kipf_loop(losses, window)


# -- Velickovic et al.: patience on loss or accuracy, keep where both are best ----------------


def velickovic_loop(losses, accs, patience=100):
    """``execute_cora.py``'s loop, as released: (epochs saved, epoch it breaks after)."""
    vlss_mn, vacc_mx, curr_step, saved = np.inf, 0.0, 0, []
    for epoch, (loss, acc) in enumerate(zip(losses, accs, strict=True), start=1):
        if acc >= vacc_mx or loss <= vlss_mn:
            if acc >= vacc_mx and loss <= vlss_mn:
                saved.append(epoch)
            vacc_mx = np.max((acc, vacc_mx))
            vlss_mn = np.min((loss, vlss_mn))
            curr_step = 0
        else:
            curr_step += 1
            if curr_step == patience:
                return saved, epoch
    return saved, None


def test_velickovic_keeps_the_last_epoch_where_both_matched_or_beat_the_best():
    #        epoch:  1    2    3    4    5    6    7
    losses = [1.0, 0.9, 0.8, 0.85, 0.8, 0.7, 0.75]
    accs = [0.5, 0.6, 0.6, 0.70, 0.7, 0.6, 0.65]
    # 1, 2: both improve. 3: loss better, accuracy ties: kept. 4: accuracy only (loss worse):
    # resets patience, not kept. 5: ties both bests (0.8 loss, 0.7 acc): kept. 6: loss only.
    # 7: neither.
    kept, stopped = run_rule(VelickovicStopping(patience=5), losses, accs)
    assert kept == [1, 2, 3, 5] and stopped is None
    assert velickovic_loop(losses, accs, patience=5) == (kept, None)


def test_velickovic_patience_resets_on_either_improvement():
    # After epoch 1 sets both bests, alternate: a better loss with a worse accuracy, then
    # nothing; every second epoch resets the counter, so patience 2 never runs out.
    losses, accs = [1.0], [0.8]
    for t in range(20):
        losses += [0.9 - 0.01 * t, 5.0]
        accs += [0.1, 0.1]
    assert run_rule(VelickovicStopping(patience=2), losses, accs) == ([1], None)
    # The same with accuracy alone improving (the loss getting worse).
    losses, accs = [1.0], [0.1]
    for t in range(20):
        losses += [2.0 + t, 9.0 + t]
        accs += [0.2 + 0.01 * t, 0.0]
    assert run_rule(VelickovicStopping(patience=2), losses, accs) == ([1], None)
    # Without either, it stops after exactly `patience` epochs worse on both.
    kept, stopped = run_rule(VelickovicStopping(patience=3), [1.0, 2, 2, 2, 2], [0.5, 0, 0, 0, 0])
    assert (kept, stopped) == ([1], 4)


def test_velickovic_matches_the_released_loop_on_random_walks():
    rng = random.Random(0)
    for _ in range(200):
        losses = [rng.choice([0.6, 0.7, 0.8, 0.9]) for _ in range(300)]
        accs = [rng.choice([0.70, 0.75, 0.80]) for _ in range(300)]
        rule = VelickovicStopping(patience=rng.choice([1, 5, 20]))
        assert run_rule(rule, losses, accs) == velickovic_loop(losses, accs, rule.patience)


def test_velickovic_never_improves_on_nan():
    rule = VelickovicStopping(patience=2)
    rule.update(1.0, 0.5)
    assert [rule.update(math.nan, math.nan).stop for _ in range(2)] == [False, True]


# -- the registry, settings and state ---------------------------------------------------------


def test_registry_names_the_papers_settings():
    assert set(PROTOCOLS) == {"kipf-welling", "velickovic"}
    gcn, gat = make_protocol("kipf-welling"), make_protocol("velickovic")
    assert (gcn.epochs, gcn.window, gcn.loss_includes_l2) == (200, 10, True)
    assert (gat.epochs, gat.patience, gat.loss_includes_l2) == (100_000, 100, False)
    with pytest.raises(InputError, match="unknown protocol 'nosuch'; known protocols: kipf-welling, velickovic"):  # fmt: skip
        make_protocol("nosuch")
    with pytest.raises(InputError, match="patience must be"):
        VelickovicStopping(patience=0)
    with pytest.raises(InputError, match="window must be"):
        KipfWellingStopping(window=0)


def test_recipes_name_their_papers_protocols():
    from gnnkit.bench.pyg import reference
    from gnnkit.recipes import NODE_RECIPES

    assert NODE_RECIPES["gcn"].protocol == "kipf-welling"
    assert NODE_RECIPES["gat"].protocol == "velickovic"
    assert NODE_RECIPES["arxiv-gcn"].protocol is None
    assert reference(NODE_RECIPES["gat"]).protocol == "velickovic"  # PyG's trains alike


@pytest.mark.parametrize("cls", [KipfWellingStopping, VelickovicStopping])
def test_state_dict_round_trip_continues_identically(cls):
    rng = random.Random(1)
    losses = [rng.uniform(0.5, 1.0) for _ in range(40)]
    accs = [rng.choice([0.7, 0.8]) for _ in range(40)]
    whole, first = cls(), cls()
    expected = [whole.update(x, a) for x, a in zip(losses, accs, strict=True)]
    got = [first.update(x, a) for x, a in zip(losses[:17], accs[:17], strict=True)]
    second = cls()
    second.load_state_dict(first.state_dict())
    got += [second.update(x, a) for x, a in zip(losses[17:], accs[17:], strict=True)]
    assert got == expected


# -- on the engine ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def karate_inputs():
    from gnnkit.data import load
    from gnnkit.train import node_inputs

    return node_inputs(load("karate"), features="auto")


def _fit(inputs, model_name, protocol, epochs, **options):
    from gnnkit.recipes import NODE_RECIPES
    from gnnkit.train import TrainConfig, fit

    recipe = NODE_RECIPES[model_name]
    torch.manual_seed(0)
    model = recipe.build(inputs.num_features, inputs.num_classes)
    config = TrainConfig(
        epochs=epochs, lr=recipe.lr, weight_decay=recipe.weight_decay, seed=0, **options
    )
    return model, fit(model, inputs, config, protocol=protocol)


def test_fit_under_kipf_welling_reports_the_final_model(karate_inputs):
    _, result = _fit(karate_inputs, "gcn", "kipf-welling", 200)
    h = result.history
    assert result.best_epoch == result.epochs_run  # the final model, never restored
    assert result.test_acc == h["test_acc"][-1] and len(h["test_acc"]) == result.epochs_run
    assert result.stopped_early == (result.epochs_run < 200)


def test_the_window_rule_watches_the_loss_with_its_l2_term(karate_inputs):
    from gnnkit.recipes import NODE_RECIPES
    from gnnkit.train import Run, TrainConfig
    from gnnkit.train.node import NodeTask, l2_penalty

    class Recording(KipfWellingStopping):
        def update(self, val_loss, val_acc):
            self.losses = [*getattr(self, "losses", []), val_loss]
            return super().update(val_loss, val_acc)

    torch.manual_seed(0)
    model = NODE_RECIPES["gcn"].build(karate_inputs.num_features, karate_inputs.num_classes)
    rule = Recording()
    task = NodeTask(model, karate_inputs, TrainConfig(epochs=8), rule)
    history = Run(task, epochs=8, seed=0).run().history
    # the last evaluation saw the parameters the model ends with
    assert rule.losses[-1] == history["val_loss"][-1] + l2_penalty(task.optimizer)
    assert all(a > b for a, b in zip(rule.losses, history["val_loss"], strict=True))


def test_l2_penalty_is_half_the_decay_times_the_squared_norm_of_the_decayed_parameters():
    from gnnkit.train.node import l2_penalty

    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]))  # ||W||^2 = 15
        layer.bias.fill_(10.0)
    groups = [
        {"params": [layer.weight], "weight_decay": 0.1},
        {"params": [layer.bias], "weight_decay": 0.0},  # not decayed: not counted
    ]
    assert l2_penalty(torch.optim.Adam(groups)) == pytest.approx(0.5 * 0.1 * 15)


def test_fit_under_velickovic_keeps_and_restores_the_both_best_epoch(karate_inputs):
    from gnnkit.train.node import NodeEvaluator

    model, result = _fit(karate_inputs, "gat", "velickovic", 400, restore_best=True)
    h = result.history
    saved, stop = velickovic_loop(h["val_loss"], h["val_acc"])
    assert result.best_epoch == saved[-1]
    assert result.test_acc == h["test_acc"][saved[-1] - 1]
    assert result.epochs_run == (stop or 400) and result.stopped_early == (stop is not None)
    # restore_best: the model ends with the kept epoch's parameters (its test accuracy again)
    model.eval()
    with torch.inference_mode():
        logits = model(karate_inputs.x, karate_inputs.edge_index)
    values = NodeEvaluator(karate_inputs)(logits, torch.zeros(()))
    assert values[-1] == result.test_acc


def test_protocol_runs_resume_bit_for_bit(karate_inputs, tmp_path):
    from gnnkit.recipes import NODE_RECIPES
    from gnnkit.train import TrainConfig, fit

    recipe = NODE_RECIPES["gat"]

    def run(epochs, resume):
        torch.manual_seed(0)
        model = recipe.build(karate_inputs.num_features, karate_inputs.num_classes)
        config = TrainConfig(epochs=epochs, lr=recipe.lr, seed=3, checkpoint_every=7)
        path = tmp_path / "gat.pt"
        return fit(model, karate_inputs, config, checkpoint=path, resume=resume, protocol="velickovic")  # fmt: skip

    torch.manual_seed(0)
    whole = fit(
        recipe.build(karate_inputs.num_features, karate_inputs.num_classes),
        karate_inputs,
        TrainConfig(epochs=150, lr=recipe.lr, seed=3),
        protocol="velickovic",
    )
    assert whole.epochs_run > 60  # the checkpoint below is one of an unfinished run
    run(60, resume=False)
    resumed = run(150, resume=True)
    assert resumed.resumed_from == 60
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch


def test_fit_refuses_a_protocol_with_patience_or_an_unknown_name(karate_inputs):
    from gnnkit.train import TrainConfig, fit

    model = torch.nn.Linear(1, 1)
    with pytest.raises(InputError, match="patience=5 and protocol='velickovic' both stop the run"):
        fit(model, karate_inputs, TrainConfig(patience=5), protocol="velickovic")
    with pytest.raises(InputError, match="unknown protocol 'gat'"):
        fit(model, karate_inputs, TrainConfig(), protocol="gat")


def test_default_protocol_is_unchanged(karate_inputs):
    _, result = _fit(karate_inputs, "gcn", None, 30)
    h = result.history
    best = max(range(30), key=lambda i: (h["val_acc"][i], -i))
    assert result.best_epoch == best + 1 and result.epochs_run == 30
    assert "kept" not in h


def test_benchmark_trains_both_implementations_under_the_protocol():
    from gnnkit.bench.node import run_node_benchmark
    from gnnkit.data import load

    result = run_node_benchmark(
        load("karate"), dataset="karate", model="gcn", compare="pyg", runs=2,
        warmup_epochs=0, protocol="kipf-welling",
    )  # fmt: skip
    assert result.epochs == 200 and "kipf-welling protocol" in result.report()
    for impl in ("gnnkit", "pyg"):
        for record in result.records[impl]:
            assert record.best_epoch == record.epochs_run  # the final model, both sides
            assert record.test_acc == record.history["test_acc"][-1]
    assert set(result.to_json({})["gnnkit"]) >= {"epochs_run_median", "best_epoch_median"}
    with pytest.raises(InputError, match="trains full-batch"):
        from gnnkit.train.minibatch import SamplingConfig

        run_node_benchmark(
            load("karate"), dataset="karate", model="gcn", runs=1, warmup_epochs=0,
            protocol="kipf-welling", sampling=SamplingConfig(fanouts=(2, 2)),
        )  # fmt: skip
    with pytest.raises(InputError, match="unknown protocol 'paper'"):
        run_node_benchmark(load("karate"), dataset="karate", model="gcn", protocol="paper")
