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
non-edges (:mod:`gnnkit.train.linkpred`).

- :class:`EmbeddingGNN`: the embedding table and the GNN (the encoder).
- :class:`HadamardMLP`: the predictor; its first layer gathers, multiplies and projects the
  pairs in one fused autograd step (see its docstring for what that saves).
- :class:`LinkGNN`: both, with the loss and the interface :func:`gnnkit.train.linkpred.fit_link`
  trains.
- :data:`LINK_MODELS`, :func:`get_link_model`: the named recipes of ``gnnkit bench link``.
"""

from __future__ import annotations

import itertools
import math
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gnnkit.errors import InputError
from gnnkit.models.registry import ModelSpec
from gnnkit.nn import GATConv, GCNConv

__all__ = [
    "LINK_MODELS",
    "EmbeddingGNN",
    "HadamardMLP",
    "LinkGNN",
    "dropout_mask",
    "get_link_model",
]


# ---------------------------------------------------------------------------------------------
# Dropout masks from packed random bits
# ---------------------------------------------------------------------------------------------


def dropout_mask(
    shape: tuple[int, ...],
    p: float,
    *,
    device: torch.device | str | None = None,
    keep: bool = True,
) -> Tensor:
    """A boolean dropout mask: each entry is kept with probability ``1 - p``, independently.

    When :math:`256 p` is an integer (``p = 0.5``, ``0.25``...) the mask compares one random
    byte per entry against :math:`256 p`; the bytes come from 64-bit random words, so one call
    to the generator serves 8 entries. On CPU that is about 50x faster than
    ``torch.bernoulli`` (which draws one 32-bit number per entry); at the predictor's
    131,072 x 256 hidden activations per ogbl-ddi step it saves about a second per step.
    Other values of ``p`` fall back to ``torch.rand(...) >= p``. Both draw from torch's
    default generator, so ``torch.manual_seed`` makes them reproducible.

    Args:
        shape (tuple of int): the mask's shape.
        p (float): the probability of dropping an entry, in [0, 1).
        device (torch.device or str, optional): where to build it. (default: CPU)
        keep (bool, optional): ``True`` marks the kept entries, ``False`` the dropped ones
            (the complement). (default: ``True``)
    """
    uniform, threshold = _draw_uniform(shape, p, device)
    return uniform >= threshold if keep else uniform < threshold


def _draw_uniform(
    shape: tuple[int, ...], p: float, device: Any, scratch: _Scratch | None = None
) -> tuple[Tensor, float | int]:
    """Uniform draws of :func:`dropout_mask` and the threshold below which an entry drops.

    Random bytes against :math:`256 p` when that is an integer, else ``torch.rand`` against
    ``p``. With ``scratch`` the random words reuse its ``"words"`` buffer.
    """
    threshold = 256.0 * p
    if threshold != int(threshold):
        return torch.rand(shape, device=device), p
    numel = math.prod(shape)
    size = ((numel + 7) // 8,)
    int64 = torch.empty((), dtype=torch.int64, device=device)
    words = int64.new_empty(size) if scratch is None else scratch.take("words", size, int64)
    torch.randint(-(2**63), 2**63 - 1, size, dtype=torch.int64, out=words)
    return words.view(torch.uint8)[:numel].view(shape), int(threshold)


def _check_dropout(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise InputError(f"dropout must be a probability in [0, 1), got {p!r}")
    return float(p)


def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with :func:`dropout_mask`."""
    if not training or p == 0.0:
        return x
    return (x * _keep_mask(None, tuple(x.shape), p, x)).mul_(1.0 / (1.0 - p))


# ---------------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------------


class _Lease:
    """Held by the autograd graph of one training step while it owns a :class:`_Scratch`."""

    __slots__ = ("__weakref__",)


