"""The hand-written LSTM against torch.nn.LSTM, parameter counts, and the classifiers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gnnkit.errors import InputError
from gnnkit.seq import (
    LSTM,
    MODELS,
    BiLSTM,
    GRUClassifier,
    LSTMCell,
    LSTMClassifier,
    RandomCombinations,
    VanillaRNN,
    build_model,
    lstm_num_params,
)


def _copy_lstm(ours: LSTM, theirs: nn.LSTM, suffix: str = "") -> None:
    """Copy by hand, independently of ``copy_from_torch``: one bias = the sum of PyTorch's two."""
    with torch.no_grad():
        ours.cell.weight_x.copy_(getattr(theirs, f"weight_ih_l0{suffix}"))
        ours.cell.weight_h.copy_(getattr(theirs, f"weight_hh_l0{suffix}"))
        ours.cell.bias.copy_(
            getattr(theirs, f"bias_ih_l0{suffix}") + getattr(theirs, f"bias_hh_l0{suffix}")
        )


@pytest.mark.parametrize("with_state", [False, True])
def test_hand_written_lstm_equals_torch_lstm_values_and_gradients(with_state):
    torch.manual_seed(0)
    batch, steps, n_in, n_h = 3, 6, 7, 5
    theirs = nn.LSTM(n_in, n_h, batch_first=True).double()
    ours = LSTM(n_in, n_h).double()
    _copy_lstm(ours, theirs)
    x = torch.randn(batch, steps, n_in, dtype=torch.double)
    state = None
    if with_state:
        state = (
            torch.randn(1, batch, n_h, dtype=torch.double),
            torch.randn(1, batch, n_h, dtype=torch.double),
        )
    x_ours = x.clone().requires_grad_()
    x_theirs = x.clone().requires_grad_()
    out_ours, (h_ours, c_ours) = ours(x_ours, state)
    out_theirs, (h_theirs, c_theirs) = theirs(x_theirs, state)
    torch.testing.assert_close(out_ours, out_theirs)
    torch.testing.assert_close(h_ours, h_theirs)
    torch.testing.assert_close(c_ours, c_theirs)

    # a loss that reads every output and the final cell state
    weights = torch.randn(batch, steps, n_h, dtype=torch.double)
    ((out_ours * weights).sum() + c_ours.pow(2).sum()).backward()
    ((out_theirs * weights).sum() + c_theirs.pow(2).sum()).backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad)
    torch.testing.assert_close(ours.cell.weight_x.grad, theirs.weight_ih_l0.grad)
    torch.testing.assert_close(ours.cell.weight_h.grad, theirs.weight_hh_l0.grad)
    # d/d(bias_ih) = d/d(bias_hh) = d/d(their sum)
    torch.testing.assert_close(ours.cell.bias.grad, theirs.bias_ih_l0.grad)
    torch.testing.assert_close(ours.cell.bias.grad, theirs.bias_hh_l0.grad)


def test_lstm_cell_follows_the_report_gate_equations():
    """One step written out gate by gate with separate matrices, as in the report."""
    torch.manual_seed(1)
    n_in, n_h = 4, 3
    cell = LSTMCell(n_in, n_h).double()
    x = torch.randn(2, n_in, dtype=torch.double)
    h0 = torch.randn(2, n_h, dtype=torch.double)
    c0 = torch.randn(2, n_h, dtype=torch.double)
    w_x = dict(zip("ifgo", cell.weight_x.detach().split(n_h), strict=True))
    w_h = dict(zip("ifgo", cell.weight_h.detach().split(n_h), strict=True))
    b = dict(zip("ifgo", cell.bias.detach().split(n_h), strict=True))

    def pre(k):
        return x @ w_x[k].T + h0 @ w_h[k].T + b[k]

    g = torch.tanh(pre("g"))
    i, f, o = (torch.sigmoid(pre(k)) for k in "ifo")
    c = g * i + c0 * f
    h = torch.tanh(c) * o
    h_ours, c_ours = cell(x, (h0, c0))
    torch.testing.assert_close(h_ours, h)
    torch.testing.assert_close(c_ours, c)


