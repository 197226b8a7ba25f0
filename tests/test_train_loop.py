"""The training harness: model selection, early stopping, NaN detection, history, validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from gnnkit.errors import InputError
from gnnkit.train import (
    HISTORY_KEYS,
    NodeInputs,
    NonFiniteLossError,
    TrainConfig,
    fit,
    node_inputs,
    normalize_features,
    seed_everything,
)

# A 10-node problem: 2 classes; nodes 0-1 train, 2-5 validation, 6-9 test.
LABELS = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_inputs(num_classes: int = 2) -> NodeInputs:
    x = torch.eye(10)
    edge_index = torch.tensor([[i for i in range(9)], [i + 1 for i in range(9)]])
    masks = [torch.zeros(10, dtype=torch.bool) for _ in range(3)]
    masks[0][:2] = True
    masks[1][2:6] = True
    masks[2][6:] = True
    data = Data(x=x, edge_index=edge_index, y=LABELS.clone(), num_classes=num_classes)
    data.train_mask, data.val_mask, data.test_mask = masks
    return node_inputs(data, features="dense")


class Scripted(nn.Module):
    """Training forward: a real (learnable) linear model. Evaluation forward number ``k``
    predicts ``LABELS`` on the first ``val_hits[k]`` validation nodes and ``test_hits[k]``
    test nodes and the wrong class elsewhere, so each epoch's accuracies are known exactly."""

    def __init__(self, val_hits, test_hits, nan_at=None):
        super().__init__()
        self.lin = nn.Linear(10, 2)
        self.val_hits, self.test_hits, self.nan_at = val_hits, test_hits, nan_at
        self.evals = self.trains = 0

    def forward(self, x, edge_index):
        if self.training:
            self.trains += 1
            out = self.lin(x)
            return out * math.nan if self.trains == self.nan_at else out
        k = self.evals
        self.evals += 1
        pred = 1 - LABELS  # all wrong
        pred[:2] = LABELS[:2]
        pred[2 : 2 + self.val_hits[k]] = LABELS[2 : 2 + self.val_hits[k]]
        pred[6 : 6 + self.test_hits[k]] = LABELS[6 : 6 + self.test_hits[k]]
        return F.one_hot(pred, 2).float() * 5.0


class Plain(nn.Module):
    """A linear classifier that ignores the graph."""

    def __init__(self, device=None):
        super().__init__()
        self.lin = nn.Linear(10, 2, device=device)

    def forward(self, x, edge_index):
        return self.lin(x)


def test_selects_first_best_validation_epoch_and_reports_its_test_accuracy():
    val_hits = [1, 3, 3, 2, 3, 1]  # best 3/4, first reached at epoch 2 (epochs 3 and 5 tie)
    test_hits = [0, 1, 4, 2, 3, 4]
    model = Scripted(val_hits, test_hits)
    result = fit(model, tiny_inputs(), TrainConfig(epochs=6, restore_best=False))
    assert result.history["val_acc"] == [h / 4 for h in val_hits]
    assert result.history["test_acc"] == [h / 4 for h in test_hits]
    assert result.history["train_acc"] == [1.0] * 6
    assert (result.best_epoch, result.val_acc, result.test_acc) == (2, 0.75, 0.25)
    assert result.epochs_run == 6 and not result.stopped_early
    assert set(result.history) == set(HISTORY_KEYS)
    assert all(len(v) == 6 for v in result.history.values())
    assert len(result.epoch_times) == 6 and result.run_time == pytest.approx(
        sum(result.epoch_times)
    )


def test_evaluation_losses_match_an_independent_cross_entropy():
    model = Scripted([2] * 2, [1] * 2)
    result = fit(model, tiny_inputs(), TrainConfig(epochs=2))
    pred = 1 - LABELS
    pred[:2], pred[2:4], pred[6:7] = LABELS[:2], LABELS[2:4], LABELS[6:7]
    logits = F.one_hot(pred, 2).float() * 5.0
    for split, nodes in (("train", slice(0, 2)), ("val", slice(2, 6)), ("test", slice(6, 10))):
        expected = F.cross_entropy(logits[nodes].double(), LABELS[nodes]).item()
        assert result.history[f"{split}_loss"][-1] == pytest.approx(expected, rel=1e-12)


