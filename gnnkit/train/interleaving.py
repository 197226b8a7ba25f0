"""Several runs of the training engine stepped in turn: :func:`interleave`, :func:`round_order`.

Each :class:`~gnnkit.train.engine.Run` swaps its own random state in around its epochs, so runs
stepped in turn, epoch by epoch, draw exactly what each would draw alone, while all of them see
the same machine load: how a benchmark compares two implementations fairly. Both functions are
importable from :mod:`gnnkit.train.engine` too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from gnnkit.utils.checks import check_number, check_type

if TYPE_CHECKING:
    from gnnkit.train.engine import Run

__all__ = ["interleave", "round_order"]


def round_order(names: Iterable[str], index: int) -> list[str]:
    """The names in order for round ``index``: as given on even rounds, reversed on odd.

    Alternating who goes first means neither implementation always runs on a warmer (or a
    busier) machine.
    """
    order = list(names)
    return order if index % 2 == 0 else order[::-1]


def interleave(runs: Mapping[str, Run], *, time_budget_s: float | None = None) -> str | None:
    """Step several runs in turn, epoch by epoch (:func:`round_order`), until all are done.

    Each run keeps its own random state, so each draws what it would draw alone; all see
    the same machine load. With ``time_budget_s`` every run stops, with a checkpoint, before
    a round of epochs that would end past the budget; returns ``"time-budget"`` then.
    """
    check_type("runs", runs, Mapping, "a dict of name -> Run")
    check_number("time_budget_s", time_budget_s, optional=True)  # < 0: spent, an epoch each
    began, index = time.perf_counter(), 0
    while not all(run.done for run in runs.values()):
        if time_budget_s is not None:
            elapsed = time.perf_counter() - began
            estimates = [run.next_epoch_estimate() for run in runs.values() if not run.done]
            known = [estimate for estimate in estimates if estimate is not None]
            # Any run without a timed epoch yet: the round's length is unknown, so it runs.
            if len(known) == len(estimates) and elapsed + sum(known) > time_budget_s:
                for run in runs.values():
                    if not run.done:
                        run.stop("time-budget")
                return "time-budget"
        for name in round_order(runs, index):
            if not runs[name].done:
                runs[name].step()
        index += 1
    return None