def test_lstm_cell_matches_torch_cell_and_passes_gradcheck():
    torch.manual_seed(2)
    theirs = nn.LSTMCell(3, 4).double()
    ours = LSTMCell(3, 4).double().copy_from_torch(theirs)
    x = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    h, c = ours(x)
    h_ref, c_ref = theirs(x)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)
    state = (torch.randn(5, 4, dtype=torch.double), torch.randn(5, 4, dtype=torch.double))
    assert torch.autograd.gradcheck(lambda x, h, c: ours(x, (h, c)), (x, *state))


def test_copy_from_torch_lstm_and_classifier_backends_agree():
    torch.manual_seed(3)
    task = RandomCombinations(6)
    fast = LSTMClassifier(task.num_tokens, task.num_classes, embed_dim=4, hidden_dim=8)
    slow = LSTMClassifier(
        task.num_tokens, task.num_classes, embed_dim=4, hidden_dim=8, backend="gnnkit"
    )
    slow.embedding.load_state_dict(fast.embedding.state_dict())
    slow.head.load_state_dict(fast.head.state_dict())
    slow.lstm.copy_from_torch(fast.lstm)
    tokens, _ = next(task.stream(10))
    torch.testing.assert_close(slow(tokens), fast(tokens))
    # forward_states gives the same logits and its last state feeds the head
    for model in (fast, slow):
        logits, states = model.forward_states(tokens)
        assert len(states) == tokens.size(1)
        torch.testing.assert_close(logits, fast(tokens))


def test_bilstm_backends_agree_with_copied_weights():
    torch.manual_seed(4)
    fast = BiLSTM(5, 5, embed_dim=3, hidden_dim=6)
    slow = BiLSTM(5, 5, embed_dim=3, hidden_dim=6, backend="gnnkit")
    slow.embedding.load_state_dict(fast.embedding.state_dict())
    slow.head.load_state_dict(fast.head.state_dict())
    _copy_lstm(slow.lstm, fast.lstm)
    _copy_lstm(slow.lstm_reverse, fast.lstm, "_reverse")
    tokens = torch.randint(0, 5, (7, 4))
    torch.testing.assert_close(slow(tokens), fast(tokens))
    assert fast.head.in_features == 12


@pytest.mark.parametrize(("n_in", "n_h", "n_out"), [(10, 20, 5), (1, 1, 1), (30, 256, 15)])
def test_lstm_num_params_counts_the_parameters(n_in, n_h, n_out):
    ours = sum(p.numel() for p in LSTM(n_in, n_h).parameters())
    ours += sum(p.numel() for p in nn.Linear(n_h, n_out).parameters())
    assert lstm_num_params(n_in, n_h, n_out) == ours
    # PyTorch keeps two bias vectors per gate: 4 N_h more
    torch_count = sum(p.numel() for p in nn.LSTM(n_in, n_h).parameters())
    torch_count += sum(p.numel() for p in nn.Linear(n_h, n_out).parameters())
    assert torch_count - lstm_num_params(n_in, n_h, n_out) == 4 * n_h


def test_lstm_num_params_by_hand():
    # 4 (10*20 + 20*20 + 20) + 20*5 + 5 = 2480 + 105
    assert lstm_num_params(10, 20, 5) == 2585
    with pytest.raises(InputError, match="n_hidden must be >= 1, got 0"):
        lstm_num_params(10, 0, 5)


def test_classifier_parameter_count_without_embedding():
    model = LSTMClassifier(7, 7, embed_dim=14, hidden_dim=32, backend="gnnkit")
    count = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embedding"))
    assert count == lstm_num_params(14, 32, 7)


def test_vanilla_rnn_follows_its_equation():
    torch.manual_seed(5)
    model = VanillaRNN(4, 3, embed_dim=2, hidden_dim=5)
    tokens = torch.tensor([[0, 3, 1], [2, 2, 0]])
    h = torch.zeros(2, 5)
    x = model.embedding(tokens)
    for t in range(3):
        h = torch.tanh(x[:, t] @ model.weight_x.T + h @ model.weight_h.T + model.bias)
    torch.testing.assert_close(model(tokens), h @ model.head.weight.T + model.head.bias)


