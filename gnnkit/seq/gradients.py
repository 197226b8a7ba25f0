"""Vanishing gradients: how much the loss at the last step depends on each hidden state.

Bengio, Simard & Frasconi (*Learning long-term dependencies with gradient descent is
difficult*, IEEE TNN 1994) and Hochreiter & Schmidhuber (Neural Computation 1997):
backpropagating from the loss :math:`L` at step :math:`T` to the hidden state at step
:math:`t` multiplies one Jacobian per step,

.. math::
    \\frac{\\partial L}{\\partial h^{(t)}} = \\frac{\\partial L}{\\partial h^{(T)}}
    \\prod_{k=t+1}^{T} \\frac{\\partial h^{(k)}}{\\partial h^{(k-1)}}, \\qquad
    \\frac{\\partial h^{(k)}}{\\partial h^{(k-1)}} =
    \\operatorname{diag}\\big(1 - h^{(k)2}\\big) W_{hh} \\;\\text{(vanilla RNN)},

so for a vanilla RNN the norm shrinks geometrically with :math:`T - t`; an LSTM's additive
cell update (:math:`c^{(t)} = \\dots + f^{(t)} \\odot c^{(t-1)}`) lets it decay far more slowly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.seq.classifiers import SequenceClassifier

__all__ = ["gradient_norms"]


def gradient_norms(model: SequenceClassifier, batch: tuple[Tensor, Tensor]) -> Tensor:
    """:math:`\\lVert \\partial L / \\partial h^{(t)} \\rVert` for every time step t.

    ``L`` is the cross-entropy of the prediction from the last hidden state. For each sample
    the gradient of its own loss with respect to its hidden state is taken, and the L2 norms
    are averaged over the batch, so the value does not depend on the batch size. The model's
    parameters and their ``.grad`` are left untouched.

    Args:
        model (SequenceClassifier): a unidirectional model (``VanillaRNN``,
            ``LSTMClassifier``, ``GRUClassifier``): one with
            :meth:`~gnnkit.seq.SequenceClassifier.forward_states`.
        batch (tuple): ``(tokens, labels)``, shapes (B, T) and (B,).

    Returns:
        Tensor: shape (T,), entry ``t - 1`` for :math:`h^{(t)}`; the last entry is the
        gradient at the state the prediction reads.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise InputError("batch must be a pair (tokens, labels)")
    tokens, labels = batch
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.size(0) != tokens.size(0):
        raise InputError(
            f"labels must be a 1-D tensor with one label per sequence ({tokens.size(0)}), "
            f"got {tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}"
        )
    if not getattr(model, "has_states", False):
        raise InputError(
            f"{type(model).__name__} has no per-time-step hidden states; "
            "use a unidirectional model (rnn, lstm, gru)"
        )
    with torch.enable_grad():
        logits, states = model.forward_states(tokens)
        # summing per-sample losses: d(sum)/dh_t[b] is d(loss_b)/dh_t[b]
        loss = F.cross_entropy(logits, labels, reduction="sum")
        grads = torch.autograd.grad(loss, states, allow_unused=True)
    norms = [
        g.norm(dim=1).mean() if g is not None else tokens.new_zeros((), dtype=torch.float)
        for g in grads
    ]
    return torch.stack(norms).detach()
