"""Timing and peak-memory helpers shared by every benchmark.

- :func:`time_function`: run a function after warm-up calls and report the median (and the
  spread) of several timed calls; synchronises CUDA when given a CUDA device.
- :class:`PeakRSS`: a context manager that measures the peak resident set size (RSS) reached
  inside the ``with`` block, over the RSS at its start.
- :func:`run_in_subprocess`: call a function in a fresh Python process (``spawn``), so that
  its memory high-water mark is its own and nothing another measurement allocated counts.
- :func:`measure_peak_rss`: both together: the peak RSS increase of one call, in its own
  process.

How peak RSS is measured: on Linux the kernel's high-water mark ``VmHWM`` (in
``/proc/self/status``) is reset to the current RSS by writing ``5`` to
``/proc/self/clear_refs`` when the block starts, and read when it ends; the increase is
``VmHWM - VmRSS(at start)``. Where the reset is not available, the peak is
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the high-water mark since the process started,
so the block must run in a fresh process (:func:`run_in_subprocess`) for the number to mean the
block's own peak. :attr:`MemoryUsage.method` says which was used.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gnnkit.errors import InputError

__all__ = [
    "WARMUP_CALLS",
    "MemoryUsage",
    "PeakRSS",
    "Timing",
    "current_rss",
    "measure_peak_rss",
    "peak_rss",
    "reset_peak_rss",
    "run_in_subprocess",
    "time_function",
]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock times of repeated calls (seconds), after ``warmup`` untimed calls."""

    times_s: list[float]
    warmup: int

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.times_s)

    @property
    def std_s(self) -> float:
        return statistics.stdev(self.times_s) if len(self.times_s) > 1 else 0.0

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary statistics and every time."""
        return {
            "median_s": self.median_s,
            "mean_s": self.mean_s,
            "std_s": self.std_s,
            "min_s": self.min_s,
            "repeat": len(self.times_s),
            "warmup": self.warmup,
            "times_s": list(self.times_s),
        }


def _synchronizer(device: Any) -> Callable[[], None]:
    if device is None:
        return lambda: None
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


#: Untimed calls before the timed ones: :func:`time_function`'s default, and the ``--warmup``
#: default of the benchmark scripts that time steps or epochs (``benchmarks/layers.py``,
#: ``benchmarks/scale.py``).
WARMUP_CALLS = 1


def time_function(
    fn: Callable[[], Any], *, repeat: int = 5, warmup: int = WARMUP_CALLS, device: Any = None
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` timed ones.

    Args:
        fn (callable): the work, called without arguments.
        repeat (int, optional): the number of timed calls (at least 1). (default: ``5``)
        warmup (int, optional): untimed calls first (caches, allocator, lazy init).
            (default: :data:`WARMUP_CALLS`, 1)
        device (str or torch.device, optional): synchronise this CUDA device before and after
            each call, so asynchronous kernels are counted. (default: ``None``)

    Returns:
        Timing: every time, with ``median_s`` the figure to report.
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise InputError(f"repeat must be a positive int, got {repeat!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be a non-negative int, got {warmup!r}")
    sync = _synchronizer(device)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return Timing(times, warmup)


# ---------------------------------------------------------------------------------------------
# Resident memory
# ---------------------------------------------------------------------------------------------


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _ru_maxrss_bytes() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # bytes on macOS, KiB on Linux


def current_rss() -> int:
    """The process's resident set size now, in bytes (the peak so far where not available)."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else _ru_maxrss_bytes()


def peak_rss() -> int:
    """The process's peak resident set size, in bytes (since start or the last reset)."""
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else _ru_maxrss_bytes()


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS; ``False`` if unsupported."""
    try:
        with _CLEAR_REFS.open("w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


@dataclass
class MemoryUsage:
    """Peak resident memory of a block of code, in bytes."""

    baseline_bytes: int  # RSS when the block started
    peak_bytes: int  # peak RSS of the process while the block ran
    method: str = field(default="")

    @property
    def increase_bytes(self) -> int:
        """Peak RSS above the baseline: what the block itself needed at its worst moment."""
        return max(0, self.peak_bytes - self.baseline_bytes)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["increase_bytes"] = self.increase_bytes
        return out


class PeakRSS:
    """Measure the peak RSS reached inside a ``with`` block.

    Example:
        >>> with PeakRSS() as mem:
        ...     work()
        >>> mem.usage.increase_bytes
    """

    def __init__(self) -> None:
        self.usage: MemoryUsage | None = None
        self._baseline = 0
        self._method = ""

    def __enter__(self) -> PeakRSS:
        if reset_peak_rss():
            self._method = "VmHWM after reset (/proc/self/clear_refs) minus VmRSS at start"
        else:
            self._method = "ru_maxrss (peak since process start) minus RSS at start"
        self._baseline = current_rss()
        return self

    def __exit__(self, *exc: object) -> None:
        self.usage = MemoryUsage(self._baseline, peak_rss(), self._method)


# ---------------------------------------------------------------------------------------------
# Fresh processes
# ---------------------------------------------------------------------------------------------


def run_in_subprocess(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` in a fresh Python process and return its result.

    The process is started with ``spawn`` (a new interpreter, not a fork of this one), so its
    memory holds only what ``fn`` and its imports allocate. ``fn`` must be importable by name
    (a module-level function; in a script, guard the script's own work with
    ``if __name__ == "__main__":``), and its arguments and result must pickle. An exception in
    the child is re-raised here.
    """
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def _measured_call(fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[Any, MemoryUsage]:
    with PeakRSS() as mem:
        result = fn(*args, **kwargs)
    assert mem.usage is not None  # set when the block exits
    return result, mem.usage


def measure_peak_rss(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, MemoryUsage]:
    """Run ``fn(*args, **kwargs)`` in a fresh process; return its result and peak-RSS usage.

    The baseline is the child's RSS just before the call (the interpreter plus ``fn``'s
    module and its imports, e.g. torch); the peak is its high-water mark during the call. To
    leave input construction out of the figure, build the inputs inside ``fn`` and wrap only
    the measured part in :class:`PeakRSS` instead.
    """
    return run_in_subprocess(_measured_call, fn, args, kwargs)
