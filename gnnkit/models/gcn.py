"""Graph convolutional networks from :class:`gnnkit.nn.GCNConv` layers, and their two designs.

- :class:`GCN`: the two-layer network of Kipf & Welling's Cora set-up, a
  :class:`TwoLayerNetwork`.
- :class:`BatchNormGCN`: a deeper stack with batch norm between layers (OGB's ogbn-arxiv GCN),
  a :class:`NormalizedStack`.

The GAT models (:mod:`gnnkit.models.gat`) reuse both designs with attention layers.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from gnnkit.models._fused_gcn import fused_gcn
from gnnkit.nn import GCNConv
from gnnkit.nn.functional import check_dropout, dropout, relu_dropout, sparse_dropout
from gnnkit.nn.linear import column_major_
from gnnkit.utils.checks import check_flags, check_ints

__all__ = ["GCN", "BatchNormGCN", "NormalizedStack", "TwoLayerNetwork"]


class TwoLayerNetwork(nn.Module, ABC):
    """Kipf & Welling's two-layer design: dropout on the input (sparse stays sparse),
    ``conv1`` and its :meth:`activation`, dropout, ``conv2``.

    What :class:`GCN` and :class:`~gnnkit.models.GAT` share: their ``__init__`` checks the
    sizes and the dropout here, then sets ``conv1`` and ``conv2`` and calls
    :meth:`reset_parameters`.

    Args:
        in_channels (int): :math:`F_{in}`, features per node.
        out_channels (int): the number of classes.
        hidden_channels (int): the first layer's width (per head, for attention layers).
        dropout (float): dropout probability on the input and hidden features.
        **sizes (int): the subclass's other sizes, checked after ``hidden_channels``.
    """

    conv1: nn.Module
    conv2: nn.Module

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        dropout: float,
        **sizes: int,
    ) -> None:
        super().__init__()
        check_ints(
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            **sizes,
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels = hidden_channels
        self.dropout = check_dropout(dropout)

    @abstractmethod
    def activation(self, x: Tensor) -> Tensor:
        """The nonlinearity after the first layer."""

    def reset_parameters(self) -> None:
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def _store_input_weight_transposed(self) -> None:
        """Keep ``conv1.lin.weight`` in column-major memory (:func:`gnnkit.nn.column_major_`:
        the copies of ``W^T`` that its sparse product needs are gone). ``__init__`` calls it
        after initialising, so a new model has PyG's values for the seed."""
        weight = getattr(getattr(self.conv1, "lin", None), "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() == 2:
            column_major_(weight)

    def activation_dropout(self, x: Tensor) -> Tensor:
        """:meth:`activation`, then dropout (a subclass may fuse the two)."""
        return dropout(self.activation(x), self.dropout, self.training)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = sparse_dropout(x, self.dropout, self.training)  # sparse stays sparse
        x = self.activation_dropout(self.conv1(x, edge_index))  # (|V|, hidden width)
        return self.conv2(x, edge_index)  # (|V|, out)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}"


class NormalizedStack(nn.Module):
    """OGB's deeper design: ``convs`` with batch norm (or identity) ``bns``, then ReLU and
    dropout, between them.

    What :class:`BatchNormGCN` and :class:`~gnnkit.models.BatchNormGAT` share: their
    ``__init__`` checks the sizes and options here, then builds the :math:`L` layers and
    calls :meth:`_set_layers`, which adds the :math:`L - 1` batch norms.

    Args:
        in_channels (int): :math:`F_{in}`, features per node.
        out_channels (int): the number of classes.
        hidden_channels (int): the hidden layers' width (per head, for attention layers).
        num_layers (int): :math:`L`, the number of convolutions.
        dropout (float): dropout on the hidden features.
        batch_norm (bool): batch norm after each hidden convolution.
        cached (bool): the layers cache the graph between calls.
        **sizes (int): the subclass's other sizes, checked after ``hidden_channels``.
    """

    convs: nn.ModuleList
    bns: nn.ModuleList

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        *,
        num_layers: int,
        dropout: float,
        batch_norm: bool,
        cached: bool,
        **sizes: int,
    ) -> None:
        super().__init__()
        check_ints(
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            **sizes,
            num_layers=num_layers,
        )
        check_flags(batch_norm=batch_norm, cached=cached)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels, self.num_layers = hidden_channels, num_layers
        self.dropout = check_dropout(dropout)

    def _set_layers(self, convs: Iterable[nn.Module], width: int, batch_norm: bool) -> None:
        """Keep ``convs``, put batch norm over ``width`` channels (or identity) between them,
        and initialise."""
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(
            nn.BatchNorm1d(width) if batch_norm else nn.Identity()
            for _ in range(self.num_layers - 1)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        for bn in self.bns:
            if isinstance(bn, nn.BatchNorm1d):
                bn.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = conv(x, edge_index)  # (|V|, hidden width)
            x = relu_dropout(bn(x), self.dropout, self.training)
        return self.convs[-1](x, edge_index)  # (|V|, out)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, dropout={self.dropout}"


class GCN(TwoLayerNetwork):
    r"""The two-layer graph convolutional network of `"Semi-Supervised Classification with
    Graph Convolutional Networks" <https://arxiv.org/abs/1609.02907>`_ (Kipf & Welling,
    ICLR 2017, arXiv 1609.02907).

    .. math::
        Z = \hat{A} \, \mathrm{dropout}\bigl(\mathrm{ReLU}(\hat{A} \,
        \mathrm{dropout}(X) \, W^{(0)} + b^{(0)})\bigr) \, W^{(1)} + b^{(1)},
        \qquad \hat{A} = \tilde{D}^{-1/2} (A + \lambda I) \tilde{D}^{-1/2}

    :math:`X` are the node features, :math:`\hat{A}` the normalised adjacency with self-loop
    weight :math:`\lambda` (1 in the paper), :math:`W^{(l)}, b^{(l)}` the weights and biases of
    the two :class:`gnnkit.nn.GCNConv` layers. :math:`Z` are logits; the softmax is part of
    the cross-entropy loss. Per node, layer :math:`l` computes :math:`h'_i = W^\top \sum_{j
    \in N(i) \cup \{i\}} \hat{a}_{ij} h_j + b`.

    The paper's Cora set-up, which these defaults reproduce: 16 hidden units, ReLU, dropout
    0.5 on the input features and the hidden layer, Adam with learning rate 0.01, weight
    decay 5e-4 on the first layer, 200 epochs.

    NOTE: departures from the paper's code and from PyG's ``examples/gcn.py``:

    - Sparse features: ``x`` may be a sparse CSR or COO matrix (e.g. from
      :func:`gnnkit.train.node_inputs`); dropout on it is :func:`gnnkit.nn.sparse_dropout`,
      dropout on the stored entries only, as in Kipf's code. PyG's example densifies the
      features and spends most of an epoch in dense dropout.
    - ``cached=True`` by default: the normalised adjacency is computed once and reused while
      ``edge_index`` is unchanged (full-batch training on one graph).
    - Hidden-feature dropout draws uniforms instead of Bernoulli samples on CPU
      (:func:`gnnkit.nn.functional.dropout`: same distribution, faster).
    - :meth:`parameter_groups` applies weight decay to the first layer's weight and bias, as
      PyG's example does; Kipf's code decays the first layer's weight (it has no bias).

    Args:
        in_channels (int): :math:`F_{in}`, features per node.
        out_channels (int): the number of classes.
        hidden_channels (int, optional): hidden units. (default: ``16``)
        dropout (float, optional): dropout probability on the input and hidden features.
            (default: ``0.5``)
        self_loop_weight (float, optional): :math:`\lambda` of both layers. (default: ``1.0``)
        cached (bool, optional): cache the normalised adjacency (see NOTE). (default: ``True``)

    Shapes:
        - **input:** ``x`` (|V|, F_in) dense or sparse, ``edge_index`` (2, |E|)
        - **output:** (|V|, out_channels) logits
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 16,
        dropout: float = 0.5,
        self_loop_weight: float = 1.0,
        cached: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, hidden_channels, dropout)
        self.conv1 = GCNConv(
            in_channels, hidden_channels, self_loop_weight=self_loop_weight, cached=cached
        )
        # The second layer's input comes from the first: no need to scan it for NaN each call.
        self.conv2 = GCNConv(
            hidden_channels,
            out_channels,
            self_loop_weight=self_loop_weight,
            cached=cached,
            validate=False,
        )
        self.reset_parameters()
        self._store_input_weight_transposed()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        # Sparse CPU features: the whole network as one autograd node, the same arithmetic
        # (gnnkit.models._fused_gcn); anything else runs layer by layer.
        out = fused_gcn(self, x, edge_index)
        return super().forward(x, edge_index) if out is None else out

    def activation(self, x: Tensor) -> Tensor:
        return x.relu()

    def activation_dropout(self, x: Tensor) -> Tensor:
        # One pass, the same draws and values as relu then dropout (relu_dropout's contract).
        return relu_dropout(x, self.dropout, self.training)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: ``weight_decay`` on the first layer, none on the second."""
        return [
            {"params": list(self.conv1.parameters()), "weight_decay": weight_decay},
            {"params": list(self.conv2.parameters()), "weight_decay": 0.0},
        ]


class BatchNormGCN(NormalizedStack):
    r"""OGB's GCN for ogbn-arxiv: stacked :class:`gnnkit.nn.GCNConv` layers with batch norm.

    From OGB's ``examples/nodeproppred/arxiv/gnn.py``. The convolution is Kipf & Welling's,
    `"Semi-Supervised Classification with Graph Convolutional Networks"
    <https://arxiv.org/abs/1609.02907>`_ (ICLR 2017, arXiv 1609.02907). Batch norm is Ioffe &
    Szegedy's (arXiv 1502.03167). For layers :math:`l = 1..L-1`:

    .. math::
        H^{(l)} = \mathrm{dropout}\Bigl(\mathrm{ReLU}\bigl(\mathrm{BN}_l(\hat{A} H^{(l-1)}
        W^{(l)} + b^{(l)})\bigr)\Bigr), \qquad Z = \hat{A} H^{(L-1)} W^{(L)} + b^{(L)}

    with :math:`H^{(0)} = X` the node features,
    :math:`\hat{A} = \tilde{D}^{-1/2}(A + I)\tilde{D}^{-1/2}` the normalised adjacency with
    self-loops, and :math:`\mathrm{BN}_l` batch norm over the nodes. :math:`Z` are logits.
    Per node, a layer computes :math:`h'_i = W^\top \sum_{j \in N(i) \cup \{i\}}
    \hat{a}_{ij} h_j + b`. OGB's set-up, which these defaults reproduce: :math:`L = 3`, 256
    hidden channels, dropout 0.5 on the hidden features (none on the input).

    NOTE: departures from OGB's example:

    - ``forward`` returns logits, not ``log_softmax``. Cross-entropy on logits is OGB's NLL
      loss on log-probabilities, and the argmax is the same.
    - The graph is an ``edge_index``. Make it symmetric first with :func:`gnnkit.graph.symmetrize`, as the
      example does with torch-sparse's ``to_symmetric``.
    - ReLU and dropout run as one step, :func:`gnnkit.nn.functional.relu_dropout`. It keeps only its output for
      the backward pass (350 MB less per hidden layer on arxiv) and draws uniforms rather
      than Bernoulli samples on CPU. The distribution is the same.
    - ``batch_norm=False`` gives the same network without batch norm.

    Args:
        in_channels (int): :math:`F_{in}`, features per node (128 on ogbn-arxiv).
        out_channels (int): the number of classes (40 on ogbn-arxiv).
        hidden_channels (int, optional): hidden channels. (default: ``256``)
        num_layers (int, optional): :math:`L`, the number of convolutions, at least 1.
            (default: ``3``)
        dropout (float, optional): dropout on the hidden features. (default: ``0.5``)
        batch_norm (bool, optional): batch norm after each hidden convolution.
            (default: ``True``)
        cached (bool, optional): cache the normalised adjacency between calls (full-batch
            training on one graph). The cache is checked, so sampled subgraphs are safe too;
            it is just not reused there. (default: ``True``)

    Shapes:
        - **input:** ``x`` (|V|, F_in), ``edge_index`` (2, |E|)
        - **output:** (|V|, out_channels) logits
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 256,
        num_layers: int = 3,
        dropout: float = 0.5,
        batch_norm: bool = True,
        cached: bool = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            hidden_channels,
            num_layers=num_layers,
            dropout=dropout,
            batch_norm=batch_norm,
            cached=cached,
        )
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        # Layers after the first read the previous layer's output: no NaN scan needed.
        self._set_layers(
            (
                GCNConv(a, b, cached=cached, validate=i == 0)
                for i, (a, b) in enumerate(itertools.pairwise(sizes))
            ),
            hidden_channels,
            batch_norm,
        )