def test_patience_stops_after_that_many_epochs_without_improvement():
    val_hits = [1, 2, 2, 1, 2, 4, 4]
    model = Scripted(val_hits, [0] * 7)
    result = fit(model, tiny_inputs(), TrainConfig(epochs=7, patience=3))
    # best at epoch 2; epochs 3, 4, 5 bring no strictly higher accuracy -> stop after epoch 5
    assert result.stopped_early and result.epochs_run == 5 and result.best_epoch == 2
    assert model.trains == 5


def test_restore_best_leaves_the_parameters_of_the_selected_epoch():
    model = Scripted([1, 3, 2, 2], [0] * 4)
    snapshots = []

    def remember(record):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    result = fit(model, tiny_inputs(), TrainConfig(epochs=4, lr=0.1), callback=remember)
    assert result.best_epoch == 2
    best = snapshots[1]
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)
    assert not torch.equal(snapshots[3]["lin.weight"], best["lin.weight"])


def test_nan_loss_stops_with_the_epoch_named(tmp_path):
    model = Scripted([1] * 10, [1] * 10, nan_at=3)
    path = tmp_path / "run.pt"
    config = TrainConfig(epochs=10, checkpoint_every=1)
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite at epoch 3 \(loss=nan.*last checkpoint"
    ):
        fit(model, tiny_inputs(), config, checkpoint=path)
    from gnnkit.train import load_checkpoint

    state = load_checkpoint(path)  # the last good checkpoint is complete
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2


def test_nan_in_features_is_reported_as_non_finite_loss():
    inputs = tiny_inputs()
    inputs.x[0, 0] = math.inf
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        fit(Plain(), inputs, TrainConfig(epochs=3))


def test_fit_is_deterministic_with_a_seed():
    from gnnkit.models import GCN

    inputs = tiny_inputs()
    results = []
    for _ in range(2):
        seed_everything(3)
        model = GCN(10, 2)
        results.append(fit(model, inputs, TrainConfig(epochs=8, seed=3)).history)
    assert results[0] == results[1]


def test_weight_decay_follows_the_models_parameter_groups():
    from gnnkit.train.node import make_optimizer as _optimizer

    class Groups(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def parameter_groups(self, weight_decay):
            return [
                {"params": self.a.parameters(), "weight_decay": weight_decay},
                {"params": self.b.parameters(), "weight_decay": 0.0},
            ]

    optimizer = _optimizer(Groups(), TrainConfig(weight_decay=0.25, lr=0.5))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.25, 0.0]
    assert all(g["lr"] == 0.5 for g in optimizer.param_groups)
    plain = _optimizer(nn.Linear(2, 2), TrainConfig(weight_decay=0.25, optimizer="adamw"))
    assert isinstance(plain, torch.optim.AdamW) and plain.param_groups[0]["weight_decay"] == 0.25


def test_progress_bar_and_callback(capsys):
    records = []
    fit(
        Scripted([1] * 3, [1] * 3),
        tiny_inputs(),
        TrainConfig(epochs=3),
        progress=True,
        callback=records.append,
    )
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert set(records[0]) == {"epoch", "epoch_time", *HISTORY_KEYS}
    assert capsys.readouterr().out == ""  # the bar goes to stderr, never stdout


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"lr": math.nan}, "lr must be a finite number > 0, got nan"),
        ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0, got -1.0"),
        ({"patience": 0}, "patience must be an integer >= 1 or None, got 0"),
        ({"optimizer": "sgd"}, "optimizer must be one of 'adam', 'adamw', got 'sgd'"),
        ({"seed": "1"}, "seed must be an integer or None"),
        ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1, got 0"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(**kwargs)


