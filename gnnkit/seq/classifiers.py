"""Sequence classifiers for the memory tasks: embedding -> recurrent encoder -> linear layer.

Every model embeds integer tokens, runs a recurrent network over the sequence and predicts the
label from the last hidden state (for :class:`BiLSTM`, both directions' last states):

.. math::
    x^{(t)} = E[\\text{token}_t], \\qquad p = W_{ph} h^{(T)} + b_p, \\qquad
    \\hat y = \\operatorname{softmax}(p)

Models: :class:`VanillaRNN` (hand-written tanh RNN), :class:`LSTMClassifier` (fast, on
:class:`torch.nn.LSTM`, or on the hand-written :class:`gnnkit.seq.LSTM` with
``backend="gnnkit"``), :class:`BiLSTM` and :class:`GRUClassifier`.

Unidirectional models also expose :meth:`SequenceClassifier.forward_states`, which returns the
hidden state of every time step as its own autograd node, for :func:`gnnkit.seq.gradient_norms`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.seq.lstm import LSTM, _check_size
from gnnkit.seq.tasks import MemoryTask
from gnnkit.utils.checks import check_range

__all__ = [
    "DEFAULT_FORGET_BIAS",
    "DEFAULT_HIDDEN_DIM",
    "MODELS",
    "BiLSTM",
    "GRUClassifier",
    "LSTMClassifier",
    "SequenceClassifier",
    "VanillaRNN",
    "build_model",
]


#: Hidden size used throughout (the reference set-up does not state one); 256 converged fastest on
#: average on T = 5 in a sweep over 64-1024 (9 seeds each, see the README).
DEFAULT_HIDDEN_DIM = 256

#: Initial forget-gate bias of the LSTM classifiers (see :class:`LSTMClassifier`).
DEFAULT_FORGET_BIAS = 1.0


class SequenceClassifier(nn.Module):
    """Shared parts: the token embedding, input checks and the prediction layer.

    Args:
        num_tokens (int): vocabulary size (rows of the embedding).
        num_classes (int): number of labels :math:`N_{out}`.
        embed_dim (int): embedding size :math:`N_{in}`.
        hidden_dim (int, optional): hidden size :math:`N_h`. (default: 256)
        head_dim (int, optional): features fed to the prediction layer; ``None`` means
            ``hidden_dim``. (default: None)

    Shapes:
        input: tokens (B, T) integers in ``0 .. num_tokens-1``.
        output: logits (B, num_classes).
    """

    #: whether :meth:`forward_states` is available
    has_states = True

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        *,
        embed_dim: int,
        hidden_dim: int = DEFAULT_HIDDEN_DIM,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.num_tokens = _check_size(num_tokens, "num_tokens")
        self.num_classes = _check_size(num_classes, "num_classes")
        self.embed_dim = _check_size(embed_dim, "embed_dim")
        self.hidden_dim = _check_size(hidden_dim, "hidden_dim")
        self.embedding = nn.Embedding(num_tokens, embed_dim)
        self.head = nn.Linear(head_dim or hidden_dim, num_classes)

    def embed(self, tokens: Tensor) -> Tensor:
        """Check the tokens and embed them, (B, T) -> (B, T, N_in)."""
        if not isinstance(tokens, Tensor) or tokens.dtype not in (torch.int64, torch.int32):
            what = tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__
            raise InputError(f"tokens must be an integer tensor (torch.long), got {what}")
        if tokens.dim() != 2 or tokens.size(1) == 0:
            raise InputError(
                f"tokens must have shape (batch, time) with time >= 1, got {tuple(tokens.shape)}"
            )
        fix = "token ids index the model's embedding (num_tokens); map them into it"
        check_range("tokens", tokens, self.num_tokens, fix, what="token id", unit="tokens")
        return self.embedding(tokens)

    def reset_parameters(self) -> None:
        """Re-initialise the embedding and the prediction layer (subclasses add their own)."""
        self.embedding.reset_parameters()
        self.head.reset_parameters()

    def forward_states(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and the hidden states :math:`h^{(1)}, \\dots, h^{(T)}`, each (B, N_h).

        Every :math:`h^{(t)}` is a separate autograd node that the next step and (for the last
        one) the prediction layer read, so ``h.retain_grad()`` gives :math:`\\partial L /
        \\partial h^{(t)}`. Same logits as :meth:`forward`, usually slower.
        """
        raise InputError(
            f"{type(self).__name__} has no per-time-step hidden states; "
            "use a unidirectional model (rnn, lstm, gru)"
        )

    def extra_repr(self) -> str:
        return (
            f"num_tokens={self.num_tokens}, num_classes={self.num_classes}, "
            f"embed_dim={self.embed_dim}, hidden_dim={self.hidden_dim}"
        )


