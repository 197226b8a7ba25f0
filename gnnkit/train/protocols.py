"""The papers' own training protocols: when a node-classification run stops, and which
epoch's model it reports.

A protocol is a small rule fed one validation result per epoch (:meth:`StoppingRule.update`);
it answers whether to stop after this epoch and whether this epoch's model is the one to
keep. :class:`~gnnkit.train.node.NodeTask` applies it on the one training engine
(:func:`gnnkit.train.fit` with ``protocol=NAME``; ``gnnkit bench node --protocol paper``),
to gnnkit's models and PyG's reference models alike.

Each rule is written as the authors' released code runs it, which is more precise than, and
in one case differs from, the sentence in the paper:

- :class:`KipfWellingStopping` (``"kipf-welling"``): Kipf & Welling, "Semi-Supervised
  Classification with Graph Convolutional Networks", ICLR 2017 (arXiv 1609.02907), and
  ``gcn/train.py`` of https://github.com/tkipf/gcn.
- :class:`VelickovicStopping` (``"velickovic"``): Veličković et al., "Graph Attention
  Networks", ICLR 2018 (arXiv 1710.10903), and ``execute_cora.py`` of
  https://github.com/PetarV-/GAT.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from gnnkit.errors import InputError
from gnnkit.utils.checks import check_int

__all__ = [
    "PROTOCOLS",
    "Decision",
    "KipfWellingStopping",
    "StoppingRule",
    "VelickovicStopping",
    "make_protocol",
]


@dataclass(frozen=True)
class Decision:
    """What a :class:`StoppingRule` says after one epoch's validation.

    Attributes:
        keep (bool): this epoch's model is, so far, the one to report (its test accuracy,
            measured in the same evaluation, is the run's result).
        stop (bool): end the run after this epoch.
    """

    keep: bool
    stop: bool


class StoppingRule(ABC):
    """A paper's stopping and model-keeping rule, fed one validation result per epoch.

    Subclasses are dataclasses whose fields are the rule's settings and running state, so
    :meth:`state_dict` (what a checkpoint holds to resume bit for bit) is their fields.

    Attributes:
        name (str): the key of :data:`PROTOCOLS`.
        epochs (int): the paper's maximum number of epochs.
        loss_includes_l2 (bool): the validation loss the rule watches includes the L2 penalty
            of the weight decay, :math:`\\frac{\\lambda}{2} \\lVert \\theta \\rVert^2` over the
            decayed parameters (Kipf & Welling's code evaluates its training objective).
    """

    name: ClassVar[str]
    epochs: ClassVar[int]
    loss_includes_l2: ClassVar[bool] = False

    @abstractmethod
    def update(self, val_loss: float, val_acc: float) -> Decision:
        """Take the validation loss and accuracy of the epoch just trained."""

    def state_dict(self) -> dict[str, Any]:
        """The rule's settings and running state (checkpoints)."""
        return asdict(self)  # type: ignore[call-overload]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        for key, value in state.items():
            setattr(self, key, list(value) if isinstance(value, list | tuple) else value)


@dataclass
class KipfWellingStopping(StoppingRule):
    r"""GCN's protocol (Kipf & Welling 2017): at most 200 epochs, stop once the validation
    loss rises above the mean of the previous ``window`` epochs' validation losses; report
    the final model.

    The paper (Section 5.2): "We train all models for a maximum of 200 epochs (training
    iterations) using Adam with a learning rate of 0.01 and early stopping with a window
    size of 10, i.e. we stop training if the validation loss does not decrease for 10
    consecutive epochs." The released code (``gcn/train.py``, flag ``early_stopping=10``)
    runs, after each epoch's training step and validation:

    .. code-block:: python

        cost_val.append(cost)
        if epoch > FLAGS.early_stopping and cost_val[-1] > np.mean(
                cost_val[-(FLAGS.early_stopping + 1):-1]):
            break

    and then evaluates the test set with the model as it is: no checkpoint is restored. So,
    with :math:`L_t` the validation loss after epoch :math:`t` (1-based), the run stops
    after the first epoch :math:`t \ge w + 2` with

    .. math::
        L_t > \frac{1}{w} \sum_{s=t-w}^{t-1} L_s,

    (``epoch`` counts from 0 in the code, so ``epoch > 10`` is :math:`t \ge 12`), and every
    epoch's model is kept, the last one winning.

    NOTE: the code's validation "cost" is the model's training objective evaluated on the
    validation nodes: the cross-entropy plus ``weight_decay * tf.nn.l2_loss(W)`` for the
    first layer's variables (``gcn/models.py``, ``GCN._loss``), i.e.
    :math:`\frac{\lambda}{2}\lVert W^{(0)}\rVert^2`. :attr:`loss_includes_l2` asks the task
    for that sum: the cross-entropy plus :math:`\frac{\lambda}{2}\lVert\theta\rVert^2` over
    the parameters its optimiser decays.

    Args:
        window (int, optional): :math:`w`, the number of previous epochs averaged.
            (default: ``10``)
    """

    name: ClassVar[str] = "kipf-welling"
    epochs: ClassVar[int] = 200
    loss_includes_l2: ClassVar[bool] = True

    window: int = 10
    seen: int = 0
    recent: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_int("window", self.window)

    def update(self, val_loss: float, val_acc: float) -> Decision:
        previous = self.recent[-self.window :]
        self.seen += 1
        stop = self.seen > self.window + 1 and val_loss > statistics.fmean(previous)
        self.recent = [*previous, float(val_loss)]
        return Decision(keep=True, stop=stop)


@dataclass
class VelickovicStopping(StoppingRule):
    r"""GAT's protocol (Veličković et al. 2018): up to 100,000 epochs, patience 100 on the
    validation loss *and* accuracy; report the model of the last epoch that matched or beat
    both the best validation accuracy and the lowest validation loss seen so far.

    The paper (Section 3.3): "we use an early stopping strategy on both the cross-entropy
    loss and accuracy (transductive) [...] on the validation nodes, with a patience of 100
    epochs". The released code (``execute_cora.py``: ``nb_epochs = 100000``,
    ``patience = 100``; ``vacc_mx = 0.0``, ``vlss_mn = np.inf``, ``curr_step = 0``) runs,
    after each epoch's training step and validation (``acc``, ``loss``):

    .. code-block:: python

        if acc >= vacc_mx or loss <= vlss_mn:
            if acc >= vacc_mx and loss <= vlss_mn:
                saver.save(sess, checkpt_file)  # the model kept for testing
            vacc_mx = np.max((acc, vacc_mx))
            vlss_mn = np.min((loss, vlss_mn))
            curr_step = 0
        else:
            curr_step += 1
            if curr_step == patience:
                break

    and after the loop restores the saved checkpoint and evaluates the test set. So, with
    :math:`a^*, \ell^*` the highest validation accuracy and lowest validation loss of the
    epochs before:

    - the patience counter resets when :math:`a_t \ge a^*` **or** :math:`\ell_t \le \ell^*`
      (a tie resets it too: the comparisons are not strict), and otherwise counts up; the
      run stops when it reaches ``patience``, i.e. after ``patience`` epochs in a row that
      are worse on both;
    - the model kept is that of the last epoch with :math:`a_t \ge a^*` **and**
      :math:`\ell_t \le \ell^*` (not strict either: a later epoch that ties both replaces
      it); the first epoch is always kept.

    The validation loss is the plain cross-entropy: the code adds the L2 term
    (``l2_coef = 0.0005``) only to the optimiser's objective (``models/base_gattn.py``,
    ``training``).

    Args:
        patience (int, optional): epochs in a row without either improvement before the
            run stops. (default: ``100``)
    """

    name: ClassVar[str] = "velickovic"
    epochs: ClassVar[int] = 100_000

    patience: int = 100
    best_acc: float = 0.0
    best_loss: float = math.inf
    waited: int = 0

    def __post_init__(self) -> None:
        check_int("patience", self.patience)

    def update(self, val_loss: float, val_acc: float) -> Decision:
        if val_acc >= self.best_acc or val_loss <= self.best_loss:
            keep = val_acc >= self.best_acc and val_loss <= self.best_loss
            self.best_acc = max(float(val_acc), self.best_acc)
            self.best_loss = min(float(val_loss), self.best_loss)
            self.waited = 0
            return Decision(keep=keep, stop=False)
        self.waited += 1
        return Decision(keep=False, stop=self.waited >= self.patience)


#: The protocols by name: ``"kipf-welling"`` (GCN) and ``"velickovic"`` (GAT).
PROTOCOLS: dict[str, type[StoppingRule]] = {
    rule.name: rule for rule in (KipfWellingStopping, VelickovicStopping)
}


def make_protocol(name: Any) -> StoppingRule:
    """A fresh rule of the protocol ``name`` (a key of :data:`PROTOCOLS`) with the paper's
    settings; an unknown name raises :class:`~gnnkit.errors.InputError` listing them."""
    if not isinstance(name, str) or name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; known protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]()
