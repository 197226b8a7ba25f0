"""The hand-written LSTM under torch.autocast: the dtypes and values torch.nn.LSTM gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gnnkit.errors import InputError
from gnnkit.seq import LSTM, LSTMCell

BF16 = {"rtol": 2e-2, "atol": 2e-2}  # a few bfloat16 roundings (2^-8 relative) per step


def _pair(batch: int, n_h: int, dtype: torch.dtype | None, lead: tuple[int, ...] = (1,)):
    if dtype is None:
        return None
    return (torch.randn(*lead, batch, n_h).to(dtype), torch.randn(*lead, batch, n_h).to(dtype))


def _models(n_in: int = 5, n_h: int = 7) -> tuple[LSTM, nn.LSTM]:
    torch.manual_seed(0)
    theirs = nn.LSTM(n_in, n_h, batch_first=True)
    return LSTM(n_in, n_h).copy_from_torch(theirs), theirs


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("state_dtype", [None, torch.float32, torch.bfloat16])
def test_lstm_under_cpu_autocast_gives_bfloat16_like_torch_lstm(x_dtype, state_dtype):
    ours, theirs = _models()
    x = torch.randn(3, 6, 5).to(x_dtype)
    state = _pair(3, 7, state_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = ours(x, state)
        # what autocast hands torch.nn.LSTM's kernel: every floating argument in bfloat16
        low = None if state is None else (state[0].bfloat16(), state[1].bfloat16())
        out_ref, (h_ref, c_ref) = theirs(x.bfloat16(), low)
    assert (out.dtype, h.dtype, c.dtype) == (torch.bfloat16,) * 3
    assert (out_ref.dtype, h_ref.dtype, c_ref.dtype) == (torch.bfloat16,) * 3
    torch.testing.assert_close(out, out_ref, **BF16)
    torch.testing.assert_close((h, c), (h_ref, c_ref), **BF16)
    # and the float64 computation, at the precision bfloat16 leaves
    full = None if state is None else (state[0].double(), state[1].double())
    out64, (h64, c64) = theirs.double()(x.double(), full)
    torch.testing.assert_close(out.double(), out64, rtol=0.05, atol=0.05)
    torch.testing.assert_close((h.double(), c.double()), (h64, c64), rtol=0.05, atol=0.05)


def test_lstm_under_cpu_autocast_matches_torch_lstms_own_autocast():
    # torch.nn.LSTM on a float32 x takes oneDNN's kernel, which autocast casts to bfloat16; a CPU
    # without bfloat16 instructions cannot build that kernel, and torch raises
    ours, theirs = _models()
    x = torch.randn(3, 6, 5)
    state = _pair(3, 7, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = ours(x, state)
        try:
            out_ref, (h_ref, c_ref) = theirs(x, state)
        except RuntimeError as exc:
            pytest.skip(f"torch.nn.LSTM does not run under bfloat16 autocast here ({exc})")
    assert (out_ref.dtype, h_ref.dtype, c_ref.dtype) == (torch.bfloat16,) * 3
    assert (out.dtype, h.dtype, c.dtype) == (torch.bfloat16,) * 3
    torch.testing.assert_close(out, out_ref, **BF16)
    torch.testing.assert_close((h, c), (h_ref, c_ref), **BF16)


@pytest.mark.parametrize("state_dtype", [None, torch.float32])
def test_lstm_outside_autocast_keeps_float32(state_dtype):
    ours, theirs = _models()
    x = torch.randn(3, 6, 5)
    state = _pair(3, 7, state_dtype)
    out, (h, c) = ours(x, state)
    out_ref, (h_ref, c_ref) = theirs(x, state)
    assert (out.dtype, h.dtype, c.dtype) == (torch.float32,) * 3
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close((h, c), (h_ref, c_ref))


def test_lstm_states_under_autocast_are_the_forward_outputs():
    ours, _ = _models()
    x = torch.randn(2, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = ours.states(x)
        out, _ = ours(x)
    assert {t.dtype for pair in states for t in pair} == {torch.bfloat16}
    torch.testing.assert_close(torch.stack([h for h, _ in states], dim=1), out, rtol=0, atol=0)


def test_lstm_under_autocast_passes_gradients_to_float32_states():
    ours, theirs = _models()
    x = torch.randn(3, 6, 5)
    h0, c0 = (t.requires_grad_() for t in _pair(3, 7, torch.float32))
    h0_ref, c0_ref = (t.detach().clone().requires_grad_() for t in (h0, c0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = ours(x, (h0, c0))
        out_ref, _ = theirs(x.bfloat16(), (h0_ref.bfloat16(), c0_ref.bfloat16()))
    out.float().sum().backward()
    out_ref.float().sum().backward()
    assert (h0.grad.dtype, c0.grad.dtype) == (torch.float32, torch.float32)
    torch.testing.assert_close((h0.grad, c0.grad), (h0_ref.grad, c0_ref.grad), rtol=0.05, atol=0.05)


def test_lstm_under_autocast_refuses_a_float64_state():
    # autocast does not cast float64, so the state would meet bfloat16 weights
    ours, theirs = _models()
    x, state = torch.randn(3, 6, 5), _pair(3, 7, torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(
            InputError, match=r"LSTM expects h_0 of shape \(1, 3, 7\) .* got torch\.float64"
        ):
            ours(x, state)
        with pytest.raises(RuntimeError):
            theirs(x, state)


def test_lstm_cell_under_cpu_autocast_casts_nothing_like_torch_lstm_cell():
    torch.manual_seed(0)
    theirs = nn.LSTMCell(5, 7)
    ours = LSTMCell(5, 7).copy_from_torch(theirs)
    x, state = torch.randn(3, 5), _pair(3, 7, torch.float32, lead=())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, c = ours(x, state)
        h_ref, c_ref = theirs(x, state)
    assert (h.dtype, c.dtype) == (h_ref.dtype, c_ref.dtype) == (torch.float32, torch.float32)
    torch.testing.assert_close((h, c), (h_ref, c_ref), **BF16)