def test_fit_rejects_bad_arguments():
    inputs = tiny_inputs()
    with pytest.raises(InputError, match="inputs must be NodeInputs"):
        fit(Plain(), {"x": inputs.x}, TrainConfig(epochs=1))
    with pytest.raises(InputError, match="config must be a TrainConfig"):
        fit(Plain(), inputs, {"epochs": 1})
    with pytest.raises(InputError, match="resume=True needs a checkpoint path"):
        fit(Plain(), inputs, TrainConfig(epochs=1), resume=True)
    model = Plain(device="meta")
    with pytest.raises(InputError, match="parameters are on meta but the inputs on cpu"):
        fit(model, inputs, TrainConfig(epochs=1))
    with pytest.raises(InputError, match=r"callback must be a function .* got int"):
        fit(Plain(), inputs, TrainConfig(epochs=1), callback=5)  # before any epoch


def test_fit_names_a_model_with_too_few_outputs():
    # cross-entropy used to fail inside torch ("Target 2 is out of bounds")
    inputs = tiny_inputs(num_classes=3)
    with pytest.raises(InputError, match=r"returned \(10, 2\) logits but the inputs have 10 "):
        fit(Plain(), inputs, TrainConfig(epochs=1))
    wide = Plain()
    wide.lin = nn.Linear(10, 4)  # more columns than classes: cross-entropy takes it
    assert len(fit(wide, inputs, TrainConfig(epochs=2)).history["loss"]) == 2


# --------------------------------------------------------------------------- inputs


def test_normalize_features_matches_pyg_and_stays_sparse():
    import torch_geometric.transforms as T

    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(30, 50, generator=generator) < 0.05).float() * 3.0
    x[4] = 0.0  # an all-zero row stays zero (row sums are clamped at 1)
    expected = T.NormalizeFeatures()(Data(x=x.clone())).x
    dense = normalize_features(x, layout="dense")
    sparse = normalize_features(x, layout="sparse")
    assert dense.layout == torch.strided and torch.allclose(dense, expected)
    assert sparse.layout == torch.sparse_csr and torch.allclose(sparse.to_dense(), expected)
    assert normalize_features(x).layout == torch.sparse_csr  # auto: 5 % non-zero
    assert normalize_features(torch.rand(5, 4) + 0.1).layout == torch.strided  # auto: dense
    assert torch.allclose(normalize_features(x.to_sparse()).to_dense(), expected)
    shifted = x - 1.0  # negative values: shifted by the minimum, as PyG does
    assert torch.allclose(
        normalize_features(shifted, layout="dense"),
        T.NormalizeFeatures()(Data(x=shifted.clone())).x,
    )


def test_node_inputs_turns_masks_into_indices():
    inputs = tiny_inputs()
    assert inputs.train_idx.tolist() == [0, 1]
    assert inputs.val_idx.tolist() == [2, 3, 4, 5]
    assert inputs.test_idx.tolist() == [6, 7, 8, 9]
    assert (inputs.num_nodes, inputs.num_features, inputs.num_classes) == (10, 10, 2)
    custom = node_inputs(
        Data(
            x=torch.ones(10, 3),
            edge_index=torch.zeros(2, 0, dtype=torch.long),
            y=LABELS,
            train_mask=LABELS == 0,
            val_mask=LABELS == 1,
            test_mask=LABELS == 1,
        ),
        features=lambda x: x * 2,
    )
    assert torch.equal(custom.x, torch.full((10, 3), 2.0)) and custom.num_classes == 2
    assert custom.fingerprint() != inputs.fingerprint()


def _data(**changes):
    data = Data(
        x=torch.eye(4), edge_index=torch.tensor([[0, 1], [1, 2]]), y=torch.tensor([0, 1, 0, 1])
    )
    data.train_mask = torch.tensor([True, False, False, False])
    data.val_mask = torch.tensor([False, True, False, False])
    data.test_mask = torch.tensor([False, False, True, True])
    for key, value in changes.items():
        data[key] = value
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"val_mask": None}, "the dataset has no val_mask"),
        (
            {"test_mask": torch.zeros(4, 2, dtype=torch.bool)},
            r"test_mask has shape \(4, 2\): several splits",
        ),
        (
            {"train_mask": torch.tensor([1, 0, 0, 0])},
            "train_mask must be a boolean tensor of shape",
        ),
        ({"val_mask": torch.zeros(4, dtype=torch.bool)}, "val_mask selects no node"),
        ({"y": torch.tensor([0.0, 1.0, 0.0, 1.0])}, "y must hold one integer class per node"),
        (
            {"y": torch.tensor([0, 1, -1, 1])},
            r"y holds class -1, out of range for 2 classes \(valid: 0 \.\. 1\)",
        ),
        ({"x": torch.eye(3)}, "x has 3 rows but y has 4 labels"),
        ({"edge_index": torch.tensor([[0], [9]])}, "9"),
    ],
)
def test_node_inputs_rejects_bad_datasets(changes, message):
    data = _data(**{k: v for k, v in changes.items() if v is not None})
    for key, value in changes.items():
        if value is None:
            del data[key]
    with pytest.raises(InputError, match=message):
        node_inputs(data)


