"""Bad command lines of every ``gnnkit`` command, in two tables grouped by command.

- ``ERRORS``: input only the command can check (an unknown dataset, a negative value). ``gnnkit``
  exits 2 with one line, ``gnnkit: error: <message>``, and no traceback (``cli_fails``).
- ``USAGE_ERRORS``: input argparse refuses (an unknown command or choice, a malformed number):
  exit 2 with one line too, argparse's message and the command's ``--help`` to see, and no
  usage block (``test_usage_error_exits_2``; whole lines: ``BAD_COMMAND_LINES``).

The rows that need a module's own data stay in that module and call ``cli_fails`` too: the
citation corpus (``test_citation_cli.py``), a trained character model (``test_text_cli.py``) and
the tiny link graph behind ``bench link --device`` (``test_bench_link_cli.py``).
"""

from __future__ import annotations

import itertools

import pytest

# A command may set torch's thread count before it refuses an input: restore it afterwards.
pytestmark = pytest.mark.usefixtures("one_thread")

#: ``bench node`` on the embedded karate club, so that no row needs a download.
KARATE = ["bench", "node", "--dataset", "karate", "--warmup", "1", "--no-progress"]
#: The shortest benchmark, for rows whose input is checked only when the command runs.
ONE_EPOCH = ["--runs", "1", "--epochs", "1"]
#: What ``seq --forget-bias`` takes: a number the LSTMs' float32 biases hold, or 'torch'.
FORGET_BIAS_RANGE = (
    "--forget-bias must be a finite number that the LSTMs' float32 biases hold "
    "(|B| <= 3.403e+38) or 'torch'"
)
#: The start of ``seq --forget-bias``'s refusal for a model without a forget gate.
NO_FORGET = (
    "--forget-bias sets the forget gate of the LSTM models (lstm, lstm-gnnkit, bilstm); --model"
)


def rows(command: list[str], table: list[tuple[list[str], str]]) -> list:
    """``(command + args, message)`` for each ``(args, message)`` of ``table``, with a test id
    made of the command's name and ``args``."""
    name = list(itertools.takewhile(lambda word: not word.startswith("-"), command))
    return [
        pytest.param([*command, *args], message, id=" ".join([*name, *args]))
        for args, message in table
    ]


