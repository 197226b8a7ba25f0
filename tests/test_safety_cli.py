"""Bad output paths, data roots and checkpoints through the ``gnnkit`` command line.

Every row is a fault a careless user can cause; ``gnnkit`` must exit 2 with one line,
``gnnkit: error: ...``, naming the path and the fix, and no traceback. Output paths are checked
before any work, so a bad ``--json`` never costs a training run. ``{tmp}`` is a fresh folder
holding ``file`` (a regular file), ``pipe`` (a FIFO), ``dir/`` (an empty folder) and ``link``
(a link to ``nowhere``, which does not exist).
"""

from __future__ import annotations

import errno
import os

import pytest

from gnnkit.utils import io

pytestmark = pytest.mark.usefixtures("one_thread")

KARATE = ["bench", "node", "--dataset", "karate", "--warmup", "0", "--no-progress"]
ONE = ["--runs", "1", "--epochs", "1"]
HOPS = ["hops", "--edges", "A-B,B-C"]

ROWS = [
    ([*HOPS, "--json", ""], "--json is empty; give a file name"),
    ([*HOPS, "--json", "{tmp}/dir"], "is a folder; give a file name such as"),
    ([*HOPS, "--json", "{tmp}/pipe"], "pipe is a FIFO, not a regular file"),
    ([*HOPS, "--json", "{tmp}/file/x.json"], "file is a file, not a folder; fix the path"),
    ([*KARATE, *ONE, "--plot", "{tmp}/pipe"], "--plot {tmp}/pipe is a FIFO"),
    ([*KARATE, *ONE, "--json", "{tmp}/file/r.json"], "is a file, not a folder"),
    ([*KARATE, *ONE, "--checkpoint-dir", "{tmp}/file"], "--checkpoint-dir {tmp}/file is a file"),
    ([*KARATE, *ONE, "--checkpoint-dir", ""], "--checkpoint-dir is empty"),
    (
        [*KARATE, *ONE, "--checkpoint-dir", "{tmp}/dir", "--resume", "--overwrite"],
        "--resume and --overwrite contradict each other",
    ),
    (
        ["data", "fetch", "cora", "--offline", "--data-root", "{tmp}/file"],
        "is a file, not a folder",
    ),
    (
        ["data", "fetch", "cora", "--offline", "--data-root", "{tmp}/file/sub"],
        "file is a file, not a folder",
    ),
    (
        ["text", "train", "--corpus", "bartleby", "--out", "{tmp}/file"],
        "--out {tmp}/file is a file",
    ),
    (["text", "table", "--checkpoint", "{tmp}/dir", "--out", "{tmp}/pipe"], "is a FIFO"),
    (["seq", "train", "--seq-len", "5", "--json", "{tmp}/dir"], "is a folder"),
    # earlier results are never replaced silently (the file is "file": checked unchanged)
    ([*HOPS, "--json", "{tmp}/file"], "--json {tmp}/file already exists; pass --overwrite"),
    (
        [*KARATE, *ONE, "--plot", "{tmp}/file.png", "--json", "{tmp}/file.png"],
        "--json and --plot name the same file",
    ),
    ([*KARATE, *ONE, "--plot", "{tmp}/plot.xyz"], "matplotlib cannot write 'xyz'; use one of"),
    (
        ["text", "table", "--checkpoint", "{tmp}/dir", "--out", "{tmp}/file"],
        "--out {tmp}/file already exists; pass --overwrite",
    ),
    # a link to nothing is refused: writing through it would create a file wherever it points
    (
        [*HOPS, "--json", "{tmp}/link"],
        "--json {tmp}/link is a link to {tmp}/nowhere, which does not exist; remove the link",
    ),
    # what is read must be a regular file, and the message says what it is instead
    (["text", "sample", "--checkpoint", "", "--prompt", "I"], "--checkpoint is empty"),
    (
        ["text", "sample", "--checkpoint", "{tmp}/pipe", "--prompt", "I"],
        "{tmp}/pipe is a FIFO, not a regular file",
    ),
    (
        ["text", "sample", "--checkpoint", "{tmp}/link", "--prompt", "I"],
        "{tmp}/link is a link to {tmp}/nowhere, which does not exist",
    ),
    (
        ["text", "train", "--corpus", "{tmp}/dir", "--out", "{tmp}/dir", "--no-progress"],
        "corpus {tmp}/dir is a folder, not a file; give a UTF-8 text file",
    ),
    (
        ["text", "train", "--corpus", "{tmp}/pipe", "--out", "{tmp}/dir", "--no-progress"],
        "corpus {tmp}/pipe is a FIFO, not a regular file",
    ),
]


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "file").write_text("not a folder\n")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"), ROWS, ids=[f"{i}-{' '.join(r[0][:2])}" for i, r in enumerate(ROWS)]
)
def test_a_bad_path_is_one_line_and_exit_2(tmp, argv, message, capsys):
    from gnnkit.cli import main

    fill = [arg.replace("{tmp}", str(tmp)) for arg in argv]
    assert main(fill) == 2
    err = capsys.readouterr().err
    assert err.startswith("gnnkit: error: ") and err.count("\n") == 1
    assert message.replace("{tmp}", str(tmp)) in err
    assert (tmp / "file").read_text() == "not a folder\n"  # nothing was replaced
    made = sorted(p.name for p in tmp.iterdir() if not p.name.endswith(".gnnkit-lock"))
    assert made == ["dir", "file", "link", "pipe"]  # (a folder's lock file stays beside it)
    assert list((tmp / "dir").iterdir()) == []


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "the file system is read-only"),
        (errno.ENOSPC, "no space left on the device"),
    ],
)
def test_an_unwritable_output_is_found_before_training(tmp_path, monkeypatch, cli_fails, code, fix):
    trained = []
    monkeypatch.setattr("gnnkit.bench.node.run_node_benchmark", lambda *a, **k: trained.append(1))

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    cli_fails([*KARATE, *ONE, "--json", str(tmp_path / "r.json")], f"r.json: {fix}")
    assert trained == []