class _Scratch:
    """Large buffers one :class:`HadamardMLP` reuses from one training step to the next.

    On CPU every fresh tensor of the predictor's size (131,072 x 256 floats, 134 MB, on
    ogbl-ddi) comes straight from the kernel (glibc ``mmap``s blocks this large and unmaps
    them when freed), and filling its pages costs more than the operation writing it:
    ``index_select`` into a new tensor takes 64 ms, into an existing one 22 ms. A step's graph
    takes the scratch with :meth:`acquire` in the forward pass and gives it back at the end of
    its backward pass, or when the graph is freed (a weak reference to its :class:`_Lease`).
    While the scratch is taken, another forward pass allocates fresh tensors instead. Reusing
    a buffer bumps its version counter, so an old graph that still saved it (a second
    ``backward`` with ``retain_graph=True`` after a newer forward pass) raises autograd's
    "modified by an inplace operation" error rather than computing a wrong gradient.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}
        self._lease: weakref.ref[_Lease] | None = None

    def __reduce__(self):  # copies and pickles start empty (a weak reference cannot be kept)
        return (_Scratch, ())

    def __deepcopy__(self, memo: dict) -> _Scratch:
        return _Scratch()

    def acquire(self) -> _Lease | None:
        """A lease on the buffers, or ``None`` while another graph holds them."""
        if self._lease is not None and self._lease() is not None:
            return None
        lease = _Lease()
        self._lease = weakref.ref(lease)
        return lease

    def release(self, lease: _Lease | None) -> None:
        if lease is not None and self._lease is not None and self._lease() is lease:
            self._lease = None

    def take(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A (possibly reused) uninitialised tensor ``shape`` with ``like``'s dtype and device."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = like.new_empty(max(numel, 1))
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def _empty(scratch: _Scratch | None, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    if scratch is None:
        return like.new_empty(shape)
    return scratch.take(name, shape, like)


def _keep_mask(scratch: _Scratch | None, shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Dropout's keep mask as 0/1 in ``like``'s dtype: the draw of :func:`dropout_mask`.

    Multiplying by a float mask is 5x faster on CPU than by a bool one (which torch converts
    on the fly).
    """
    uniform, threshold = _draw_uniform(shape, p, like.device, scratch)
    return torch.ge(uniform, threshold, out=_empty(scratch, "keep", shape, like))


