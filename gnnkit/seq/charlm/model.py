"""A character-level LSTM language model (Graves, arXiv:1308.0850; Karpathy's char-rnn)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.seq.charlm.config import CharLSTMConfig
from gnnkit.seq.charlm.corpus import Vocabulary
from gnnkit.utils.checks import check_range

__all__ = ["CharLSTM", "State"]

#: The LSTM state ``(h, c)``, each ``(num_layers, B, hidden_size)``.
State = tuple[Tensor, Tensor]


class CharLSTM(nn.Module):
    r"""Next-character model: embedding, a stacked LSTM, dropout and a linear read-out.

    After Graves, *Generating Sequences With Recurrent Neural Networks* (arXiv:1308.0850),
    section 3, and Karpathy's char-rnn, on the LSTM of Hochreiter & Schmidhuber (*Long
    Short-Term Memory*, Neural Computation 1997). For characters :math:`c_1 \dots c_T`,

    .. math::
        e_t = E[c_t], \qquad
        (h^{(l)}_t, s^{(l)}_t) = \mathrm{LSTM}^{(l)}(h^{(l-1)}_t, h^{(l)}_{t-1}, s^{(l)}_{t-1}),
        \qquad p(c_{t+1} \mid c_{\le t}) = \mathrm{softmax}(W h^{(L)}_t + b)

    with :math:`h^{(0)}_t = e_t`, :math:`E \in \mathbb{R}^{V \times D}` the embedding,
    :math:`V` the vocabulary size, :math:`D` the embedding size, :math:`L` the number of layers
    and :math:`W \in \mathbb{R}^{V \times H}`. Training uses teacher forcing: the true
    :math:`c_t` is the input at every step and every step has a loss.

    Args:
        vocabulary (Vocabulary): the characters; it travels with the model into checkpoints.
        config (CharLSTMConfig, optional): the shape. (default: the ``paper`` preset's shape)

    Shapes:
        - input: ids ``(B, T)`` (``torch.long``), optional state ``(h, c)``, each
          ``(L, B, H)``.
        - output: logits ``(B, T, V)`` and the state after the last step.

    NOTE: dropout (rate ``config.dropout``) sits between the LSTM layers (``nn.LSTM``'s own
    dropout) and before the read-out, as char-rnn places it; the set-up gnnkit reproduces only
    says that a dropout layer was added.
    """

    def __init__(self, vocabulary: Vocabulary, config: CharLSTMConfig | None = None) -> None:
        super().__init__()
        if not isinstance(vocabulary, Vocabulary):
            raise InputError(
                f"vocabulary must be a gnnkit.seq.charlm.Vocabulary, got {type(vocabulary).__name__}"
            )
        config = config if config is not None else CharLSTMConfig()
        if not isinstance(config, CharLSTMConfig):
            raise InputError(f"config must be a CharLSTMConfig, got {type(config).__name__}")
        self.vocabulary = vocabulary
        self.config = config
        vocab_size = len(vocabulary)
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, vocab_size)
        self.reset_parameters()

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation of every layer."""
        self.embedding.reset_parameters()
        self.lstm.reset_parameters()
        self.head.reset_parameters()

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"vocab_size={self.vocab_size}, embedding_dim={c.embedding_dim}, "
            f"hidden_size={c.hidden_size}, num_layers={c.num_layers}, dropout={c.dropout}"
        )

    def initial_state(self, batch_size: int) -> State:
        """The zero state ``(h, c)`` for ``batch_size`` sequences."""
        weight = self.head.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        return (weight.new_zeros(shape), weight.new_zeros(shape))

    def _check_ids(self, ids: Tensor) -> None:
        if not isinstance(ids, Tensor) or ids.dtype != torch.long:
            got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
            raise InputError(f"ids must be a torch.long tensor of character ids, got {got}")
        fix = "encode the text with the vocabulary the model was built for"
        check_range("ids", ids, self.vocab_size, fix, what="character id", unit="characters")
        if ids.dim() != 2:
            raise InputError(f"ids must have shape (B, T), got {tuple(ids.shape)}")
        if ids.shape[1] == 0:
            raise InputError(
                f"CharLSTM needs at least one time step, got ids of shape {tuple(ids.shape)}; "
                "give every sequence at least one character"
            )

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits for the next character after every position, and the final state."""
        self._check_ids(ids)
        out, state = self.lstm(self.embedding(ids), state)  # (B, T, H)
        if self.training:
            out = self.dropout(out)
        return self.head(out), state  # (B, T, V)

    def step(self, ids: Tensor, state: State | None) -> tuple[Tensor, State]:
        """One character per sequence: ids ``(B,)`` -> logits ``(B, V)`` and the new state.

        The fast path of generation: no validation, no dropout (call it in eval mode).
        """
        out, state = self.lstm(self.embedding(ids[:, None]), state)  # (B, 1, H)
        return self.head(out[:, 0]), state