ERRORS = [
    # gnnkit hops
    *rows(
        ["hops"],
        [
            (["--edges", "A-,B-C"], "malformed edge token 'A-'"),
            (["--edges", "A--B"], "malformed edge token 'A--B'"),
            (["--edges", ""], "malformed edge token ''"),
            (
                ["--edges", "A-B", "--from", "Z", "--to", "A"],
                "--from 'Z' is not a node of the graph; known labels: A, B",
            ),
            (["--edges", "A-B", "--from", "A"], "give both --from and --to"),
            (
                ["--edges", "A-B", "--self-loop-weight", "1e308"],
                "self_loop_weight 1e+308 overflows the adjacency's torch.float32",
            ),
            (
                ["--edges", "A-B", "--json", "~nosuchuser-gnnkit/x.json"],
                "--json ~nosuchuser-gnnkit/x.json: cannot expand '~' (no such user)",
            ),
        ],
    ),
    # gnnkit data
    *rows(
        ["data", "fetch"],
        [(["nosuch"], "unknown dataset 'nosuch'; known datasets: cora")],
    ),
    # gnnkit bench node
    *rows(
        [*KARATE, *ONE_EPOCH],
        [
            (["--dataset", "nosuch"], "unknown dataset 'nosuch'; bench node takes: cora, "),
            (["--dataset", "corra"], "unknown dataset 'corra' (did you mean 'cora'?); bench node"),
            (
                ["--dataset", "ogbg-molbace"],
                "dataset 'ogbg-molbace' is a graph dataset; bench node needs one of: "
                "cora, citeseer, pubmed, karate",
            ),
            (["--model", "sage"], "unknown model 'sage'; known models: gcn, gat"),
            (["--resume"], "--resume needs --checkpoint-dir"),
            (["--warmup", "-1"], "--warmup must be >= 0, got -1"),
            (["--device", "gpu0"], "--device must be cpu, cuda or cuda:N, got 'gpu0'"),
            (
                ["--protocol", "paper", "--patience", "5"],
                "--protocol paper stops by the paper's own rule: drop --patience",
            ),
            (
                ["--protocol", "paper", "--mini-batch"],
                "--protocol paper trains full-batch, as the papers do: drop --mini-batch",
            ),
            (
                ["--protocol", "paper", "--dataset", "ogbn-arxiv"],
                "--protocol paper: the arxiv-gcn recipe has no paper protocol (models with one: "
                "gcn, gat)",
            ),
        ],
    ),
    # gnnkit bench graph
    *rows(
        ["bench", "graph", "--offline", *ONE_EPOCH],
        [
            (
                ["--dataset", "ogbg-molfoo"],
                "unknown dataset 'ogbg-molfoo'; bench graph takes: ogbg-",
            ),
            (
                ["--dataset", "karate"],
                "dataset 'karate' is a node dataset; bench graph needs one of: ogbg-molbace",
            ),
            (["--model", "gin"], "unknown graph model 'gin'; known models: gcn, gat"),
            (["--device", "gpu0"], "--device must be cpu, cuda or cuda:N, got 'gpu0'"),
        ],
    ),
    # gnnkit bench link (--device: test_bench_link_cli.py)
    *rows(
        ["bench", "link", "--offline", "--epochs", "1"],
        [
            (["--model", "sage"], "unknown link model 'sage'; known models: gcn, gat"),
            (["--resume"], "--resume needs --checkpoint-dir"),
            (["--time-budget", "0"], "--time-budget must be a positive number of minutes, got 0"),
            (["--dataset", "nosuch"], "unknown dataset 'nosuch'; bench link takes: ogbl-ddi"),
            (
                ["--dataset", "ogbg-molbace"],
                "dataset 'ogbg-molbace' is a graph dataset; bench link needs one of: ogbl-ddi",
            ),
        ],
    ),
    # gnnkit seq train
    *rows(
        ["seq", "train", "--no-progress"],
        [
            (["--seq-len", "5", "--forget-bias", "big"], "--forget-bias must be a number"),
            (["--seq-len", "5", "--forget-bias", "nan"], f"{FORGET_BIAS_RANGE}, got 'nan'"),
            # finite, but no float32 holds it (torch overflowed copying it into the biases)
            (["--seq-len", "5", "--forget-bias", "1e308"], f"{FORGET_BIAS_RANGE}, got '1e308'"),
            (["--seq-len", "5", "--forget-bias=-4e38"], f"{FORGET_BIAS_RANGE}, got '-4e38'"),
            # models without a forget gate refuse it, even at the default's value
            (["--seq-len", "5", "--model", "rnn", "--forget-bias", "3"], f"{NO_FORGET} rnn has"),
            (["--seq-len", "5", "--model", "gru", "--forget-bias", "1.0"], f"{NO_FORGET} gru has"),
        ],
    ),
    # gnnkit seq bench: refused before the first run
    *rows(
        ["seq", "bench", "--no-progress"],
        [
            (["--models", "rnn", "rnn"], "--models lists rnn twice: give each once"),
            (["--lengths", "5", "10", "5"], "--lengths lists 5 twice: give each once"),
            (["--forget-bias", "1e39"], f"{FORGET_BIAS_RANGE}, got '1e39'"),
            (
                ["--models", "rnn", "gru", "--forget-bias", "2"],
                f"{NO_FORGET.replace('--model', '--models')} rnn gru have none: drop --forget-bias",
            ),
        ],
    ),
    # gnnkit seq gradients
    *rows(
        ["seq", "gradients", "--seq-len", "4", "--hidden-dim", "4"],
        [
            (["--forget-bias", "torch", "1e308"], f"{FORGET_BIAS_RANGE}, got '1e308'"),
            (["--models", "lstm", "lstm"], "--models lists lstm twice: give each once"),
            (["--forget-bias", "1", "1.0"], "--forget-bias lists 1 twice: give each once"),
            (["--forget-bias", "torch", "none"], "--forget-bias lists torch twice"),
            # the biases are float32: 1.00000001 is 1 there
            (["--forget-bias", "1", "1.00000001"], "--forget-bias lists 1 twice: give each once"),
            (
                ["--models", "rnn", "--forget-bias", "3"],
                f"{NO_FORGET.replace('--model', '--models')} rnn has none: drop --forget-bias",
            ),
        ],
    ),
]


