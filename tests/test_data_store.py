"""Resolution order, atomic verified mirror copies and clear errors, on synthetic files."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
from pathlib import Path

import pytest

from gnnkit.data import store
from gnnkit.data.store import FetchPlan, resolve_files
from gnnkit.errors import ChecksumError, DataUnavailableError, InputError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FILES = {"set/raw/a.txt": b"alpha\n", "set/raw/b.bin": bytes(range(256)) * 10}


@pytest.fixture
def manifest(monkeypatch):
    """Replace the packaged manifest by one that knows FILES (plus what a test adds)."""
    known = {path: sha(data) for path, data in FILES.items()}
    monkeypatch.setattr(store, "_manifest", lambda: known)
    return known


@pytest.fixture
def mirror(tmp_path) -> Path:
    root = tmp_path / "mirror"
    for relpath, data in FILES.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
        (root / relpath).chmod(0o444)  # read-only, like the CI mirror
    return root


def plan(download=None, files=tuple(FILES)) -> FetchPlan:
    return FetchPlan("toy", tuple(files), "https://example.invalid/toy", download)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "tmp" in p.name]


def test_mirror_copy_is_verified_and_writable(tmp_path, manifest, mirror, offline):
    root = tmp_path / "root"
    assert resolve_files(plan(), root=root, mirror=mirror) == root.resolve()
    for relpath, data in FILES.items():
        assert (root / relpath).read_bytes() == data
        (root / relpath).write_bytes(data)  # the copy is writable although the mirror is not
    assert not leftovers(root)


def test_env_variables_name_root_and_mirror(tmp_path, manifest, mirror, monkeypatch):
    monkeypatch.setenv("GNNKIT_DATA", str(tmp_path / "envroot"))
    monkeypatch.setenv("GNNKIT_MIRROR", str(mirror))
    monkeypatch.setenv("GNNKIT_OFFLINE", "1")
    assert resolve_files(plan()) == (tmp_path / "envroot").resolve()
    assert (tmp_path / "envroot" / "set/raw/a.txt").is_file()


def test_corrupt_mirror_file_raises_and_leaves_nothing(tmp_path, manifest, mirror, offline):
    bad = mirror / "set/raw/b.bin"
    bad.chmod(0o644)
    bad.write_bytes(b"truncated")
    root = tmp_path / "root"
    with pytest.raises(ChecksumError, match=r"checksum mismatch for .*set/raw/b\.bin"):
        resolve_files(plan(), root=root, mirror=mirror)
    # a.txt was copied and verified before b failed, but nothing is left behind: all or nothing,
    # the folders the copy made included (the root's lock stays: see gnnkit.utils.locks).
    assert [p.name for p in root.rglob("*")] == [".gnnkit.lock"]
    (root / "set").mkdir()  # a folder that was there before the copy stays
    with pytest.raises(ChecksumError, match=r"replace it, or use another mirror \(--mirror"):
        resolve_files(plan(), root=root, mirror=mirror)
    assert sorted(p.name for p in root.rglob("*")) == [".gnnkit.lock", "set"]


def test_data_root_is_used_first_and_needs_no_mirror(tmp_path, manifest, mirror, offline):
    root = tmp_path / "root"
    resolve_files(plan(), root=root, mirror=mirror)
    assert resolve_files(plan(), root=root) == root.resolve()  # no mirror, no download needed


def test_corrupt_file_in_data_root_is_fetched_again(tmp_path, manifest, mirror, offline, caplog):
    root = tmp_path / "root"
    resolve_files(plan(), root=root, mirror=mirror)
    (root / "set/raw/a.txt").write_bytes(b"bit rot\n")
    with caplog.at_level(logging.WARNING, logger="gnnkit"):
        resolve_files(plan(), root=root, mirror=mirror)
    assert (root / "set/raw/a.txt").read_bytes() == FILES["set/raw/a.txt"]
    assert "does not match its checksum" in caplog.text


def test_unknown_checksum_is_skipped_with_a_notice_then_recorded(
    tmp_path, manifest, mirror, offline, caplog
):
    extra = mirror / "set/raw/c.txt"
    extra.write_bytes(b"no checksum known\n")
    root = tmp_path / "root"
    files = (*FILES, "set/raw/c.txt")
    with caplog.at_level(logging.WARNING, logger="gnnkit"):
        resolve_files(plan(files=files), root=root, mirror=mirror)
    assert "no known checksum" in caplog.text
    assert store._local_checksums(root.resolve())["set/raw/c.txt"] == sha(b"no checksum known\n")
    # Later corruption of that file is caught through the recorded checksum.
    (root / "set/raw/c.txt").write_bytes(b"changed\n")
    report = store.verify_files(root.resolve(), files)
    assert report.mismatched == ["set/raw/c.txt"]


def test_no_mirror_and_no_network_gives_one_clear_error(tmp_path, manifest, offline):
    with pytest.raises(DataUnavailableError) as info:
        resolve_files(plan(download=lambda root: None), root=tmp_path / "root")
    message = str(info.value)
    assert "cannot obtain dataset 'toy'" in message
    assert "2 of 2 file(s) missing" in message
    assert "GNNKIT_MIRROR is not set" in message
    assert "download: disabled" in message
    assert "Fix: set GNNKIT_MIRROR" in message


def test_failed_download_is_reported(tmp_path, manifest, monkeypatch):
    monkeypatch.delenv("GNNKIT_MIRROR", raising=False)
    monkeypatch.delenv("GNNKIT_OFFLINE", raising=False)

    def unreachable(root):
        raise urllib.error.URLError("Name or service not known")

    with pytest.raises(
        DataUnavailableError,
        match=r"upstream download from https://example.invalid/toy: failed \(URLError",
    ):
        resolve_files(plan(download=unreachable), root=tmp_path / "root")


def test_mirror_missing_files_falls_through_to_download(tmp_path, manifest, mirror, monkeypatch):
    monkeypatch.delenv("GNNKIT_OFFLINE", raising=False)
    (mirror / "set/raw/b.bin").unlink()

    def download(root):
        for relpath, data in FILES.items():
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_bytes(data)

    root = tmp_path / "root"
    assert resolve_files(plan(download=download), root=root, mirror=mirror) == root.resolve()
    assert (root / "set/raw/b.bin").read_bytes() == FILES["set/raw/b.bin"]


def upstream(root, relpaths=tuple(FILES)):
    """A download that writes a different release of each file in ``relpaths``."""
    for relpath in FILES:
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        data = b"upstream release " + relpath.encode() if relpath in relpaths else FILES[relpath]
        (root / relpath).write_bytes(data)


def test_download_differing_from_the_manifest_is_refused_and_deleted(
    tmp_path, manifest, monkeypatch
):
    monkeypatch.delenv("GNNKIT_MIRROR", raising=False)
    monkeypatch.delenv("GNNKIT_OFFLINE", raising=False)
    root = tmp_path / "root"
    with pytest.raises(
        ChecksumError,
        match=r"checksum mismatch for set/raw/a\.txt downloaded from https://example\.invalid/toy"
        r": expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}; the file was deleted",
    ):
        resolve_files(plan(download=upstream), root=root)
    assert not (root / "set/raw/a.txt").exists()
    assert "set/raw/a.txt" not in store._local_checksums(root.resolve())


def test_derived_file_may_differ_upstream_and_is_recorded(tmp_path, manifest, monkeypatch, caplog):
    monkeypatch.delenv("GNNKIT_MIRROR", raising=False)
    monkeypatch.delenv("GNNKIT_OFFLINE", raising=False)
    monkeypatch.setattr(store, "_derived", lambda: frozenset({"set/raw/a.txt"}))
    root = tmp_path / "root"
    with caplog.at_level(logging.WARNING, logger="gnnkit"):
        resolve_files(plan(download=lambda r: upstream(r, ("set/raw/a.txt",))), root=root)
    assert "differs from the mirror's derived copy" in caplog.text
    assert store.verify_files(root.resolve(), FILES).complete
    (root / "set/raw/a.txt").write_bytes(b"tampered")
    assert store.verify_files(root.resolve(), FILES).mismatched == ["set/raw/a.txt"]


def test_manifest_is_the_authority_over_local_records(tmp_path, manifest, mirror, offline):
    """A flipped byte plus an edited record in .gnnkit-checksums.json is still caught."""
    root = tmp_path / "root"
    resolve_files(plan(), root=root, mirror=mirror)
    (root / "set/raw/a.txt").write_bytes(b"flipped\n")
    store._record_local_checksums(root.resolve(), {"set/raw/a.txt": sha(b"flipped\n")})
    assert store.verify_files(root.resolve(), FILES).mismatched == ["set/raw/a.txt"]
    resolve_files(plan(), root=root, mirror=mirror)  # fetched again from the mirror
    assert (root / "set/raw/a.txt").read_bytes() == FILES["set/raw/a.txt"]


def test_packaged_manifest_matches_datasets_manifest():
    repo_manifest = Path(__file__).resolve().parents[1] / "datasets" / "manifest.json"
    store._manifest_json.cache_clear()
    assert repo_manifest.resolve().read_text() == (
        Path(store.__file__).with_name("manifest.json").read_text()
    )
    assert store.known_checksum("planetoid/Cora/raw/ind.cora.x") is not None


EMPTY_ROOT = (
    "data root (--data-root, root=) is empty: give a folder for the datasets, or leave it out "
    "to use $GNNKIT_DATA or ./datasets"
)
EMPTY_MIRROR = (
    "mirror (--mirror, mirror=) is empty: give the folder of a local mirror laid out like the "
    "data root, or leave it out to use $GNNKIT_MIRROR"
)
NOT_A_MIRROR = (
    "give the folder of a local mirror laid out like the data root (for example a copy of the "
    "project's shared datasets mirror)"
)


@pytest.mark.parametrize("root", ["", "  "])
def test_an_empty_data_root_is_refused_and_writes_nothing(root, tmp_path, monkeypatch):
    from gnnkit.data import load

    monkeypatch.chdir(tmp_path)
    for call in (
        lambda: store.data_root(root),
        lambda: resolve_files(plan(), root=root),
        lambda: load("cora", root=root, download=False),
        lambda: load("karate", root=root),
    ):
        with pytest.raises(InputError) as caught:
            call()
        assert str(caught.value) == EMPTY_ROOT
    assert not list(tmp_path.iterdir())  # no planetoid/ and no lock in the current folder


@pytest.mark.parametrize("value", ["", " "])
def test_empty_environment_variables_count_as_unset(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GNNKIT_DATA", value)
    monkeypatch.setenv("GNNKIT_MIRROR", value)
    assert store.data_root() == tmp_path.resolve() / "datasets"
    assert store.mirror_root() is None


def test_an_empty_mirror_is_refused_even_when_not_needed(tmp_path, manifest, mirror, offline):
    from gnnkit.data import load, status

    root = tmp_path / "root"
    resolve_files(plan(), root=root, mirror=mirror)  # the data root is complete now
    for call in (
        lambda: store.mirror_root(""),
        lambda: resolve_files(plan(), root=root, mirror=""),
        lambda: load("karate", mirror=""),
        lambda: status("cora", root=root, mirror=" "),
    ):
        with pytest.raises(InputError) as caught:
            call()
        assert str(caught.value) == EMPTY_MIRROR


def test_a_mirror_that_is_not_a_folder_is_refused(tmp_path, manifest, offline, monkeypatch):
    from gnnkit.data import load

    afile, missing = tmp_path / "existing.json", tmp_path / "nowhere"
    afile.write_text("{}")
    root = tmp_path / "root"
    with pytest.raises(DataUnavailableError) as caught:
        resolve_files(plan(), root=root, mirror=afile)
    assert str(caught.value) == (
        f"mirror (--mirror, mirror=) {afile} is a file, not a folder: {NOT_A_MIRROR}"
    )
    with pytest.raises(DataUnavailableError) as caught:
        load("karate", mirror=missing)
    assert (
        str(caught.value) == f"mirror (--mirror, mirror=) {missing} does not exist: {NOT_A_MIRROR}"
    )
    monkeypatch.setenv("GNNKIT_MIRROR", str(afile))
    with pytest.raises(DataUnavailableError) as caught:
        resolve_files(plan(), root=root)
    assert str(caught.value) == (
        f"mirror ($GNNKIT_MIRROR) {afile} is a file, not a folder: {NOT_A_MIRROR}, or unset "
        "GNNKIT_MIRROR"
    )
    assert not [p for p in root.rglob("*") if p.is_file() and p.name != ".gnnkit.lock"]
