"""gradient_norms: one value per step, equal to a hand-written backward pass, decaying for the RNN."""

from __future__ import annotations

import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.seq import (
    LSTMClassifier,
    Palindrome,
    RandomCombinations,
    VanillaRNN,
    build_model,
    gradient_norms,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _rnn_reference(model: VanillaRNN, tokens, labels) -> torch.Tensor:
    """Backpropagation through time written out: delta_{t-1} = (delta_t * (1 - h_t^2)) W_hh."""
    with torch.no_grad():
        x = model.embedding(tokens)
        h = torch.zeros(tokens.size(0), model.hidden_dim, dtype=x.dtype)
        states = []
        for t in range(tokens.size(1)):
            h = torch.tanh(x[:, t] @ model.weight_x.T + h @ model.weight_h.T + model.bias)
            states.append(h)
        probs = torch.softmax(h @ model.head.weight.T + model.head.bias, dim=1)
        onehot = torch.nn.functional.one_hot(labels, model.num_classes).to(probs.dtype)
        delta = (probs - onehot) @ model.head.weight  # dL/dh_T, per sample
        norms = [delta.norm(dim=1).mean()]
        for t in range(tokens.size(1) - 1, 0, -1):
            delta = (delta * (1 - states[t] ** 2)) @ model.weight_h
            norms.append(delta.norm(dim=1).mean())
    return torch.stack(norms[::-1])


def test_rnn_gradient_norms_equal_hand_written_backprop():
    torch.manual_seed(0)
    task = Palindrome(12)
    model = VanillaRNN(task.num_tokens, task.num_classes, embed_dim=6, hidden_dim=20).double()
    tokens, labels = task.validation_set(32)
    norms = gradient_norms(model, (tokens, labels))
    assert norms.shape == (11,)  # one value per input time step
    torch.testing.assert_close(norms, _rnn_reference(model, tokens, labels).to(norms.dtype))
    assert all(p.grad is None for p in model.parameters())  # parameters untouched


def test_rnn_gradients_vanish_and_lstm_forget_bias_keeps_them():
    task = Palindrome(30)
    batch = task.validation_set(64, seed=0)
    torch.manual_seed(0)
    rnn = build_model("rnn", task)
    norms = gradient_norms(rnn, batch)
    assert norms.shape == (29,)
    # at initialisation the RNN's gradient shrinks at every step back in time
    assert torch.all(norms[:-1] < norms[1:])
    assert norms[0] < 1e-5 * norms[-1]
    torch.manual_seed(0)
    lstm = build_model("lstm", task, forget_bias=3.0)
    lstm_norms = gradient_norms(lstm, batch)
    assert lstm_norms[0] > 1e-2 * lstm_norms[-1]
    assert lstm_norms[0] / lstm_norms[-1] > 1e3 * norms[0] / norms[-1]


def test_forget_bias_sets_the_forget_gate_bias():
    torch.manual_seed(1)
    fast = LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5, forget_bias=2.0)
    assert torch.all(fast.lstm.bias_ih_l0[5:10] == 2.0) and torch.all(
        fast.lstm.bias_hh_l0[5:10] == 0
    )
    slow = LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5, backend="gnnkit", forget_bias=2.0)
    assert torch.all(slow.lstm.cell.bias[5:10] == 2.0)
    assert "forget_bias=2.0" in repr(slow)
    with pytest.raises(InputError, match=r"forget_bias must be a finite number .* got inf"):
        LSTMClassifier(4, 4, embed_dim=3, forget_bias=float("inf"))
    # the default is 1 (see the NOTE in LSTMClassifier); None keeps PyTorch's initialisation
    default = LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5)
    assert torch.all(default.lstm.bias_ih_l0[5:10] == 1.0)
    plain = LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5, forget_bias=None)
    forget = plain.lstm.bias_ih_l0[5:10]
    assert torch.all(forget.abs() <= 5**-0.5) and forget.unique().numel() == 5  # PyTorch's uniform
    # models without a forget gate ignore it
    assert isinstance(build_model("gru", RandomCombinations(4), forget_bias=1.0), torch.nn.Module)


@pytest.mark.parametrize("backend", ["torch", "gnnkit"])
def test_forget_bias_must_fit_the_biases_dtype(backend):
    # 1e308 is finite but overflows float32: torch failed copying it into the bias
    message = (
        r"forget_bias must be a finite number that the LSTM's torch.float32 biases hold "
        r"\(\|forget_bias\| <= 3.403e\+38\) or None, got -1e\+308"
    )
    with pytest.raises(InputError, match=message):
        LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5, backend=backend, forget_bias=-1e308)
    with pytest.raises(InputError, match="got True"):
        LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5, backend=backend, forget_bias=True)
    largest = torch.finfo(torch.float32).max  # the bound itself fits
    model = LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5, backend=backend, forget_bias=largest)
    bias = model.lstm.bias_ih_l0 if backend == "torch" else model.lstm.cell.bias
    assert torch.all(bias[5:10] == largest)
    # the bound is the biases' dtype's: float64 biases hold 1e308
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = LSTMClassifier(4, 4, embed_dim=3, hidden_dim=5, backend=backend, forget_bias=1e308)
    finally:
        torch.set_default_dtype(dtype)
    bias = model.lstm.bias_ih_l0 if backend == "torch" else model.lstm.cell.bias
    assert bias.dtype == torch.float64 and torch.all(bias[5:10] == 1e308)


def test_torch_and_hand_written_lstm_give_the_same_gradient_norms():
    torch.manual_seed(2)
    task = RandomCombinations(8)
    fast = build_model("lstm", task, hidden_dim=12)
    slow = build_model("lstm-gnnkit", task, hidden_dim=12)
    slow.embedding.load_state_dict(fast.embedding.state_dict())
    slow.head.load_state_dict(fast.head.state_dict())
    slow.lstm.copy_from_torch(fast.lstm)
    batch = task.validation_set(16)
    torch.testing.assert_close(gradient_norms(fast, batch), gradient_norms(slow, batch))
    gru = build_model("gru", task, hidden_dim=12)
    assert gradient_norms(gru, batch).shape == (7,)


def test_bad_gradient_arguments():
    task = RandomCombinations(5)
    batch = task.validation_set(4)
    with pytest.raises(InputError, match="BiLSTM has no per-time-step hidden states"):
        gradient_norms(build_model("bilstm", task, hidden_dim=4), batch)
    model = build_model("rnn", task, hidden_dim=4)
    with pytest.raises(InputError, match=r"batch must be a pair \(tokens, labels\)"):
        gradient_norms(model, batch[0])
    with pytest.raises(InputError, match="labels must be a 1-D tensor with one label per sequence"):
        gradient_norms(model, (batch[0], batch[1][:2]))
