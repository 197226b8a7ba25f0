r"""``text``: a BiLSTM sentence encoder and an MLP, reading the citation sentence only.

The encoder is a bidirectional (Schuster & Paliwal, 1997) LSTM (Hochreiter & Schmidhuber,
1997) over word embeddings, max-pooled over time:

- S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997.
- M. Schuster and K. K. Paliwal, "Bidirectional Recurrent Neural Networks", IEEE Transactions
  on Signal Processing 45(11), 1997.

Also here: the sentences' token ids, the length-bucketed batching and the mini-batch training
task (:class:`SentenceTask`) that ``text`` and ``hybrid`` (:mod:`gnnkit.citation.hybrid`) share.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.citation.base import mlp
from gnnkit.citation.corpus import Vocabulary
from gnnkit.citation.folds import FoldView
from gnnkit.citation.training import CitationTask, NeuralModel
from gnnkit.utils.checks import check_ints, check_probability
from gnnkit.utils.fields import POSITIVE_INT

__all__ = ["BiLSTMEncoder", "SentenceModel", "SentenceTask", "TextModel"]


class BiLSTMEncoder(nn.Module):
    r"""A sentence encoder: word embeddings, a bidirectional LSTM, max-pooling over time.

    .. math::
        \overrightarrow{h}_t, \overleftarrow{h}_t = \operatorname{BiLSTM}(E x_1, \dots,
        E x_T), \qquad s = \max_{t \le T} [\overrightarrow{h}_t \Vert \overleftarrow{h}_t]

    with :math:`E` the embedding matrix, :math:`x_t` the token ids and the maximum taken per
    channel over the real (non-padding) positions. The LSTM is :class:`torch.nn.LSTM`
    (Hochreiter & Schmidhuber, 1997, with a forget gate), one layer in each direction
    (Schuster & Paliwal, 1997).

    NOTE: sequences are not packed; batches group sentences of similar length (see
    :func:`_length_batches`) so padding is short, and padded positions are excluded from the
    pooling. The backward direction still reads the few padding positions of a batch's shorter
    sentences first; packing would avoid that at several times the cost on a CPU.

    Args:
        vocab_size (int): the number of token ids (id 0 is padding).
        embed_dim (int, optional): the embedding size. (default: ``64``)
        hidden (int, optional): the LSTM size per direction. (default: ``48``)
        dropout (float, optional): dropout on the embeddings. (default: ``0.3``)

    Shapes:
        - **input:** token ids (B, T), 0 for padding
        - **output:** (B, 2 * hidden)
    """

    def __init__(
        self, vocab_size: int, embed_dim: int = 64, hidden: int = 48, dropout: float = 0.3
    ) -> None:
        super().__init__()
        check_ints(vocab_size=vocab_size, embed_dim=embed_dim, hidden=hidden)
        check_probability("dropout", dropout)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.dropout = dropout
        self.out_channels = 2 * hidden
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.lstm.reset_parameters()

    def forward(self, ids: Tensor) -> Tensor:
        mask = (ids > 0).unsqueeze(-1)  # (B, T, 1)
        x = F.dropout(self.embedding(ids), self.dropout, self.training)  # (B, T, E)
        out, _ = self.lstm(x)  # (B, T, 2H)
        return out.masked_fill(~mask, -1e4).max(dim=1).values  # (B, 2H)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"


class _Sentences:
    """Token ids of every sentence (truncated), padded into batches on demand."""

    def __init__(self, tokens: Sequence[Sequence[str]], vocab: Vocabulary, max_len: int):
        self.ids = [vocab.encode(t[:max_len]) or [1] for t in tokens]
        self.lengths = np.array([len(i) for i in self.ids])

    def batch(self, index: np.ndarray) -> Tensor:
        width = int(self.lengths[index].max())
        out = torch.zeros(len(index), width, dtype=torch.long)
        for row, i in enumerate(index):
            out[row, : self.lengths[i]] = torch.as_tensor(self.ids[i])
        return out


def _length_batches(
    index: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Batches of sentences of similar length; shuffled (within length pools) when ``rng``."""
    if rng is None:
        order = index[np.argsort(lengths[index], kind="stable")]
        return [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
    shuffled = rng.permutation(index)
    pool = 50 * batch_size
    batches = []
    for start in range(0, shuffled.size, pool):
        chunk = shuffled[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, chunk.size, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


class SentenceTask(CitationTask):
    """:class:`~gnnkit.citation.training.CitationTask` in mini-batches of sentences.

    One epoch is a pass over the fitting sentences in batches of similar length (shuffled
    pools of ``50 * batch_size`` sentences, sorted by length, cut into batches, the batches
    shuffled), one Adam step per batch with the gradient norm clipped at ``clip``.

    Args:
        batch_logits (callable): ``batch_logits(index)``, the logits of one training batch.
        lengths (array): (|E|,) every sentence's length in tokens.
        batch_size (int): sentences per batch.
        rng (numpy.random.Generator): the shuffling generator.
        clip (float, optional): the gradient-norm bound. (default: ``5.0``)
        Other arguments: as in :class:`~gnnkit.citation.training.CitationTask` (``logits``
            scores the validation sentences).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        batch_logits: Callable[[np.ndarray], Tensor],
        lengths: np.ndarray,
        batch_size: int,
        rng: np.random.Generator,
        clip: float = 5.0,
        **task: Any,
    ) -> None:
        super().__init__(model, optimizer, **task)
        self.batch_logits, self.lengths, self.batch_size = batch_logits, lengths, batch_size
        self.rng, self.clip = rng, clip

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        losses = []
        for batch in _length_batches(self.fit, self.lengths, self.batch_size, self.rng):
            labels = self.labels[torch.as_tensor(batch)]
            loss = F.cross_entropy(self.batch_logits(batch), labels, weight=self.weight)
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            losses.append(loss.detach())
        return {"loss": float(torch.stack(losses).mean())}


@dataclass
class SentenceModel(NeuralModel):
    """A model that reads sentences with a :class:`BiLSTMEncoder`, in length-sorted batches.

    Subclasses build the network (:meth:`_build`) and compute a batch's logits from its token
    ids and sentence indices (:meth:`_logits`).
    """

    embed_dim: int = field(default=64, metadata=POSITIVE_INT)
    hidden: int = field(default=48, metadata=POSITIVE_INT)
    mlp_hidden: int = field(default=64, metadata=POSITIVE_INT)
    min_count: int = field(default=2, metadata=POSITIVE_INT)
    max_len: int = field(default=60, metadata=POSITIVE_INT)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.vocab_: Vocabulary | None = None

    @abstractmethod
    def _build(self, view: FoldView) -> nn.Module: ...

    @abstractmethod
    def _logits(self, ids: Tensor, index: np.ndarray) -> Tensor: ...

    def _prepare(self, view: FoldView) -> None:
        """Anything computed once per fold before training (graph features)."""

    def fit(self, view: FoldView) -> SentenceModel:
        split = self._split(view)
        self.vocab_ = Vocabulary.from_corpus(view.train_tokens, min_count=self.min_count)
        self.sentences_ = _Sentences(view.tokens, self.vocab_, self.max_len)
        self._prepare(view)
        self.module_ = self._build(view)
        self._train(
            view,
            split,
            SentenceTask,
            batch_logits=self._batch_logits,
            lengths=self.sentences_.lengths,
            batch_size=self.batch_size,
            rng=np.random.default_rng(self.seed),
        )
        return self

    def _batch_logits(self, index: np.ndarray) -> Tensor:
        return self._logits(self.sentences_.batch(index), index)

    def _all_logits(self, index: np.ndarray) -> Tensor:
        """Logits of the sentences ``index`` (in that order), in length-sorted batches."""
        out = torch.empty(index.size, 0)
        position = {i: k for k, i in enumerate(index.tolist())}
        with torch.no_grad():
            for batch in _length_batches(index, self.sentences_.lengths, 256, None):
                logits = self._batch_logits(batch)
                if out.size(1) == 0:
                    out = torch.empty(index.size, logits.size(1))
                out[[position[i] for i in batch.tolist()]] = logits
        return out


class _TextNet(nn.Module):
    def __init__(self, encoder: BiLSTMEncoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.encoder(ids))  # (B, C)


@dataclass
class TextModel(SentenceModel):
    """BiLSTM sentence encoder + MLP (:class:`BiLSTMEncoder`); sees the sentence only.

    Args:
        embed_dim, hidden (int, optional): embedding and LSTM sizes. (default: ``64``, ``48``)
        mlp_hidden (int, optional): the MLP's hidden size. (default: ``64``)
        min_count (int, optional): a token needs this many training occurrences to get an id.
            (default: ``2``)
        max_len (int, optional): sentences are cut to this many tokens. (default: ``60``)
        epochs, patience (int, optional): at most ``epochs``; stop after ``patience`` epochs
            without a better validation macro-F1. (default: ``20``, ``4``)
        lr, weight_decay, batch_size, dropout (optional): Adam's learning rate and weight
            decay, sentences per batch, dropout on embeddings and in the MLP.
            (default: ``3e-3``, ``0``, ``128``, ``0.3``)
        class_weight_power (float, optional): the loss weights are
            :meth:`FoldView.class_weights` to this power; 1 is "balanced". (default: ``1.0``)
        val_fraction (float, optional): share of the training fold held out for early
            stopping. (default: ``0.1``)
        seed (int, optional): initialisation and batching seed. (default: ``0``)
    """

    name: ClassVar[str] = "text"

    def _build(self, view: FoldView) -> nn.Module:
        encoder = BiLSTMEncoder(len(self.vocab_), self.embed_dim, self.hidden, self.dropout)
        head = mlp(encoder.out_channels, self.mlp_hidden, view.num_classes, self.dropout)
        return _TextNet(encoder, head)

    def _logits(self, ids: Tensor, index: np.ndarray) -> Tensor:
        return self.module_(ids)
