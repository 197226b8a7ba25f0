r"""``graph``: a GNN over the citation graph of papers and a classifier of citing-cited pairs.

The papers are the nodes (every paper of the corpus, in every fold: transductive), the
distinct citations the (undirected) edges. Each paper starts from a learned embedding and
features pooled from the sentences it writes and receives (:func:`paper_features`); two graph
convolutions (:class:`PaperGNN`) mix them over the graph, and an MLP classifies a sentence
from the embeddings of its two papers, :math:`[h_{source} \Vert h_{target}]`. The
convolutions are gnnkit's:

- :class:`gnnkit.nn.GCNConv`: T. N. Kipf and M. Welling, "Semi-Supervised Classification with
  Graph Convolutional Networks", ICLR 2017, arXiv 1609.02907;
- :class:`gnnkit.nn.GATConv`: P. Velickovic et al., "Graph Attention Networks", ICLR 2018,
  arXiv 1710.10903.

The paper-side inputs (:class:`PaperInputs`) and :class:`PaperGNN` are shared with the
``hybrid`` model (:mod:`gnnkit.citation.hybrid`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.decomposition import TruncatedSVD
from torch import Tensor, nn

from gnnkit.citation.base import mlp, tfidf_vectorizer
from gnnkit.citation.folds import FoldView
from gnnkit.citation.training import NeuralModel
from gnnkit.errors import InputError
from gnnkit.nn import GATConv, GCNConv
from gnnkit.utils.checks import check_choice, check_int, check_ints, check_probability
from gnnkit.utils.fields import POSITIVE_INT, one_of

__all__ = ["CONVS", "PAPER_FEATURES", "GraphModel", "PaperGNN", "PaperInputs", "paper_features"]

#: What a paper node starts from: learned embeddings and pooled sentence features, one of them.
PAPER_FEATURES = ("both", "embedding", "text")
#: The graph convolutions of :class:`PaperGNN`.
CONVS = ("gcn", "gat")


def _sentence_vectors(view: FoldView, dim: int, seed: int) -> np.ndarray:
    """(|E|, dim') float32 LSA vectors of every sentence, fitted on the training sentences."""
    vectorizer = tfidf_vectorizer(min_df=2, sublinear_tf=True)
    try:
        train_x = vectorizer.fit_transform(view.train_tokens)
    except ValueError:  # no token in two training sentences: fall back to every token
        vectorizer.set_params(min_df=1)
        train_x = vectorizer.fit_transform(view.train_tokens)
    dim = max(1, min(dim, train_x.shape[1] - 1, train_x.shape[0] - 1))
    svd = TruncatedSVD(n_components=dim, n_iter=3, random_state=seed).fit(train_x)
    return svd.transform(vectorizer.transform(view.tokens)).astype(np.float32)


def _pool_by_paper(z: np.ndarray, papers: np.ndarray, num_nodes: int) -> list[np.ndarray]:
    """The mean of the rows of ``z`` per paper (``papers[i]`` is row i's) and log(1 + count)."""
    pool = sp.csr_matrix(
        (np.ones(papers.size, dtype=np.float32), (papers, np.arange(papers.size))),
        shape=(num_nodes, papers.size),
    )  # (|V|, |E|)
    count = np.asarray(pool.sum(axis=1)).ravel()
    return [(pool @ z) / np.maximum(count, 1)[:, None], np.log1p(count)[:, None]]


def paper_features(view: FoldView, dim: int = 64, *, seed: int = 0) -> Tensor:
    r"""Node features pooled from the sentences each paper writes and receives.

    Each sentence becomes a ``dim``-dimensional vector :math:`z_e`: TF-IDF of words followed
    by a truncated SVD (latent semantic analysis), both fitted on the *training* sentences
    only (test sentences are mapped through them, so no test-only token has any effect). With
    :math:`S(v)` the sentences paper :math:`v` writes (as source) and :math:`T(v)` those it
    receives (as target), its features are

    .. math::
        x_v = \Big[\tfrac{1}{|S(v)|} \textstyle\sum_{e \in S(v)} z_e \,\Big\Vert\,
        \log(1 + |S(v)|) \,\Big\Vert\, \tfrac{1}{|T(v)|} \textstyle\sum_{e \in T(v)} z_e
        \,\Big\Vert\, \log(1 + |T(v)|)\Big]

    (a mean over no sentence is 0); each column is then standardised over the papers.

    NOTE: no label enters these features; the text of test sentences does (transductively,
    through the training vocabulary), as the document nodes of TextGCN do.

    Args:
        view (FoldView): the fold.
        dim (int, optional): the sentence vectors' size, at most the training TF-IDF's rank
            allows. (default: ``64``)
        seed (int, optional): the SVD's random state. (default: ``0``)

    Returns:
        Tensor: (|V|, 2 * dim + 2) float32.

    Raises:
        InputError: ``dim`` not an integer >= 1.
    """
    check_int("dim", dim)
    z = _sentence_vectors(view, dim, seed)  # (|E|, dim)
    num_nodes = int(view.data.num_nodes)
    src, dst = view.data.edge_index.numpy()
    x = np.concatenate([*_pool_by_paper(z, src, num_nodes), *_pool_by_paper(z, dst, num_nodes)], 1)
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    return torch.as_tensor(x, dtype=torch.float32)


class PaperGNN(nn.Module):
    r"""Two gnnkit graph convolutions over the undirected citation graph of papers.

    .. math::
        H^{(0)} = [E_{paper} \Vert X], \quad
        H^{(1)} = \operatorname{ReLU}(\operatorname{Conv}(H^{(0)})), \quad
        H = \operatorname{Conv}(\operatorname{dropout}(H^{(1)}))

    where :math:`E_{paper}` is a learned embedding per paper (transductive: every paper of the
    corpus is a node in every fold), :math:`X` the pooled sentence features
    (:func:`paper_features`) and Conv either

    - a :class:`gnnkit.nn.GCNConv` (Kipf & Welling, arXiv 1609.02907):
      :math:`\operatorname{Conv}(H) = \hat{D}^{-1/2} (A + I) \hat{D}^{-1/2} H W + b`, with
      :math:`A` the adjacency of the undirected citation graph and :math:`\hat{D}` the degree
      matrix of :math:`A + I`;
    - or a :class:`gnnkit.nn.GATConv` (Velickovic et al., arXiv 1710.10903): ``heads`` heads of
      ``hidden // heads`` channels, concatenated, each
      :math:`h_i' = \sum_{j \in N(i) \cup \{i\}} \alpha_{ij} W h_j` with
      :math:`\alpha_{ij} = \operatorname{softmax}_j \operatorname{LeakyReLU}(a^\top [W h_i
      \Vert W h_j])`.

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
        check_ints(num_nodes=num_nodes, hidden=hidden, heads=heads)
        check_choice("conv", conv, CONVS)
        if embed_dim + feature_dim <= 0:
            raise InputError("PaperGNN needs paper embeddings (embed_dim > 0) or features")
        if conv == "gat" and hidden % heads:
            raise InputError(f"hidden ({hidden}) must be divisible by heads ({heads}) for gat")
        check_probability("dropout", dropout)
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


class PaperInputs:
    """The paper-side inputs of ``graph`` and ``hybrid`` for one fold.

    Attributes:
        x (Tensor or None): (|V|, feature_dim) :func:`paper_features`, ``None`` for
            ``features="embedding"``.
        edge_index (Tensor): (2, 2|P|) the distinct citations, in both directions.
        src, dst (Tensor): (|E|,) every sentence's citing and cited paper.
        feature_dim (int): the width of ``x`` (0 without).
    """

    def __init__(self, view: FoldView, *, features: str, feature_dim: int, seed: int) -> None:
        self.x = paper_features(view, feature_dim, seed=seed) if features != "embedding" else None
        citations = view.data.citation_edge_index
        self.edge_index = torch.cat([citations, citations.flip(0)], dim=1)
        self.src, self.dst = view.data.edge_index
        self.feature_dim = 0 if self.x is None else self.x.size(1)
        self.num_nodes = int(view.data.num_nodes)
        self.features = features

    def gnn(self, *, embed_dim: int, hidden: int, conv: str, dropout: float) -> PaperGNN:
        """A :class:`PaperGNN` for these inputs (no paper embeddings with ``features="text"``)."""
        return PaperGNN(
            self.num_nodes,
            self.feature_dim,
            embed_dim=0 if self.features == "text" else embed_dim,
            hidden=hidden,
            conv=conv,
            dropout=dropout,
        )


@dataclass
class GraphModel(NeuralModel):
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
            :class:`~gnnkit.citation.TextModel`; training is full-batch, one step per epoch
            (``batch_size`` is unused). (default: ``300``, ``30``, ``5e-3``, ``5e-4``,
            ``0.5``, ``0.1``, ``0``)
    """

    name: ClassVar[str] = "graph"
    features: str = field(default="both", metadata=one_of(*PAPER_FEATURES))
    conv: str = field(default="gcn", metadata=one_of(*CONVS))
    embed_dim: int = 32
    feature_dim: int = field(default=64, metadata=POSITIVE_INT)
    gnn_hidden: int = 64
    mlp_hidden: int = 64
    epochs: int = 300
    patience: int = 30
    lr: float = 5e-3
    weight_decay: float = 5e-4
    dropout: float = 0.5

    def fit(self, view: FoldView) -> GraphModel:
        split = self._split(view)
        self.graph_ = PaperInputs(
            view, features=self.features, feature_dim=self.feature_dim, seed=self.seed
        )
        gnn = self.graph_.gnn(
            embed_dim=self.embed_dim, hidden=self.gnn_hidden, conv=self.conv, dropout=self.dropout
        )
        head = mlp(2 * gnn.out_channels, self.mlp_hidden, view.num_classes, self.dropout)
        self.module_ = nn.ModuleDict({"gnn": gnn, "head": head})
        self._train(view, split)
        return self

    def _all_logits(self, index: np.ndarray) -> Tensor:
        index = torch.as_tensor(index)
        h = self.module_["gnn"](self.graph_.x, self.graph_.edge_index)  # (N, D)
        pair = torch.cat([h[self.graph_.src[index]], h[self.graph_.dst[index]]], dim=1)  # (B, 2D)
        return self.module_["head"](pair)  # (B, C)
