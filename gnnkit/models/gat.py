"""Graph attention networks from :class:`gnnkit.nn.GATConv` layers.

- :class:`GAT`: the two-layer network of Velickovic et al.'s Cora set-up.
- :class:`BatchNormGAT`: a deeper stack with batch norm between layers, the shape of
  :class:`~gnnkit.models.BatchNormGCN`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from gnnkit.models.gcn import NormalizedStack, TwoLayerNetwork
from gnnkit.nn import GATConv
from gnnkit.nn.functional import check_dropout, elu_dropout

__all__ = ["GAT", "BatchNormGAT"]


class GAT(TwoLayerNetwork):
    r"""The two-layer graph attention network of `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ (Veličković et al., ICLR 2018, arXiv 1710.10903).

    .. math::
        H = \big\Vert_{k=1}^{K} \mathrm{ELU}\bigl(\mathrm{GAT}^{(0)}_k(\mathrm{dropout}(X))\bigr),
        \qquad
        Z = \frac{1}{K'} \sum_{k=1}^{K'} \mathrm{GAT}^{(1)}_k(\mathrm{dropout}(H))

    where each head computes :math:`h'_i = \sum_{j \in N(i) \cup \{i\}} \alpha_{ij} W h_j`
    with :math:`\alpha_{ij} = \mathrm{softmax}_j\bigl(\mathrm{LeakyReLU}(a_s^\top W h_j +
    a_d^\top W h_i)\bigr)` (attention coefficients, dropped out with the same probability
    during training); :math:`\Vert` concatenates the :math:`K` heads of the first layer and the
    :math:`K'` heads of the output layer are averaged. :math:`Z` are logits.

    The paper's Cora set-up, which these defaults reproduce: :math:`K = 8` heads of 8 hidden
    units, ELU, one output head, dropout 0.6 on each layer's input and on the attention
    coefficients, Adam with learning rate 0.005 and weight decay 5e-4.

    NOTE: departures from the paper and from PyG's ``examples/gat.py``:

    - Sparse features: ``x`` may be a sparse CSR or COO matrix; input dropout is
      :func:`gnnkit.nn.sparse_dropout` (PyG's example runs dense dropout on dense features).
    - Weight decay applies to every parameter (biases too), as in PyG's example and in the
      paper's released code (its filter for bias names never matches TensorFlow's scoped names,
      so biases are decayed there as well).
    - The graph with self-loops is built once and reused while ``edge_index`` is unchanged.
    - Hidden-feature dropout draws uniforms instead of Bernoulli samples on CPU
      (:func:`gnnkit.nn.functional.dropout`: same distribution, faster).
    - On PubMed the paper uses 8 output heads, lr 0.01 and weight decay 1e-3; pass
      ``out_heads=8`` and set the optimiser yourself for that set-up.

    Args:
        in_channels (int): :math:`F_{in}`, features per node.
        out_channels (int): the number of classes.
        hidden_channels (int, optional): units per head of the first layer. (default: ``8``)
        heads (int, optional): :math:`K`, attention heads of the first layer. (default: ``8``)
        out_heads (int, optional): :math:`K'`, averaged heads of the output layer.
            (default: ``1``)
        dropout (float, optional): dropout on the input features, the hidden features and
            the attention coefficients. (default: ``0.6``)
        negative_slope (float, optional): LeakyReLU slope of the attention scores.
            (default: ``0.2``)
        cached (bool, optional): cache the graph with self-loops and its CSR form between
            calls (see NOTE). (default: ``True``)

    Shapes:
        - **input:** ``x`` (|V|, F_in) dense or sparse, ``edge_index`` (2, |E|)
        - **output:** (|V|, out_channels) logits
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 8,
        heads: int = 8,
        out_heads: int = 1,
        dropout: float = 0.6,
        negative_slope: float = 0.2,
        cached: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, hidden_channels, dropout, heads=heads, out_heads=out_heads
        )
        options = {"dropout": dropout, "negative_slope": negative_slope, "cached": cached}
        self.conv1 = GATConv(in_channels, hidden_channels, heads=heads, **options)
        self.conv2 = GATConv(
            hidden_channels * heads,
            out_channels,
            heads=out_heads,
            concat=False,
            validate=False,
            **options,
        )
        self.reset_parameters()
        self._store_input_weight_transposed()

    def activation(self, x: Tensor) -> Tensor:
        # In place: the layer returns a fresh tensor (ELU's backward needs only its output).
        return F.elu(x, inplace=True)  # (|V|, heads * hidden)

    def activation_dropout(self, x: Tensor) -> Tensor:
        # One pass on CPU, the same mask as ELU then dropout (elu_dropout's contract).
        return elu_dropout(x, self.dropout, self.training, inplace=True)

    def parameter_groups(self, weight_decay: float) -> Iterable[dict[str, Any]]:
        """Optimiser parameter groups: ``weight_decay`` on every parameter."""
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]


