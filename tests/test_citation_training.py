"""Training the neural citation models on the engine (gnnkit.citation.training)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from test_citation_models import FAST, split, synthetic_records
from torch import nn

from gnnkit.citation import CitationTask, TrainingHistory, inner_split, make_model
from gnnkit.citation.training import train
from gnnkit.errors import InputError
from gnnkit.train import NonFiniteLossError

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = torch.tensor([0, 0, 1, 0, 1])  # sentence 0 is the fitting part, 1-4 validation
Y_VAL = [0, 1, 0, 1]


def confident(a: float) -> list[list[float]]:
    """Validation logits that are all correct, with margin 2a: loss log(1 + exp(-2a))."""
    return [[a, -a] if y == 0 else [-a, a] for y in Y_VAL]


ALL_ZERO = [[1.0, -1.0]] * 4  # every sentence class 0: F1 2/3 and 0, macro 1/3


class Scripted(CitationTask):
    """Epoch k sets the model's single parameter to k; the validation logits are script[k-1]."""

    def __init__(self, script: list[list[list[float]]]) -> None:
        model = nn.Linear(1, 1, bias=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        super().__init__(
            model,
            optimizer,
            logits=self._scripted,
            fit=np.array([0]),
            val=np.arange(1, 5),
            labels=LABELS,
            weight=torch.ones(2),
        )
        self.script, self.trained = script, []

    def train_epoch(self, epoch: int) -> dict[str, float]:
        with torch.no_grad():
            self.model.weight.fill_(epoch)
        self.trained.append(epoch)
        return {"loss": 0.5}

    def _scripted(self, index: np.ndarray) -> torch.Tensor:
        assert index.tolist() == [1, 2, 3, 4]
        return torch.tensor(self.script[int(self.model.weight.item()) - 1])


def test_an_f1_tie_goes_to_the_lower_loss_then_to_the_earlier_epoch():
    task = Scripted([ALL_ZERO, confident(0.5), confident(2.0), confident(1.0), confident(2.0)])
    history = train(task, epochs=5, patience=10)
    assert history.scores == pytest.approx([1 / 3, 1.0, 1.0, 1.0, 1.0])
    all_zero = (math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2  # half right, half wrong
    expected = [all_zero] + [math.log1p(math.exp(-2 * a)) for a in (0.5, 2, 1, 2)]
    assert history.losses == pytest.approx(expected, rel=1e-5)
    # Epochs 2-5 tie on F1 = 1; epoch 3 has the lowest loss; epoch 5 only equals it.
    assert (history.best_epoch, history.finished) == (3, "epochs")
    assert history.best_score == 1.0
    assert history.best_loss == history.losses[2]
    assert history.train_losses == [0.5] * 5
    assert task.model.weight.item() == 3.0  # the kept parameters are epoch 3's
    assert not task.model.training


def test_patience_stops_after_epochs_without_a_better_evaluation():
    script = [confident(2.0), ALL_ZERO, confident(1.0)] + [confident(3.0)] * 5
    task = Scripted(script)
    history = train(task, epochs=8, patience=2)
    # Epoch 3 ties epoch 1 on F1 but has a higher loss: two epochs without improvement.
    assert task.trained == [1, 2, 3]
    assert (history.best_epoch, history.finished, len(history.scores)) == (1, "patience", 3)
    assert task.model.weight.item() == 1.0
    assert not task.model.training


def test_a_non_finite_validation_loss_stops_with_the_epoch():
    task = Scripted([confident(1.0), [[math.nan, 0.0]] * 4])
    with pytest.raises(NonFiniteLossError, match=r"non-finite at epoch 2 .*val_loss=nan"):
        train(task, epochs=3, patience=3)


def test_the_task_refuses_sentences_outside_the_training_fold():
    model = nn.Linear(1, 2)
    with pytest.raises(InputError, match="training sentences only"):
        CitationTask(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            logits=lambda index: model(torch.zeros(len(index), 1)),
            fit=np.array([0, 1]),
            val=np.array([2]),
            labels=torch.tensor([0, 1, -1]),
            weight=torch.ones(2),
        )


def reference_loop(model, optimizer, x, labels, fit, val, weight, *, epochs, patience):
    """The selection rule written out: best macro-F1, ties to the lower loss, then patience."""
    best_score, best_loss, best_epoch, scores, losses = -1.0, math.inf, 0, [], []
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, epochs + 1):
        model.train()
        loss = F.cross_entropy(model(x[fit]), labels[fit], weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x[val])
            loss = float(F.cross_entropy(logits, labels[val], weight=weight))
        score = f1_score(
            labels[val], logits.argmax(1), average="macro", labels=[0, 1, 2], zero_division=0
        )
        scores.append(float(score))
        losses.append(loss)
        if score > best_score or (score == best_score and loss < best_loss):
            best_score, best_loss, best_epoch = score, loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return scores, losses, best_epoch


def test_training_matches_a_hand_written_loop_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=generator)
    labels = (x[:, 0] + 0.8 * torch.randn(80, generator=generator) > 0).long()
    labels[x[:, 1] > 1.0] = 2
    fit, val = np.arange(60), np.arange(60, 80)
    weight = torch.tensor([1.0, 1.5, 3.0])

    def build():
        torch.manual_seed(1)  # dropout draws from the global generator in both runs
        model = nn.Sequential(nn.Dropout(0.5), nn.Linear(6, 3))
        return model, torch.optim.Adam(model.parameters(), lr=0.05)

    model, optimizer = build()
    task = CitationTask(
        model,
        optimizer,
        logits=lambda index: model(x[torch.as_tensor(index)]),
        fit=fit,
        val=val,
        labels=labels,
        weight=weight,
    )
    history = train(task, epochs=60, patience=5)
    reference, reference_optimizer = build()
    scores, losses, best_epoch = reference_loop(
        reference, reference_optimizer, x, labels, fit, val, weight, epochs=60, patience=5
    )
    assert (history.scores, history.losses, history.best_epoch) == (scores, losses, best_epoch)
    assert history.finished == "patience"  # the early stop is exercised
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


@pytest.mark.parametrize("name", ["graph", "text", "textgcn"])
def test_a_fitted_model_keeps_its_best_validation_epoch(name):
    # Short patience, so training stops early; the kept parameters must score, on the
    # validation part, exactly what the selected epoch scored.
    _, _, view = split(synthetic_records(text_signal=False, graph_signal=True))
    model = make_model(name, **{**FAST[name], "epochs": 60, "patience": 3}).fit(view)
    history = model.history_
    assert isinstance(history, TrainingHistory)
    ranked = max(
        range(len(history.scores)), key=lambda i: (history.scores[i], -history.losses[i], -i)
    )
    assert model.best_epoch == history.best_epoch == ranked + 1
    assert len(history.scores) == len(history.losses) == len(history.train_losses)
    assert history.finished == "patience"  # on this corpus every model stops early
    assert len(history.scores) - history.best_epoch == 3
    assert not model.module_.training
    _, val = inner_split(view.train, view.y_train, fraction=model.val_fraction, seed=view.seed)
    label_of = dict(zip(view.train.tolist(), view.y_train.tolist(), strict=True))
    y_val = [label_of[i] for i in val.tolist()]
    pred = model.predict(view, val)
    score = f1_score(y_val, pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert score == history.best_score
