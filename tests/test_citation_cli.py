"""``gnnkit citation info`` and ``gnnkit citation bench`` (gnnkit.cli.citation)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from test_citation_models import synthetic_records

from gnnkit.cli import main
from gnnkit.cli.citation import parse_models
from gnnkit.errors import InputError

HEADER = "# Source_Paper  Target_Paper  Sentiment  Citation_Text\n"


@pytest.fixture
def corpus_file(tmp_path):
    records = synthetic_records(counts=(45, 30, 24))
    lines = [f'{r.source}\t{r.target}\t{r.label}\t"{r.text}"\n' for r in records]
    path = tmp_path / "corpus.txt"
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def test_info_prints_the_counts(corpus_file, capsys):
    assert main(["citation", "info", "--corpus", str(corpus_file)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^sentences +99$", out, re.MULTILINE)
    assert re.search(r"^  neutral +45$", out, re.MULTILINE)
    assert re.search(r"^  negative +24$", out, re.MULTILINE)
    assert re.search(r"^distinct citation edges +\d+$", out, re.MULTILINE)
    assert "homophily" not in out
    assert main(["citation", "info", "--corpus", str(corpus_file), "--homophily"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pair +\d+ +[01]\.\d{3} +[01]\.\d{3}", out, re.MULTILINE)
    assert "lift negative" in out


def test_bench_writes_table_json_and_plot(corpus_file, tmp_path, capsys):
    result, plot = tmp_path / "out" / "citation.json", tmp_path / "confusion.png"
    argv = ["citation", "bench", "--corpus", str(corpus_file), "--models", "svm,graph-structure"]
    argv += ["--folds", "3", "--seed", "1", "--json", str(result), "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3-fold grouped stratified CV, seed 1" in out
    assert "svm" in out and "graph-structure" in out and "macro-F1" in out
    payload = json.loads(result.read_text())
    assert payload["folds"] == 3
    assert list(payload["models"]) == ["svm", "graph-structure"]
    svm = payload["models"]["svm"]
    for key in ("macro_f1_mean", "macro_f1_std", "micro_f1_mean", "per_class_f1", "time_s"):
        assert key in svm
    assert set(svm["per_class_f1"]) == {"neutral", "positive", "negative"}
    assert svm["macro_f1_mean"] > 0.9  # the synthetic corpus's text is separable
    assert payload["corpus"]["sentences"] == 99
    assert payload["command"].startswith("gnnkit citation bench --models svm,graph-structure")
    assert "torch" in payload["env"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_prints_the_hybrid_against_text_line(monkeypatch, corpus_file, capsys):
    # Stand-ins for the two neural models keep this test fast; the line is what is tested.
    from gnnkit.citation import registry
    from gnnkit.cli import citation as cli

    monkeypatch.setattr(cli, "MODEL_NAMES", ("text", "hybrid"))
    make_model = registry.make_model

    def fake(name, *, seed):
        return make_model("svm", C=0.01 if name == "text" else 1.0, seed=seed)

    monkeypatch.setattr(registry, "make_model", fake)  # the command imports it when it runs
    argv = ["citation", "bench", "--corpus", str(corpus_file), "--models", "text,hybrid"]
    assert main([*argv, "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "hybrid - text macro-F1: +" in out
    assert "than one std" in out and "folds" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "svm,bert"], "unknown model(s) bert in --models; choose from svm"),
        (["--models", "svm,svm"], "--models lists svm more than once"),
        (["--models", ","], "--models is empty"),
        (["--folds", "30"], "use --folds 24 or fewer"),
    ],
)
def test_bench_bad_arguments(corpus_file, cli_fails, argv, message):
    # Each needs the corpus (--folds is checked against its classes); the rows of the other
    # commands: test_cli_errors.py.
    cli_fails(["citation", "bench", "--corpus", str(corpus_file), *argv], message)


def test_bench_takes_the_largest_seed(corpus_file, tmp_path, capsys):
    # fold 1's seed, 2**32, was refused by scikit-learn's LinearSVC; it wraps to 0
    out = tmp_path / "seed.json"
    argv = ["citation", "bench", "--corpus", str(corpus_file), "--models", "svm", "--folds", "2"]
    assert main([*argv, "--seed", "4294967295", "--json", str(out)]) == 0
    assert "2-fold grouped stratified CV, seed 4294967295" in capsys.readouterr().out
    assert json.loads(out.read_text())["seed"] == 4294967295


def test_bench_json_to_a_folder_is_refused(corpus_file, tmp_path, capsys):
    code = main(["citation", "bench", "--corpus", str(corpus_file), "--json", str(tmp_path)])
    assert code == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_malformed_corpus_line(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_text(HEADER + "A\tB\to\tfine.\nA\tB\tmaybe\ttext\nA\tC\tp\tgood.\n")
    assert main(["citation", "info", "--corpus", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.txt:3: malformed corpus line: unknown sentiment label 'maybe'" in err
    assert "--skip-malformed" in err
    assert main(["citation", "info", "--corpus", str(path), "--skip-malformed"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 malformed line(s)" in captured.err
    assert re.search(r"^skipped lines +1$", captured.out, re.MULTILINE)


def test_parse_models():
    assert parse_models(" svm , hybrid-concat ") == ["svm", "hybrid-concat"]
    with pytest.raises(InputError, match="unknown model"):
        parse_models("svm,foo")


def test_entry_point_runs(corpus_file):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [sys.executable, "-m", "gnnkit", "citation", "info", "--corpus", str(corpus_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "papers" in proc.stdout


def test_the_parser_loads_neither_the_models_nor_scikit_learn():
    # `gnnkit --help` builds every subcommand's parser: this one needs the model names only.
    code = (
        "import argparse, sys\n"
        "from gnnkit.cli import citation\n"
        "citation.register(argparse.ArgumentParser().add_subparsers())\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('sklearn', 'gnnkit.citation')))\n"
        "print(' '.join(loaded))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []


def test_model_names_match_the_registry():
    from gnnkit import recipes
    from gnnkit.citation import registry

    assert tuple(registry.MODELS) == recipes.CITATION_MODELS
    assert all(cls.name == name for name, cls in registry.MODELS.items())
    bases = {**registry.MODELS, **registry.SIBLING_MODELS}
    assert all(base in bases for base, _ in recipes.CITATION_VARIANTS.values())
    assert parse_models(",".join(recipes.CITATION_MODEL_NAMES)) == list(
        recipes.CITATION_MODEL_NAMES
    )
