"""Citation sentiment classifiers with one interface: ``fit(view)`` then ``predict(view)``.

Each model receives a :class:`~gnnkit.citation.cv.FoldView` (the graph, every sentence's tokens,
the training labels only) and returns class ids for ``view.test``:

- ``svm`` (:class:`SVMModel`): TF-IDF word 1-3-grams and a linear SVM with balanced class
  weights, the family of Athar's (2011) baseline.
- ``text`` (:class:`TextModel`): a BiLSTM sentence encoder and an MLP.
- ``graph`` (:class:`GraphModel`): a gnnkit GCN (or GAT) over the citation graph of papers,
  with learned paper embeddings and features pooled from the sentences each paper writes and
  receives; an MLP classifies each sentence from :math:`[h_{source} \\Vert h_{target}]`.
- ``hybrid`` (:class:`HybridModel`): the BiLSTM sentence encoding fused with the GNN
  embeddings of both papers, by concatenation + MLP or by a learned gate; trained end to end.
- ``textgcn`` (:class:`TextGCNModel`): TextGCN (Yao et al., AAAI 2019), a two-layer gnnkit GCN
  over a document-word graph with TF-IDF (document-word) and PMI (word-word) edges.

Every neural model uses a class-weighted cross-entropy (balanced weights from the training
labels) and stops early on the macro-F1 of a stratified validation part of the *training*
fold (:func:`~gnnkit.citation.cv.inner_split`); the test part is used only by ``predict``.
"""

from __future__ import annotations

import copy
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC
from torch import Tensor, nn

from gnnkit.citation.corpus import Vocabulary
from gnnkit.citation.cv import FoldView, inner_split
from gnnkit.errors import InputError
from gnnkit.nn import GATConv, GCNConv, sparse_dropout

__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "VARIANTS",
    "BiLSTMEncoder",
    "CitationModel",
    "GraphModel",
    "HybridModel",
    "PaperGNN",
    "SVMModel",
    "TextGCNGraph",
    "TextGCNModel",
    "TextModel",
    "make_model",
    "paper_features",
    "textgcn_graph",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------


class CitationModel(ABC):
    """A sentiment classifier for citation sentences (one fold at a time).

    Subclasses are dataclasses: their fields are the hyper-parameters, so
    ``replace(model, lr=...)`` and ``repr(model)`` show the whole configuration.
    """

    name: ClassVar[str]

    @abstractmethod
    def fit(self, view: FoldView) -> CitationModel:
        """Train on ``view.train`` (labels ``view.y_train``); returns ``self``."""

    @abstractmethod
    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        """Class ids of the sentences ``index`` (default: ``view.test``)."""

    def _check_fitted(self, attribute: str) -> None:
        if getattr(self, attribute, None) is None:
            raise InputError(f"{type(self).__name__} is not fitted; call fit(view) first")

    def _check_view(self, view: FoldView) -> None:
        if not isinstance(view, FoldView):
            raise InputError(
                f"{type(self).__name__} expects a FoldView (gnnkit.citation.fold_view), got "
                f"{type(view).__name__}"
            )
        if view.train.size == 0:
            raise InputError("the fold has no training sentences")
        present = np.unique(view.y_train)
        if present.size < 2:
            raise InputError(
                f"the training part holds a single class ({int(present[0])}); a classifier "
                "needs at least two"
            )


