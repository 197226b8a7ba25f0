"""The gnnkit CLI: hops, data and demo commands, the entry point, lazy imports and help.

The bad command lines of every command: ``test_cli_errors.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gnnkit.cli import main
from gnnkit.graph import from_edge_list, hop_distances


def test_hops_reports_four_layers_from_a_to_e(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert (
        main(["hops", "--edges", "A-B,B-C,C-D,D-E", "--from", "A", "--to", "E", "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "Information from A reaches E after 4 message-passing layers." in printed
    result = json.loads(out.read_text())
    assert result["labels"] == ["A", "B", "C", "D", "E"]
    assert (result["from"], result["to"], result["layers"]) == ("A", "E", 4)
    edge_index, _ = from_edge_list(["A-B", "B-C", "C-D", "D-E"])
    assert result["hops"] == hop_distances(edge_index).tolist()
    # A + I of the chain: ones on the diagonal and the two off-diagonals.
    expected = [[1.0 if abs(i - j) <= 1 else 0.0 for j in range(5)] for i in range(5)]
    assert result["adjacency"] == expected


def test_hops_self_loop_weight_and_directed(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert (
        main(
            [
                "hops",
                "--edges",
                "A-B,B-C",
                "--directed",
                "--self-loop-weight",
                "2.5",
                "--from",
                "C",
                "--to",
                "A",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["layers"] == -1
    assert result["adjacency"][0][0] == 2.5 and result["adjacency"][1][0] == 1.0
    assert "never reaches" in capsys.readouterr().out


def test_hops_heading_shows_a_negative_loop_weight_as_a_difference(capsys):
    assert main(["hops", "--edges", "A-B", "--self-loop-weight", "-1.5"]) == 0
    assert "Adjacency matrix A - 1.5 I (row i" in capsys.readouterr().out


def test_data_list_and_verify(tmp_path, capsys, offline):
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "karate" in listing and "embedded" in listing and "remote" in listing
    assert main(["data", "verify", "--data-root", str(tmp_path)]) == 0
    assert "no dataset is present" in capsys.readouterr().out


def test_data_verify_detects_corruption(tmp_path, capsys):
    from ogb_format import write_ogbn_arxiv

    write_ogbn_arxiv(tmp_path)
    assert main(["data", "verify", "ogbn-arxiv", "--data-root", str(tmp_path)]) == 0
    assert "without a known checksum" in capsys.readouterr().out
    assert main(["data", "fetch", "ogbn-arxiv", "--data-root", str(tmp_path), "--offline"]) == 0
    (tmp_path / "ogb" / "ogbn_arxiv" / "raw" / "node-label.csv.gz").write_bytes(b"garbage")
    assert main(["data", "verify", "ogbn-arxiv", "--data-root", str(tmp_path)]) == 1
    assert "1 corrupt" in capsys.readouterr().out


def test_demo_falls_back_to_karate_without_data(tmp_path, capsys, offline):
    import torch

    argv = ["demo", "--data-root", str(tmp_path), "--offline", "--runs", "1", "--epochs", "3"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(argv) == 0  # one thread by default (--threads), restored afterwards
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "cpu, 1 thread(s)" in out
    assert "Cora is not available here" in out and "GNNKIT_MIRROR" in out
    assert "FALLBACK: karate club, not Cora" in out
    assert "GCN on karate (FALLBACK" in out and "GAT on karate (FALLBACK" in out
    summary = out[out.index("Summary on karate") :]
    assert "GCN" in summary and "GAT" in summary and "gnnkit" in summary


def test_module_entry_point_in_a_subprocess(tmp_path):
    env = {**os.environ, "GNNKIT_OFFLINE": "1"}
    ok = subprocess.run(
        [sys.executable, "-m", "gnnkit", "hops", "--edges", "A-B,B-C,C-D,D-E", "--from", "A", "--to", "E"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert ok.returncode == 0 and "after 4 message-passing layers" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "gnnkit", "hops", "--edges", "A-"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("gnnkit: error: malformed edge token")
    assert "Traceback" not in bad.stderr


# --------------------------------------------------------------------------- lazy subcommands

#: Modules that ``gnnkit --help``, ``gnnkit hops`` and ``gnnkit data list`` must not import.
HEAVY = ("sklearn", "matplotlib", "tqdm", "gnnkit.citation", "gnnkit.seq", "gnnkit.bench")
HEAVY_CLI = ("gnnkit.cli.seq", "gnnkit.cli.text", "gnnkit.cli.citation", "gnnkit.cli.bench")

_PROBE = """
import contextlib, io, json, sys
import torch_geometric  # what gnnkit builds on; it may import some of these itself
before = set(sys.modules)
from gnnkit.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(json.loads(sys.argv[1]))
    except SystemExit:
        pass
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def imported_by(argv: list[str]) -> list[str]:
    """The modules ``gnnkit ARGV`` imports beyond torch_geometric, in a fresh interpreter."""
    env = {**os.environ, "GNNKIT_OFFLINE": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["hops", "--edges", "A-B,B-C", "--from", "A", "--to", "C"], ["data", "list"]],
    ids=["help", "hops", "data-list"],
)
def test_light_commands_import_no_other_command(argv, tmp_path):
    if argv[0] == "data":
        argv = [*argv, "--data-root", str(tmp_path)]
    modules = imported_by(argv)
    assert "gnnkit.cli" in modules  # the probe did import the CLI
    heavy = [m for m in modules if m.startswith(HEAVY) or m.startswith(HEAVY_CLI)]
    assert heavy == []
    others = {"gnnkit.cli.demo", "gnnkit.cli.data", "gnnkit.cli.hops"} - {f"gnnkit.cli.{argv[0]}"}
    assert others.isdisjoint(modules)