def test_an_os_error_inside_a_command_is_one_line(monkeypatch, cli_fails):
    def broken(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/data/x")

    from gnnkit.cli import hops

    monkeypatch.setattr(hops, "run", broken, raising=False)
    monkeypatch.setattr("gnnkit.graph.from_edge_list", lambda *a, **k: broken(None))
    cli_fails(HOPS, "gnnkit: error: cannot access /srv/data/x: permission denied")


def test_overwrite_replaces_earlier_results_and_resume_continues_them(tmp_path, capsys):
    from gnnkit.cli import main

    result = tmp_path / "hops.json"
    result.write_text('{"earlier": 1}\n')
    assert main([*HOPS, "--json", str(result)]) == 2
    assert result.read_text() == '{"earlier": 1}\n'
    assert main([*HOPS, "--json", str(result), "--overwrite"]) == 0
    assert '"labels"' in result.read_text()
    # a resumed benchmark writes the results of the run it continues
    folder, out = tmp_path / "ck", tmp_path / "bench.json"
    argv = [*KARATE, *ONE, "--checkpoint-dir", str(folder), "--json", str(out)]
    assert main(argv) == 0
    first = out.stat().st_ino
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert out.stat().st_ino == first  # refused: the same file
    assert main([*argv, "--resume"]) == 0
    assert out.stat().st_ino != first and '"test_acc_mean"' in out.read_text()  # replaced
    # --resume without a checkpoint continues nothing: the file is another run's, kept
    fresh = [*KARATE, *ONE, "--checkpoint-dir", str(tmp_path / "new"), "--json", str(out)]
    capsys.readouterr()
    assert main([*fresh, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"gnnkit: error: --json {out} already exists and --resume finds no checkpoint to "
        "continue, so it is not this run's result; choose another path, or drop --resume and "
        "pass --overwrite to replace it\n"
    )
    assert '"test_acc_mean"' in out.read_text() and not (tmp_path / "new").exists()
    # nor does a folder whose checkpoints are another benchmark's (another seed's)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "karate-gcn-gnnkit-seed7.pt").write_bytes(b"another run's")
    assert main([*fresh, "--resume"]) == 2
    assert "--resume finds no checkpoint to continue" in capsys.readouterr().err
    assert '"test_acc_mean"' in out.read_text()


def test_non_finite_numbers_are_refused_with_their_range(argparse_fails):
    argparse_fails([*HOPS, "--self-loop-weight", "inf"], "expected a finite number, got 'inf'")
    argparse_fails([*HOPS, "--self-loop-weight", "nan"], "expected a finite number, got 'nan'")


def test_an_existing_checkpoint_is_refused_then_resumed_or_overwritten(tmp_path, capsys):
    from gnnkit.cli import main

    folder = tmp_path / "ck"
    base = [*KARATE, "--runs", "1", "--epochs", "2", "--checkpoint-dir", str(folder)]
    assert main(base) == 0
    written = sorted(p.name for p in folder.glob("*.pt"))
    assert written == ["karate-gcn-gnnkit-seed0.pt"]
    before = (folder / written[0]).read_bytes()
    capsys.readouterr()
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "karate-gcn-gnnkit-seed0.pt already holds a checkpoint" in err
    assert "pass --resume" in err and "--overwrite" in err
    assert (folder / written[0]).read_bytes() == before  # untouched
    assert main([*base, "--resume"]) == 0
    assert main([*base, "--overwrite"]) == 0
    assert sorted(p.name for p in folder.glob("*.pt")) == written
    # another model's checkpoints in the same folder are not this run's to refuse or delete
    assert (
        main(
            [
                *KARATE,
                "--model",
                "gat",
                "--runs",
                "1",
                "--epochs",
                "1",
                "--checkpoint-dir",
                str(folder),
            ]
        )
        == 0
    )


def test_only_this_runs_checkpoints_are_refused_or_deleted(tmp_path):
    """Another seed's or another reference's checkpoints in the same folder are another run's
    work: neither refused nor deleted by ``--overwrite``."""
    from gnnkit.bench.harness import checkpoint_path, checkpoint_suffix, run_checkpoints
    from gnnkit.cli import main

    folder = tmp_path / "ck"
    base = [*KARATE, *ONE, "--checkpoint-dir", str(folder)]
    assert main([*base, "--seed", "1"]) == 0
    kept = folder / "karate-gcn-gnnkit-seed1.pt"
    before = kept.read_bytes()
    assert main(base) == 0  # seed 0: none of its checkpoints exists yet
    assert main([*base, "--overwrite"]) == 0
    assert sorted(p.name for p in folder.glob("*.pt")) == [
        "karate-gcn-gnnkit-seed0.pt",
        "karate-gcn-gnnkit-seed1.pt",
    ]
    assert kept.read_bytes() == before
    names = run_checkpoints("cora-gat", "pyg,pyg-tuned", 3, 2, checkpoint_suffix(object()))
    expect = [
        checkpoint_path(tmp_path, "cora-gat", impl, seed, "-minibatch")
        for impl in ("gnnkit", "pyg", "pyg-tuned")
        for seed in (3, 4)
    ]
    assert names == [path.name for path in expect if path is not None]
    assert names[0] == "cora-gat-gnnkit-seed3-minibatch.pt"
    assert run_checkpoints("cora-gcn", None, 0, 1) == ["cora-gcn-gnnkit-seed0.pt"]


def test_a_refused_command_creates_no_folder(tmp_path, capsys):
    """Output folders are made when something is written into them, not while checking."""
    from gnnkit.cli import main

    new = tmp_path / "new" / "sub"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("far too short\n")
    commands = [
        [*KARATE, *ONE, "--json", str(new / "r.json"), "--plot", str(new / "r.json")],
        [*KARATE, *ONE, "--model", "nosuch", "--json", str(new / "r.json")],
        [*KARATE, *ONE, "--resume", "--json", str(new / "r.json")],
        [*KARATE, *ONE, "--plot", str(new / "r.xyz"), "--checkpoint-dir", str(new / "ck")],
        # refused while the folder's lock is held: the lock's folders go again
        [*KARATE, *ONE, "--mini-batch", "--compare", "pyg-tuned", "--checkpoint-dir", str(new)],
        ["text", "train", "--corpus", str(corpus), "--out", str(new / "run"), "--resume"],
        ["text", "train", "--corpus", str(corpus), "--out", str(new / "run")],
        ["partition", "--dataset", "nosuch", "--parts", "2", "--out", str(new / "shards")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        assert not (tmp_path / "new").exists(), argv
    assert capsys.readouterr().err.count("\n") == len(commands)
    assert main([*HOPS, "--json", str(new / "r.json")]) == 0
    assert (new / "r.json").is_file()


def test_a_tilde_path_is_claimed_as_the_path_it_is_written_to(tmp_path, monkeypatch, capsys):
    """``--checkpoint-dir '~/ck'`` (quoted, so no shell expands it) names the folder gnnkit
    writes, ``$HOME/ck``: its checkpoints are refused like any other's."""
    from gnnkit.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    base = [*KARATE, *ONE, "--checkpoint-dir", "~/ck"]
    assert main(base) == 0
    written = tmp_path / "ck" / "karate-gcn-gnnkit-seed0.pt"
    before = written.read_bytes()
    capsys.readouterr()
    assert main(base) == 2
    assert "karate-gcn-gnnkit-seed0.pt already holds a checkpoint" in capsys.readouterr().err
    assert written.read_bytes() == before and not (tmp_path / "~").exists()


def test_a_locked_checkpoint_dir_is_refused(tmp_path, cli_fails):
    import subprocess
    import sys
    import textwrap
    import time

    folder = tmp_path / "ck"
    ready = tmp_path / "ready"
    holder = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from gnnkit.utils.locks import folder_lock
        with folder_lock({str(folder)!r}, option="test"):
            Path({str(ready)!r}).touch()
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", holder])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (folder / "inner").mkdir(parents=True)
        for spelling in (folder, folder / "inner" / "..", f"{folder}/./"):  # one folder, one lock
            cli_fails(
                [*KARATE, *ONE, "--checkpoint-dir", str(spelling)],
                "is locked by another gnnkit process",
            )
    finally:
        child.kill()
        child.wait()


def test_a_real_read_only_data_root_and_checkpoint_dir(tmp_path):
    from test_writer import in_private_mounts

    root, ck = tmp_path / "root", tmp_path / "ck"
    root.mkdir()
    ck.mkdir()
    setup = " && ".join(f"mount --bind {p} {p} && mount -o remount,bind,ro {p}" for p in (root, ck))
    result = in_private_mounts(
        tmp_path,
        setup,
        f"""
        from gnnkit.cli import main
        print(main(["data", "fetch", "cora", "--offline", "--data-root", {str(root)!r}]))
        print(main([*{KARATE!r}, *{ONE!r}, "--checkpoint-dir", {str(ck)!r}]))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2"]
    errors = result.stderr.splitlines()
    assert errors == [
        f"gnnkit: error: cannot lock data root (--data-root, $GNNKIT_DATA) {root}: the file "
        "system is read-only; choose a location on a writable disk",
        f"gnnkit: error: cannot write --checkpoint-dir {ck}: the file system is read-only; "
        "choose a location on a writable disk",
    ]
