"""``gnnkit seq train|bench|gradients`` in-process: outputs, JSON and plots.

The bad command lines: ``test_cli_errors.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from gnnkit.cli import main


@pytest.fixture(autouse=True)
def keep_threads():
    """``--threads`` sets torch's thread count; restore it for the other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_prints_and_writes_the_issue_json(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(
        [
            "seq",
            "train",
            "--task",
            "randomcomb",
            "--model",
            "lstm",
            "--seq-len",
            "4",
            "--seed",
            "1",
            "--hidden-dim",
            "32",
            "--json",
            str(out),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "lstm on randomcomb (T=4, seed 1)" in text and "validation (4,096 samples)" in text
    payload = json.loads(out.read_text())
    required = {
        "task",
        "model",
        "seq_len",
        "seed",
        "converged",
        "batches_to_converge",
        "val_acc",
        "val_loss",
    }
    assert required <= set(payload)
    assert payload["task"] == "randomcomb" and payload["model"] == "lstm"
    assert payload["seq_len"] == 4 and payload["seed"] == 1 and payload["embed_dim"] == 8
    assert isinstance(payload["converged"], bool)
    assert payload["converged"] == (payload["batches_to_converge"] is not None)
    assert 0.0 <= payload["val_acc"] <= 1.0


def test_bench_table_json_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "t1.json", tmp_path / "t1.png"
    args = ["seq", "bench", "--seeds", "2", "--lengths", "5", "--models", "lstm", "rnn"]
    args += ["--hidden-dim", "16", "--max-batches", "6", "--confirm-samples", "0"]
    args += ["--json", str(out), "--plot", str(plot), "--no-progress", "--threads", "1"]
    args += ["--markdown", str(tmp_path / "t1.md")]
    assert main(args) == 0
    text = capsys.readouterr().out
    # the report's numbers live in the benchmark script, which the output names
    assert "report" not in text.split("[")[0] and "python benchmarks/seq_table1.py" in text
    assert "3-batch rule" in text and "min acc" in text
    payload = json.loads(out.read_text())
    assert len(payload["runs"]) == 4 and {r["model"] for r in payload["runs"]} == {"lstm", "rnn"}
    lstm = next(r for r in payload["summary"] if r["model"] == "lstm")
    assert lstm["seeds"] == 2 and "report" not in lstm
    assert len(lstm["val_acc"]) == 2 and 0.0 <= lstm["min_val_acc"] <= lstm["val_acc"][0]
    assert payload["environment"]["threads"] == 1
    assert payload["forget_bias"] == 1.0 and "--forget-bias 1.0 --max-batches" in payload["command"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "t1.md").read_text()
    assert markdown.startswith("# Memory-task sweep on randomcomb")
    assert "| model | T | val loss | val acc | min acc | batches | 3-batch rule |" in markdown
    assert sum(line.startswith("| lstm | 5 |") for line in markdown.splitlines()) == 1


def test_a_bench_of_models_without_a_forget_gate_reproduces_without_forget_bias(tmp_path):
    # --forget-bias not given: the models without a forget gate run, and the command the JSON
    # records does not name the option (which would be refused with them)
    out = tmp_path / "rnn.json"
    args = ["seq", "bench", "--seeds", "1", "--lengths", "3", "--models", "rnn", "gru"]
    args += ["--hidden-dim", "4", "--max-batches", "2", "--confirm-samples", "0"]
    assert main([*args, "--no-progress", "--threads", "1", "--json", str(out)]) == 0
    command = json.loads(out.read_text())["command"]
    assert command.startswith("gnnkit seq bench --seeds 1 --lengths 3 --models rnn gru")
    assert "--forget-bias" not in command


def test_gradients_table_and_plot(tmp_path, capsys):
    plot, out = tmp_path / "g.png", tmp_path / "g.json"
    args = ["seq", "gradients", "--seq-len", "8", "--hidden-dim", "16", "--batch-size", "8"]
    assert main([*args, "--plot", str(plot), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lstm (forget bias 1)" in text and "rnn: ||dL/dh_1|| / ||dL/dh_7||" in text
    norms = json.loads(out.read_text())["norms"]
    assert set(norms) == {"rnn", "lstm (PyTorch init)", "lstm (forget bias 1)"}
    assert all(len(v) == 7 for v in norms.values())
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_gradients_tells_apart_biases_that_float32_tells_apart(tmp_path):
    # 1.0000001 is a float32 of its own (1 + 2**-23); 1.00000001 rounds to 1 and is refused
    out = tmp_path / "g.json"
    args = ["seq", "gradients", "--seq-len", "4", "--hidden-dim", "4", "--batch-size", "4"]
    assert (
        main([*args, "--models", "lstm", "--forget-bias", "1", "1.0000001", "--json", str(out)])
        == 0
    )
    norms = json.loads(out.read_text())["norms"]
    assert set(norms) == {"lstm (forget bias 1)", "lstm (forget bias 1.0000001)"}
    assert main([*args, "--forget-bias", "1", "1.00000001"]) == 2


def test_parser_names_mirror_the_library():
    from gnnkit.cli import seq as cli
    from gnnkit.seq import (
        DEFAULT_FORGET_BIAS,
        DEFAULT_HIDDEN_DIM,
        MODELS,
        TASKS,
        BiLSTM,
        LSTMClassifier,
        TrainConfig,
    )

    assert tuple(TASKS) == cli.TASK_NAMES and tuple(MODELS) == cli.MODEL_NAMES
    assert (
        tuple(n for n, (c, _) in MODELS.items() if not issubclass(c, BiLSTM))
        == cli.STATE_MODEL_NAMES
    )
    assert (cli.DEFAULT_HIDDEN_DIM, cli.DEFAULT_FORGET_BIAS) == (
        DEFAULT_HIDDEN_DIM,
        DEFAULT_FORGET_BIAS,
    )
    lstms = tuple(n for n, (c, _) in MODELS.items() if issubclass(c, LSTMClassifier))
    assert lstms == cli.LSTM_MODEL_NAMES
    assert torch.finfo(torch.float32).max == cli.MAX_FORGET_BIAS
    config = TrainConfig()
    assert (
        config.max_batches,
        config.confirm_samples,
    ) == (cli.DEFAULT_MAX_BATCHES, cli.DEFAULT_CONFIRM_SAMPLES)


def test_building_the_parser_imports_no_sequence_library():
    code = (
        "import argparse, sys\n"
        "from gnnkit.cli import seq, text\n"
        "sub = argparse.ArgumentParser().add_subparsers()\n"
        "seq.register(sub); text.register(sub)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('gnnkit.seq', 'matplotlib'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