def _step_by_step(rnn: nn.LSTM | nn.GRU, x: Tensor) -> list[Tensor]:
    """The hidden states (B, N_h) of a one-layer, batch-first ``rnn`` run over ``x`` one time
    step at a time: each step reads the recorded :math:`h^{(t)}` of the one before (and, for
    an LSTM, its cell state), so every :math:`h^{(t)}` is its own autograd node."""
    state, states = None, []
    for t in range(x.size(1)):
        _, state = rnn(x[:, t : t + 1], state)
        lstm = isinstance(state, tuple)
        states.append((state[0] if lstm else state)[0])  # (B, N_h)
        h = states[-1].unsqueeze(0)
        state = (h, state[1]) if lstm else h
    return states


class VanillaRNN(SequenceClassifier):
    """A hand-written Elman RNN with a tanh non-linearity (Elman, *Finding structure in time*,
    Cognitive Science 1990).

    .. math::
        h^{(t)} = \\tanh(W_{hx} x^{(t)} + W_{hh} h^{(t-1)} + b_h), \\qquad h^{(0)} = 0

    followed by the prediction layer on :math:`h^{(T)}`. Backpropagation multiplies
    :math:`\\operatorname{diag}(1 - h^{(t)2}) W_{hh}` once per step, so
    :math:`\\partial L / \\partial h^{(t)}` shrinks (or grows) geometrically with :math:`T - t`
    (Bengio, Simard & Frasconi, *Learning long-term dependencies with gradient descent is
    difficult*, IEEE TNN 1994).

    Args: as :class:`SequenceClassifier`.

    NOTE: initialisation as :class:`torch.nn.RNN` (uniform on :math:`\\pm 1/\\sqrt{N_h}`),
    with one bias instead of PyTorch's two.
    """

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        *,
        embed_dim: int,
        hidden_dim: int = DEFAULT_HIDDEN_DIM,
    ) -> None:
        super().__init__(num_tokens, num_classes, embed_dim=embed_dim, hidden_dim=hidden_dim)
        self.weight_x = nn.Parameter(torch.empty(hidden_dim, embed_dim))
        self.weight_h = nn.Parameter(torch.empty(hidden_dim, hidden_dim))
        self.bias = nn.Parameter(torch.empty(hidden_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        bound = 1.0 / math.sqrt(self.hidden_dim)
        for weight in (self.weight_x, self.weight_h, self.bias):
            nn.init.uniform_(weight, -bound, bound)

    def forward_states(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        x_proj = F.linear(self.embed(tokens), self.weight_x, self.bias)  # (B, T, N_h)
        h = x_proj.new_zeros(x_proj.size(0), self.hidden_dim)
        states = []
        for t in range(x_proj.size(1)):
            h = torch.tanh(x_proj[:, t] + F.linear(h, self.weight_h))  # (B, N_h)
            states.append(h)
        return self.head(h), states

    def forward(self, tokens: Tensor) -> Tensor:
        return self.forward_states(tokens)[0]


class LSTMClassifier(SequenceClassifier):
    """An LSTM classifier: embedding, one LSTM layer, linear layer.

    Long Short-Term Memory (Hochreiter & Schmidhuber, Neural Computation 1997) with the
    forget gate of Gers, Schmidhuber & Cummins (*Learning to forget*, Neural Computation 2000).

    Gate equations in :mod:`gnnkit.seq.lstm`; the prediction uses the last hidden state
    :math:`h^{(T)}` (both directions' last states, concatenated, when bidirectional).

    Args:
        num_tokens, num_classes, embed_dim, hidden_dim: as :class:`SequenceClassifier`.
        bidirectional (bool, optional): also run an LSTM from the end to the start and feed
            both final states, (B, 2 N_h), to the prediction layer. (default: False)
        backend (str, optional): ``"torch"`` runs :class:`torch.nn.LSTM` (fast);
            ``"gnnkit"`` runs the hand-written :class:`gnnkit.seq.LSTM` (same maths, every
            gate an ordinary autograd node). (default: ``"torch"``)
        forget_bias (float, optional): initial total bias :math:`b_f` of the forget gate;
            ``None`` keeps PyTorch's initialisation (uniform, so :math:`f \approx 0.5` at
            the start). It must fit the biases' dtype
            (``|forget_bias| <= 3.4e38`` in float32). (default: 1)

    NOTE: the forget-gate bias starts at 1, not at PyTorch's small random values (Gers et
    al., 2000; Jozefowicz et al., ICML 2015; Keras' ``unit_forget_bias``): the cell starts
    with a longer memory, gradients vanish more slowly (``gnnkit seq gradients``) and on
    random combinations T = 10 and 15 it converged in 17-43 % fewer batches (see the README).
    ``forget_bias=None`` gives PyTorch's initialisation; the reference set-up does not say which
    it used.

    NOTE: with ``backend="torch"`` each gate has PyTorch's two bias vectors, 4 N_h more
    parameters than :func:`gnnkit.seq.lstm_num_params` counts.
    """

    BACKENDS = ("torch", "gnnkit")

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        *,
        embed_dim: int,
        hidden_dim: int = DEFAULT_HIDDEN_DIM,
        bidirectional: bool = False,
        backend: str = "torch",
        forget_bias: float | None = DEFAULT_FORGET_BIAS,
    ) -> None:
        if backend not in self.BACKENDS:
            raise InputError(
                f"unknown LSTM backend {backend!r}; choose one of: {', '.join(self.BACKENDS)}"
            )
        directions = 2 if bidirectional else 1
        super().__init__(
            num_tokens,
            num_classes,
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            head_dim=directions * hidden_dim,
        )
        self.bidirectional = bool(bidirectional)
        self.backend = backend
        _check_forget_bias(forget_bias)
        self.forget_bias = forget_bias
        self.has_states = not self.bidirectional
        self.lstm_reverse: LSTM | None = None
        if backend == "torch":
            self.lstm = nn.LSTM(
                embed_dim, hidden_dim, batch_first=True, bidirectional=self.bidirectional
            )
        else:
            self.lstm = LSTM(embed_dim, hidden_dim)
            if self.bidirectional:
                self.lstm_reverse = LSTM(embed_dim, hidden_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lstm.reset_parameters()
        if self.lstm_reverse is not None:
            self.lstm_reverse.reset_parameters()
        if self.forget_bias is not None:
            self._set_forget_bias(self.forget_bias)

    @torch.no_grad()
    def _set_forget_bias(self, value: float) -> None:
        forget = slice(self.hidden_dim, 2 * self.hidden_dim)  # gate order i, f, g, o
        if self.backend == "torch":
            for name, bias in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    bias[forget] = value
                elif name.startswith("bias_hh"):
                    bias[forget] = 0.0
        else:
            for lstm in (self.lstm, self.lstm_reverse):
                if lstm is not None:
                    lstm.cell.bias[forget] = value

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens)  # (B, T, N_in)
        if self.backend == "torch":
            _, (h_n, _) = self.lstm(x)  # h_n: (directions, B, N_h)
            last = torch.cat(list(h_n), dim=1) if self.bidirectional else h_n[0]
        else:
            last = self.lstm.states(x)[-1][0]  # (B, N_h)
            if self.bidirectional:
                backward = self.lstm_reverse.states(x.flip(1))[-1][0]
                last = torch.cat([last, backward], dim=1)  # (B, 2 N_h)
        return self.head(last)

    def forward_states(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        if self.bidirectional:
            return super().forward_states(tokens)
        x = self.embed(tokens)
        if self.backend == "gnnkit":
            states = [h for h, _ in self.lstm.states(x)]
        else:
            states = _step_by_step(self.lstm, x)
        return self.head(states[-1]), states

    def extra_repr(self) -> str:
        extra = (
            f"{super().extra_repr()}, bidirectional={self.bidirectional}, backend={self.backend!r}"
        )
        if self.forget_bias is not None:
            extra += f", forget_bias={self.forget_bias}"
        return extra


def _check_forget_bias(value: object) -> None:
    """Raise unless ``value`` is ``None`` or a finite number the biases (torch's default
    dtype, float32 unless changed) can hold: a larger one overflows when it is copied in."""
    if value is None:
        return
    dtype = torch.get_default_dtype()
    limit = torch.finfo(dtype).max
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or abs(value) > limit
    ):
        raise InputError(
            f"forget_bias must be a finite number that the LSTM's {dtype} biases hold "
            f"(|forget_bias| <= {limit:.4g}) or None, got {value!r}"
        )


class BiLSTM(LSTMClassifier):
    """A bidirectional LSTM classifier (Schuster & Paliwal, *Bidirectional recurrent neural
    networks*, IEEE Trans. Signal Processing 1997; Graves & Schmidhuber, Neural Networks 2005).

    One LSTM reads the sequence forwards, a second one backwards; the prediction layer sees
    :math:`[\\overrightarrow{h}^{(T)}; \\overleftarrow{h}^{(1)}]`, shape (B, 2 N_h).

    Args: as :class:`LSTMClassifier`, with ``bidirectional=True`` fixed.
    """

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        *,
        embed_dim: int,
        hidden_dim: int = DEFAULT_HIDDEN_DIM,
        backend: str = "torch",
        forget_bias: float | None = DEFAULT_FORGET_BIAS,
    ) -> None:
        super().__init__(
            num_tokens,
            num_classes,
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            bidirectional=True,
            backend=backend,
            forget_bias=forget_bias,
        )


class GRUClassifier(SequenceClassifier):
    """A GRU classifier on :class:`torch.nn.GRU` (Cho et al., arXiv:1406.1078).

    .. math::
        r &= \\sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \\quad
        z = \\sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz})

        n &= \\tanh(W_{in} x + b_{in} + r \\odot (W_{hn} h + b_{hn})), \\quad
        h' = (1 - z) \\odot n + z \\odot h

    Args: as :class:`SequenceClassifier`.
    """

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        *,
        embed_dim: int,
        hidden_dim: int = DEFAULT_HIDDEN_DIM,
    ) -> None:
        super().__init__(num_tokens, num_classes, embed_dim=embed_dim, hidden_dim=hidden_dim)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.gru.reset_parameters()

    def forward(self, tokens: Tensor) -> Tensor:
        _, h_n = self.gru(self.embed(tokens))  # (1, B, N_h)
        return self.head(h_n[0])

    def forward_states(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        states = _step_by_step(self.gru, self.embed(tokens))
        return self.head(states[-1]), states


#: Model names accepted by :func:`build_model` and the CLI, with their constructors.
MODELS: dict[str, tuple[type[SequenceClassifier], dict]] = {
    "rnn": (VanillaRNN, {}),
    "lstm": (LSTMClassifier, {}),
    "lstm-gnnkit": (LSTMClassifier, {"backend": "gnnkit"}),
    "bilstm": (BiLSTM, {}),
    "gru": (GRUClassifier, {}),
}


def default_embed_dim(seq_len: int) -> int:
    """The default embedding size: 2 x sequence length (the reference set-up's rule)."""
    return 2 * seq_len


def build_model(
    name: str,
    task: MemoryTask,
    *,
    embed_dim: int | None = None,
    hidden_dim: int = DEFAULT_HIDDEN_DIM,
    forget_bias: float | None = DEFAULT_FORGET_BIAS,
) -> SequenceClassifier:
    """The classifier ``name`` sized for ``task``.

    Args:
        name (str): one of :data:`MODELS` (``rnn``, ``lstm``, ``lstm-gnnkit``, ``bilstm``,
            ``gru``).
        task (MemoryTask): gives ``num_tokens`` and ``num_classes``.
        embed_dim (int, optional): embedding size; ``None`` means the rule
            ``2 * task.seq_len``. (default: None)
        hidden_dim (int, optional): hidden size. (default: 256)
        forget_bias (float, optional): initial forget-gate bias of the LSTM models (see
            :class:`LSTMClassifier`), ``None`` for PyTorch's initialisation; the other models
            have no forget gate and ignore it. (default: 1)
    """
    if not isinstance(name, str) or name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    if not isinstance(task, MemoryTask):
        hint = f"make_task({task!r}, seq_len)" if isinstance(task, str) else "make_task(...)"
        raise InputError(f"task must be a MemoryTask such as {hint}, got {type(task).__name__}")
    cls, kwargs = MODELS[name]
    if issubclass(cls, LSTMClassifier):
        kwargs = {**kwargs, "forget_bias": forget_bias}
    if embed_dim is None:
        embed_dim = default_embed_dim(task.seq_len)
    return cls(
        task.num_tokens, task.num_classes, embed_dim=embed_dim, hidden_dim=hidden_dim, **kwargs
    )
