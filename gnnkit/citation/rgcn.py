r"""``rgcn``: a relational GCN over citation sentences linked by typed edges.

M. Schlichtkrull, T. N. Kipf, P. Bloem, R. van den Berg, I. Titov and M. Welling, "Modeling
Relational Data with Graph Convolutional Networks", ESWC 2018, arXiv 1703.06103. Every
sentence is a node; two sentences are linked by an edge of type :math:`r` when they share the
relation :math:`r` of :data:`~gnnkit.citation.siblings.RELATIONS` (same (citing, cited) pair,
same citing paper, same cited paper; :func:`~gnnkit.citation.siblings.sibling_graph`, so
copies of one sentence are never linked and there are no self-loops). One layer is

.. math::
    H' = H W_0 + \sum_{r} D_r^{-1} A_r H W_r + b, \qquad
    h'_i = W_0^\top h_i + \sum_r \frac{1}{|N_r(i)|} \sum_{j \in N_r(i)} W_r^\top h_j + b

with :math:`A_r` the (|E|, |E|) 0/1 adjacency of relation :math:`r`, :math:`D_r` its row sums
(a sentence without an :math:`r`-neighbour gets nothing from :math:`r`) and :math:`W_0` the
self weight: PyG's :class:`~torch_geometric.nn.conv.RGCNConv` with ``aggr="mean"``, computed
through each relation's incidence matrix (:class:`SiblingMean`), since the cited-paper relation
has 2.5 million edges, too many for per-edge messages.

The sentence features are TF-IDF word 1-2-grams of a vocabulary fitted on the training
sentences, projected by a learned linear map. Optionally (the default) the classifier also
reads each sentence's label-trick features: the class distribution of its siblings'
*training* labels (:func:`~gnnkit.citation.siblings.sibling_label_features`); they enter after
the graph layers, so a training sentence's own label can never reach its own prediction
through a two-hop path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from gnnkit.citation.base import NGRAM_RANGE, tfidf_vectorizer
from gnnkit.citation.folds import FoldView, text_groups
from gnnkit.citation.siblings import (
    RELATIONS,
    relation_keys,
    sibling_graph,
    sibling_label_features,
)
from gnnkit.citation.training import NeuralModel
from gnnkit.errors import InputError
from gnnkit.utils.checks import check_int, check_ints, check_probability
from gnnkit.utils.fields import POSITIVE_INT, validate_fields

__all__ = [
    "RGCNModel",
    "SentenceRGCN",
    "SiblingMean",
    "sibling_means",
    "typed_sentence_edges",
]


def _check_relations(relations: Sequence[str], *, allow_none: bool = False) -> tuple[str, ...]:
    relations = tuple(relations)
    unknown = [r for r in relations if r not in RELATIONS]
    if (not relations and not allow_none) or unknown or len(set(relations)) != len(relations):
        raise InputError(
            f"relations must be distinct names from {', '.join(RELATIONS)}, got {relations!r}"
        )
    return relations


def typed_sentence_edges(data: Data, relations: Sequence[str] = RELATIONS) -> tuple[Tensor, Tensor]:
    """The sentence graph as typed edges, in PyG's ``(edge_index, edge_type)`` form.

    Args:
        data (Data): the corpus graph (:func:`gnnkit.citation.to_data`).
        relations (sequence of str, optional): the edge types, in order: type ``k`` is
            ``relations[k]``. (default: ``("pair", "source", "target")``)

    Returns:
        (Tensor, Tensor): ``edge_index`` (2, |E_s|) int64, both directions, sorted by type then
        source then target; ``edge_type`` (|E_s|,) int64.
    """
    relations = _check_relations(relations)
    index, types = [], []
    for k, relation in enumerate(relations):
        coo = sibling_graph(data, relation).tocoo()
        order = np.lexsort((coo.col, coo.row))
        index.append(np.vstack([coo.row[order], coo.col[order]]))
        types.append(np.full(coo.nnz, k))
    return (
        torch.as_tensor(np.concatenate(index, axis=1), dtype=torch.long),
        torch.as_tensor(np.concatenate(types), dtype=torch.long),
    )


class SiblingMean:
    r""":math:`D_r^{-1} A_r` of one relation, applied without forming :math:`A_r`.

    With :math:`B` the (N, K) incidence of sentences and their relation key (the pair, the
    citing or the cited paper) and :math:`B'` that of the (key, normalised text) pairs,
    :math:`A_r = B B^\top - B' B'^\top` (same key, not a copy of oneself, not oneself: exactly
    :func:`~gnnkit.citation.siblings.sibling_graph`), so
    :math:`\hat A_r H = D_r^{-1} (B (B^\top H) - B' (B'^\top H))` costs :math:`O(N F)`
    rather than :math:`O(|E_r| F)` (the cited-paper relation has 2.5 million edges).
    ``mean @ h`` applies it to an (N, F) tensor.
    """

    def __init__(self, keys: np.ndarray, groups: np.ndarray) -> None:
        self.incidence = _incidence(keys)
        pairs = np.unique(np.stack([keys, groups], axis=1), axis=0, return_inverse=True)[1]
        self.copies = _incidence(pairs.ravel())
        degree = np.bincount(keys)[keys] - np.bincount(pairs.ravel())[pairs.ravel()]
        self.inv_degree = torch.as_tensor(
            1.0 / np.maximum(degree, 1), dtype=torch.float32
        ).unsqueeze(1)  # (N, 1)

    def __matmul__(self, h: Tensor) -> Tensor:
        b, bt = self.incidence
        c, ct = self.copies
        return self.inv_degree * (b @ (bt @ h) - c @ (ct @ h))  # (N, F)

    def to_dense(self) -> Tensor:
        """The (N, N) matrix :math:`D_r^{-1} A_r` (for tests on small graphs)."""
        return self @ torch.eye(self.inv_degree.size(0))


def _incidence(keys: np.ndarray) -> tuple[Tensor, Tensor]:
    """(N, K) 0/1 incidence of ``keys`` and its transpose, as torch sparse CSR float32."""
    n, k = keys.size, int(keys.max()) + 1 if keys.size else 0
    b = sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), keys)), shape=(n, k))

    def torch_csr(m: sp.csr_matrix) -> Tensor:
        return torch.sparse_csr_tensor(
            torch.as_tensor(m.indptr, dtype=torch.long),
            torch.as_tensor(m.indices, dtype=torch.long),
            torch.as_tensor(m.data, dtype=torch.float32),
            size=m.shape,
            check_invariants=False,
        )

    return torch_csr(b), torch_csr(b.T.tocsr())


def sibling_means(data: Data, relations: Sequence[str] = RELATIONS) -> list[SiblingMean]:
    """Per relation, the mean over a sentence's siblings (:class:`SiblingMean`)."""
    relations = _check_relations(relations)
    groups = text_groups(data.text)
    return [SiblingMean(relation_keys(data, r), groups) for r in relations]