def test_gru_forward_states_match_forward():
    torch.manual_seed(6)
    model = GRUClassifier(10, 10, embed_dim=4, hidden_dim=8)
    tokens = torch.randint(0, 10, (5, 6))
    logits, states = model.forward_states(tokens)
    torch.testing.assert_close(logits, model(tokens))
    assert len(states) == 6 and states[0].shape == (5, 8)


@pytest.mark.parametrize("name", list(MODELS))
def test_build_model_every_name(name):
    task = RandomCombinations(5)
    model = build_model(name, task, hidden_dim=16)
    assert model.embed_dim == 10  # the report's rule, 2 x seq_len
    tokens, _ = next(task.stream(3))
    assert model(tokens).shape == (3, 5)
    assert "embed_dim=10" in repr(model)
    before = [p.detach().clone() for p in model.parameters()]
    model.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_model_arguments():
    task = RandomCombinations(5)
    with pytest.raises(InputError, match="unknown model 'transformer'; choose one of: rnn"):
        build_model("transformer", task)
    with pytest.raises(InputError, match="embed_dim must be >= 1, got 0"):
        build_model("lstm", task, embed_dim=0)
    with pytest.raises(InputError, match="hidden_dim must be >= 1, got -2"):
        build_model("rnn", task, hidden_dim=-2)
    with pytest.raises(InputError, match="unknown LSTM backend 'cudnn'"):
        LSTMClassifier(5, 5, embed_dim=3, backend="cudnn")
    model = build_model("lstm", task, hidden_dim=8)
    with pytest.raises(
        InputError, match=r"tokens holds token id 7, out of range for 5 tokens \(valid: 0 \.\. 4\)"
    ):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(InputError, match=r"tokens holds token id -1, out of range for 5 tokens"):
        model(torch.tensor([[0, -1]]))
    with pytest.raises(InputError, match="tokens must be an integer tensor"):
        model(torch.zeros(2, 3))
    with pytest.raises(InputError, match=r"tokens must have shape \(batch, time\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="BiLSTM has no per-time-step hidden states"):
        build_model("bilstm", task, hidden_dim=8).forward_states(
            torch.zeros(1, 4, dtype=torch.long)
        )


def test_bad_lstm_arguments():
    with pytest.raises(InputError, match="input_size must be an integer, got float"):
        LSTMCell(2.5, 3)
    cell = LSTMCell(3, 4)
    with pytest.raises(
        InputError, match=r"LSTMCell expects x of shape \(batch, 3\) or \(3,\), got \(2, 5\)"
    ):
        cell(torch.zeros(2, 5))
    with pytest.raises(InputError, match="size mismatch"):
        cell.copy_from_torch(nn.LSTMCell(3, 5))
    with pytest.raises(InputError, match="one-layer, unidirectional"):
        LSTM(3, 4).copy_from_torch(nn.LSTM(3, 4, num_layers=2))
    lstm = LSTM(3, 4)
    with pytest.raises(
        InputError, match=r"LSTM expects x of shape \(batch, time, 3\) or unbatched \(time, 3\)"
    ):
        lstm(torch.zeros(2, 4, 3, 1))
    with pytest.raises(InputError, match=r"expects x of shape \(time, batch, 3\) .*got \(2, 4\)"):
        LSTM(3, 4, batch_first=False)(torch.zeros(2, 4))
    with pytest.raises(InputError, match="at least one time step"):
        lstm(torch.zeros(2, 0, 3))


def test_lstm_refuses_a_wrong_dtype_or_initial_state_as_torch_does():
    # each used to fail inside a matrix product ("mat1 and mat2 must have the same dtype",
    # "shapes cannot be multiplied"); torch.nn.LSTM refuses them too
    lstm, x = LSTM(3, 4), torch.randn(2, 5, 3)
    with pytest.raises(
        InputError, match=r"LSTM expects x of dtype torch\.float32 .*, got torch\.float64"
    ):
        lstm(x.double())
    with pytest.raises(
        InputError, match=r"got torch\.int64; convert x with x\.to\(torch\.float32\)$"
    ):
        lstm(x.long())
    h0, c0 = torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)
    for state, message in (
        ((torch.zeros(1, 2, 5), c0), r"h_0 of shape \(1, 2, 4\) .* got torch\.float32 \(1, 2, 5\)"),
        ((h0, torch.zeros(1, 3, 4)), r"c_0 of shape \(1, 2, 4\) .* got torch\.float32 \(1, 3, 4\)"),
        ((h0, c0.double()), r"c_0 of shape \(1, 2, 4\) .* got torch\.float64 \(1, 2, 4\)"),
        (h0, r"LSTM expects state as a pair \(h_0, c_0\), got Tensor"),
    ):
        with pytest.raises(InputError, match=message):
            lstm(x, state)
        if isinstance(state, tuple):  # the reference refuses the same states
            with pytest.raises(RuntimeError):
                nn.LSTM(3, 4, batch_first=True)(x, state)
    cell = LSTMCell(3, 4)
    with pytest.raises(InputError, match=r"LSTMCell expects h_0 of shape \(2, 4\) \(batch, hid"):
        cell(torch.randn(2, 3), (torch.zeros(2, 5), torch.zeros(2, 4)))
    with pytest.raises(InputError, match=r"LSTMCell expects x of dtype torch\.float32"):
        cell(torch.randn(2, 3).double())
    assert lstm.double()(x.double(), (h0.double(), c0.double()))[0].dtype == torch.float64


