"""Signals held back while a few steps must run together."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

__all__ = ["signals_held"]


@contextlib.contextmanager
def signals_held(*signums: int) -> Iterator[None]:
    """Block ``signums`` in this thread for the ``with`` block; one that arrives meanwhile is
    delivered as the block ends (a Ctrl-C then raises ``KeyboardInterrupt`` there).

    A process started inside the block inherits the blocked mask, across ``exec`` too: a
    terminal's Ctrl-C, which goes to the whole process group, does not reach it until it
    unblocks or ignores the signal itself. Where the platform has no signal masks (Windows),
    nothing is held.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(signums))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