def test_normalize_features_rejects_bad_arguments():
    with pytest.raises(InputError, match="layout must be 'sparse', 'dense' or 'auto'"):
        normalize_features(torch.eye(2), layout="csr")
    with pytest.raises(
        InputError, match=r"node features must be a \(\|V\|, F\) tensor, got \(3,\)"
    ):
        normalize_features(torch.ones(3))


def _replaced(**changes):
    import dataclasses

    return dataclasses.replace(tiny_inputs(), **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [  # NodeInputs built directly used to fail in training (IndexError, ZeroDivisionError)
        ({"y": LABELS[:5]}, r"x has 10 rows but y has 5 labels"),
        ({"y": LABELS.float()}, r"y must be a 1-D torch\.long tensor .* got torch\.float32"),
        ({"y": LABELS.int()}, r"y must be a 1-D torch\.long tensor .* got torch\.int32"),
        ({"y": LABELS + 1}, r"y holds class 2, out of range for 2 classes \(valid: 0 \.\. 1\)"),
        ({"x": torch.ones(10, 3, dtype=torch.long)}, r"x must be a 2-D floating-point"),
        ({"num_classes": 0}, r"num_classes must be an integer >= 1, got 0"),
        ({"edge_index": torch.tensor([[0], [10]])}, r"out of range for num_nodes=10"),
        (
            {"train_idx": torch.tensor([0, 50])},
            r"train_idx holds node index 50, out of range for 10 nodes",
        ),
        (
            {"val_idx": torch.tensor([-1, 2])},
            r"val_idx holds node index -1, out of range for 10 nodes",
        ),
        ({"test_idx": torch.tensor([], dtype=torch.long)}, r"test_idx holds no node"),
        ({"train_idx": LABELS == 0}, r"train_idx must hold node indices, got a boolean mask"),
        ({"train_idx": torch.tensor([0.0, 1.0])}, r"train_idx must be a 1-D integer tensor"),
        ({"train_idx": torch.tensor([[0, 1]])}, r"train_idx must be a 1-D integer tensor"),
    ],
)
def test_node_inputs_built_directly_are_checked(changes, message):
    with pytest.raises(InputError, match=message):
        _replaced(**changes)


def test_node_inputs_built_directly_keep_working_with_valid_tensors():
    # int32 indices were valid before the checks and still are; the result is unchanged
    inputs = tiny_inputs()
    narrow = _replaced(**{k: getattr(inputs, k).int() for k in ("train_idx", "val_idx")})

    def history(inputs):
        seed_everything(0)  # the same initial weights
        return fit(Plain(), inputs, TrainConfig(epochs=3)).history

    assert history(narrow) == history(inputs)


def test_node_task_and_fit_refuse_wrong_argument_types():
    from gnnkit.train import NodeTask

    inputs = tiny_inputs()
    with pytest.raises(InputError, match=r"config must be a TrainConfig, got NoneType"):
        NodeTask(Plain(), inputs, None)  # used to be an AttributeError on .weight_decay
    with pytest.raises(InputError, match=r"inputs must be NodeInputs .* got Data"):
        NodeTask(Plain(), _data(), TrainConfig(epochs=1))  # AttributeError on .train_idx
    with pytest.raises(InputError, match=r"model must be a torch\.nn\.Module, got function"):
        fit(lambda x, edge_index: x, inputs, TrainConfig(epochs=1))
    with pytest.raises(InputError, match=r"resume must be True or False, got 'yes'"):
        fit(Plain(), inputs, TrainConfig(epochs=1), resume="yes")  # was taken as True
