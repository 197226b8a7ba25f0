"""``gnnkit text train | sample | table`` in-process, plus one real subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from gnnkit.cli import main
from gnnkit.seq.charlm import generate, load_model

CORPUS = (
    "I would prefer not to, said Bartleby. for i in range(10): print(i)\n"
    "The scrivener sat in the office by the window, copying law papers.\n"
) * 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread):
    """A 2-batch run of the cpu preset on a small file, resumed to 3 batches."""
    root = tmp_path_factory.mktemp("text")
    corpus = root / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = root / "run"
    common = ["text", "train", "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    assert main([*common, "--steps", "2", "--sample-every", "1"]) == 0
    assert main([*common, "--steps", "3", "--resume"]) == 0
    return out


def test_train_writes_a_run(run_dir, capsys):
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == [
        "best.pt",
        "checkpoint.pt",
        "history.json",
        "history.png",
        "step_000002.pt",  # the end of the first run
        "step_000003.pt",
    ]
    record = json.loads((run_dir / "history.json").read_text())
    assert record["preset"] == "cpu"
    assert record["summary"]["steps"] == 3
    assert len(record["history"]["train_loss"]) == 3
    assert record["corpus"]["name"] == "corpus.txt"
    assert load_model(run_dir / "checkpoint.pt").config.hidden_size == 256


def test_sample_prints_only_the_text(run_dir, capsys):
    capsys.readouterr()
    args = ["text", "sample", "--checkpoint", str(run_dir / "checkpoint.pt")]
    assert main([*args, "--prompt", "I would", "--length", "25"]) == 0
    out = capsys.readouterr().out
    model = load_model(run_dir / "checkpoint.pt")
    assert out == "I would" + generate(model, "I would", 25) + "\n"

    assert main([*args, "--prompt", "The ", "--temperature", "0.8", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main([*args, "--prompt", "The ", "--temperature", "0.8", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first
    expected = generate(model, "The ", 100, strategy="temperature", temperature=0.8, seed=3)
    assert first == "The " + expected + "\n"

    assert main([*args, "--prompt", "r", "--k", "3", "--seed", "1", "--no-prompt"]) == 0
    assert (
        capsys.readouterr().out == generate(model, "r", 100, strategy="top-k", k=3, seed=1) + "\n"
    )
    assert main([*args, "--prompt", "I~", "--unknown", "skip", "--length", "5"]) == 0
    assert capsys.readouterr().out.startswith("I~")
    assert main([*args, "--prompt", "I", "--num", "2", "--length", "5"]) == 0
    assert len(capsys.readouterr().out.split("\n\n")) == 2
    # a run folder stands for its checkpoint.pt
    assert main(["text", "sample", "--checkpoint", str(run_dir), "--prompt", "I wo"]) == 0
    assert capsys.readouterr().out == "I wo" + generate(model, "I wo", 100) + "\n"


def test_table(run_dir, tmp_path, capsys):
    target = tmp_path / "table.md"
    args = ["text", "table", "--checkpoint", str(run_dir), "--samples", "2"]
    assert main([*args, "--out", str(target)]) == 0
    markdown = target.read_text()
    assert "| Sampling scheme | Batch | corpus.txt |" in markdown
    assert markdown.count("| Greedy | 3 |") == 2
    assert "| `for i in range` |" in markdown
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out == markdown


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--temperature", "0"],
            "temperature must be a finite number > 0, got 0.0; for the most likely character at "
            "every step (the T -> 0 limit) use strategy='greedy' (--strategy greedy)",
        ),
        (["--strategy", "temperature", "--temperature", "-1"], "temperature must be"),
        (["--strategy", "greedy", "--temperature", "2"], "--temperature has no effect"),
        (
            ["--prompt", "I would prefer ~~ ^"],
            "prompt has 2 character(s) outside the model's vocabulary of 32: "
            "'^' (U+005E CIRCUMFLEX ACCENT), '~' (U+007E TILDE)",
        ),
        (["--prompt", ""], "prompt is empty"),
    ],
)
def test_sample_bad_input(run_dir, cli_fails, extra, message):
    # These need the trained model; the rows of the other commands: test_cli_errors.py.
    args = ["text", "sample", "--checkpoint", str(run_dir / "checkpoint.pt"), "--prompt", "I"]
    cli_fails([*args, *extra], f"gnnkit: error: {message}")


def test_sample_bad_checkpoint(tmp_path, run_dir, cli_fails):
    blob = (run_dir / "step_000003.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[:1000])
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    for name, message in (("cut.pt", "truncated or corrupt"), ("other.pt", "not a gnnkit")):
        path = str(tmp_path / name)
        cli_fails(["text", "sample", "--checkpoint", path, "--prompt", "I"], message)


def test_train_bad_input(tmp_path, run_dir, cli_fails):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    short = tmp_path / "short.txt"
    short.write_text("far too short\n" * 3)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    cases = [
        (["--corpus", str(empty), "--out", str(tmp_path / "a")], "empty.txt is empty"),
        (["--corpus", str(short), "--out", str(tmp_path / "b")], "short.txt is too short"),
        (["--corpus", "no-such-corpus", "--out", str(tmp_path / "c")], "neither a registered"),
        (
            ["--corpus", str(corpus), "--out", str(tmp_path / "d"), "--resume"],
            "does not exist; drop --resume",
        ),
        (["--corpus", str(corpus), "--out", str(run_dir)], "already holds a checkpoint"),
        (
            ["--corpus", str(corpus), "--out", str(run_dir), "--resume", "--preset", "paper"],
            "was trained with preset cpu",
        ),
        (
            ["--corpus", str(corpus), "--out", str(run_dir), "--resume", "--steps", "3"],
            "already at batch 3 of 3",
        ),
        (
            ["--corpus", str(corpus), "--out", str(corpus)],
            "is a file, not a folder",
        ),
        (
            ["--corpus", str(corpus), "--out", str(run_dir), "--resume", "--lr", "0.1"],
            "--lr and --weight-decay apply to new runs only",
        ),
        (
            ["--corpus", str(corpus), "--out", str(tmp_path / "e"), "--weight-decay", "-1"],
            "weight_decay must be a finite number >= 0, got -1.0",
        ),
        (
            ["--corpus", str(corpus), "--out", str(tmp_path / "f"), "--lr", "0"],
            "lr must be a finite number > 0, got 0.0",
        ),
    ]
    upper = tmp_path / "upper.txt"
    upper.write_text(CORPUS.upper())
    cases.append(
        (
            ["--corpus", str(upper), "--out", str(run_dir), "--resume", "--steps", "9"],
            "checkpoint's vocabulary lacks",
        )
    )
    for args, message in cases:
        cli_fails(["text", "train", "--no-progress", *args], message)


def test_train_overrides_the_presets_optimizer_settings(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "run"
    args = ["--corpus", str(corpus), "--out", str(out), "--steps", "1", "--no-progress"]
    assert main(["text", "train", *args, "--lr", "0.002", "--weight-decay", "0.001"]) == 0
    config = json.loads((out / "history.json").read_text())["train_config"]
    assert (config["lr"], config["weight_decay"]) == (0.002, 0.001)
    group = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert (group["weight_decay"], group["initial_lr"]) == (0.001, 0.002)


def test_real_entry_point(run_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "gnnkit", "-q", "text", "sample"),
            *("--checkpoint", str(run_dir / "checkpoint.pt"), "--prompt", "The", "--length", "12"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The") and len(result.stdout) == len("The") + 12 + 1
    assert result.stderr == ""


def test_table_prompts_and_temperatures(run_dir, capsys):
    args = ["text", "table", "--checkpoint", str(run_dir / "step_000002.pt"), "--samples", "1"]
    args += ["--prompt", "The ", "--prompt", "I w", "--temperature", "0.7"]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line[:9] for line in lines if line.startswith("| T = ")] == ["| T = 0.7"]
    assert sum(line.startswith("| Greedy |") for line in lines) == 1  # step 2 only
    assert [line.split(" | ")[0] for line in lines if line.startswith("| `")] == [
        "| `The`",
        "| `I w`",
    ]
    # the reference report's own tables come from the benchmark script, which the log names
    assert "benchmarks/charlm.py --tables-only" in captured.err


def test_sample_reads_a_snapshot_and_a_run_checkpoint_alike(run_dir, capsys):
    for name in ("step_000003.pt", "checkpoint.pt"):
        args = ["text", "sample", "--checkpoint", str(run_dir / name), "--prompt", "The"]
        assert main([*args, "--length", "20"]) == 0
        outputs = capsys.readouterr().out
        assert outputs == "The" + generate(load_model(run_dir / "checkpoint.pt"), "The", 20) + "\n"


def test_ctrl_c_finishes_the_batch_checkpoints_and_resumes(tmp_path, monkeypatch, capsys):
    from gnnkit.cli import text as cli

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "run"
    calls = []

    def press_ctrl_c_at_batch_2(self, step, metrics):
        calls.append(step)
        if step == 2:
            self.interrupt(2, None)
        return self.stop

    monkeypatch.setattr(cli._Progress, "__call__", press_ctrl_c_at_batch_2)
    args = ["text", "train", "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    assert main([*args, "--steps", "4"]) == 130
    err = capsys.readouterr().err
    assert "finishing this batch and writing a checkpoint" in err
    assert "interrupted at batch 2; continue with --resume" in err
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["finished"] is None
    monkeypatch.undo()
    assert main([*args, "--steps", "4", "--resume"]) == 0
    record = json.loads((out / "history.json").read_text())
    assert record["summary"]["steps"] == 4 and len(record["history"]["train_loss"]) == 4
    assert calls == [1, 2]


def test_parser_names_mirror_the_library():
    from gnnkit.cli import text as cli
    from gnnkit.cli import text_sample
    from gnnkit.seq.charlm import PRESETS, STRATEGIES
    from gnnkit.seq.charlm.task import BEST_NAME
    from gnnkit.seq.charlm.training import CHECKPOINT_NAME

    assert tuple(sorted(PRESETS)) == cli.PRESET_NAMES and text_sample.STRATEGY_NAMES == STRATEGIES
    assert cli.CHECKPOINT_NAME == text_sample.CHECKPOINT_NAME == CHECKPOINT_NAME
    assert cli.RUN_CHECKPOINTS[:2] == (CHECKPOINT_NAME, BEST_NAME)


def test_resume_refuses_a_model_snapshot_with_a_specific_message(run_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((run_dir / "step_000003.pt").read_bytes())
    args = ["text", "train", "--corpus", str(corpus), "--out", str(out), "--resume"]
    assert main([*args, "--steps", "5", "--no-progress"]) == 2
    assert "is a model snapshot without optimizer state" in capsys.readouterr().err


def test_an_earlier_runs_snapshots_are_refused_or_deleted_never_mixed(tmp_path, capsys):
    """A folder holding an earlier run's snapshots is that run's even without its
    checkpoint.pt; ``--overwrite`` deletes every one, so none survives beside the new run's."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "run"
    common = ["text", "train", "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    assert main([*common, "--steps", "3", "--sample-every", "1"]) == 0
    assert (out / "step_000003.pt").is_file()
    (out / "checkpoint.pt").unlink()
    (out / "best.pt").unlink()
    before = {p.name: p.read_bytes() for p in out.glob("step_*.pt")}
    capsys.readouterr()
    assert main([*common, "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{min(before)} already holds a checkpoint" in err
    assert {p.name: p.read_bytes() for p in out.glob("step_*.pt")} == before
    missing = ["text", "train", "--corpus", str(tmp_path / "nosuch.txt"), "--out", str(out)]
    assert main([*missing, "--overwrite", "--no-progress"]) == 2  # refused after the claim
    assert {p.name: p.read_bytes() for p in out.glob("step_*.pt")} == before  # nothing lost
    assert main([*common, "--steps", "2", "--overwrite"]) == 0
    snapshots = sorted(p.name for p in out.glob("step_*.pt"))
    assert snapshots == ["step_000002.pt"]
    assert (out / "checkpoint.pt").is_file() and (out / "best.pt").is_file()


def test_an_earlier_runs_history_is_refused_before_the_work(tmp_path, capsys):
    """history.json and history.png are that run's results, even without its checkpoints:
    refused before any training unless ``--overwrite``; a folder in their place is refused
    whatever the flags, before any training, not after it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.json").write_text("earlier")
    (out / "history.png").write_bytes(b"earlier")
    common = ["text", "train", "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    assert main([*common, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"gnnkit: error: --out {out / 'history.json'} already exists; pass --overwrite to "
        "replace it, or choose another path\n"
    )
    assert (out / "history.json").read_text() == "earlier"
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "history.png"]
    (out / "history.png").unlink()
    (out / "history.png").mkdir()
    for flag in ([], ["--overwrite"]):
        assert main([*common, "--steps", "1", *flag]) == 2
        assert capsys.readouterr().err == (
            f"gnnkit: error: --out {out / 'history.png'} is a folder, not a file, where the run "
            "writes its history.png; move it away or choose another --out\n"
        )
    assert not (out / "checkpoint.pt").exists()  # refused before any training
    (out / "history.png").rmdir()
    assert main([*common, "--steps", "1", "--overwrite"]) == 0
    assert json.loads((out / "history.json").read_text())["summary"]["steps"] == 1


def test_a_folder_where_the_checkpoint_goes_is_never_trained_into(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "run"
    (out / "checkpoint.pt").mkdir(parents=True)
    common = ["text", "train", "--corpus", str(corpus), "--out", str(out), "--no-progress"]
    for flag in ([], ["--resume"], ["--overwrite"]):
        assert main([*common, "--steps", "1", *flag]) == 2
        assert capsys.readouterr().err == (
            f"gnnkit: error: {out / 'checkpoint.pt'} is a folder, not a file, where the "
            "checkpoint goes; move it away or choose another path\n"
        ), flag
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["table", "--checkpoint", "x", "--temperature", "0"],
            "expected a finite temperature > 0, got '0'; the table's greedy rows (--samples) "
            "already show the T -> 0 limit",
        ),
        (
            ["sample", "--checkpoint", "x", "--prompt", "I", "--length", "10000001"],
            "expected a number of characters in 0..10,000,000, got 10000001",
        ),
    ],
)
def test_sizes_and_temperatures_out_of_range_are_usage_errors(argparse_fails, argv, message):
    argparse_fails(["text", *argv], message)
