r"""``hybrid``: the BiLSTM sentence encoding fused with GNN embeddings of the two papers.

The model this study tests: a citation's sentiment may be hard to read from its sentence
alone, and the graph of who cites whom may add what the text lacks. The sentence side is the
``text`` model's encoder (:class:`~gnnkit.citation.text.BiLSTMEncoder`: a bidirectional
LSTM, Hochreiter & Schmidhuber 1997, Schuster & Paliwal 1997); the graph side is the ``graph``
model's :class:`~gnnkit.citation.graph.PaperGNN` (a GCN, Kipf & Welling, arXiv 1609.02907, or
a GAT, Velickovic et al., arXiv 1710.10903); both are trained jointly, end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from gnnkit.citation.base import mlp
from gnnkit.citation.folds import FoldView
from gnnkit.citation.graph import CONVS, PAPER_FEATURES, PaperGNN, PaperInputs
from gnnkit.citation.text import BiLSTMEncoder, SentenceModel
from gnnkit.utils.fields import PROBABILITY, one_of

__all__ = ["HybridModel"]


class _HybridNet(nn.Module):
    r"""Sentence encoding :math:`s` fused with paper embeddings :math:`g = [h_s \Vert h_t]`.

    - ``concat``: :math:`\operatorname{MLP}([s \Vert g])`.
    - ``gated``: :math:`z = \sigma(W_z [s \Vert g] + b_z)`, :math:`f = z \odot \tanh(W_s s)
      + (1 - z) \odot \tanh(W_g g)`, then :math:`\operatorname{MLP}(f)`: a per-channel learned
      choice between the text and the graph view of the citation.

    Shapes:
        - **input:** ``ids`` (B, T), ``h`` (|V|, D), ``src`` and ``dst`` (B,)
        - **output:** (B, C)
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
            self.head = mlp(text_dim + graph_dim, mlp_hidden, num_classes, dropout)
        else:
            self.text_proj = nn.Linear(text_dim, fused_dim)
            self.graph_proj = nn.Linear(graph_dim, fused_dim)
            self.gate = nn.Linear(text_dim + graph_dim, fused_dim)
            self.head = mlp(fused_dim, mlp_hidden, num_classes, dropout)

    def forward(self, ids: Tensor, h: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        s = self.encoder(ids)  # (B, 2H)
        g = torch.cat([h[src], h[dst]], dim=1)  # (B, 2D)
        if self.fusion == "concat":
            return self.head(torch.cat([s, g], dim=1))
        z = torch.sigmoid(self.gate(torch.cat([s, g], dim=1)))  # (B, F)
        fused = z * torch.tanh(self.text_proj(s)) + (1 - z) * torch.tanh(self.graph_proj(g))
        return self.head(fused)  # (B, C)


@dataclass
class HybridModel(SentenceModel):
    """The BiLSTM sentence encoding fused with the GNN embeddings of both papers.

    The BiLSTM (:class:`~gnnkit.citation.text.BiLSTMEncoder`) and the GNN
    (:class:`~gnnkit.citation.graph.PaperGNN`, as in :class:`~gnnkit.citation.GraphModel`)
    are trained jointly, end to end, on the class-weighted loss. The GNN runs over the whole
    citation graph for every batch (3,069 papers: cheap).

    Args:
        fusion (str, optional): ``"concat"`` (concatenation + MLP) or ``"gated"`` (a learned
            gate between the projected text and graph views, see :class:`_HybridNet`).
            (default: ``"gated"``)
        features, conv, feature_dim, gnn_hidden: the graph side, as in
            :class:`~gnnkit.citation.GraphModel`. (default: ``"both"``, ``"gcn"``, ``64``,
            ``64``)
        paper_embed_dim (int, optional): :class:`~gnnkit.citation.GraphModel`'s
            ``embed_dim``. (default: ``32``)
        fused_dim (int, optional): the gated fusion's width. (default: ``64``)
        graph_dropout (float, optional): dropout inside the GNN. (default: ``0.5``)
        Other arguments: as in :class:`~gnnkit.citation.TextModel`.
    """

    name: ClassVar[str] = "hybrid"
    fusion: str = field(default="gated", metadata=one_of("concat", "gated"))
    features: str = field(default="both", metadata=one_of(*PAPER_FEATURES))
    conv: str = field(default="gcn", metadata=one_of(*CONVS))
    paper_embed_dim: int = 32
    feature_dim: int = 64
    gnn_hidden: int = 64
    fused_dim: int = 64
    graph_dropout: float = field(default=0.5, metadata=PROBABILITY)

    def _prepare(self, view: FoldView) -> None:
        self.graph_ = PaperInputs(
            view, features=self.features, feature_dim=self.feature_dim, seed=self.seed
        )

    def _build(self, view: FoldView) -> nn.Module:
        encoder = BiLSTMEncoder(len(self.vocab_), self.embed_dim, self.hidden, self.dropout)
        gnn = self.graph_.gnn(
            embed_dim=self.paper_embed_dim,
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
