"""Link prediction on a featureless graph: learned node embeddings, a GNN, a Hadamard MLP.

The set-up of OGB's ``examples/linkproppred/ddi/gnn.py`` (ogbl-ddi, drug-drug interactions),
built from gnnkit's layers:

.. math::
    H = \\operatorname{GNN}(E, \\mathcal{G}), \\qquad
    s(u, v) = \\operatorname{MLP}(h_u \\odot h_v), \\qquad
    p(u, v) = \\sigma\\big(s(u, v)\\big)

where :math:`E \\in \\mathbb{R}^{|V| \\times d}` is a learned embedding table (the graph has no
node features), the GNN is two :class:`~gnnkit.nn.GCNConv` (or :class:`~gnnkit.nn.GATConv`)
layers with ReLU and dropout between them, :math:`\\odot` is the element-wise (Hadamard)
product and the MLP is Linear - ReLU - dropout - Linear. Training minimises
:math:`-\\log p(u, v)` over observed edges plus :math:`-\\log(1 - p(u', v'))` over sampled
non-edges (:mod:`gnnkit.train.link`).

- :class:`EmbeddingGNN`: the embedding table and the GNN (the encoder).
- :class:`HadamardMLP`: the predictor; its first layer gathers, multiplies and projects the
  pairs in one fused autograd step (:func:`gnnkit.ops.hadamard.hadamard_mlp`).
- :class:`LinkGNN`: both, with the loss and the interface :func:`gnnkit.train.link.fit_link`
  trains.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.models._common import check_same_width_convs, same_width_convs
from gnnkit.nn.functional import check_dropout, dropout
from gnnkit.ops.hadamard import Workspace, check_pair_shape, hadamard_mlp
from gnnkit.utils.checks import check_int, check_ints, check_range

__all__ = ["EmbeddingGNN", "HadamardMLP", "LinkGNN"]


class HadamardMLP(nn.Module):
    r"""Scores node pairs with an MLP on the Hadamard product of their embeddings.

    .. math::
        s(u, v) = W_L \, \phi\big( \cdots \phi( W_1 (h_u \odot h_v) + b_1 ) \cdots \big) + b_L,
        \qquad \phi = \operatorname{dropout} \circ \operatorname{ReLU}

    OGB's ``LinkPredictor`` (``examples/linkproppred/ddi/gnn.py``) with ``num_layers`` linear
    layers. The first layer (gather both endpoints, multiply, project, ReLU, dropout), and the
    last one too when there are two (OGB's set-up), is one autograd node with a hand-written
    backward that accumulates onto the |V| node rows with ``index_add_``.

    NOTE: on CPU the model keeps its large per-pair tensors (five of B x C floats: 670 MB for
    ogbl-ddi's 131,072 pairs of 256 channels) between training steps and reuses them
    (``reuse_buffers=True``): fresh tensors of that size come from the kernel page by page,
    which cost more than the arithmetic (a ddi step: 1.57 s -> about 1.2 s). A second forward
    pass before the first one's backward allocates its own tensors, so any use stays correct;
    :meth:`free_buffers` returns the memory.

    NOTE: departures from OGB's ``LinkPredictor``: :meth:`forward` returns the logit
    :math:`s(u, v)`, not :math:`\sigma(s)` (the loss uses ``logsigmoid``, and ranking by
    logits avoids the ties that float32 sigmoids saturating at 1.0 would create); dropout masks
    come from :func:`gnnkit.nn.functional.dropout_mask` (same distribution for ``p = 0.5``,
    another random stream).

    Args:
        in_channels (int): :math:`C`, the size of the node embeddings.
        hidden_channels (int, optional): width of the hidden layers. (default: ``256``)
        out_channels (int, optional): scores per pair. (default: ``1``)
        num_layers (int, optional): linear layers, at least 2. (default: ``2``)
        dropout (float, optional): dropout probability after each hidden ReLU.
            (default: ``0.5``)
        reuse_buffers (bool, optional): keep the large training tensors from step to step on
            CPU (see the NOTE). (default: ``True``)

    Shapes:
        - **input:** node embeddings ``h`` (|V|, C), node pairs ``pairs`` (2, B)
        - **output:** (B,) with ``out_channels=1``, else (B, out_channels)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 256,
        out_channels: int = 1,
        *,
        num_layers: int = 2,
        dropout: float = 0.5,
        reuse_buffers: bool = True,
    ) -> None:
        super().__init__()
        check_ints(
            in_channels=in_channels, hidden_channels=hidden_channels, out_channels=out_channels
        )
        check_int("num_layers", num_layers, 2)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.dropout = check_dropout(dropout)
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.reuse_buffers = bool(reuse_buffers)
        self._workspace = Workspace()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default ``nn.Linear`` initialisation (as OGB's predictor)."""
        for lin in self.lins:
            lin.reset_parameters()

    def forward(self, h: Tensor, pairs: Tensor) -> Tensor:
        """Score the pairs ``pairs[:, k] = (u, v)``; returns logits (B,) or (B, out)."""
        _check_pairs(pairs, h.size(0))
        first, last = self.lins[0], self.lins[-1]
        p = self.dropout if self.training else 0.0
        fused_last = self.num_layers == 2
        workspace = self._workspace if self.reuse_buffers and h.device.type == "cpu" else None
        x = hadamard_mlp(
            h,
            pairs,
            first.weight,
            first.bias,
            last.weight if fused_last else None,
            last.bias if fused_last else None,
            p=p,
            workspace=workspace,
        )
        if not fused_last:
            for lin in self.lins[1:-1]:
                x = dropout(F.relu(lin(x)), self.dropout, self.training, draw="bytes")
            x = last(x)  # (B, out)
        return x.view(-1) if self.out_channels == 1 else x

    def free_buffers(self) -> None:
        """Drop the reused training buffers (they are rebuilt on the next training step)."""
        self._workspace.clear()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, {self.out_channels}, "
            f"num_layers={self.num_layers}, dropout={self.dropout:g}, input=hadamard"
        )


def _check_pairs(pairs: Any, num_nodes: int) -> None:
    check_pair_shape(pairs)
    check_range("pairs", pairs, num_nodes, "pass pairs of the graph's nodes", what="node index")


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------


class EmbeddingGNN(nn.Module):
    r"""A learned embedding per node followed by a stack of GCN or GAT layers.

    .. math::
        H^{(0)} = E, \qquad
        H^{(l)} = \operatorname{dropout}\big(\operatorname{ReLU}(
        \operatorname{conv}_l(H^{(l-1)}, \mathcal{G}))\big), \qquad
        H = \operatorname{conv}_L(H^{(L-1)}, \mathcal{G})

    For graphs without node features (ogbl-ddi): :math:`E \in \mathbb{R}^{|V| \times C}` is a
    parameter, initialised Xavier-uniform as in OGB's ddi example. ``conv="gcn"`` uses
    :class:`~gnnkit.nn.GCNConv` (the example's model); ``conv="gat"`` uses
    :class:`~gnnkit.nn.GATConv` with ``heads`` heads of ``hidden_channels // heads`` channels,
    concatenated. Every layer caches its graph (``cached=True``: the graph is fixed); only the
    first validates its inputs.

    Args:
        num_nodes (int): |V|, rows of the embedding table.
        hidden_channels (int, optional): :math:`C`, width of the embeddings and every layer.
            (default: ``256``)
        num_layers (int, optional): graph layers, at least 1. (default: ``2``)
        dropout (float, optional): dropout after each hidden ReLU. (default: ``0.5``)
        conv (str, optional): ``"gcn"`` or ``"gat"``. (default: ``"gcn"``)
        heads (int, optional): attention heads with ``conv="gat"``; must divide
            ``hidden_channels``. (default: ``4``)

    Shapes:
        - **input:** ``edge_index`` (2, |E|)
        - **output:** (|V|, C)
    """

    def __init__(
        self,
        num_nodes: int,
        hidden_channels: int = 256,
        *,
        num_layers: int = 2,
        dropout: float = 0.5,
        conv: str = "gcn",
        heads: int = 4,
    ) -> None:
        super().__init__()
        check_ints(num_nodes=num_nodes, hidden_channels=hidden_channels, num_layers=num_layers)
        check_same_width_convs(conv, heads, "hidden_channels", hidden_channels)
        self.num_nodes = num_nodes
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.dropout = check_dropout(dropout)
        self.conv = conv
        self.heads = heads if conv == "gat" else 1
        self.embedding = nn.Embedding(num_nodes, hidden_channels)
        self.convs = same_width_convs(conv, hidden_channels, num_layers, heads=heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform embeddings (OGB's example), each layer's own initialisation."""
        nn.init.xavier_uniform_(self.embedding.weight)
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, edge_index: Tensor) -> Tensor:
        """Node representations (|V|, C) on the graph ``edge_index``."""
        x = self.embedding.weight  # (N, C)
        for conv in self.convs[:-1]:
            x = dropout(F.relu(conv(x, edge_index)), self.dropout, self.training, draw="bytes")
        return self.convs[-1](x, edge_index)  # (N, C)

    def extra_repr(self) -> str:
        heads = f", heads={self.heads}" if self.conv == "gat" else ""
        return (
            f"num_nodes={self.num_nodes}, hidden_channels={self.hidden_channels}, "
            f"conv={self.conv}{heads}, num_layers={self.num_layers}, dropout={self.dropout:g}"
        )


# ---------------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------------


class LinkGNN(nn.Module):
    r"""Encoder plus pair scorer: the model :func:`gnnkit.train.link.fit_link` trains.

    The training objective (OGB's ddi example), for a batch of observed edges :math:`P` and
    as many sampled non-edges :math:`N`:

    .. math::
        \mathcal{L} = -\frac{1}{|P|} \sum_{(u,v) \in P} \log \sigma(s(u,v))
        - \frac{1}{|N|} \sum_{(u,v) \in N} \log\big(1 - \sigma(s(u,v))\big)

    computed as ``logsigmoid(s)`` and ``logsigmoid(-s)`` (NOTE: OGB writes
    ``-log(p + 1e-15)``; the two agree until :math:`|s|` exceeds about 34, where OGB's
    epsilon flattens the loss and its gradient). Positive and negative pairs go through the
    predictor together, in one pass.

    The interface :func:`~gnnkit.train.link.fit_link` relies on (PyG's reference model in
    ``benchmarks/references_ogb.py`` provides the same methods):

    - :meth:`prepare_graph` turns the message-passing ``edge_index`` into what
      :meth:`encode` takes (here: ``edge_index`` itself);
    - :meth:`encode` returns node representations, :meth:`score` scores pairs (higher means
      more likely an edge), :meth:`link_loss` the objective above;
    - :meth:`clip_groups`: the parameter groups whose gradient norms are clipped separately
      (OGB clips the embeddings, the GNN and the predictor each to norm 1).

    Args:
        encoder (EmbeddingGNN): produces node representations.
        predictor (HadamardMLP): scores pairs of them.

    Shapes:
        - **input:** ``edge_index`` (2, |E|), ``pairs`` (2, B)
        - **output:** (B,) logits
    """

    def __init__(self, encoder: EmbeddingGNN, predictor: HadamardMLP) -> None:
        super().__init__()
        if not isinstance(encoder, EmbeddingGNN) or not isinstance(predictor, HadamardMLP):
            raise InputError(
                "LinkGNN needs an EmbeddingGNN encoder and a HadamardMLP predictor, got "
                f"{type(encoder).__name__} and {type(predictor).__name__}"
            )
        if predictor.in_channels != encoder.hidden_channels:
            raise InputError(
                f"the predictor takes {predictor.in_channels} channels but the encoder "
                f"produces {encoder.hidden_channels}"
            )
        self.encoder = encoder
        self.predictor = predictor

    @classmethod
    def ogb_ddi(cls, num_nodes: int, hidden_channels: int = 256, *, conv: str = "gcn") -> LinkGNN:
        """OGB's ddi example: 2 layers of ``hidden_channels``, dropout 0.5, 2-layer predictor."""
        encoder = EmbeddingGNN(num_nodes, hidden_channels, num_layers=2, dropout=0.5, conv=conv)
        predictor = HadamardMLP(hidden_channels, hidden_channels, 1, num_layers=2, dropout=0.5)
        return cls(encoder, predictor)

    def reset_parameters(self) -> None:
        self.encoder.reset_parameters()
        self.predictor.reset_parameters()

    def prepare_graph(self, edge_index: Tensor, num_nodes: int) -> Tensor:
        """The graph :meth:`encode` takes: ``edge_index`` unchanged (layers build their CSR)."""
        if num_nodes != self.encoder.num_nodes:
            raise InputError(
                f"the graph has {num_nodes} nodes but the model embeds {self.encoder.num_nodes}"
            )
        return edge_index

    def encode(self, graph: Tensor) -> Tensor:
        """Node representations (|V|, C)."""
        return self.encoder(graph)

    def score(self, h: Tensor, pairs: Tensor) -> Tensor:
        """Logits (B,) of the pairs (2, B)."""
        return self.predictor(h, pairs)

    def forward(self, graph: Tensor, pairs: Tensor) -> Tensor:
        """Encode and score: logits (B,) of ``pairs``."""
        return self.score(self.encode(graph), pairs)

    def link_loss(self, h: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The objective above for positive pairs ``pos`` (2, P) and negatives ``neg`` (2, Q)."""
        logits = self.score(h, torch.cat([pos, neg], dim=1))  # (P + Q,)
        num_pos = pos.size(1)
        return -(F.logsigmoid(logits[:num_pos]).mean() + F.logsigmoid(-logits[num_pos:]).mean())

    def clip_groups(self) -> list[list[nn.Parameter]]:
        """Embeddings, GNN layers, predictor: each group's gradient norm is clipped on its own."""
        return [
            [self.encoder.embedding.weight],
            list(self.encoder.convs.parameters()),
            list(self.predictor.parameters()),
        ]