def _check_positive(**values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InputError(f"{name} must be a positive number, got {value!r}")


def _check_probability(**values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise InputError(f"{name} must be a number in [0, 1), got {value!r}")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _identity(tokens: Any) -> Any:
    return tokens


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    return float(
        f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0)
    )


# ---------------------------------------------------------------------------------------------
# svm
# ---------------------------------------------------------------------------------------------


@dataclass
class SVMModel(CitationModel):
    """TF-IDF word n-grams and a linear SVM with balanced class weights.

    Args:
        ngram_range (tuple of int, optional): the n-gram orders. (default: ``(1, 3)``)
        C (float, optional): the SVM's inverse regularisation strength. (default: ``0.5``)
        min_df (int, optional): keep n-grams seen in at least this many training sentences.
            (default: ``1``)
        sublinear_tf (bool, optional): :math:`1 + \\log tf` term weights. (default: ``True``)
        seed (int, optional): the solver's random state. (default: ``0``)
    """

    name: ClassVar[str] = "svm"
    ngram_range: tuple[int, int] = (1, 3)
    C: float = 0.5
    min_df: int = 1
    sublinear_tf: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(C=self.C, min_df=self.min_df)
        self.vectorizer_: TfidfVectorizer | None = None
        self.svm_: LinearSVC | None = None

    def fit(self, view: FoldView) -> SVMModel:
        self._check_view(view)
        self.vectorizer_ = TfidfVectorizer(
            tokenizer=_identity,
            preprocessor=_identity,
            token_pattern=None,
            lowercase=False,
            ngram_range=tuple(self.ngram_range),
            min_df=self.min_df,
            sublinear_tf=self.sublinear_tf,
        )
        x = self.vectorizer_.fit_transform(view.train_tokens)
        self.svm_ = LinearSVC(C=self.C, class_weight="balanced", random_state=self.seed)
        self.svm_.fit(x, view.y_train)
        return self

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("svm_")
        index = view.test if index is None else index
        x = self.vectorizer_.transform([view.tokens[i] for i in index])
        return self.svm_.predict(x).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


class BiLSTMEncoder(nn.Module):
    r"""A sentence encoder: word embeddings, a bidirectional LSTM, max-pooling over time.

    .. math::
        \overrightarrow{h}_t, \overleftarrow{h}_t = \operatorname{BiLSTM}(E x_1, \dots,
        E x_T), \qquad s = \max_{t \le T} [\overrightarrow{h}_t \Vert \overleftarrow{h}_t]

    with :math:`E` the embedding matrix, :math:`x_t` the token ids and the maximum taken per
    channel over the real (non-padding) positions.

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
        _check_positive(vocab_size=vocab_size, embed_dim=embed_dim, hidden=hidden)
        _check_probability(dropout=dropout)
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


def paper_features(view: FoldView, dim: int = 64, *, seed: int = 0) -> Tensor:
    """Node features pooled from the sentences each paper writes and receives.

    Each sentence becomes a ``dim``-dimensional vector: TF-IDF of words followed by a
    truncated SVD (latent semantic analysis), both fitted on the *training* sentences only (test sentences are mapped
    through them, so no test-only token has any effect). A paper's features are the mean
    vector of the sentences it writes (as source), the mean of those it receives (as target)
    and :math:`\\log(1 + \\text{count})` of each; columns are then standardised.

    NOTE: no label enters these features; the text of test sentences does (transductively,
    through the training vocabulary), as the document nodes of TextGCN do.

    Returns:
        Tensor: (|V|, 2 * dim + 2) float32.
    """
    tokens = view.tokens
    vectorizer = TfidfVectorizer(
        tokenizer=_identity,
        preprocessor=_identity,
        token_pattern=None,
        lowercase=False,
        min_df=2,
        sublinear_tf=True,
    )
    try:
        train_x = vectorizer.fit_transform(view.train_tokens)
    except ValueError:  # no token in two training sentences: fall back to every token
        vectorizer.set_params(min_df=1)
        train_x = vectorizer.fit_transform(view.train_tokens)
    dim = max(1, min(dim, train_x.shape[1] - 1, train_x.shape[0] - 1))
    svd = TruncatedSVD(n_components=dim, n_iter=3, random_state=seed).fit(train_x)
    z = svd.transform(vectorizer.transform(tokens)).astype(np.float32)  # (|E|, dim)
    num_nodes = int(view.data.num_nodes)
    src, dst = view.data.edge_index.numpy()
    blocks = []
    for side in (src, dst):
        pool = sp.csr_matrix(
            (np.ones(side.size, dtype=np.float32), (side, np.arange(side.size))),
            shape=(num_nodes, side.size),
        )
        count = np.asarray(pool.sum(axis=1)).ravel()
        blocks.append((pool @ z) / np.maximum(count, 1)[:, None])
        blocks.append(np.log1p(count)[:, None])
    x = np.concatenate(blocks, axis=1)
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    return torch.as_tensor(x, dtype=torch.float32)


def _undirected(edge_index: Tensor) -> Tensor:
    return torch.cat([edge_index, edge_index.flip(0)], dim=1)


class PaperGNN(nn.Module):
    r"""Two gnnkit graph convolutions over the undirected citation graph of papers.

    .. math::
        H^{(0)} = [E_{paper} \Vert X], \quad
        H^{(1)} = \operatorname{ReLU}(\operatorname{Conv}(H^{(0)})), \quad
        H = \operatorname{Conv}(\operatorname{dropout}(H^{(1)}))

    where :math:`E_{paper}` is a learned embedding per paper (transductive: every paper of the
    corpus is a node in every fold), :math:`X` the pooled sentence features
    (:func:`paper_features`) and Conv a :class:`gnnkit.nn.GCNConv` or a
    :class:`gnnkit.nn.GATConv` (``heads`` heads of ``hidden // heads`` channels, concatenated).

    Args:
        num_nodes (int): the number of papers.
        feature_dim (int): the size of :math:`X` (0 for none).
        embed_dim (int, optional): the size of :math:`E_{paper}` (0 for none). (default: ``32``)
        hidden (int, optional): the output size. (default: ``64``)
        conv (str, optional): ``"gcn"`` or ``"gat"``. (default: ``"gcn"``)
        heads (int, optional): attention heads for ``"gat"``. (default: ``4``)
        dropout (float, optional): dropout between the layers (not on the input: the GNN runs
            once per batch of sentences, and dropping from the whole |V| x F_in input each time
            cost more than the two convolutions together).
            (default: ``0.5``)

    Shapes:
        - **input:** ``x`` (|V|, feature_dim) or ``None``, ``edge_index`` (2, |P|)
        - **output:** (|V|, hidden)
    """

    def __init__(
        self,
        num_nodes: int,
        feature_dim: int,
        *,
        embed_dim: int = 32,
        hidden: int = 64,
        conv: str = "gcn",
        heads: int = 4,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_positive(num_nodes=num_nodes, hidden=hidden, heads=heads)
        _check_choice("conv", conv, ("gcn", "gat"))
        if embed_dim + feature_dim <= 0:
            raise InputError("PaperGNN needs paper embeddings (embed_dim > 0) or features")
        if conv == "gat" and hidden % heads:
            raise InputError(f"hidden ({hidden}) must be divisible by heads ({heads}) for gat")
        _check_probability(dropout=dropout)
        self.embedding = nn.Embedding(num_nodes, embed_dim) if embed_dim > 0 else None
        in_channels = embed_dim + feature_dim
        if conv == "gcn":
            self.conv1 = GCNConv(in_channels, hidden, cached=True)
            self.conv2 = GCNConv(hidden, hidden, cached=True)
        else:
            self.conv1 = GATConv(in_channels, hidden // heads, heads=heads, cached=True)
            self.conv2 = GATConv(hidden, hidden // heads, heads=heads, cached=True)
        self.dropout = dropout
        self.out_channels = hidden
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.embedding is not None:
            nn.init.normal_(self.embedding.weight, std=0.1)
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def forward(self, x: Tensor | None, edge_index: Tensor) -> Tensor:
        parts = [] if x is None else [x]
        if self.embedding is not None:
            parts.insert(0, self.embedding.weight)
        h = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (N, F_in)
        h = F.relu(self.conv1(h, edge_index))  # (N, hidden)
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, edge_index)  # (N, hidden)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"


def _mlp(in_channels: int, hidden: int, out_channels: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_channels, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_channels),
    )


@dataclass
class _History:
    best_epoch: int = 0
    best_score: float = -1.0
    best_loss: float = math.inf
    scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def _train_early_stopping(
    module: nn.Module,
    run_epoch: Callable[[int], None],
    val_logits: Callable[[], Tensor],
    y_val: Tensor,
    weight: Tensor,
    *,
    epochs: int,
    patience: int,
) -> _History:
    """Run epochs and keep the parameters of the best validation epoch.

    "Best" is the highest validation macro-F1, ties broken by the lower class-weighted
    validation loss (so a tiny validation set that reaches F1 = 1 early still lets training
    go on). Training stops ``patience`` epochs after the last improvement.
    """
    history = _History()
    best_state = copy.deepcopy(module.state_dict())
    num_classes = weight.numel()
    y_np = y_val.numpy()
    for epoch in range(1, epochs + 1):
        module.train()
        run_epoch(epoch)
        module.eval()
        with torch.no_grad():
            logits = val_logits()
            loss = float(F.cross_entropy(logits, y_val, weight=weight))
            score = _macro_f1(y_np, logits.argmax(dim=1).numpy(), num_classes)
        history.scores.append(score)
        history.losses.append(loss)
        if score > history.best_score or (score == history.best_score and loss < history.best_loss):
            history.best_score, history.best_loss, history.best_epoch = score, loss, epoch
            best_state = copy.deepcopy(module.state_dict())
        elif epoch - history.best_epoch >= patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return history


# ---------------------------------------------------------------------------------------------
# text, graph, hybrid
# ---------------------------------------------------------------------------------------------


@dataclass
class _NeuralModel(CitationModel):
    """Shared fields and the training loop of the neural models."""

    epochs: int = 20
    patience: int = 4
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    dropout: float = 0.3
    val_fraction: float = 0.1
    class_weight_power: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(
            epochs=self.epochs, patience=self.patience, lr=self.lr, batch_size=self.batch_size
        )
        _check_probability(dropout=self.dropout)
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        self.module_: nn.Module | None = None
        self.history_: _History | None = None

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose parameters were kept (after :meth:`fit`)."""
        return None if self.history_ is None else self.history_.best_epoch

    def _split(self, view: FoldView) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
        label_of = dict(zip(view.train.tolist(), view.y_train.tolist(), strict=True))
        fit, val = inner_split(view.train, view.y_train, fraction=self.val_fraction, seed=view.seed)
        return fit, val, label_of

    def _labels(self, index: np.ndarray, label_of: dict[int, int]) -> Tensor:
        return torch.tensor([label_of[i] for i in index.tolist()], dtype=torch.long)


@dataclass
class _SentenceModel(_NeuralModel):
    """A model that reads sentences with a :class:`BiLSTMEncoder`, in length-sorted batches."""

    embed_dim: int = 64
    hidden: int = 48
    mlp_hidden: int = 64
    min_count: int = 2
    max_len: int = 60

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(
            embed_dim=self.embed_dim,
            hidden=self.hidden,
            mlp_hidden=self.mlp_hidden,
            min_count=self.min_count,
            max_len=self.max_len,
        )
        self.vocab_: Vocabulary | None = None

    @abstractmethod
    def _build(self, view: FoldView) -> nn.Module: ...

    @abstractmethod
    def _logits(self, ids: Tensor, index: np.ndarray) -> Tensor: ...

    def _prepare(self, view: FoldView) -> None:
        """Anything computed once per fold before training (graph features)."""

    def fit(self, view: FoldView) -> _SentenceModel:
        self._check_view(view)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        fit, val, label_of = self._split(view)
        self.vocab_ = Vocabulary.from_corpus(view.train_tokens, min_count=self.min_count)
        self.sentences_ = _Sentences(view.tokens, self.vocab_, self.max_len)
        self._prepare(view)
        self.module_ = self._build(view)
        weight = view.class_weights(self.class_weight_power)
        optimizer = torch.optim.Adam(
            self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        y_val = self._labels(val, label_of)

        def run_epoch(epoch: int) -> None:
            for batch in _length_batches(fit, self.sentences_.lengths, self.batch_size, rng):
                logits = self._logits(self.sentences_.batch(batch), batch)
                loss = F.cross_entropy(logits, self._labels(batch, label_of), weight=weight)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.module_.parameters(), 5.0)
                optimizer.step()

        self.history_ = _train_early_stopping(
            self.module_,
            run_epoch,
            lambda: self._all_logits(val),
            y_val,
            weight,
            epochs=self.epochs,
            patience=self.patience,
        )
        return self

    def _all_logits(self, index: np.ndarray) -> Tensor:
        """Logits of the sentences ``index`` (in that order), in length-sorted batches."""
        out = torch.empty(index.size, 0)
        position = {i: k for k, i in enumerate(index.tolist())}
        with torch.no_grad():
            for batch in _length_batches(index, self.sentences_.lengths, 256, None):
                logits = self._logits(self.sentences_.batch(batch), batch)
                if out.size(1) == 0:
                    out = torch.empty(index.size, logits.size(1))
                out[[position[i] for i in batch.tolist()]] = logits
        return out

    def _predict(self, index: np.ndarray) -> np.ndarray:
        return self._all_logits(index).argmax(dim=1).numpy().astype(np.int64)

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("module_")
        self.module_.eval()
        return self._predict(view.test if index is None else np.asarray(index))


class _TextNet(nn.Module):
    def __init__(self, encoder: BiLSTMEncoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.encoder(ids))


@dataclass
class TextModel(_SentenceModel):
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
        head = _mlp(encoder.out_channels, self.mlp_hidden, view.num_classes, self.dropout)
        return _TextNet(encoder, head)

    def _logits(self, ids: Tensor, index: np.ndarray) -> Tensor:
        return self.module_(ids)


class _GraphPart:
    """The paper-side inputs shared by ``graph`` and ``hybrid``: features, graph, endpoints."""

    def __init__(self, view: FoldView, *, features: str, feature_dim: int, seed: int) -> None:
        self.x = paper_features(view, feature_dim, seed=seed) if features != "embedding" else None
        self.edge_index = _undirected(view.data.citation_edge_index)
        self.src, self.dst = view.data.edge_index
        self.feature_dim = 0 if self.x is None else self.x.size(1)


_FEATURES = ("both", "embedding", "text")


@dataclass
class GraphModel(_NeuralModel):
    """A GNN over the citation graph with an edge classifier on :math:`[h_s \\Vert h_t]`.

    Every sentence between the same two papers gets the same prediction: the model sees who
    cites whom, never the sentence itself (only pooled through :func:`paper_features`).

    Args:
        features (str, optional): paper inputs: ``"both"`` (learned embeddings and pooled
            sentence features), ``"embedding"`` (structure only) or ``"text"`` (pooled
            features only). (default: ``"both"``)
        conv (str, optional): ``"gcn"`` or ``"gat"``. (default: ``"gcn"``)
        embed_dim, feature_dim, gnn_hidden, mlp_hidden (int, optional): sizes.
            (default: ``32``, ``64``, ``64``, ``64``)
        epochs, patience, lr, weight_decay, dropout, val_fraction, seed: as in
            :class:`TextModel`; training is full-batch, one step per epoch (``batch_size``
            is unused).
    """

    name: ClassVar[str] = "graph"
    features: str = "both"
    conv: str = "gcn"
    embed_dim: int = 32
    feature_dim: int = 64
    gnn_hidden: int = 64
    mlp_hidden: int = 64
    epochs: int = 300
    patience: int = 30
    lr: float = 5e-3
    weight_decay: float = 5e-4
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("features", self.features, _FEATURES)
        _check_choice("conv", self.conv, ("gcn", "gat"))

    def fit(self, view: FoldView) -> GraphModel:
        self._check_view(view)
        torch.manual_seed(self.seed)
        fit, val, label_of = self._split(view)
        self.graph_ = _GraphPart(
            view, features=self.features, feature_dim=self.feature_dim, seed=self.seed
        )
        gnn = PaperGNN(
            int(view.data.num_nodes),
            self.graph_.feature_dim,
            embed_dim=0 if self.features == "text" else self.embed_dim,
            hidden=self.gnn_hidden,
            conv=self.conv,
            dropout=self.dropout,
        )
        head = _mlp(2 * gnn.out_channels, self.mlp_hidden, view.num_classes, self.dropout)
        self.module_ = nn.ModuleDict({"gnn": gnn, "head": head})
        optimizer = torch.optim.Adam(
            self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        weight = view.class_weights(self.class_weight_power)
        y_fit, y_val = self._labels(fit, label_of), self._labels(val, label_of)

        def run_epoch(epoch: int) -> None:
            loss = F.cross_entropy(self._logits(torch.as_tensor(fit)), y_fit, weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        self.history_ = _train_early_stopping(
            self.module_,
            run_epoch,
            lambda: self._logits(torch.as_tensor(val)),
            y_val,
            weight,
            epochs=self.epochs,
            patience=self.patience,
        )
        return self

    def _logits(self, index: Tensor) -> Tensor:
        h = self.module_["gnn"](self.graph_.x, self.graph_.edge_index)  # (N, D)
        pair = torch.cat([h[self.graph_.src[index]], h[self.graph_.dst[index]]], dim=1)
        return self.module_["head"](pair)  # (B, C)

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("module_")
        self.module_.eval()
        index = view.test if index is None else np.asarray(index)
        with torch.no_grad():
            return self._logits(torch.as_tensor(index)).argmax(1).numpy().astype(np.int64)


class _HybridNet(nn.Module):
    r"""Sentence encoding :math:`s` fused with paper embeddings :math:`g = [h_s \Vert h_t]`.

    - ``concat``: :math:`\operatorname{MLP}([s \Vert g])`.
    - ``gated``: :math:`z = \sigma(W_z [s \Vert g] + b_z)`, :math:`f = z \odot \tanh(W_s s)
      + (1 - z) \odot \tanh(W_g g)`, then :math:`\operatorname{MLP}(f)`: a per-channel learned
      choice between the text and the graph view of the citation.
    """

    def __init__(
        self,
        encoder: BiLSTMEncoder,
        gnn: PaperGNN,
        *,
        fusion: str,
        fused_dim: int,
        mlp_hidden: int,
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.encoder, self.gnn, self.fusion = encoder, gnn, fusion
        text_dim, graph_dim = encoder.out_channels, 2 * gnn.out_channels
        if fusion == "concat":
            self.head = _mlp(text_dim + graph_dim, mlp_hidden, num_classes, dropout)
        else:
            self.text_proj = nn.Linear(text_dim, fused_dim)
            self.graph_proj = nn.Linear(graph_dim, fused_dim)
            self.gate = nn.Linear(text_dim + graph_dim, fused_dim)
            self.head = _mlp(fused_dim, mlp_hidden, num_classes, dropout)

    def forward(self, ids: Tensor, h: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        s = self.encoder(ids)  # (B, 2H)
        g = torch.cat([h[src], h[dst]], dim=1)  # (B, 2D)
        if self.fusion == "concat":
            return self.head(torch.cat([s, g], dim=1))
        z = torch.sigmoid(self.gate(torch.cat([s, g], dim=1)))  # (B, F)
        fused = z * torch.tanh(self.text_proj(s)) + (1 - z) * torch.tanh(self.graph_proj(g))
        return self.head(fused)


@dataclass
class HybridModel(_SentenceModel):
    """The BiLSTM sentence encoding fused with the GNN embeddings of both papers.

    The BiLSTM (:class:`BiLSTMEncoder`) and the GNN (:class:`PaperGNN`, as in
    :class:`GraphModel`) are trained jointly, end to end, on the class-weighted loss. The GNN
    runs over the whole citation graph for every batch (3,069 papers: cheap).

    Args:
        fusion (str, optional): ``"concat"`` (concatenation + MLP) or ``"gated"`` (a learned
            gate between the projected text and graph views, see :class:`_HybridNet`).
            (default: ``"gated"``)
        features, conv, embed_dim, feature_dim, gnn_hidden: the graph side, as in
            :class:`GraphModel`. ``paper_embed_dim`` is :class:`GraphModel`'s ``embed_dim``.
        fused_dim (int, optional): the gated fusion's width. (default: ``64``)
        graph_dropout (float, optional): dropout inside the GNN. (default: ``0.5``)
        Other arguments: as in :class:`TextModel`.
    """

    name: ClassVar[str] = "hybrid"
    fusion: str = "gated"
    features: str = "both"
    conv: str = "gcn"
    paper_embed_dim: int = 32
    feature_dim: int = 64
    gnn_hidden: int = 64
    fused_dim: int = 64
    graph_dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("fusion", self.fusion, ("concat", "gated"))
        _check_choice("features", self.features, _FEATURES)
        _check_choice("conv", self.conv, ("gcn", "gat"))
        _check_probability(graph_dropout=self.graph_dropout)

    def _prepare(self, view: FoldView) -> None:
        self.graph_ = _GraphPart(
            view, features=self.features, feature_dim=self.feature_dim, seed=self.seed
        )

    def _build(self, view: FoldView) -> nn.Module:
        encoder = BiLSTMEncoder(len(self.vocab_), self.embed_dim, self.hidden, self.dropout)
        gnn = PaperGNN(
            int(view.data.num_nodes),
            self.graph_.feature_dim,
            embed_dim=0 if self.features == "text" else self.paper_embed_dim,
            hidden=self.gnn_hidden,
            conv=self.conv,
            dropout=self.graph_dropout,
        )
        return _HybridNet(
            encoder,
            gnn,
            fusion=self.fusion,
            fused_dim=self.fused_dim,
            mlp_hidden=self.mlp_hidden,
            num_classes=view.num_classes,
            dropout=self.dropout,
        )

    def _logits(self, ids: Tensor, index: np.ndarray) -> Tensor:
        h = self.module_.gnn(self.graph_.x, self.graph_.edge_index)  # (N, D)
        index = torch.as_tensor(index)
        return self.module_(ids, h, self.graph_.src[index], self.graph_.dst[index])


# ---------------------------------------------------------------------------------------------
# textgcn
# ---------------------------------------------------------------------------------------------


@dataclass
class TextGCNGraph:
    """The document-word graph of TextGCN: documents ``0..D-1``, then words ``D..D+V-1``."""

    edge_index: Tensor  # (2, |E|), both directions
    edge_weight: Tensor  # (|E|,)
    num_docs: int
    vocabulary: list[str]
    num_doc_word: int  # undirected document-word edges
    num_word_word: int  # undirected word-word edges

    @property
    def num_nodes(self) -> int:
        return self.num_docs + len(self.vocabulary)


def textgcn_graph(
    tokens: Sequence[Sequence[str]],
    train: np.ndarray,
    *,
    min_df: int = 2,
    window: int = 20,
    min_cooccurrence: int = 2,
) -> TextGCNGraph:
    r"""Build TextGCN's heterogeneous graph (Yao et al., AAAI 2019, arXiv 1809.05679).

    Nodes are all documents (training and test) and the words of the *training* documents.
    Edge weights (Yao's eq. 1):

    .. math::
        A_{dw} = \operatorname{tf}(d, w) \cdot \operatorname{idf}(w), \qquad
        A_{ww'} = \operatorname{PMI}(w, w') = \log \frac{p(w, w')}{p(w)\, p(w')}
        \ \text{(kept when positive)}

    with :math:`p(w) = \#W(w) / \#W` and :math:`p(w, w') = \#W(w, w') / \#W` counted over
    sliding windows of ``window`` tokens (a shorter document is one window).

    NOTE: departures from the paper, to keep test folds out of everything fitted: the
    vocabulary, the IDF and the PMI statistics come from the training documents only (Yao
    counts all documents); test documents are linked to training-vocabulary words by their
    TF-IDF. The IDF is scikit-learn's smoothed :math:`\log\frac{1 + n}{1 + df} + 1`, and
    word pairs seen together in fewer than ``min_cooccurrence`` windows get no edge (a bound on
    the graph's size). Self-loops (Yao's :math:`A_{ii} = 1`) are added by the GCN layer.

    Args:
        tokens (sequence of token lists): every document.
        train (array): indices of the training documents.
        min_df (int, optional): a word needs this many training documents. (default: ``2``)
        window (int, optional): the sliding window size. (default: ``20``)
        min_cooccurrence (int, optional): see the note. (default: ``2``)

    Returns:
        TextGCNGraph: ``edge_index`` and ``edge_weight`` hold each edge in both directions.
    """
    _check_positive(min_df=min_df, window=window, min_cooccurrence=min_cooccurrence)
    train = np.asarray(train)
    if train.size == 0:
        raise InputError("textgcn_graph needs at least one training document")
    vectorizer = TfidfVectorizer(
        tokenizer=_identity,
        preprocessor=_identity,
        token_pattern=None,
        lowercase=False,
        min_df=min_df,
        norm=None,
    )
    try:
        vectorizer.fit([tokens[i] for i in train])
    except ValueError:
        raise InputError(
            f"no word occurs in {min_df} or more training documents; lower min_df"
        ) from None
    tfidf = vectorizer.transform(tokens).tocoo()  # (D, V)
    vocab = vectorizer.get_feature_names_out().tolist()
    num_docs, num_words = tfidf.shape

    # Sliding windows over the training documents: a (windows x words) 0/1 matrix.
    word_id = vectorizer.vocabulary_
    rows, cols, n_windows = [], [], 0
    for i in train:
        ids = [word_id[t] for t in tokens[i] if t in word_id]
        if not ids:
            continue
        starts = range(max(1, len(ids) - window + 1))
        for start in starts:
            members = set(ids[start : start + window])
            rows.extend([n_windows] * len(members))
            cols.extend(members)
            n_windows += 1
    windows = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(max(n_windows, 1), num_words)
    )
    co = (windows.T @ windows).tocoo()  # (V, V) windows containing both
    single = np.asarray(windows.sum(axis=0)).ravel()  # windows containing each word
    keep = (co.row < co.col) & (co.data >= min_cooccurrence)
    r, c, n = co.row[keep], co.col[keep], co.data[keep]
    pmi = np.log(n * max(n_windows, 1) / (single[r] * single[c]))
    positive = pmi > 0
    r, c, pmi = r[positive], c[positive], pmi[positive]

    doc_rows, word_cols, tfidf_w = tfidf.row, tfidf.col + num_docs, tfidf.data
    nonzero = tfidf_w > 0
    doc_rows, word_cols, tfidf_w = doc_rows[nonzero], word_cols[nonzero], tfidf_w[nonzero]
    src = np.concatenate([doc_rows, r + num_docs])
    dst = np.concatenate([word_cols, c + num_docs])
    weight = np.concatenate([tfidf_w, pmi])
    edge_index = torch.as_tensor(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]))
    return TextGCNGraph(
        edge_index=edge_index.long(),
        edge_weight=torch.as_tensor(np.concatenate([weight, weight]), dtype=torch.float32),
        num_docs=num_docs,
        vocabulary=vocab,
        num_doc_word=int(doc_rows.size),
        num_word_word=int(r.size),
    )


class _TextGCNNet(nn.Module):
    def __init__(self, num_nodes: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = GCNConv(num_nodes, hidden, cached=True)
        self.conv2 = GCNConv(hidden, num_classes, cached=True)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        x = sparse_dropout(x, self.dropout, self.training)
        h = F.relu(self.conv1(x, edge_index, edge_weight))  # (N, hidden)
        h = F.dropout(h, self.dropout, self.training)
        return self.conv2(h, edge_index, edge_weight)  # (N, C)


@dataclass
class TextGCNModel(_NeuralModel):
    r"""TextGCN (Yao et al., AAAI 2019): a two-layer GCN over the document-word graph.

    .. math::
        Z = \operatorname{softmax}\big(\hat{A}\, \operatorname{ReLU}(\hat{A} X W_0)\, W_1\big)

    with :math:`\hat{A}` the symmetrically normalised adjacency (self-loops of weight 1) of
    :func:`textgcn_graph`, :math:`X = I` one-hot node features (a sparse identity, so
    :math:`X W_0 = W_0`) and two gnnkit :class:`~gnnkit.nn.GCNConv` layers. Training is
    transductive and full-batch: all documents are nodes, only training documents' labels
    enter the loss.

    NOTE: the paper uses 200 hidden units, learning rate 0.02, dropout 0.5, up to 200 epochs
    and stops when the validation loss has not improved for 10 epochs. Here the first layer is
    smaller (128), training runs at most 100 epochs, the loss is class-weighted and early
    stopping follows the validation macro-F1 (patience 10), like the other models. See
    :func:`textgcn_graph` for the graph's departures.

    Args:
        hidden (int, optional): the first layer's width. (default: ``128``)
        min_df, window, min_cooccurrence: see :func:`textgcn_graph`.
        epochs, patience, lr, weight_decay, dropout, val_fraction, seed: as in
            :class:`GraphModel`.
    """

    name: ClassVar[str] = "textgcn"
    hidden: int = 128
    min_df: int = 2
    window: int = 20
    min_cooccurrence: int = 2
    epochs: int = 100
    patience: int = 10
    lr: float = 0.02
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(hidden=self.hidden)

    def fit(self, view: FoldView) -> TextGCNModel:
        self._check_view(view)
        torch.manual_seed(self.seed)
        fit, val, label_of = self._split(view)
        self.graph_ = textgcn_graph(
            view.tokens,
            view.train,
            min_df=self.min_df,
            window=self.window,
            min_cooccurrence=self.min_cooccurrence,
        )
        n = self.graph_.num_nodes
        eye = torch.arange(n)
        self.x_ = torch.sparse_coo_tensor(
            torch.stack([eye, eye]),
            torch.ones(n),
            (n, n),
            is_coalesced=True,
            check_invariants=False,
        )
        self.module_ = _TextGCNNet(n, self.hidden, view.num_classes, self.dropout)
        optimizer = torch.optim.Adam(
            self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        weight = view.class_weights(self.class_weight_power)
        fit_t, y_fit = torch.as_tensor(fit), self._labels(fit, label_of)
        y_val, val_t = self._labels(val, label_of), torch.as_tensor(val)

        def run_epoch(epoch: int) -> None:
            out = self._forward()
            loss = F.cross_entropy(out[fit_t], y_fit, weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        self.history_ = _train_early_stopping(
            self.module_,
            run_epoch,
            lambda: self._forward()[val_t],
            y_val,
            weight,
            epochs=self.epochs,
            patience=self.patience,
        )
        return self

    def _forward(self) -> Tensor:
        return self.module_(self.x_, self.graph_.edge_index, self.graph_.edge_weight)

    def predict(self, view: FoldView, index: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted("module_")
        self.module_.eval()
        index = view.test if index is None else np.asarray(index)
        with torch.no_grad():
            logits = self._forward()[torch.as_tensor(index)]
        return logits.argmax(1).numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

#: The five models of the benchmark, by name.
MODELS: dict[str, type[CitationModel]] = {
    "svm": SVMModel,
    "text": TextModel,
    "graph": GraphModel,
    "hybrid": HybridModel,
    "textgcn": TextGCNModel,
}
#: Named variants for ablations: name -> (base model, overrides).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "hybrid-concat": ("hybrid", {"fusion": "concat"}),
    "hybrid-gated": ("hybrid", {"fusion": "gated"}),
    "hybrid-gat": ("hybrid", {"conv": "gat"}),
    "hybrid-structure": ("hybrid", {"features": "embedding"}),
    "graph-gat": ("graph", {"conv": "gat"}),
    "graph-structure": ("graph", {"features": "embedding"}),
    "graph-text": ("graph", {"features": "text"}),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS) + tuple(VARIANTS)


def make_model(name: str, *, seed: int = 0, **overrides: Any) -> CitationModel:
    """A fresh model by name (:data:`MODELS` or a :data:`VARIANTS` ablation), with overrides.

    Raises:
        InputError: an unknown name or hyper-parameter.
    """
    if name in VARIANTS:
        base, preset = VARIANTS[name]
        overrides = {**preset, **overrides}
    elif name in MODELS:
        base = name
    else:
        raise InputError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    cls = MODELS[base]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(
            f"model {name!r} has no hyper-parameter {', '.join(unknown)}; "
            f"it has {', '.join(sorted(known))}"
        )
    return cls(seed=seed, **overrides)
