"""benchmarks/seq_table1.py: a ``gnnkit seq bench --json`` sweep beside the report's Table 1."""

from __future__ import annotations

import json

import pytest
import seq_table1
import torch

from gnnkit.cli import main


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """A tiny sweep: LSTM and RNN on T = 5, two seeds, six batches each."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    threads = torch.get_num_threads()
    args = ["seq", "bench", "--seeds", "2", "--lengths", "5", "--models", "lstm", "rnn"]
    args += ["--hidden-dim", "16", "--max-batches", "6", "--confirm-samples", "0"]
    args += ["--json", str(out), "--no-progress", "--threads", "1"]
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_the_script_adds_the_reports_rows(bench_json, tmp_path, capsys):
    target, markdown = tmp_path / "t1.json", tmp_path / "t1.md"
    argv = [str(bench_json), "--json", str(target), "--markdown", str(markdown)]
    assert seq_table1.main(argv) == 0
    text = capsys.readouterr().out
    assert "report batches" in text and "25.0 ± 2.2" in text  # the report's LSTM T=5 row
    assert text == markdown.read_text() + "\n"
    assert text.startswith("# The reference report's Table 1 on randomcomb")
    payload = json.loads(target.read_text())
    lstm = next(r for r in payload["summary"] if r["model"] == "lstm")
    assert lstm["report"]["batches"] == [25.0, 2.2] and lstm["seeds"] == 2
    rnn = next(r for r in payload["summary"] if r["model"] == "rnn")
    assert rnn["report"] is None and rnn["batches_ratio"] is None  # the report has no RNN
    assert len(payload["runs"]) == 4
    rnn_line = next(line for line in text.splitlines() if line.startswith("| rnn | 5 |"))
    assert rnn_line.endswith("| - | - | - |")


def test_compare_ratio_and_other_tasks():
    row = {"model": "lstm", "seq_len": 10, "batches": [62.35, 5.0]}
    (ours,) = seq_table1.compare([row])
    assert ours["report"]["loss"] == [0.04, 1.0e-3]
    assert ours["batches_ratio"] == pytest.approx(62.35 / 124.7)
    # a row that did not converge in every seed has no batch mean, hence no ratio
    (unconverged,) = seq_table1.compare([{**row, "batches": None}])
    assert unconverged["report"] is not None and unconverged["batches_ratio"] is None
    # the report's Table 1 is on random combinations only
    (palindrome,) = seq_table1.compare([row], task="palindrome")
    assert palindrome["report"] is None and palindrome["batches_ratio"] is None