def test_help_imports_neither_torch_nor_pyg():
    probe = (
        "import contextlib, io, json, sys\n"
        "from gnnkit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = json.loads(done.stdout.splitlines()[-1])
    assert "gnnkit.cli" in modules
    assert [m for m in modules if m.split(".")[0] in ("torch", "torch_geometric")] == []


def test_ctrl_c_while_the_command_imports_is_one_line(monkeypatch, capsys):
    import gnnkit.cli as cli

    def importer(module):
        def register(subparsers):
            raise KeyboardInterrupt  # what a Ctrl-C during `import torch` raises

        return register

    monkeypatch.setattr(cli, "_importer", importer)
    assert main(["hops", "--edges", "A-B", "--from", "A", "--to", "B"]) == 130
    assert capsys.readouterr().err == "gnnkit: interrupted\n"


def test_bench_node_imports_only_the_node_benchmark():
    modules = imported_by(["bench", "node", "--help"])
    assert {"gnnkit.cli.bench", "gnnkit.cli.bench_node", "gnnkit.bench.node"} <= set(modules)
    assert "gnnkit.cli.bench_ogb" not in modules
    assert not {"gnnkit.bench.graph", "gnnkit.bench.link", "gnnkit.train.link"} & set(modules)
    assert [m for m in modules if m.startswith(("gnnkit.seq", "gnnkit.citation", "sklearn"))] == []


def test_bench_graph_does_not_import_the_node_command():
    modules = imported_by(["bench", "graph", "--help"])
    assert {"gnnkit.cli.bench", "gnnkit.cli.bench_ogb"} <= set(modules)
    assert "gnnkit.cli.bench_node" not in modules


def test_each_benchmark_module_declares_its_row_of_the_table():
    """``BENCHMARKS`` names the module whose ``register_<name>`` adds the benchmark's parser,
    with the help line ``gnnkit bench --help`` lists, and whose own function runs it."""
    import argparse
    import importlib

    from gnnkit.cli.bench import BENCHMARKS

    assert [name for name, _, _ in BENCHMARKS] == ["node", "graph", "link"]
    for name, module, help_line in BENCHMARKS:
        parser = argparse.ArgumentParser(prog="gnnkit bench")
        subparsers = parser.add_subparsers()
        getattr(importlib.import_module(module), f"register_{name}")(subparsers)
        declared = {action.dest: action.help for action in subparsers._choices_actions}
        assert declared == {name: help_line}, module
        assert subparsers.choices[name].get_default("func").__module__ == module


def test_bench_node_runs_its_own_command_and_names_checkpoints_with_the_shared_rule(tmp_path):
    import argparse

    from gnnkit.cli import bench, bench_node

    parser = argparse.ArgumentParser(prog="gnnkit")
    bench.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["bench", "node", "--dataset", "cora", "--model", "gat", "--runs", "2", "--seed", "3",
         "--compare", "pyg", "--mini-batch", "--checkpoint-dir", str(tmp_path)]
    )  # fmt: skip
    assert args.func is bench_node.run_node
    assert args.checkpoint_names is bench.checkpoint_names
    # DIR/DATASET-MODEL-IMPL-seedSEED[-minibatch].pt, implementation by implementation
    assert args.checkpoint_names(args) == [
        "cora-gat-gnnkit-seed3-minibatch.pt",
        "cora-gat-gnnkit-seed4-minibatch.pt",
        "cora-gat-pyg-seed3-minibatch.pt",
        "cora-gat-pyg-seed4-minibatch.pt",
    ]


