"""No planted file runs code, and concurrent fetches leave one consistent copy.

Every processed cache that gnnkit's loaders touch (PyG's Planetoid ``data.pt``,
``pre_transform.pt`` and ``pre_filter.pt``; OGB's ``geometric_data_processed.pt`` and its
``pre_*.pt``) gets a pickle that would create a marker file if it were ever unpickled. Loading,
fetching and benchmarking must leave the marker absent, rebuild the cache, and ``data verify``
must report the planted file first. Planetoid's raw pickles go through an allow-list unpickler.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import require_data

from gnnkit.cli import main
from gnnkit.data import load, verify
from gnnkit.data.loaders import restricted_pickle_load
from gnnkit.data.store import LOCAL_CHECKSUMS, sha256_file


@pytest.fixture(scope="module")
def mirror() -> Path:
    path = os.environ.get("GNNKIT_MIRROR")
    if not path or not Path(path).is_dir():
        if require_data():
            pytest.fail("GNNKIT_REQUIRE_DATA=1 but GNNKIT_MIRROR does not name a folder")
        pytest.skip("no local mirror (GNNKIT_MIRROR)")
    return Path(path)


class Planted:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(Planted(marker), path)


def forge_record(root: Path, relpath: str) -> None:
    """What an attacker who can write the data root can also do: record the planted file."""
    records = root / LOCAL_CHECKSUMS
    current = json.loads(records.read_text()) if records.is_file() else {}
    current[relpath] = sha256_file(root / relpath)
    records.write_text(json.dumps(current))


def test_the_planted_pickle_really_runs_code_when_unpickled_unsafely(tmp_path):
    marker = tmp_path / "ran"
    plant(tmp_path / "p.pt", marker)
    torch.load(tmp_path / "p.pt", weights_only=False)
    assert marker.exists()  # so its absence below means the loaders never unpickled it


CACHES = [
    ("cora", "planetoid/Cora/processed", ["data.pt", "pre_transform.pt", "pre_filter.pt"]),
    (
        "ogbg-molbace",
        "ogb/ogbg_molbace/processed",
        ["geometric_data_processed.pt", "pre_transform.pt", "pre_filter.pt"],
    ),
]


@pytest.mark.parametrize(
    ("name", "folder", "file", "forged"),
    [
        pytest.param(name, folder, file, forged, id=f"{name}-{file}{'-forged' if forged else ''}")
        for name, folder, files in CACHES
        for file in files
        for forged in (False, True)
    ],
)
def test_a_planted_processed_file_never_runs(tmp_path_factory, mirror, name, folder, file, forged):
    root = tmp_path_factory.mktemp("root")
    marker = root.parent / f"ran-{root.name}"
    first = load(name, root=root, mirror=mirror, download=False)
    size = len(first) if hasattr(first, "__len__") and not hasattr(first, "x") else first.num_nodes
    plant(root / folder / file, marker)
    if forged:
        forge_record(root, f"{folder}/{file}")
    else:
        report = verify(name, root=root)
        assert report.untrusted == [f"{folder}/{file}"] and not report.trusted
    again = load(name, root=root, mirror=mirror, download=False)
    assert not marker.exists()
    assert (
        len(again) if hasattr(again, "__len__") and not hasattr(again, "x") else again.num_nodes
    ) == size
    assert verify(name, root=root).trusted  # rebuilt and recorded


def test_data_verify_and_fetch_through_the_cli(tmp_path, mirror, capsys):
    root = tmp_path / "root"
    marker = tmp_path / "ran"
    fetch = ["data", "fetch", "cora", "--data-root", str(root), "--mirror", str(mirror)]
    assert main([*fetch, "--offline"]) == 0
    plant(root / "planetoid/Cora/processed/pre_transform.pt", marker)
    assert main(["data", "verify", "cora", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "1 untrusted cache file(s)" in out and "pre_transform.pt" in out
    assert main([*fetch, "--offline"]) == 0
    assert not marker.exists()
    assert main(["data", "verify", "cora", "--data-root", str(root)]) == 0
    assert " ok " in capsys.readouterr().out


def test_planetoid_raw_pickles_build_only_arrays(tmp_path, mirror):
    raw = mirror / "planetoid/Cora/raw/ind.cora.x"
    with open(raw, "rb") as handle:
        x = restricted_pickle_load(handle, encoding="latin1")
    assert x.shape == (140, 1433)
    marker = tmp_path / "ran"
    payload = pickle.dumps(Planted(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"global (io|builtins)\.open is not allowed"):
        restricted_pickle_load(io.BytesIO(payload), encoding="latin1")
    assert not marker.exists()


def test_a_planted_raw_file_is_replaced_from_the_mirror_unread(tmp_path, mirror):
    root = tmp_path / "root"
    marker = tmp_path / "ran"
    load("cora", root=root, mirror=mirror, download=False)
    raw = root / "planetoid/Cora/raw/ind.cora.graph"
    raw.write_bytes(pickle.dumps(Planted(marker), protocol=2))
    forge_record(root, "planetoid/Cora/raw/ind.cora.graph")  # the manifest still wins
    for cache in (root / "planetoid/Cora/processed").iterdir():
        cache.unlink()
    assert load("cora", root=root, mirror=mirror, download=False).num_nodes == 2708
    assert not marker.exists()
    assert sha256_file(raw) == sha256_file(mirror / "planetoid/Cora/raw/ind.cora.graph")


@pytest.mark.slow
def test_concurrent_fetches_all_succeed_with_one_consistent_copy(tmp_path, mirror):
    root = tmp_path / "root"
    script = textwrap.dedent(
        """
        import sys
        from gnnkit.cli import main
        sys.exit(main(["-q", "data", "fetch", "cora", "--data-root", sys.argv[1],
                       "--mirror", sys.argv[2], "--offline"]))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), str(mirror)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    results = [(child.wait(timeout=300), *child.communicate()) for child in children]
    for code, out, err in results:
        assert code == 0, err
        assert "cora: ready (2,708 nodes" in out
    report = verify("cora", root=root)
    assert report.trusted and len(report.ok) == 8
    leftovers = [p for p in root.rglob("*") if "tmp" in p.name]
    assert leftovers == []


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on localhost: ``(folder, base_url)``."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_downloads_check_the_known_sha256_and_leave_nothing_on_a_mismatch(http_folder, tmp_path):
    import hashlib
    import zipfile

    from gnnkit.data.loaders import download_file
    from gnnkit.errors import ChecksumError

    folder, base = http_folder
    (folder / "book.txt").write_bytes(b"I would prefer not to.\n")
    good = hashlib.sha256(b"I would prefer not to.\n").hexdigest()
    target = tmp_path / "root" / "text" / "book.txt"
    download_file(f"{base}/book.txt", target, sha256=good)
    assert target.read_bytes() == b"I would prefer not to.\n"
    other = tmp_path / "root" / "text" / "other.txt"
    with pytest.raises(ChecksumError, match=r"does not match the known sha256 of other\.txt"):
        download_file(f"{base}/book.txt", other, sha256="0" * 64)
    assert sorted(p.name for p in other.parent.iterdir()) == ["book.txt"]  # nothing half-written
    with zipfile.ZipFile(folder / "corpus.zip", "w") as archive:
        archive.writestr("corpus/data.txt", "a\tb\n")
    member = tmp_path / "root" / "data.txt"
    download_file(f"{base}/corpus.zip", member, member="data.txt")
    assert member.read_text() == "a\tb\n"


def test_a_read_only_data_root_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    import filelock

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "root" / ".gnnkit.lock"))

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    assert main(["data", "fetch", "cora", "--offline", "--data-root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gnnkit: error: cannot lock data root")
    assert "the file system is read-only; choose a location on a writable disk" in err
