"""``gnnkit seq train|bench|gradients`` in-process: outputs, JSON, plots and one-line errors."""

from __future__ import annotations

import json

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
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "report batches" in text and "25.0 ± 2.2" in text  # the report's LSTM T=5 row
    payload = json.loads(out.read_text())
    assert len(payload["runs"]) == 4 and {r["model"] for r in payload["runs"]} == {"lstm", "rnn"}
    lstm = next(r for r in payload["summary"] if r["model"] == "lstm")
    assert lstm["report"]["batches"] == [25.0, 2.2] and lstm["seeds"] == 2
    assert payload["environment"]["threads"] == 1
    assert plot.read_bytes()[:4] == b"\x89PNG"


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["seq", "train", "--seq-len", "1"], "seq_len must be >= 2, got 1"),
        (["seq", "train", "--seq-len", "5", "--embed-dim", "0"], "embed_dim must be >= 1, got 0"),
        (["seq", "train", "--seq-len", "5", "--seed", "-2"], "seed must be an integer >= 0"),
        (["seq", "train", "--seq-len", "5", "--threads", "0"], "--threads must be >= 1, got 0"),
        (["seq", "train", "--seq-len", "5", "--max-batches", "0"], "TrainConfig.max_batches"),
        (["seq", "bench", "--seeds", "0"], "seeds must be an integer >= 1, got 0"),
        (
            ["seq", "train", "--seq-len", "5", "--forget-bias", "big"],
            "--forget-bias must be a number",
        ),
        (
            ["seq", "train", "--seq-len", "5", "--forget-bias", "nan"],
            "forget_bias must be a finite",
        ),
        (["seq", "gradients", "--seq-len", "1"], "seq_len must be >= 2, got 1"),
        (["seq", "gradients", "--batch-size", "0"], "num_samples must be >= 1, got 0"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(argv, message, capsys):
    assert main([*argv, *(["--no-progress"] if argv[1] != "gradients" else [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gnnkit: error:") and message in err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["seq", "train", "--seq-len", "5", "--model", "transformer"],
        ["seq", "train", "--seq-len", "5", "--task", "copy"],
    ],
)
def test_unknown_choices_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