USAGE_ERRORS = [
    # gnnkit: an unknown command (argparse lists the commands)
    *rows([], [(["nosuch"], "invalid choice: 'nosuch'")]),
    # gnnkit hops
    *rows(["hops"], [([], "--edges")]),
    # gnnkit bench node
    *rows(
        KARATE,
        [
            (["--runs", "0"], "expected a positive integer (>= 1), got 0"),
            (["--epochs", "0"], "expected a positive integer (>= 1), got 0"),
            (["--epochs", "ten"], "expected a positive integer, got 'ten'"),
            (["--compare", "dgl"], "invalid choice: 'dgl'"),
            (["--compare", "pyg,dgl"], "invalid choice: 'dgl' (choose from 'pyg', 'pyg-tuned')"),
            (["--compare", "pyg", "--compare", "pyg,"], "invalid choice: ''"),
            (["--protocol", "papers"], "invalid choice: 'papers'"),
            # every generator gnnkit seeds takes these (torch overflowed past 2**64)
            (["--seed", "-5"], "expected an integer seed in [0, 4294967295], got -5"),
            (["--seed", str(10**23)], f"expected an integer seed in [0, 4294967295], got {10**23}"),
        ],
    ),
    *rows(["seq", "train"], [(["--seed", "-2"], "expected an integer seed in [0, 4294967295]")]),
    *rows(
        ["citation", "bench"],
        [
            (
                ["--seed", "4294967296"],
                "expected an integer seed in [0, 4294967295], got 4294967296",
            ),
            # one fold leaves nothing to train on: refused as the option, before the corpus loads
            (["--folds", "1"], "argument --folds: expected a number of folds (>= 2), got 1"),
            (["--folds", "0"], "argument --folds: expected a number of folds (>= 2), got 0"),
        ],
    ),
    # gnnkit bench graph
    *rows(
        ["bench", "graph"],
        [
            (["--runs", "0"], "expected a positive integer (>= 1), got 0"),
            (["--epochs", "-3"], "expected a positive integer (>= 1), got -3"),
            (["--batch-size", "x"], "expected a positive integer, got 'x'"),
            (["--compare", "pyg,dgl"], "invalid choice: 'dgl' (choose from 'pyg', 'pyg-tuned')"),
        ],
    ),
    # gnnkit bench link
    *rows(
        ["bench", "link"],
        [
            (["--eval-every", "0"], "expected a positive integer (>= 1), got 0"),
            (["--runs", "0"], "expected a positive integer (>= 1), got 0"),
            (["--time-budget", "soon"], "invalid float value: 'soon'"),
            (["--compare", "dgl"], "invalid choice: 'dgl'"),
            (["--compare", "pyg-tuned"], "invalid choice: 'pyg-tuned' (choose from 'pyg')"),
            (["--negatives", "host"], "invalid choice: 'host'"),
        ],
    ),
    # gnnkit seq train: the options name themselves, not the library's parameters
    *rows(
        ["seq", "train", "--seq-len", "5"],
        [
            (["--model", "transformer"], "invalid choice"),
            (["--task", "copy"], "invalid choice"),
            (["--threads", "0"], "expected a positive integer (>= 1), got 0"),
            (["--embed-dim", "0"], "argument --embed-dim: expected a positive integer (>= 1)"),
            (["--max-batches", "0"], "argument --max-batches: expected a positive integer"),
            (["--hidden-dim", "-2"], "argument --hidden-dim: expected a positive integer"),
            (["--confirm-samples", "-1"], "argument --confirm-samples: expected a non-negative"),
        ],
    ),
    *rows(
        ["seq", "train"],
        [
            (
                ["--seq-len", "1"],
                "argument --seq-len: expected a sequence length (an input element and a label) (>= 2), got 1",
            )
        ],
    ),
    # gnnkit seq bench
    *rows(
        ["seq", "bench", "--no-progress"],
        [
            (["--seeds", "0"], "argument --seeds: expected a positive integer (>= 1), got 0"),
            (["--lengths", "5", "1"], "argument --lengths: expected a sequence length"),
        ],
    ),
    # gnnkit seq gradients
    *rows(
        ["seq", "gradients"],
        [
            (["--seq-len", "1"], "argument --seq-len: expected a sequence length"),
            (["--batch-size", "0"], "argument --batch-size: expected a positive integer (>= 1)"),
            (["--hidden-dim", "0"], "argument --hidden-dim: expected a positive integer (>= 1)"),
        ],
    ),
    # gnnkit partition: the synthetic graph's size (the other rows: test_partition.py)
    *rows(
        ["partition", "--dataset", "synthetic"],
        [
            (
                ["--nodes", "100000000000"],
                "argument --nodes: expected a number of nodes (about 1.5 GB of memory per "
                "million) in 2..10,000,000, got 100000000000",
            ),
            (
                ["--nodes", "1"],
                "argument --nodes: expected a number of nodes (about 1.5 GB of memory per "
                "million) in 2..10,000,000, got 1",
            ),
            (
                ["--nodes", "1e4"],
                "argument --nodes: expected a number of nodes (about 1.5 GB of memory per "
                "million) in 2..10,000,000, got '1e4'",
            ),
        ],
    ),
    # gnnkit text sample
    *rows(
        ["text", "sample", "--checkpoint", "x", "--prompt", "a"],
        [(["--k", "0"], "argument --k: expected a positive integer (>= 1), got 0")],
    ),
]