class _HadamardMLPFunction(torch.autograd.Function):
    """The predictor's first layer, and its last one when there are two, with one backward.

    ``dropout(relu((h[src] * h[dst]) W^T + b))``, then ``hidden @ W_out^T + b_out`` when
    ``last_weight`` is given (otherwise the hidden activations are returned). Dropout's
    :math:`1 / (1 - p)` multiplies the (F, C) weights, never a (B, F) tensor, since
    :math:`s \\operatorname{ReLU}(z) = \\operatorname{ReLU}(s z)` for :math:`s > 0`. A hidden
    entry is non-zero exactly when it survived both the ReLU and dropout, so the backward
    masks the gradient with the activations themselves (one ``threshold_backward`` pass, no
    saved mask). The backward accumulates onto the |V| rows of ``h`` with ``index_add_`` (4x
    faster on CPU than the ``index_put_(accumulate=True)`` autograd runs for ``h[src]``).
    With a ``lease`` every (B, C) and (B, F) tensor lives in ``scratch`` (:class:`_Scratch`).
    """

    @staticmethod
    def forward(ctx, h, src, dst, weight, bias, last_weight, last_bias, p, scratch, lease):
        work = scratch if lease is not None else None
        B, C, F_hidden = src.numel(), h.size(1), weight.size(0)
        h_src = torch.index_select(h, 0, src, out=_empty(work, "h_src", (B, C), h))
        h_dst = torch.index_select(h, 0, dst, out=_empty(work, "h_dst", (B, C), h))
        prod = torch.mul(h_src, h_dst, out=_empty(work, "prod", (B, C), h))
        scale = 1.0 / (1.0 - p)
        w = weight * scale if p > 0.0 else weight  # (F, C)
        hidden = _empty(work if last_weight is not None else None, "hidden", (B, F_hidden), h)
        if bias is not None:
            torch.addmm(bias * scale if p > 0.0 else bias, prod, w.t(), out=hidden)
        else:
            torch.mm(prod, w.t(), out=hidden)
        hidden.relu_()
        if p > 0.0:
            hidden.mul_(_keep_mask(work, (B, F_hidden), p, hidden))
        out = hidden
        if last_weight is not None:
            out = hidden @ last_weight.t()  # (B, out)
            if last_bias is not None:
                out += last_bias
        ctx.scale = scale if p > 0.0 else 1.0
        ctx.has_bias = bias is not None
        ctx.num_nodes = h.size(0)
        ctx.scratch, ctx.lease = scratch, lease
        ctx.save_for_backward(src, dst, w, h_src, h_dst, prod, hidden, last_weight)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        src, dst, w, h_src, h_dst, prod, hidden, last_weight = ctx.saved_tensors
        work = ctx.scratch if ctx.lease is not None else None
        B, F_hidden = hidden.shape
        grad_last_w = grad_last_b = None
        if last_weight is not None:
            if ctx.needs_input_grad[5]:
                grad_last_w = grad_out.t() @ hidden  # (out, F)
            if ctx.needs_input_grad[6]:
                grad_last_b = grad_out.sum(0)
            grad = _empty(work, "grad", (B, F_hidden), hidden)
            if last_weight.size(0) == 1:  # an outer product: 3x faster as a broadcast multiply
                torch.mul(grad_out, last_weight, out=grad)
            else:
                torch.mm(grad_out, last_weight, out=grad)
            target = grad
        else:
            grad = grad_out
            target = _empty(work, "grad", (B, F_hidden), hidden)
        # d loss / d(s z): zero where the ReLU or dropout zeroed the activation.
        grad = torch.ops.aten.threshold_backward.grad_input(grad, hidden, 0.0, grad_input=target)
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[3]:
            grad_w = grad.t() @ prod  # (F, C)
            if ctx.scale != 1.0:
                grad_w.mul_(ctx.scale)
        if ctx.has_bias and ctx.needs_input_grad[4]:
            grad_b = grad.sum(0)
            if ctx.scale != 1.0:
                grad_b.mul_(ctx.scale)
        if ctx.needs_input_grad[0]:
            grad_prod = torch.mm(grad, w, out=_empty(work, "grad_prod", h_src.shape, h_src))
            grad_h = grad_prod.new_zeros(ctx.num_nodes, grad_prod.size(1))
            spent = _empty(work, "grad", h_dst.shape, h_dst)  # "grad" is spent: reuse it
            grad_h.index_add_(0, src, torch.mul(grad_prod, h_dst, out=spent))
            grad_h.index_add_(0, dst, grad_prod.mul_(h_src))
        if ctx.scratch is not None:
            ctx.scratch.release(ctx.lease)
        return grad_h, None, None, grad_w, grad_b, grad_last_w, grad_last_b, None, None, None


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
    come from :func:`dropout_mask` (same distribution for ``p = 0.5``, another random stream).

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
        _check_channels(
            in_channels=in_channels, hidden_channels=hidden_channels, out_channels=out_channels
        )
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 2:
            raise InputError(f"num_layers must be an integer >= 2, got {num_layers!r}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.dropout = _check_dropout(dropout)
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.reuse_buffers = bool(reuse_buffers)
        self._scratch = _Scratch()
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
        scratch = self._scratch if self.reuse_buffers and h.device.type == "cpu" else None
        lease = scratch.acquire() if scratch is not None else None
        x = _HadamardMLPFunction.apply(
            h,
            pairs[0],
            pairs[1],
            first.weight,
            first.bias,
            last.weight if fused_last else None,
            last.bias if fused_last else None,
            p,
            scratch,
            lease,
        )
        if not fused_last:
            for lin in self.lins[1:-1]:
                x = _dropout(F.relu(lin(x)), self.dropout, self.training)  # (B, hidden)
            x = last(x)  # (B, out)
        return x.view(-1) if self.out_channels == 1 else x

    def free_buffers(self) -> None:
        """Drop the reused training buffers (they are rebuilt on the next training step)."""
        self._scratch.clear()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.hidden_channels}, {self.out_channels}, "
            f"num_layers={self.num_layers}, dropout={self.dropout:g}, input=hadamard"
        )


def _check_channels(**channels: Any) -> None:
    for name, value in channels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{name} must be a positive int, got {value!r}")