def test_help_lists_every_command_and_each_command_shows_its_full_help(capsys):
    from gnnkit.cli import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())
    for name, _, help_line in COMMANDS:
        assert f"{name} {' '.join(help_line.split())}" in listing
    for argv, option in (
        (["hops", "--help"], "--self-loop-weight"),
        (["data", "fetch", "--help"], "--mirror"),
        (["demo", "--help"], "--threads"),
        (["bench", "node", "--help"], "--mini-batch"),
        (["bench", "graph", "--help"], "--batch-size"),
        (["bench", "link", "--help"], "--negatives"),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0 and option in capsys.readouterr().out, argv


def test_citation_help_is_plain_text(capsys):
    """``gnnkit citation --help`` shows no Sphinx markup (the module docstring has it)."""
    with pytest.raises(SystemExit) as info:
        main(["citation", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    assert "`gnnkit citation info` prints the corpus's counts" in out
    assert "``" not in out and ":mod:" not in out


def test_the_command_table_agrees_with_each_module(capsys):
    """The help line listed by ``gnnkit --help`` is the one the module's parser declares."""
    import argparse
    import importlib

    from gnnkit.cli import COMMANDS

    for name, module, help_line in COMMANDS:
        parser = argparse.ArgumentParser(prog="gnnkit")
        subparsers = parser.add_subparsers()
        importlib.import_module(module).register(subparsers)
        declared = {action.dest: action.help for action in subparsers._choices_actions}
        assert declared == {name: help_line}, module


def test_integer_types_refuse_what_is_not_an_integer_or_below_the_bound():
    import argparse

    from gnnkit.cli import nonnegative_int, positive_int

    assert (positive_int("3"), nonnegative_int("0")) == (3, 0)
    for parse, text, message in (
        (positive_int, "0", r"expected a positive integer \(>= 1\), got 0"),
        (positive_int, "ten", "expected a positive integer, got 'ten'"),
        (nonnegative_int, "-1", r"expected a non-negative integer \(>= 0\), got -1"),
        (nonnegative_int, "1.5", "expected a non-negative integer, got '1.5'"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["seq", "bench", "--seed", "3"],  # would be --seeds 3: three runs, not seed 3
        ["bench", "node", "--datas", "karate"],
        ["data", "list", "--data-r", "elsewhere"],
    ],
)
def test_a_long_option_must_be_spelt_out(argparse_fails, argv):
    argparse_fails(argv, f"unrecognized arguments: {argv[-2]}")


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate "
                "memory: you tried to allocate 400000000000 bytes. Error code 12"
            ),
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 400000000000",
        ),
        (MemoryError(), "out of memory; the sizes"),
        (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"), "Tried to allocate"),
        (
            RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"),
            "CUBLAS_STATUS_ALLOC_FAILED",
        ),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), "CUDNN_STATUS_ALLOC_FAILED"),
        (
            RuntimeError(
                "unable to mmap 224 bytes from file </torch_1_2_3>: Cannot allocate memory (12)"
            ),
            "unable to mmap 224 bytes",
        ),
        (RuntimeError("std::bad_alloc"), "(std::bad_alloc)"),
        (MemoryError("Unable to allocate 745. GiB for an array"), "Unable to allocate 745. GiB"),
    ],
)
def test_running_out_of_memory_is_one_line(monkeypatch, capsys, error, shown):
    from gnnkit.cli import hops

    def allocate(args):
        raise error

    monkeypatch.setattr(hops, "run", allocate)
    assert main(["hops", "--edges", "A-B", "--from", "A", "--to", "B"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gnnkit: error: out of memory") and err.count("\n") == 1
    assert shown in err and "use smaller ones" in err


def test_other_runtime_errors_are_not_called_out_of_memory(monkeypatch):
    from gnnkit.cli import hops

    def broken(args):
        raise RuntimeError("a bug, not a user's input")

    monkeypatch.setattr(hops, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["hops", "--edges", "A-B", "--from", "A", "--to", "B"])
