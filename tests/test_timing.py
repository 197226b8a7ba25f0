"""gnnkit.utils.timing: call counts, summaries, peak-RSS accounting, fresh processes."""

from __future__ import annotations

import mmap
import os

import pytest

from gnnkit.errors import InputError
from gnnkit.utils import timing


def _allocate_and_report_pid(megabytes: int) -> int:
    # An anonymous map gets fresh pages from the kernel: malloc could instead reuse memory
    # that an earlier test freed but the process kept resident, which raises no peak.
    block = mmap.mmap(-1, megabytes * 2**20)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    block.close()
    return os.getpid()


def test_time_function_runs_warmup_then_timed_calls():
    calls = []
    result = timing.time_function(lambda: calls.append(1), repeat=4, warmup=2)
    assert len(calls) == 6 and len(result.times_s) == 4
    assert all(t >= 0 for t in result.times_s)
    summary = result.as_dict()
    assert summary["repeat"] == 4 and summary["warmup"] == 2
    assert summary["min_s"] <= summary["median_s"] <= max(result.times_s)


def test_timing_summary_statistics():
    result = timing.Timing([3.0, 1.0, 2.0, 10.0], warmup=1)
    assert result.median_s == 2.5 and result.mean_s == 4.0 and result.min_s == 1.0
    assert result.std_s == pytest.approx(4.0824829)
    assert timing.Timing([1.0], warmup=0).std_s == 0.0


def test_time_function_rejects_bad_counts():
    with pytest.raises(InputError, match="repeat must be a positive int"):
        timing.time_function(lambda: None, repeat=0)
    with pytest.raises(InputError, match="warmup must be a non-negative int"):
        timing.time_function(lambda: None, warmup=-1)


def test_peak_rss_counts_a_large_allocation_inside_the_block():
    with timing.PeakRSS() as mem:
        _allocate_and_report_pid(200)
    usage = mem.usage
    assert usage.increase_bytes >= 150 * 2**20
    assert usage.peak_bytes >= usage.baseline_bytes and usage.method
    assert usage.as_dict()["increase_bytes"] == usage.increase_bytes
    assert timing.current_rss() > 0 and timing.peak_rss() >= timing.current_rss()


def test_measure_peak_rss_runs_in_a_fresh_process():
    child_pid, usage = timing.measure_peak_rss(_allocate_and_report_pid, 120)
    assert child_pid != os.getpid()
    assert usage.increase_bytes >= 100 * 2**20


def test_run_in_subprocess_returns_results_and_reraises_child_errors():
    # Builtins keep the child light (it imports nothing of gnnkit or torch).
    assert timing.run_in_subprocess(os.getpid) != os.getpid()
    with pytest.raises(ValueError, match="invalid literal"):
        timing.run_in_subprocess(int, "not a number")