@pytest.mark.parametrize(("argv", "message"), ERRORS)
def test_error_exits_2_with_one_line(argv, message, cli_fails):
    cli_fails(argv, f"gnnkit: error: {message}")


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS)
def test_usage_error_exits_2(argv, message, capsys):
    from gnnkit.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err
    assert err.startswith("gnnkit: error: ") and err.count("\n") == 1, err
    assert err.endswith(" --help`)\n") and "usage:" not in err


#: ``(argv, stderr)``: argparse's message, then the command that refused it (the one the user
#: ran), and for an unknown option that command's close options.
BAD_COMMAND_LINES = [
    (
        ["bench", "node", "--epochs", "0"],
        "argument --epochs: expected a positive integer (>= 1), got 0 "
        "(see `gnnkit bench node --help`)",
    ),
    # the options of `bench node`, not gnnkit's, and the one meant
    (
        ["bench", "node", "--epoch", "3"],
        "unrecognized arguments: --epoch 3; did you mean --epochs? "
        "(see `gnnkit bench node --help`)",
    ),
    (
        ["bench", "node", "--epoch=3", "--run", "2"],
        "unrecognized arguments: --epoch=3 --run 2; did you mean --epochs or --runs? "
        "(see `gnnkit bench node --help`)",
    ),
    (
        ["seq", "bench", "--seed", "3"],
        "unrecognized arguments: --seed 3; did you mean --seeds? (see `gnnkit seq bench --help`)",
    ),
    # nothing close: no guess
    (
        ["data", "list", "--zzzz"],
        "unrecognized arguments: --zzzz (see `gnnkit data list --help`)",
    ),
    # before the command, the option is gnnkit's to refuse
    (["--foo", "data", "list"], "unrecognized arguments: --foo (see `gnnkit --help`)"),
    (
        ["bench", "nod"],
        "argument BENCHMARK: invalid choice: 'nod' (choose from 'node', 'graph', 'link') "
        "(see `gnnkit bench --help`)",
    ),
    (
        ["seq", "train"],
        "the following arguments are required: --seq-len (see `gnnkit seq train --help`)",
    ),
    ([], "the following arguments are required: COMMAND (see `gnnkit --help`)"),
    (
        ["-v", "-q", "data", "list"],
        "argument -q/--quiet: not allowed with argument -v/--verbose (see `gnnkit --help`)",
    ),
    (
        ["citation", "bench", "--folds", "1"],
        "argument --folds: expected a number of folds (>= 2), got 1 "
        "(see `gnnkit citation bench --help`)",
    ),
]


@pytest.mark.parametrize(("argv", "message"), BAD_COMMAND_LINES)
def test_a_bad_command_line_names_its_command(argv, message, capsys):
    from gnnkit.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 2 and captured.out == ""
    assert captured.err == f"gnnkit: error: {message}\n"
