"""A hand-written LSTM, gate by gate.

Long Short-Term Memory (Hochreiter & Schmidhuber, Neural Computation 1997) with the forget
gate of Gers, Schmidhuber & Cummins (*Learning to forget*, Neural Computation 2000), for an
input :math:`x^{(t)}` and the previous state
:math:`(h^{(t-1)}, c^{(t-1)})`:

.. math::
    g^{(t)} &= \\tanh(W_{gx} x^{(t)} + W_{gh} h^{(t-1)} + b_g)   \\quad\\text{input modulation}

    i^{(t)} &= \\sigma(W_{ix} x^{(t)} + W_{ih} h^{(t-1)} + b_i)  \\quad\\text{input gate}

    f^{(t)} &= \\sigma(W_{fx} x^{(t)} + W_{fh} h^{(t-1)} + b_f)  \\quad\\text{forget gate}

    o^{(t)} &= \\sigma(W_{ox} x^{(t)} + W_{oh} h^{(t-1)} + b_o)  \\quad\\text{output gate}

    c^{(t)} &= g^{(t)} \\odot i^{(t)} + c^{(t-1)} \\odot f^{(t)}

    h^{(t)} &= \\tanh(c^{(t)}) \\odot o^{(t)}

The four gates' weights are stored stacked, in PyTorch's order (i, f, g, o), so one matrix
product per step computes all of them and weights copy one-to-one from
:class:`torch.nn.LSTM`.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.utils.checks import check_flags, check_probability, describe

__all__ = ["LSTM", "LSTMCell", "lstm_num_params"]

State = tuple[Tensor, Tensor]


def lstm_num_params(n_input: int, n_hidden: int, n_output: int) -> int:
    """Parameters of a one-layer LSTM with a linear prediction layer, in closed form.

    .. math::
        N_{params} = 4 (N_{in} N_h + N_h^2 + N_h) + N_h N_{out} + N_{out}

    four gates, each with an input matrix :math:`W_{\\cdot x}` (:math:`N_h \\times N_{in}`), a
    recurrent matrix :math:`W_{\\cdot h}` (:math:`N_h \\times N_h`) and one bias
    :math:`b_\\cdot` (:math:`N_h`), plus the prediction layer :math:`W_{ph}, b_p`.

    NOTE: a count that leaves out the four recurrent matrices (:math:`4 N_h^2`), as the
    reference set-up's formula does, is wrong. This counts one bias vector per gate, as the
    equations in the module docstring and :class:`LSTMCell` do; :class:`torch.nn.LSTM` keeps two (``bias_ih`` and ``bias_hh``), so
    its count is larger by :math:`4 N_h`.

    Args:
        n_input (int): input size :math:`N_{in}` (the embedding dimension).
        n_hidden (int): hidden size :math:`N_h`.
        n_output (int): output size :math:`N_{out}` (the number of classes).
    """
    for name, value in (("n_input", n_input), ("n_hidden", n_hidden), ("n_output", n_output)):
        _check_size(value, name)
    return (
        4 * (n_input * n_hidden + n_hidden * n_hidden + n_hidden) + n_hidden * n_output + n_output
    )


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise InputError(f"{name} must be >= 1, got {value}")
    return value


def _autocasting(x: Tensor) -> bool:
    """Whether ``torch.autocast`` is on for ``x``'s device (it picks the products' dtypes);
    ``False`` on devices autocast does not know (``meta``)."""
    try:
        return torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # "unknown device type for autocast"
        return False


def _check_tensor(owner: str, x: object, shape: str) -> None:
    """``x`` must be a tensor; a ``PackedSequence`` is named, with the way to pad it."""
    if isinstance(x, nn.utils.rnn.PackedSequence):
        raise InputError(
            f"{owner} takes padded tensors, not a PackedSequence; pad it with "
            f"torch.nn.utils.rnn.pad_packed_sequence(x, batch_first=True)"
        )
    if not isinstance(x, Tensor):
        raise InputError(f"{owner} expects x as a tensor of shape {shape}, got {describe(x)}")


def _check_dtype(owner: str, x: Tensor, weight: Tensor) -> None:
    """``x`` must have the parameters' dtype (a matrix product would fail with a bare error),
    unless autocast chooses the products' dtype."""
    if x.dtype != weight.dtype and not (x.is_floating_point() and _autocasting(x)):
        model = f" or the model with .to({x.dtype})" if x.is_floating_point() else ""
        raise InputError(
            f"{owner} expects x of dtype {weight.dtype} (its parameters'), got {x.dtype}; "
            f"convert x with x.to({weight.dtype}){model}"
        )


