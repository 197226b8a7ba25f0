"""``--data-root`` and ``--mirror`` that name no usable folder: one line, exit 2, no work."""

from __future__ import annotations

import pytest

from gnnkit.cli import main

EMPTY_ROOT = (
    "gnnkit: error: data root (--data-root, root=) is empty: give a folder for the datasets, or "
    "leave it out to use $GNNKIT_DATA or ./datasets\n"
)
EMPTY_MIRROR = (
    "gnnkit: error: mirror (--mirror, mirror=) is empty: give the folder of a local mirror laid "
    "out like the data root, or leave it out to use $GNNKIT_MIRROR\n"
)
NOT_A_MIRROR = (
    "give the folder of a local mirror laid out like the data root (for example a copy of the "
    "project's shared datasets mirror)"
)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty current folder, no mirror and no download from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GNNKIT_MIRROR", raising=False)
    monkeypatch.delenv("GNNKIT_DATA", raising=False)
    monkeypatch.setenv("GNNKIT_OFFLINE", "1")
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "fetch", "cora", "--data-root", ""],
        ["data", "list", "--data-root", ""],
        ["data", "verify", "--data-root", " "],
        ["bench", "node", "--dataset", "karate", "--runs", "1", "--epochs", "1", "--data-root", ""],
    ],
)
def test_an_empty_data_root_is_refused(argv, workdir, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == EMPTY_ROOT
    assert not list(workdir.iterdir())  # formerly planetoid/ appeared in the current folder


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "fetch", "cora", "--data-root", "root", "--mirror", ""],
        ["data", "list", "--mirror", ""],
        ["data", "verify", "cora", "--mirror", ""],
        ["bench", "node", "--dataset", "karate", "--runs", "1", "--epochs", "1", "--mirror", ""],
    ],
)
def test_an_empty_mirror_is_refused(argv, workdir, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == EMPTY_MIRROR
    assert not list(workdir.iterdir())


@pytest.mark.parametrize("command", ["fetch", "verify"])
def test_a_mirror_that_is_a_file_is_refused(command, workdir, capsys):
    (workdir / "existing.json").write_text("{}")
    argv = ["data", command, "cora", "--data-root", "root", "--mirror", "existing.json"]
    assert main(argv) == 2
    mirror = workdir.resolve() / "existing.json"
    assert capsys.readouterr().err == (
        f"gnnkit: error: mirror (--mirror, mirror=) {mirror} is a file, not a folder: "
        f"{NOT_A_MIRROR}\n"
    )
    assert not (workdir / "root").exists()


def test_a_missing_mirror_folder_is_refused(workdir, capsys):
    assert main(["data", "fetch", "cora", "--data-root", "root", "--mirror", "nowhere"]) == 2
    mirror = workdir.resolve() / "nowhere"
    assert capsys.readouterr().err == (
        f"gnnkit: error: mirror (--mirror, mirror=) {mirror} does not exist: {NOT_A_MIRROR}\n"
    )


def test_an_empty_gnnkit_data_means_the_default_root(workdir, monkeypatch, capsys):
    monkeypatch.setenv("GNNKIT_DATA", "")
    monkeypatch.setenv("GNNKIT_MIRROR", "")
    assert main(["data", "list"]) == 0
    assert f"data root: {workdir.resolve() / 'datasets'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "list"],
        ["data", "verify"],
        ["data", "fetch", "cora"],
        ["bench", "node", "--dataset", "karate", "--runs", "1", "--epochs", "1"],
    ],
)
@pytest.mark.parametrize("from_env", [False, True])
def test_a_data_root_that_is_a_file_is_refused(argv, from_env, workdir, monkeypatch, capsys):
    (workdir / "existing.json").write_text("{}")
    if from_env:
        monkeypatch.setenv("GNNKIT_DATA", "existing.json")
    else:
        argv = [*argv, "--data-root", "existing.json"]
    assert main(argv) == 2
    source = "$GNNKIT_DATA" if from_env else "--data-root, root="
    assert capsys.readouterr().err == (
        f"gnnkit: error: data root ({source}) {workdir.resolve() / 'existing.json'} is a file, "
        "not a folder: give a folder for the datasets (one that does not exist yet is created)\n"
    )
    assert [p.name for p in workdir.iterdir()] == ["existing.json"]
    assert (workdir / "existing.json").read_text() == "{}"
