"""CharLSTM against hand-written LSTM equations; configs and presets."""

from __future__ import annotations

import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.seq.charlm import PRESETS, CharLSTM, CharLSTMConfig, TrainConfig, Vocabulary, get_preset

VOCAB = Vocabulary.from_text("abcdefghij .,")


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kwargs) -> CharLSTM:
    torch.manual_seed(0)
    config = CharLSTMConfig(
        **{"embedding_dim": 6, "hidden_size": 8, "num_layers": 2, "dropout": 0.0, **kwargs}
    )
    return CharLSTM(VOCAB, config).double().eval()


def _reference_logits(model: CharLSTM, ids: torch.Tensor) -> torch.Tensor:
    """The LSTM equations written out (gate order i, f, g, o), independent of nn.LSTM."""
    x = model.embedding.weight[ids]  # (B, T, D)
    batch, steps = ids.shape
    hidden = model.config.hidden_size
    for layer in range(model.config.num_layers):
        w_ih = getattr(model.lstm, f"weight_ih_l{layer}")
        w_hh = getattr(model.lstm, f"weight_hh_l{layer}")
        b = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
        h = x.new_zeros(batch, hidden)
        c = x.new_zeros(batch, hidden)
        outputs = []
        for t in range(steps):
            gates = x[:, t] @ w_ih.T + h @ w_hh.T + b
            i, f, g, o = gates.split(hidden, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        x = torch.stack(outputs, dim=1)
    return x @ model.head.weight.T + model.head.bias


def test_forward_matches_the_lstm_equations():
    model = _model()
    ids = torch.randint(len(VOCAB), (3, 9), generator=torch.Generator().manual_seed(1))
    logits, (h, c) = model(ids)
    assert logits.shape == (3, 9, len(VOCAB))
    assert h.shape == c.shape == (2, 3, 8)
    torch.testing.assert_close(logits, _reference_logits(model, ids))


def test_step_by_step_equals_one_pass():
    model = _model()
    ids = torch.randint(len(VOCAB), (2, 12), generator=torch.Generator().manual_seed(2))
    full, _ = model(ids)
    state = None
    for t in range(12):
        logits, state = model.step(ids[:, t], state)
        torch.testing.assert_close(logits, full[:, t])
    # a state carried over a split reproduces the unsplit pass
    first, state = model(ids[:, :5])
    second, _ = model(ids[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full)


def test_initial_state_is_zero_and_equals_none():
    model = _model()
    ids = torch.randint(len(VOCAB), (4, 5), generator=torch.Generator().manual_seed(3))
    h0, c0 = model.initial_state(4)
    assert h0.shape == (2, 4, 8) and not h0.any() and not c0.any()
    torch.testing.assert_close(model(ids, (h0, c0))[0], model(ids)[0])


def test_dropout_only_in_training_mode():
    model = _model(dropout=0.5)
    ids = torch.randint(len(VOCAB), (4, 5), generator=torch.Generator().manual_seed(4))
    model.eval()
    torch.testing.assert_close(model(ids)[0], model(ids)[0])
    model.train()
    assert not torch.equal(model(ids)[0], model(ids)[0])


def test_reset_parameters_and_repr():
    model = _model()
    before = model.head.weight.clone()
    torch.manual_seed(5)
    model.reset_parameters()
    assert not torch.equal(before, model.head.weight)
    text = repr(model)
    assert "vocab_size=13" in text and "hidden_size=8" in text and "num_layers=2" in text


def test_bad_ids():
    model = _model()
    with pytest.raises(InputError, match=r"torch\.long tensor"):
        model(torch.zeros(2, 3))
    with pytest.raises(
        InputError,
        match=r"ids holds character id 13, out of range for 13 characters \(valid: 0 \.\. 12\)",
    ):
        model(torch.tensor([[0, 13]]))
    with pytest.raises(InputError, match=r"shape \(B, T\)"):
        model(torch.tensor([0, 1]))


def test_zero_length_sequence_is_refused_and_empty_batch_works():
    model = _model()
    ids = torch.tensor([[0, 1, 2], [3, 4, 5]])
    with pytest.raises(
        InputError, match=r"at least one time step, got ids of shape \(2, 0\); give every"
    ):
        model(ids[:, :0])
    logits, (h, c) = model(ids[:0])  # no sequences (B = 0) is fine, as in nn.LSTM
    assert logits.shape == (0, 3, len(VOCAB)) and h.shape == c.shape == (2, 0, 8)


def test_bad_constructor_arguments():
    with pytest.raises(InputError, match=r"must be a gnnkit\.seq\.charlm\.Vocabulary"):
        CharLSTM(["a", "b"])
    with pytest.raises(InputError, match="config must be a CharLSTMConfig"):
        CharLSTM(VOCAB, {"hidden_size": 4})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 0}, "hidden_size must be an integer >= 1"),
        ({"num_layers": 1.5}, "num_layers must be an integer"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\), got -0.1"),
    ],
)
def test_bad_model_config(kwargs, match):
    with pytest.raises(InputError, match=match):
        CharLSTMConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"lr_decay": 1.5}, r"lr_decay must be a number in \(0, 1\], got 1.5"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0, got nan"),
        ({"eval_every": -1}, "eval_every must be an integer >= 0"),
        ({"val_fraction": 1.0}, r"val_fraction must be a number in \[0, 1\), got 1.0"),
    ],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**kwargs)


def test_config_dict_round_trip_and_unknown_fields():
    config = CharLSTMConfig(hidden_size=32)
    assert CharLSTMConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    with pytest.raises(InputError, match=r"unknown fields \['hidden'\]"):
        CharLSTMConfig.from_dict({"hidden": 3})


def test_paper_preset_is_the_reports_setup():
    paper = get_preset("paper")
    assert (paper.model.num_layers, paper.model.hidden_size, paper.model.dropout) == (2, 1024, 0.5)
    t = paper.train
    assert (t.seq_length, t.batch_size, t.steps) == (30, 64, 7500)
    # weight decay: the report's 0.01 collapses the model under Adam's L2 (see the preset)
    assert (t.lr, t.weight_decay, t.lr_decay, t.lr_decay_every) == (5e-3, 0.0, 0.995, 75)
    assert set(PRESETS) == {"paper", "cpu"}
    with pytest.raises(InputError, match="unknown preset 'gpu'; choose one of: paper, cpu"):
        get_preset("gpu")
