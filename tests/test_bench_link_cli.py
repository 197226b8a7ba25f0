"""``gnnkit bench link`` (:mod:`gnnkit.cli.bench`, :mod:`gnnkit.bench.link`): JSON, plot,
checkpoints and resume, time budget, negatives, and every bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import gnnkit.cli.bench as bench_cli
from gnnkit.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bench_link import REQUIRED, TinyLinkDataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_cli(monkeypatch):
    """``gnnkit bench link`` on the tiny graph instead of ogbl-ddi."""
    monkeypatch.setattr(bench_cli, "load_link_dataset", lambda name, args: TinyLinkDataset())
    return ["bench", "link", "--batch-size", "64", "--eval-every", "1"]


def test_cli_compare_json_plot_checkpoints_and_resume(tiny_cli, tmp_path, capsys):
    out, plot, ckpt = tmp_path / "ddi.json", tmp_path / "ddi.png", tmp_path / "ckpt"
    args = [*tiny_cli, "--compare", "pyg", "--json", str(out), "--plot", str(plot)]
    assert main([*args, "--epochs", "2", "--checkpoint-dir", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert "GCN on ogbl-ddi" in text and "speedup" in text
    payload = json.loads(out.read_text())
    assert {"dataset", "model", "metric", "gnnkit", "pyg", "speedup"} <= set(payload)
    assert payload["metric"] == "hits@20" and payload["dataset"] == "ogbl-ddi"
    for impl in ("gnnkit", "pyg"):
        assert set(payload[impl]) >= REQUIRED
        assert payload[impl]["epochs_run"] == [2]
    assert math.isclose(
        payload["speedup"], payload["pyg"]["epoch_s_median"] / payload["gnnkit"]["epoch_s_median"]
    )
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "sage"], "unknown link model 'sage'; known models: gcn, gat"),
        (["--resume"], "--resume needs --checkpoint-dir"),
        (["--time-budget", "0"], "--time-budget must be a positive number of minutes, got 0"),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'; known datasets: cora"),
        (
            ["--dataset", "ogbg-molbace"],
            "'ogbg-molbace' is a graph dataset; bench link needs one of: ogbl-ddi",
        ),
        (["--device", "gpu0"], "--device must be cpu, cuda or cuda:N, got 'gpu0'"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(args, message, cli_fails, monkeypatch):
    if "--device" in args:
        monkeypatch.setattr(bench_cli, "load_link_dataset", lambda name, a: TinyLinkDataset())
    cli_fails(["bench", "link", "--offline", "--epochs", "1", *args], message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eval-every", "0"], "expected a positive integer (>= 1), got 0"),
        (["--runs", "0"], "expected a positive integer (>= 1), got 0"),
        (["--time-budget", "soon"], "invalid float value: 'soon'"),
        (["--compare", "dgl"], "invalid choice: 'dgl'"),
        (["--negatives", "host"], "invalid choice: 'host'"),
    ],
)
def test_argument_errors_exit_2(args, message, argparse_fails):
    argparse_fails(["bench", "link", *args], message)


def test_missing_ddi_files_are_named(tmp_path, capsys, offline):
    assert main(["bench", "link", "--data-root", str(tmp_path), "--offline"]) == 2
    assert "ogb/ogbl_ddi/" in capsys.readouterr().err
