"""Signals held back while a few steps must run together."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["signals_held"]


@contextlib.contextmanager
def signals_held(*signums: int) -> Iterator[None]:
    """Hold ``signums`` back for the ``with`` block; one that arrives meanwhile is delivered
    as the block ends (a Ctrl-C then raises ``KeyboardInterrupt`` there, once).

    Two mechanisms, for two audiences:

    - in the main thread, where Python runs every signal handler, each signal's handler is
      replaced for the block by one that only records it; the signal is sent again once the
      original handlers are back. The kernel may deliver a process-directed signal to any
      thread (torch starts several), so blocking it in one thread alone would not hold it;
    - the signals are also blocked in the calling thread (``pthread_sigmask``, where the
      platform has it), and a process started inside the block inherits that mask, across
      ``exec`` too: a terminal's Ctrl-C, which goes to the whole process group, does not reach
      it until it unblocks or ignores the signal itself.
    """
    received: list[int] = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in signums:
            handlers[signum] = signal.signal(signum, lambda number, _: received.append(number))
    masked = hasattr(signal, "pthread_sigmask")
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(signums)) if masked else None
    try:
        yield
    finally:
        # Handlers that raise (Python's Ctrl-C handler) go back last, so one that runs early
        # finds every other handler restored.
        for signum, handler in sorted(handlers.items(), key=lambda item: callable(item[1])):
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):  # sent again, to the restored handlers
            if previous is None:
                signal.raise_signal(signum)
            else:  # pending while this thread blocks it: delivered with the others below
                signal.pthread_kill(threading.get_ident(), signum)
        if previous is not None:  # the held signals run their handlers here, in one go
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