def _check_pairs(pairs: Any, num_nodes: int) -> None:
    if (
        not isinstance(pairs, Tensor)
        or pairs.dim() != 2
        or pairs.size(0) != 2
        or pairs.is_floating_point()
        or pairs.dtype == torch.bool
    ):
        shape = tuple(pairs.shape) if isinstance(pairs, Tensor) else type(pairs).__name__
        raise InputError(
            f"pairs must be an integer tensor of shape (2, B) (row 0 one endpoint, row 1 the "
            f"other), got {shape}; transpose an (B, 2) edge list with .t()"
        )
    if pairs.numel():
        low, high = torch.aminmax(pairs)
        if int(low) < 0 or int(high) >= num_nodes:
            raise InputError(
                f"pairs hold node indices in [{int(low)}, {int(high)}] but there are only "
                f"{num_nodes} nodes (valid: 0..{num_nodes - 1})"
            )


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
        _check_channels(num_nodes=num_nodes, hidden_channels=hidden_channels)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise InputError(f"num_layers must be a positive int, got {num_layers!r}")
        if conv not in ("gcn", "gat"):
            raise InputError(f"conv must be 'gcn' or 'gat', got {conv!r}")
        if conv == "gat":
            _check_channels(heads=heads)
            if hidden_channels % heads:
                raise InputError(
                    f"heads={heads} must divide hidden_channels={hidden_channels} (each head "
                    "gets hidden_channels // heads channels)"
                )
        self.num_nodes = num_nodes
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.dropout = _check_dropout(dropout)
        self.conv = conv
        self.heads = heads if conv == "gat" else 1
        self.embedding = nn.Embedding(num_nodes, hidden_channels)
        C = hidden_channels
        if conv == "gcn":
            layers = [GCNConv(C, C, cached=True, validate=i == 0) for i in range(num_layers)]
        else:
            layers = [
                GATConv(C, C // heads, heads=heads, cached=True, validate=i == 0)
                for i in range(num_layers)
            ]
        self.convs = nn.ModuleList(layers)
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
            x = _dropout(F.relu(conv(x, edge_index)), self.dropout, self.training)
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
    r"""Encoder plus pair scorer: the model :func:`gnnkit.train.linkpred.fit_link` trains.

    The training objective (OGB's ddi example), for a batch of observed edges :math:`P` and
    as many sampled non-edges :math:`N`:

    .. math::
        \mathcal{L} = -\frac{1}{|P|} \sum_{(u,v) \in P} \log \sigma(s(u,v))
        - \frac{1}{|N|} \sum_{(u,v) \in N} \log\big(1 - \sigma(s(u,v))\big)

    computed as ``logsigmoid(s)`` and ``logsigmoid(-s)`` (NOTE: OGB writes
    ``-log(p + 1e-15)``; the two agree until :math:`|s|` exceeds about 34, where OGB's
    epsilon flattens the loss and its gradient). Positive and negative pairs go through the
    predictor together, in one pass.

    The interface :func:`~gnnkit.train.linkpred.fit_link` relies on (PyG's reference model in
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


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------


def _ddi_gcn(num_nodes: int, hidden_channels: int) -> nn.Module:
    return LinkGNN.ogb_ddi(num_nodes, hidden_channels, conv="gcn")


def _ddi_gat(num_nodes: int, hidden_channels: int) -> nn.Module:
    return LinkGNN.ogb_ddi(num_nodes, hidden_channels, conv="gat")


#: gnnkit's link-prediction models by name. ``build(num_nodes, hidden_channels)``; the
#: recipe is OGB's ddi example (Adam 0.005, 200 epochs, no weight decay). ``features`` is
#: unused (the nodes have no features; the model learns an embedding per node).
LINK_MODELS: dict[str, ModelSpec] = {
    "gcn": ModelSpec(
        name="gcn",
        build=_ddi_gcn,
        features="none",
        lr=0.005,
        weight_decay=0.0,
        epochs=200,
        description="ddi GCN: embedding 256, 2 x GCNConv 256, dropout 0.5, Hadamard MLP predictor",
    ),
    "gat": ModelSpec(
        name="gat",
        build=_ddi_gat,
        features="none",
        lr=0.005,
        weight_decay=0.0,
        epochs=200,
        description="ddi GAT: embedding 256, 2 x GATConv 4 heads x 64, dropout 0.5, Hadamard MLP",
    ),
}


def get_link_model(name: Any) -> ModelSpec:
    """The registered link model ``name``; unknown names raise :class:`InputError` listing them."""
    try:
        return LINK_MODELS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown link model {name!r}; known models: {', '.join(LINK_MODELS)}"
        ) from None