class SentenceRGCN(nn.Module):
    r"""Sparse TF-IDF input, one linear projection, ``layers`` relational layers, a linear head.

    .. math::
        H^{(0)} = \mathrm{ReLU}(X P), \quad
        H^{(l)} = \mathrm{ReLU}\Big(H^{(l-1)} W_0^{(l)} + \sum_r \hat A_r H^{(l-1)} W_r^{(l)}
        + b^{(l)}\Big), \quad
        \text{logits} = [H^{(L)} \Vert L_{\text{sib}}]\, W_{\text{out}} + b_{\text{out}}

    with :math:`\hat A_r = D_r^{-1} A_r` (:class:`SiblingMean`), dropout after every
    activation, and :math:`L_{\text{sib}}` the optional label features.

    Args:
        in_channels (int): the TF-IDF vocabulary size :math:`V`.
        hidden (int): the width of every hidden layer.
        num_relations (int): :math:`R`; ``0`` leaves the self term alone (the text-only
            control of ``rgcn-text``).
        out_channels (int): the classes :math:`C`.
        layers (int, optional): relational layers :math:`L`. (default: ``1``)
        label_channels (int, optional): width of the label features (0: none). (default: ``0``)
        dropout (float, optional): dropout probability. (default: ``0.5``)

    Shapes:
        - **input:** ``x`` (N, V) sparse; ``adjacency`` R operators, :class:`SiblingMean` or
          sparse (N, N); ``labels`` (N, L) or ``None``
        - **output:** (N, C)
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        num_relations: int,
        out_channels: int,
        *,
        layers: int = 1,
        label_channels: int = 0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_ints(in_channels=in_channels, hidden=hidden, out_channels=out_channels, layers=layers)
        check_int("num_relations", num_relations, minimum=0)
        check_int("label_channels", label_channels, minimum=0)
        check_probability("dropout", dropout)
        self.num_relations, self.dropout = num_relations, dropout
        self.project = nn.Parameter(torch.empty(in_channels, hidden))
        self.root = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.relation = nn.ParameterList(
            nn.Parameter(torch.empty(num_relations, hidden, hidden)) for _ in range(layers)
        )
        self.head = nn.Linear(hidden + label_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.project)
        for root, weight in zip(self.root, self.relation, strict=True):
            root.reset_parameters()
            if weight.numel():  # num_relations=0: nothing to draw (and no torch warning)
                nn.init.xavier_uniform_(weight)
        self.head.reset_parameters()

    def forward(
        self, x: Tensor, adjacency: Sequence[SiblingMean | Tensor], labels: Tensor | None
    ) -> Tensor:
        if len(adjacency) != self.num_relations:
            raise InputError(
                f"expected {self.num_relations} adjacency matrices, got {len(adjacency)}"
            )
        h = F.relu(torch.sparse.mm(x, self.project))  # (N, H)
        h = F.dropout(h, self.dropout, self.training)
        for root, weight in zip(self.root, self.relation, strict=True):
            out = root(h)  # (N, H): self term and bias
            for a, w in zip(adjacency, weight, strict=True):
                out = out + a @ (h @ w)  # (N, H): mean over the r-neighbours
            h = F.dropout(F.relu(out), self.dropout, self.training)
        if labels is not None:
            h = torch.cat([h, labels], dim=1)  # (N, H + L)
        return self.head(h)  # (N, C)

    def extra_repr(self) -> str:
        return (
            f"{self.project.size(0)}, {self.project.size(1)}, num_relations="
            f"{self.num_relations}, layers={len(self.root)}, dropout={self.dropout}"
        )


@dataclass
class RGCNModel(NeuralModel):
    """A relational GCN over the sentence graph (:class:`SentenceRGCN`), trained full-batch.

    Args:
        relations (tuple of str, optional): the edge types; ``()`` drops the graph (with
            ``label_features=False``: the same network on the text alone, the control for
            what the graph adds). (default: ``("pair", "source", "target")``)
        label_features (bool, optional): give the head the siblings' training-label
            distribution per relation (:func:`~gnnkit.citation.sibling_label_features`).
            (default: ``True``)
        hidden (int, optional): hidden width. (default: ``64``)
        layers (int, optional): relational layers. (default: ``1``)
        ngram_range (tuple of int, optional): TF-IDF n-gram orders. (default: ``(1, 2)``)
        min_df (int, optional): keep n-grams seen in at least this many training sentences.
            (default: ``2``)
        epochs, patience, lr, weight_decay, dropout, val_fraction, class_weight_power, seed:
            as in :class:`~gnnkit.citation.GraphModel` (early stopping on the validation
            macro-F1). (default: ``200``, ``30``, ``1e-2``, ``5e-4``, ``0.5``, ``0.1``,
            ``1.0``, ``0``)
    """

    name: ClassVar[str] = "rgcn"
    relations: tuple[str, ...] = RELATIONS
    label_features: bool = True
    hidden: int = field(default=64, metadata=POSITIVE_INT)
    layers: int = field(default=1, metadata=POSITIVE_INT)
    ngram_range: tuple[int, int] = field(default=(1, 2), metadata=NGRAM_RANGE)
    min_df: int = field(default=2, metadata=POSITIVE_INT)
    epochs: int = 200
    patience: int = 30
    lr: float = 1e-2
    weight_decay: float = 5e-4
    dropout: float = 0.5

    def __post_init__(self) -> None:
        validate_fields(self)
        self.relations = _check_relations(self.relations, allow_none=True)
        if not self.relations and self.label_features:
            raise InputError("label_features=True needs at least one relation")
        super().__post_init__()

    def fit(self, view: FoldView) -> RGCNModel:
        split = self._split(view)
        vectorizer = tfidf_vectorizer(
            ngram_range=tuple(self.ngram_range), min_df=self.min_df, sublinear_tf=True
        )
        vectorizer.fit(view.train_tokens)
        x = vectorizer.transform(view.tokens).tocoo()  # (N, V) every sentence, training vocabulary
        self.x_ = torch.sparse_coo_tensor(
            np.vstack([x.row, x.col]),
            x.data.astype(np.float32),
            size=x.shape,
            check_invariants=False,
        ).coalesce()
        self.adjacency_ = sibling_means(view.data, self.relations) if self.relations else []
        self.labels_ = (
            torch.as_tensor(sibling_label_features(view, self.relations), dtype=torch.float32)
            if self.label_features
            else None
        )
        self.module_ = SentenceRGCN(
            x.shape[1],
            self.hidden,
            len(self.relations),
            view.num_classes,
            layers=self.layers,
            label_channels=0 if self.labels_ is None else self.labels_.size(1),
            dropout=self.dropout,
        )
        self._train(view, split)
        return self

    def _all_logits(self, index: np.ndarray) -> Tensor:
        logits = self.module_(self.x_, self.adjacency_, self.labels_)  # (N, C)
        return logits[torch.as_tensor(index)]