def _autocast_casts(tensor: Tensor) -> bool:
    """Whether ``torch.autocast`` casts ``tensor`` when it is an argument of an op on its list:
    it is on for the tensor's device and the tensor is floating-point but not float64."""
    return tensor.is_floating_point() and tensor.dtype != torch.float64 and _autocasting(tensor)


def _check_state(owner: str, state: object, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """``state`` must be a pair (h, c) of tensors of ``shape`` and ``dtype`` (any dtype that
    autocast casts, under autocast), as :class:`torch.nn.LSTM` requires of its initial state
    (shape and dtype attributes only)."""
    if not isinstance(state, tuple | list) or len(state) != 2:
        raise InputError(f"{owner} expects state as a pair (h_0, c_0), got {type(state).__name__}")
    for name, tensor in zip(("h_0", "c_0"), state, strict=True):
        if (
            not isinstance(tensor, Tensor)
            or tuple(tensor.shape) != shape
            or (tensor.dtype != dtype and not _autocast_casts(tensor))
        ):
            got = describe(tensor)
            axes = "(1, batch, hidden_size)" if len(shape) == 3 else "(batch, hidden_size)"
            raise InputError(
                f"{owner} expects {name} of shape {shape} {axes} and dtype {dtype}, got {got}"
            )


def _autocast_to(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """``tensor`` as autocast passes it to an op on its lower-precision list."""
    return tensor.to(dtype) if _autocast_casts(tensor) else tensor


class LSTMCell(nn.Module):
    """One LSTM step, written out from the gate equations (see the module docstring).

    Args:
        input_size (int): :math:`N_{in}`, features of :math:`x^{(t)}`.
        hidden_size (int): :math:`N_h`, features of :math:`h^{(t)}` and :math:`c^{(t)}`.
        bias (bool, optional): learn the biases :math:`b_\\cdot`; without, they are 0.
            (default: ``True``)
        device (torch.device, optional): where the parameters are made. (default: ``None``)
        dtype (torch.dtype, optional): the parameters' dtype. (default: ``None``)

    Attributes:
        weight_x (Tensor): :math:`[W_{ix}; W_{fx}; W_{gx}; W_{ox}]`, shape (4 N_h, N_in).
        weight_h (Tensor): :math:`[W_{ih}; W_{fh}; W_{gh}; W_{oh}]`, shape (4 N_h, N_h).
        bias (Tensor or None): :math:`[b_i; b_f; b_g; b_o]`, shape (4 N_h,).

    NOTE: one bias per gate (as in the equations), where :class:`torch.nn.LSTMCell` adds
    two (``bias_ih + bias_hh``); copy their sum to reproduce it exactly. Initialisation is
    PyTorch's: every parameter uniform on :math:`\\pm 1/\\sqrt{N_h}`.

    Shapes:
        input: x (B, N_in) or unbatched (N_in,), state optional ((B, N_h), (B, N_h)) (or
        ((N_h,), (N_h,))), zeros when omitted.
        output: (h, c), each (B, N_h) (or (N_h,)).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        check_flags(bias=bias)

        def made(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape, device=device, dtype=dtype))

        self.weight_x = made(4 * hidden_size, input_size)
        self.weight_h = made(4 * hidden_size, hidden_size)
        self.bias: nn.Parameter | None = made(4 * hidden_size) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def project_input(self, x: Tensor) -> Tensor:
        """:math:`W_{\\cdot x} x + b_\\cdot` for all gates, (..., N_in) -> (..., 4 N_h).

        Has no recurrence, so :class:`LSTM` computes it for all time steps at once.
        """
        return F.linear(x, self.weight_x, self.bias)

    def step(self, x_proj: Tensor, state: State) -> State:
        """One step from the projected input ``project_input(x)`` (B, 4 N_h) and ``(h, c)``."""
        h, c = state
        gates = x_proj + F.linear(h, self.weight_h)  # (B, 4 N_h)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.tanh(g) * torch.sigmoid(i) + c * torch.sigmoid(f)
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, c

    def initial_state(self, x: Tensor) -> State:
        zeros = x.new_zeros(x.size(0), self.hidden_size)
        return zeros, zeros

    def forward(self, x: Tensor, state: State | None = None) -> State:
        _check_tensor("LSTMCell", x, f"(batch, {self.input_size})")
        if x.dim() not in (1, 2) or x.size(-1) != self.input_size:
            raise InputError(
                f"LSTMCell expects x of shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {tuple(x.shape)}"
            )
        _check_dtype("LSTMCell", x, self.weight_x)
        if x.dim() == 1:  # unbatched, as torch.nn.LSTMCell takes it
            if state is not None:
                _check_state("LSTMCell", state, (self.hidden_size,), x.dtype)
                state = (state[0].unsqueeze(0), state[1].unsqueeze(0))
            h, c = self.forward(x.unsqueeze(0), state)
            return h.squeeze(0), c.squeeze(0)
        if state is not None:
            _check_state("LSTMCell", state, (x.size(0), self.hidden_size), x.dtype)
        return self.step(self.project_input(x), state or self.initial_state(x))

    @torch.no_grad()
    def copy_from_torch(self, cell: nn.LSTM | nn.LSTMCell) -> LSTMCell:
        """Copy the weights of a one-layer :class:`torch.nn.LSTM` or :class:`torch.nn.LSTMCell`.

        The two PyTorch biases are summed into one; returns ``self``. Both must have a bias,
        or neither (``bias=False``).
        """
        if not isinstance(cell, nn.LSTM | nn.LSTMCell):
            raise InputError(
                f"copy_from_torch takes a torch.nn.LSTM or torch.nn.LSTMCell, got "
                f"{type(cell).__name__}"
            )
        suffix = "_l0" if isinstance(cell, nn.LSTM) else ""
        if isinstance(cell, nn.LSTM):
            unsupported = {
                "num_layers": cell.num_layers != 1,
                "proj_size": cell.proj_size != 0,
                "bidirectional": cell.bidirectional,
            }
            for name, refused in unsupported.items():
                if refused:
                    raise InputError(
                        f"copy_from_torch takes a one-layer, unidirectional nn.LSTM without "
                        f"projection; this one has {name}={getattr(cell, name)}"
                    )
        if (cell.input_size, cell.hidden_size) != (self.input_size, self.hidden_size):
            raise InputError(
                f"size mismatch: torch LSTM has input_size={cell.input_size}, hidden_size="
                f"{cell.hidden_size}; this cell has {self.input_size}, {self.hidden_size}"
            )
        if bool(cell.bias) != (self.bias is not None):
            raise InputError(
                f"torch's {type(cell).__name__} has bias={bool(cell.bias)} and this cell "
                f"bias={self.bias is not None}; build this one with bias={bool(cell.bias)}"
            )
        self.weight_x.copy_(getattr(cell, f"weight_ih{suffix}"))
        self.weight_h.copy_(getattr(cell, f"weight_hh{suffix}"))
        if self.bias is not None:
            self.bias.copy_(getattr(cell, f"bias_ih{suffix}") + getattr(cell, f"bias_hh{suffix}"))
        return self

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + (
            "" if self.bias is not None else ", bias=False"
        )


class LSTM(nn.Module):
    """A one-layer LSTM that loops :class:`LSTMCell` over time, batch-first by default.

    A drop-in for ``torch.nn.LSTM(input_size, hidden_size, batch_first=True)``: the same
    arguments, inputs and outputs (tested), written so every gate and hidden state is an
    ordinary autograd node. The input projections of all time steps are one matrix product
    before the loop.

    Args:
        input_size (int): :math:`N_{in}`.
        hidden_size (int): :math:`N_h`.
        num_layers (int, optional): must be 1: stack two of these (or use
            :class:`torch.nn.LSTM`) for more. (default: ``1``)
        bias (bool, optional): learn the gates' biases. (default: ``True``)
        batch_first (bool, optional): ``x`` and ``out`` are (B, T, .); ``False``: (T, B, .),
            as :class:`torch.nn.LSTM`'s default. (default: ``True``, unlike torch)
        dropout (float, optional): in [0, 1); as in :class:`torch.nn.LSTM` with one layer,
            it has no effect (it drops between layers), and a warning says so.
            (default: ``0.0``)
        bidirectional (bool, optional): must be ``False``: see
            :class:`gnnkit.seq.BiLSTM`. (default: ``False``)
        proj_size (int, optional): must be 0. (default: ``0``)
        device (torch.device, optional): where the parameters are made. (default: ``None``)
        dtype (torch.dtype, optional): the parameters' dtype. (default: ``None``)

    NOTE: under :func:`torch.autocast`, the initial state (given, or the zeros that stand for
    it) is cast to autocast's lower-precision dtype (bfloat16 on CPU by default), so the output
    and the final state have that dtype whatever the dtypes of ``x`` and ``(h_0, c_0)``.
    :class:`torch.nn.LSTM` does the same: autocast casts every floating argument of its fused
    kernel (``mkldnn_rnn_layer`` on CPU, cuDNN's on CUDA). Its CPU fallback without that kernel
    (``torch.backends.mkldnn.enabled = False``, or a bfloat16 ``x`` on a CPU without bfloat16
    instructions) instead promotes float32 states, returning float32. Outside autocast nothing
    is cast. The cell state is then rounded to the lower precision at every step, as in
    torch's fused kernels: over long sequences with a forget gate near 1, ``c`` drifts further
    from its float32 value than ``h`` does (``h`` is squashed by ``tanh``); keep the state in
    float32 by running the LSTM outside autocast where that matters. :class:`LSTMCell` casts
    nothing, as :class:`torch.nn.LSTMCell` on CPU (on CUDA, autocast runs torch's cell in
    float16 and gnnkit's in its parameters' dtype).

    Shapes:
        input: x (B, T, N_in) ((T, B, N_in) with ``batch_first=False``; unbatched (T, N_in)),
        state optional ((1, B, N_h), (1, B, N_h)) (unbatched ((1, N_h), (1, N_h))) as in
        PyTorch.
        output: (out (B, T, N_h) (as x), (h_T (1, B, N_h), c_T (1, B, N_h))).

    NOTE: no ``PackedSequence`` (pad it) and no ``flatten_parameters`` work to do (a no-op
    method is there for code that calls it).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_flags(batch_first=batch_first, bidirectional=bidirectional)
        check_probability("dropout", dropout)
        for name, value, supported in (
            ("num_layers", num_layers, 1),
            ("bidirectional", bidirectional, False),
            ("proj_size", proj_size, 0),
        ):
            if value != supported or type(value) is not type(supported):
                raise InputError(
                    f"gnnkit.seq.LSTM supports {name}={supported!r} only, got {value!r}; stack "
                    f"LSTMs, use gnnkit.seq.BiLSTM's pair of them, or torch.nn.LSTM"
                )
        if dropout > 0:  # torch.nn.LSTM's warning, for the same no-op
            warnings.warn(
                f"dropout={dropout} does nothing in a one-layer LSTM (it applies between "
                f"layers), as in torch.nn.LSTM",
                UserWarning,
                stacklevel=2,
            )
        self.cell = LSTMCell(input_size, hidden_size, bias, device, dtype)
        self.input_size = self.cell.input_size
        self.hidden_size = self.cell.hidden_size
        self.batch_first = batch_first
        self.dropout = float(dropout)
        # torch.nn.LSTM's attributes that code reads.
        self.num_layers, self.bidirectional, self.proj_size = 1, False, 0

    @property
    def bias(self) -> bool:
        """Whether the gates have learned biases (:class:`torch.nn.LSTM`'s attribute)."""
        return self.cell.bias is not None

    def reset_parameters(self) -> None:
        self.cell.reset_parameters()

    def flatten_parameters(self) -> None:
        """Nothing to do: :class:`torch.nn.LSTM`'s call compacts cuDNN's weights, which this
        module does not use."""

    def _batch_major(self, x: object) -> tuple[Tensor, bool]:
        """``x`` checked and as (B, T, N_in), and whether it was unbatched."""
        layout = "(batch, time" if self.batch_first else "(time, batch"
        _check_tensor("LSTM", x, f"{layout}, {self.input_size})")
        assert isinstance(x, Tensor)
        if x.dim() not in (2, 3) or x.size(-1) != self.input_size:
            raise InputError(
                f"LSTM expects x of shape {layout}, {self.input_size}) or unbatched "
                f"(time, {self.input_size}), got {tuple(x.shape)}"
            )
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0)
        elif not self.batch_first:
            x = x.transpose(0, 1)
        if x.size(1) == 0:
            raise InputError("LSTM needs at least one time step, got a sequence of length 0")
        _check_dtype("LSTM", x, self.cell.weight_x)
        return x, unbatched

    def states(self, x: Tensor, state: State | None = None) -> list[State]:
        """The list of ``(h_t, c_t)``, one per time step (each (B, N_h)); ``state`` is
        ``(h_0, c_0)``, each (B, N_h). ``x`` is laid out as :meth:`forward` takes it."""
        x, _ = self._batch_major(x)
        if state is not None:
            _check_state("LSTM", state, (x.size(0), self.hidden_size), x.dtype)
        return self._states(x, state)

    def _states(self, x: Tensor, state: State | None) -> list[State]:
        x_proj = self.cell.project_input(x)  # (B, T, 4 N_h)
        state = state or self.cell.initial_state(x)
        if _autocasting(x):  # as autocast casts torch.nn.LSTM's (h_0, c_0): see the class NOTE
            low = torch.get_autocast_dtype(x.device.type)
            state = (_autocast_to(state[0], low), _autocast_to(state[1], low))
        out = []
        for t in range(x.size(1)):
            state = self.cell.step(x_proj[:, t], state)
            out.append(state)
        return out

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        x, unbatched = self._batch_major(x)
        if state is not None:  # (1, B, N_h) each, as torch.nn.LSTM's (h_0, c_0)
            shape = (1, self.hidden_size) if unbatched else (1, x.size(0), self.hidden_size)
            _check_state("LSTM", state, shape, x.dtype)
            state = (state[0].view(-1, self.hidden_size), state[1].view(-1, self.hidden_size))
        states = self._states(x, state)
        out = torch.stack([h for h, _ in states], dim=1)  # (B, T, N_h)
        h_last, c_last = states[-1]
        if unbatched:  # (T, N_h), ((1, N_h), (1, N_h))
            return out.squeeze(0), (h_last, c_last)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, (h_last.unsqueeze(0), c_last.unsqueeze(0))

    def copy_from_torch(self, lstm: nn.LSTM) -> LSTM:
        """Copy the weights of a one-layer, unidirectional :class:`torch.nn.LSTM`; returns
        ``self``. A ``batch_first`` other than this module's is warned about: the weights
        are the same, but the inputs are laid out otherwise."""
        self.cell.copy_from_torch(lstm)
        if isinstance(lstm, nn.LSTM) and lstm.batch_first != self.batch_first:
            warnings.warn(
                f"copied from a torch.nn.LSTM with batch_first={lstm.batch_first} into one "
                f"with batch_first={self.batch_first}: pass x as this module's layout",
                UserWarning,
                stacklevel=2,
            )
        return self

    def extra_repr(self) -> str:
        options = "" if self.bias else ", bias=False"
        return f"{self.input_size}, {self.hidden_size}{options}, batch_first={self.batch_first}"
