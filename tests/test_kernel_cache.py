"""The on-disk cache of generated kernels (gnnkit.ops._kernel_cache).

References: numba's own cache statistics (a miss, then a hit in a fresh dispatcher), the
kernels' bit-for-bit self-check against numpy, and the files on disk.
"""

from __future__ import annotations

import enum
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gnnkit.ops import _kernel_cache
from gnnkit.ops._jit import jit_available

pytestmark = pytest.mark.skipif(not jit_available(), reason="numba is not available")
REPO = Path(__file__).resolve().parents[1]


def narrow():
    from gnnkit.ops import _spmm_narrow

    return _spmm_narrow


def fresh_kernel(channels: int, kind: str = "rows"):
    """A new dispatcher of a narrow SpMM kernel, compiled (from disk where cached) and
    checked bit for bit against numpy."""
    sn = narrow()
    kernel = sn._dispatcher.__wrapped__(channels, kind, "float32", "int32")
    types = sn._numba().types
    sn.compile_vectorised(
        kernel, tuple(getattr(types, t) for t in ("int64", "int64", *sn._SIGNATURE))
    )
    sn._self_check(kernel, channels, kind, np.dtype("float32"), np.dtype("int32"))
    return kernel


def kernel_files(folder):
    return sorted(path.name for path in folder.glob("gnnkit_kernel_*.py"))


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "kernels"
    monkeypatch.setenv("GNNKIT_KERNEL_CACHE", str(path))
    return path


def test_a_generated_kernel_compiles_once_then_loads_from_disk(folder):
    first = fresh_kernel(8)
    assert sum(first.stats.cache_misses.values()) == 1 and not first.stats.cache_hits
    files = kernel_files(folder)
    assert len(files) == 1
    assert folder.stat().st_mode & 0o777 == 0o700  # private: it holds code and pickles
    second = fresh_kernel(8)  # a new dispatcher, as in the next process
    assert sum(second.stats.cache_hits.values()) == 1 and not second.stats.cache_misses
    assert kernel_files(folder) == files
    fresh_kernel(9)  # other constants: a file of its own
    fresh_kernel(8, "biased rows")  # another source
    assert len(kernel_files(folder)) == 3


@pytest.mark.parametrize("setting", ["0", "off"])
def test_the_cache_can_be_switched_off(setting, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GNNKIT_KERNEL_CACHE", setting)
    assert _kernel_cache.cache_directory() is None
    kernel = fresh_kernel(8)  # compiled in the process, as before
    assert kernel.stats.cache_path is None
    assert list(tmp_path.iterdir()) == []  # not taken for a folder's name


def test_the_next_process_loads_the_kernel_from_disk(folder):
    # A new process: numba rebuilds the kernel's environment by importing its module by name.
    script = (
        "import sys; sys.path.insert(0, 'tests'); import test_kernel_cache as t; "
        "k = t.fresh_kernel(8); print(sum(k.stats.cache_hits.values()), "
        "sum(k.stats.cache_misses.values()))"
    )
    env = dict(os.environ, GNNKIT_KERNEL_CACHE=str(folder))
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       check=True, cwd=REPO).stdout.split()
        for _ in range(2)
    ]  # fmt: skip
    assert runs == [["0", "1"], ["1", "0"]]  # compiled, then loaded (and self-checked)


def test_a_folder_others_can_write_to_is_not_used(folder):
    folder.mkdir()
    folder.chmod(0o777)
    assert _kernel_cache.cache_directory() is None
    fresh_kernel(8)
    assert kernel_files(folder) == []
    folder.chmod(0o700)
    assert _kernel_cache.cache_directory() == folder
    (folder / "__pycache__").chmod(0o770)  # where numba keeps its pickles
    assert _kernel_cache.cache_directory() is None
    (folder / "__pycache__").chmod(0o700)
    assert _kernel_cache.cache_directory() == folder


def test_numba_files_others_could_have_written_are_not_loaded(folder):
    fresh_kernel(8)
    (entry,) = [p for p in (folder / "__pycache__").iterdir() if p.suffix == ".nbi"]
    entry.chmod(0o666)
    assert fresh_kernel(8).stats.cache_path is None  # compiled in the process instead
    entry.chmod(0o600)
    assert sum(fresh_kernel(8).stats.cache_hits.values()) == 1


def test_folders_above_must_be_safe_too(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could swap the cache folder for their own
    monkeypatch.setenv("GNNKIT_KERNEL_CACHE", str(shared / "kernels"))
    assert _kernel_cache.cache_directory() is None
    shared.chmod(0o777 | stat.S_ISVTX)  # sticky, as /tmp: only owners rename or remove
    assert _kernel_cache.cache_directory() == shared / "kernels"


def test_a_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch):
    monkeypatch.delenv("GNNKIT_KERNEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert _kernel_cache.cache_directory() == tmp_path / ".cache" / "gnnkit" / "kernels"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _kernel_cache.cache_directory() == tmp_path / "xdg" / "gnnkit" / "kernels"


def test_a_link_in_place_of_the_folder_is_not_used(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    monkeypatch.setenv("GNNKIT_KERNEL_CACHE", str(tmp_path / "link"))
    assert _kernel_cache.cache_directory() is None


def test_writes_are_atomic_and_never_over_other_files(tmp_path):
    path = tmp_path / "k.py"
    _kernel_cache._write(path, "x = 1\n")
    stamp = path.stat().st_mtime_ns
    _kernel_cache._write(path, "x = 1\n")  # equal: untouched, so numba's stamp stays valid
    assert path.stat().st_mtime_ns == stamp
    _kernel_cache._write(path, "x = 2\n")
    assert path.read_text() == "x = 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["k.py"]  # no temporary left
    other = tmp_path / "precious.txt"
    other.write_text("data")
    link = tmp_path / "link.py"
    link.symlink_to(other)
    with pytest.raises(OSError, match="not a regular file"):
        _kernel_cache._write(link, "x = 3\n")
    assert other.read_text() == "data"


def test_globals_are_written_out_exactly():
    from gnnkit.ops import _jit

    values = [
        np.float32(-np.inf), np.float64(0.1), np.float32(0.2), np.uint64(7), np.bool_(True),
        np.float32(-0.0), np.float32(np.nan), np.uint64(2**64 - 1), np.int8(-3), -0.0,
        True, 3, 0.25, np.float32, _jit.address_pointer("float32"), _jit._prefetch(3),
        _jit.address_pointer(np.float64),
    ]  # fmt: skip
    scope: dict = {}
    exec("\n".join(_kernel_cache._HEADER), scope)
    for value in values:
        rebuilt = eval(_kernel_cache.expression(value), scope)
        assert _kernel_cache._same(rebuilt, value), value
    assert _jit._prefetch() is _jit._prefetch(_jit._LOCALITY)  # one object per locality
    assert not _kernel_cache._same(0.0, -0.0)
    for refused in (object(), enum.IntEnum("E", "A").A, np.timedelta64(3, "s")):
        with pytest.raises(_kernel_cache._Unwritable):
            _kernel_cache.expression(refused)


def test_a_kernel_with_a_global_that_cannot_be_written_out_is_not_cached(folder):
    module = _kernel_cache.cached_module("def kernel():\n    return 1\n", "t", {"X": object()})
    assert module is None and kernel_files(folder) == []
    module = _kernel_cache.cached_module("def kernel():\n    return X\n", "t", {"X": 4})
    assert module is not None and module.kernel() == 4
    assert os.path.dirname(module.__file__) == str(folder)
