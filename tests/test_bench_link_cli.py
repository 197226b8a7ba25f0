"""``gnnkit bench link`` (:mod:`gnnkit.cli.bench_ogb`, :mod:`gnnkit.bench.link`): JSON, plot,
checkpoints and resume, time budget, negatives, missing data and a bad --device.

The other bad command lines: ``test_cli_errors.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import gnnkit.cli.bench_ogb as bench_cli
from gnnkit.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bench_link import TinyLinkDataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_cli(monkeypatch):
    """``gnnkit bench link`` on the tiny graph instead of ogbl-ddi."""
    monkeypatch.setattr(bench_cli, "load_link_dataset", lambda name, args: TinyLinkDataset())
    return ["bench", "link", "--batch-size", "64", "--eval-every", "1"]


def test_cli_compare_json_plot_checkpoints_and_resume(tiny_cli, tmp_path, capsys, pyg_comparison):
    out, plot, ckpt = tmp_path / "ddi.json", tmp_path / "ddi.png", tmp_path / "ckpt"
    args = [*tiny_cli, "--compare", "pyg", "--json", str(out), "--plot", str(plot)]
    assert main([*args, "--epochs", "2", "--checkpoint-dir", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert "GCN on ogbl-ddi" in text and "speedup" in text
    payload = pyg_comparison(out, dataset="ogbl-ddi", metric="hits@20")
    assert payload["gnnkit"]["epochs_run"] == [2] and payload["pyg"]["epochs_run"] == [2]
    assert plot.stat().st_size > 0
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "ogbl-ddi-gcn-gnnkit-seed0.pt",
        "ogbl-ddi-gcn-pyg-seed0.pt",
    ]
    assert main([*args, "--epochs", "3", "--checkpoint-dir", str(ckpt), "--resume"]) == 0
    payload = json.loads(out.read_text())
    assert (
        payload["gnnkit"]["epochs_run"] == [3] and len(payload["gnnkit"]["history"][0]["loss"]) == 3
    )


def test_cli_time_budget_reports_a_partial_run(tiny_cli, tmp_path, capsys):
    out = tmp_path / "partial.json"
    budget = ["--time-budget", "0.0000001", "--epochs", "5", "--json", str(out)]
    assert main([*tiny_cli, *budget, "--checkpoint-dir", str(tmp_path)]) == 0
    assert "partial: stopped by the time budget" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["options"]["negatives"] == "pyg"
    assert payload["gnnkit"]["finished"] == ["time-budget"] and payload["gnnkit"]["epochs_run"] == [
        1
    ]


def test_cli_device_negatives(tiny_cli, tmp_path, capsys):
    out = tmp_path / "device.json"
    assert main([*tiny_cli, "--epochs", "1", "--negatives", "device", "--json", str(out)]) == 0
    assert "negatives drawn by device" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["options"]["negatives"] == "device" and payload["gnnkit"]["epochs_run"] == [1]


def test_bad_device_exits_2_with_one_line(tiny_cli, cli_fails):
    # --device reaches the benchmark, which runs after the data is loaded: the tiny graph stands
    # in for ogbl-ddi. The command's other bad inputs: test_cli_errors.py.
    argv = [*tiny_cli, "--offline", "--epochs", "1", "--device", "gpu0"]
    cli_fails(argv, "gnnkit: error: --device must be cpu, cuda or cuda:N, got 'gpu0'")


def test_missing_ddi_files_are_named(tmp_path, capsys, offline):
    assert main(["bench", "link", "--data-root", str(tmp_path), "--offline"]) == 2
    assert "ogb/ogbl_ddi/" in capsys.readouterr().err