class BatchNormGAT(NormalizedStack):
    r"""A GAT of the same shape as :class:`BatchNormGCN`: batch norm, ReLU, dropout between layers.

    The attention layer is from `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ (Velickovic et al., ICLR 2018, arXiv 1710.10903).
    Hidden layers concatenate :math:`K` heads of ``hidden_channels`` each. The output layer
    averages ``out_heads`` heads:

    .. math::
        H^{(l)} = \mathrm{dropout}\Bigl(\mathrm{ReLU}\bigl(\mathrm{BN}_l(
        \Vert_{k=1}^{K} \mathrm{GAT}^{(l)}_k(H^{(l-1)}))\bigr)\Bigr), \qquad
        Z = \frac{1}{K'} \sum_{k=1}^{K'} \mathrm{GAT}^{(L)}_k(H^{(L-1)})

    where each head computes :math:`h'_i = \sum_{j \in N(i) \cup \{i\}} \alpha_{ij} W h_j`
    with :math:`\alpha_{ij} = \mathrm{softmax}_j(\mathrm{LeakyReLU}(a_s^\top W h_j +
    a_d^\top W h_i))`.

    NOTE: OGB's example ships only GCN and GraphSAGE for arxiv (the leaderboard's GAT entries
    use DGL code with other tricks). This is the GCN recipe with attention layers. Its
    defaults, 8 heads of 32 channels, keep the hidden width at 256. gnnkit's scale study
    (``benchmarks/scale.py``) uses it for the GAT curve.

    Args:
        in_channels (int): :math:`F_{in}`, features per node.
        out_channels (int): the number of classes.
        hidden_channels (int, optional): channels per head in the hidden layers.
            (default: ``32``)
        heads (int, optional): :math:`K`, heads of each hidden layer. (default: ``8``)
        out_heads (int, optional): :math:`K'`, averaged heads of the output layer.
            (default: ``1``)
        num_layers (int, optional): :math:`L`, the number of attention layers. (default: ``3``)
        dropout (float, optional): dropout on the hidden features. (default: ``0.5``)
        attention_dropout (float, optional): dropout on the attention coefficients.
            (default: ``0.0``)
        batch_norm (bool, optional): batch norm after each hidden layer. (default: ``True``)
        cached (bool, optional): cache the graph with self-loops between calls.
            (default: ``True``)

    Shapes:
        - **input:** ``x`` (|V|, F_in), ``edge_index`` (2, |E|)
        - **output:** (|V|, out_channels) logits
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        hidden_channels: int = 32,
        heads: int = 8,
        out_heads: int = 1,
        num_layers: int = 3,
        dropout: float = 0.5,
        attention_dropout: float = 0.0,
        batch_norm: bool = True,
        cached: bool = True,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            hidden_channels,
            heads=heads,
            out_heads=out_heads,
            num_layers=num_layers,
            dropout=dropout,
            batch_norm=batch_norm,
            cached=cached,
        )
        attention_dropout = check_dropout(attention_dropout)
        width = hidden_channels * heads

        def layer(i: int) -> GATConv:
            """Hidden layers concatenate ``heads`` heads; the last averages ``out_heads``."""
            last = i == num_layers - 1
            return GATConv(
                in_channels if i == 0 else width,
                out_channels if last else hidden_channels,
                heads=out_heads if last else heads,
                concat=not last,
                dropout=attention_dropout,
                cached=cached,
                validate=i == 0,
            )

        self._set_layers((layer(i) for i in range(num_layers)), width, batch_norm)
