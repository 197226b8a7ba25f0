"""``gnnkit citation info`` and ``gnnkit citation bench`` (gnnkit.cli.citation)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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


def _live_group(pgid: int) -> dict[int, tuple[int, bytes]]:
    """The processes of group ``pgid`` that are not zombies: pid -> (parent pid, command)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        state, ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            found[int(entry)] = (int(ppid), command)
    return found


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _interrupt(command: list[str], *, when, group: bool, tmp_path: Path):
    """Run ``command`` in its own process group and send it SIGINT (the whole group, as a
    terminal's Ctrl-C does, or only the parent) once ``when(proc)`` holds; returns
    ``(returncode, stderr, seconds from SIGINT to exit)`` after checking that no process of
    the group is left."""
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        assert _wait_for(lambda: when(proc) or proc.poll() is not None, 240)
        assert proc.poll() is None, proc.communicate()[1].decode()
        sent = time.monotonic()
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - sent
        # the resource tracker ends when it reads its parent's end of file
        assert _wait_for(lambda: not _live_group(proc.pid), 20), _live_group(proc.pid)
    finally:
        if proc.poll() is None or _live_group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, err.decode(), seconds


def _workers(proc) -> list[int]:
    """The spawned worker processes of ``proc`` (not the resource tracker)."""
    return [
        pid
        for pid, (ppid, command) in _live_group(proc.pid).items()
        if ppid == proc.pid and b"spawn_main" in command
    ]


@pytest.mark.slow  # each starts Python, torch and scikit-learn three times
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(
    ("after", "group"),
    [(0.0, True), (0.0, False), (1.0, True)],
    ids=["group-at-worker-start", "parent-at-worker-start", "group-1s-later"],
)
def test_ctrl_c_with_jobs_prints_one_line_and_leaves_no_process(
    corpus_file, tmp_path, after, group
):
    # A Ctrl-C that reaches spawned workers while they import scikit-learn would print their
    # KeyboardInterrupt tracebacks (or, sent to the parent alone, "pickle data was truncated"
    # from a worker reading its start-up data) after "gnnkit: interrupted".
    out = tmp_path / "c.json"
    command = [sys.executable, "-m", "gnnkit", "citation", "bench", "--corpus", str(corpus_file)]
    command += ["--models", "svm", "--folds", "3", "--jobs", "2", "--json", str(out)]
    started: list[float] = []

    def when(proc) -> bool:
        if not started and _workers(proc):
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] >= after

    code, err, _ = _interrupt(command, when=when, group=group, tmp_path=tmp_path)
    # Sent as the workers appear, the interrupt precedes their imports, so the run cannot
    # have finished; a second later a fast machine may have scored the three folds already.
    if code == 0 and after > 0:
        pytest.skip("the run finished within a second of its workers starting")
    assert (code, err) == (130, "gnnkit: interrupted\n")
    assert not out.exists()


SLOW_FITS = """
import functools, sys, time
from pathlib import Path


class Slow:  # writes fit-SEED when its fit starts, then fits for two minutes
    def __init__(self, seed):
        self.seed = seed

    def fit(self, view):
        Path(f"fit-{self.seed}").touch()
        time.sleep(120)

    def predict(self, view):
        raise AssertionError("never reached")


if __name__ == "__main__":
    from gnnkit.citation import citation_folds, cross_validate, load_citations

    data = load_citations(sys.argv[1])
    try:
        cross_validate(data, {"slow": Slow}, citation_folds(data, 3), jobs=2)
    except KeyboardInterrupt:
        sys.exit(130)
"""


@pytest.mark.slow  # each starts Python, torch and scikit-learn three times
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_ctrl_c_stops_running_fits_at_once(corpus_file, tmp_path):
    # The parent ends the workers' fits rather than waiting for them (two minutes each).
    script = tmp_path / "slow_fits.py"
    script.write_text(textwrap.dedent(SLOW_FITS))
    command = [sys.executable, str(script), str(corpus_file)]

    def when(proc) -> bool:
        return len(list(tmp_path.glob("fit-*"))) == 2

    code, err, seconds = _interrupt(command, when=when, group=True, tmp_path=tmp_path)
    assert (code, err) == (130, "")
    assert seconds < 30