def test_lstm_runs_under_autocast_as_torch_does():
    # autocast picks the products' dtype: bfloat16 input (and states) into float32 weights
    lstm, x = LSTM(3, 4), torch.randn(2, 5, 3)
    state = (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    expected = lstm(x, state)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lstm(x.bfloat16(), state)[0]
        nn.LSTM(3, 4, batch_first=True)(x.bfloat16(), state)  # the reference takes them too
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


def test_build_model_refuses_a_task_name_for_a_task():
    with pytest.raises(InputError, match=r"task must be a MemoryTask such as make_task\('rand"):
        build_model("lstm", "randomcomb")  # used to be an AttributeError on .seq_len
    with pytest.raises(InputError, match=r"unknown model \['lstm'\]"):
        build_model(["lstm"], RandomCombinations(5))  # used to be "unhashable type"


def _pair(**options):
    """A gnnkit LSTM and a torch.nn.LSTM with the same options and copied weights, float64."""
    torch.manual_seed(5)
    theirs = nn.LSTM(3, 4, **options).double()
    ours = LSTM(3, 4, **options).double()
    with torch.no_grad():
        ours.cell.weight_x.copy_(theirs.weight_ih_l0)
        ours.cell.weight_h.copy_(theirs.weight_hh_l0)
        if ours.cell.bias is not None:
            ours.cell.bias.copy_(theirs.bias_ih_l0 + theirs.bias_hh_l0)
    return ours, theirs


@pytest.mark.parametrize(
    ("options", "shape"),
    [
        ({"batch_first": False}, (6, 2, 3)),  # (T, B, F): torch's default layout
        ({"batch_first": True, "bias": False}, (2, 6, 3)),
        ({"batch_first": True}, (6, 3)),  # unbatched (T, F)
        ({"batch_first": False}, (6, 3)),
    ],
)
@pytest.mark.parametrize("with_state", [False, True])
def test_torchs_layouts_bias_and_unbatched_input_match_torch(options, shape, with_state):
    ours, theirs = _pair(**options)
    x = torch.randn(*shape, dtype=torch.double)
    batch = () if len(shape) == 2 else (shape[1] if options.get("batch_first") is False else 2,)
    state = None
    if with_state:
        state = tuple(torch.randn(1, *batch, 4, dtype=torch.double) for _ in range(2))
    results = []
    for module in (ours, theirs):
        features = x.clone().requires_grad_()
        out, (h, c) = module(features, state)
        (out.square().sum() + c.sum()).backward()
        results.append((out, h, c, features.grad))
    for a, b in zip(*results, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)
    assert ours.bias == theirs.bias and ours.batch_first == theirs.batch_first
    ours.flatten_parameters()  # torch's call, a no-op here
    if not options.get("bias", True):
        assert "bias=False" in repr(ours) and "cell.bias" not in ours.state_dict()


def test_unbatched_cell_input_matches_torchs_cell():
    torch.manual_seed(6)
    theirs = nn.LSTMCell(3, 4).double()
    ours = LSTMCell(3, 4).double().copy_from_torch(theirs)
    x, h0, c0 = (torch.randn(n, dtype=torch.double) for n in (3, 4, 4))
    for state in (None, (h0, c0)):
        for a, b in zip(ours(x, state), theirs(x, state), strict=True):
            assert a.shape == (4,)
            torch.testing.assert_close(a, b)


def test_torchs_other_options_are_refused_or_warned_like_torch():
    with pytest.raises(InputError, match=r"supports num_layers=1 only, got 2; stack"):
        LSTM(3, 4, 2)
    with pytest.raises(InputError, match=r"supports bidirectional=False only, got True"):
        LSTM(3, 4, bidirectional=True)
    with pytest.raises(InputError, match=r"supports proj_size=0 only, got 2"):
        LSTM(3, 4, proj_size=2)
    with pytest.raises(InputError, match=r"batch_first must be True or False, got 1"):
        LSTM(3, 4, batch_first=1)
    with pytest.raises(InputError, match=r"dropout"):
        LSTM(3, 4, dropout=1.5)
    with pytest.warns(UserWarning, match=r"dropout=0.2 does nothing in a one-layer LSTM"):
        LSTM(3, 4, dropout=0.2)
    made = LSTM(3, 4, device="meta", dtype=torch.float64)
    assert made.cell.weight_x.device.type == "meta" and made.cell.bias.dtype == torch.float64


def test_inputs_that_are_not_padded_tensors_are_one_line_errors():
    lstm = LSTM(3, 4)
    packed = nn.utils.rnn.pack_padded_sequence(
        torch.randn(2, 5, 3), torch.tensor([5, 3]), batch_first=True
    )
    with pytest.raises(InputError, match=r"not a PackedSequence; pad it with .*pad_packed"):
        lstm(packed)
    with pytest.raises(InputError, match=r"LSTM expects x as a tensor of shape .*got list"):
        lstm([[1.0, 2.0, 3.0]])
    with pytest.raises(InputError, match=r"LSTMCell expects x as a tensor of shape .*got list"):
        LSTMCell(3, 4)([1.0, 2.0, 3.0])


def test_the_lstm_runs_on_the_meta_device_like_torchs():
    # Shape inference without memory: autocast knows no "meta" device, so the autocast
    # test must not ask it (torch raises "unknown device type for autocast").
    x = torch.randn(2, 5, 3, device="meta")
    out, (h, c) = LSTM(3, 4).to("meta")(x)
    ref, (h_ref, _) = nn.LSTM(3, 4, batch_first=True, device="meta")(x)
    assert out.shape == ref.shape and h.shape == h_ref.shape == c.shape
    assert out.device.type == "meta"


def test_copy_from_torch_names_what_it_cannot_copy():
    with pytest.raises(InputError, match=r"takes a torch.nn.LSTM or torch.nn.LSTMCell, got GRU"):
        LSTM(3, 4).copy_from_torch(nn.GRU(3, 4))
    with pytest.raises(InputError, match=r"without projection; this one has proj_size=2"):
        LSTM(3, 4).copy_from_torch(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(InputError, match=r"has bias=False and this cell bias=True; build this"):
        LSTM(3, 4).copy_from_torch(nn.LSTM(3, 4, bias=False))
    with pytest.warns(UserWarning, match=r"batch_first=False into one with batch_first=True"):
        LSTM(3, 4).copy_from_torch(nn.LSTM(3, 4))
    ours, theirs = LSTM(3, 4, bias=False), nn.LSTM(3, 4, bias=False, batch_first=True)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(ours.copy_from_torch(theirs)(x)[0], theirs(x)[0])
