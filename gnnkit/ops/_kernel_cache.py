"""An on-disk cache for the kernels gnnkit writes out per shape (generated numba source).

numba caches a compiled function's machine code only when the function lives in a source
file, which it stamps to tell when the cache is stale. The
kernels written out per channel count or head count (:mod:`gnnkit.ops._spmm_narrow`,
:mod:`gnnkit.ops._gat_rows`, :mod:`gnnkit.ops._node_scores`) are generated source, so each
process used to compile every kernel it ran: a Cora GAT process compiled 21 of them, about
15 s before its first epoch. Here each generated kernel becomes a small module file, its
globals written out as Python expressions above the source, so that numba's ``cache=True``
keeps the machine code beside it and the next process loads it in a fraction of a second.

- **Where**: ``GNNKIT_KERNEL_CACHE`` (a folder; ``0``, ``off``, ``false`` or ``no`` turns the
  cache off), else ``$XDG_CACHE_HOME/gnnkit/kernels`` (an absolute ``XDG_CACHE_HOME``), else
  ``~/.cache/gnnkit/kernels``; numba's own files go to ``__pycache__`` there, or to
  ``NUMBA_CACHE_DIR`` where that is set (as for gnnkit's other compiled kernels).
- **Trust**: numba's cache files are pickles and the module files are Python, so the folder
  must be private. gnnkit creates it and its ``__pycache__`` with mode 0700 and uses them
  only while both are real folders owned by the current user that no one else can write to,
  every folder above them is owned by the user or root and writable by no one else unless
  sticky (``/tmp``), and numba's files for the kernel are the user's and writable by no one
  else; otherwise, and on platforms without file owners, kernels compile in the process,
  uncached, as before. The module gnnkit runs is the text it has just generated, never what
  it reads back from the folder.
- **Staleness**: the file's name is a hash of its whole text (the source and every constant
  baked into it), of :mod:`gnnkit.ops._jit`'s source (the intrinsics the kernels call and
  the options they compile with) and of numba's and llvmlite's versions; a changed
  generator, constant or intrinsic is a new file. numba keys its own entries on the
  signature, the Python version and the CPU.
- **Safety of writes**: a file is written to a temporary name and moved into place, only
  when it is missing or differs (rewriting an equal file would change its stamp and make
  numba recompile), and never over anything that is not a regular file.

Any failure here (an unwritable folder, a global that cannot be written out) leaves the
kernel to compile in the process as before: caching is never a reason to fail.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import stat
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gnnkit.utils.env import switched_off

__all__ = ["cache_directory", "cached_module", "expression"]

#: Expressions that rebuild objects made by gnnkit's factories (the intrinsics of
#: :mod:`gnnkit.ops._jit`), keyed by ``id``; the factories cache their objects, which keeps
#: the ids valid.
_EXPRESSIONS: dict[int, str] = {}
_HEADER = (
    "import numpy as np",
    "from numba import carray",
    "from gnnkit.ops._jit import _prefetch, _transpose8, address_pointer",
)


def register(obj: Any, source: str) -> Any:
    """Record that the expression ``source`` (in a generated module's namespace) rebuilds
    ``obj``, a cached factory's product; returns ``obj``."""
    _EXPRESSIONS[id(obj)] = source
    return obj


class _Unwritable(Exception):
    """A global that cannot be written out as an expression."""


def expression(value: Any) -> str:
    """A Python expression for a generated kernel's global ``value``: Python ``bool``,
    ``int`` and ``float`` and numpy booleans, integers and floats exactly (numpy scalars
    through their bytes, so every bit, NaN payloads included), numpy scalar types, and
    objects of gnnkit's factories (:func:`register`); anything else is refused."""
    if id(value) in _EXPRESSIONS:
        return _EXPRESSIONS[id(value)]
    kind = type(value)
    if kind in (bool, int):
        return repr(value)
    if kind is float:
        return f"float.fromhex({value.hex()!r})"
    numeric = isinstance(value, np.bool_ | np.integer | np.floating)
    if numeric and kind.__module__ == "numpy" and not isinstance(value, np.timedelta64):
        data, dtype = value.tobytes().hex(), np.dtype(kind).name
        return f"np.frombuffer(bytes.fromhex({data!r}), {dtype!r})[0]"
    if isinstance(value, type) and issubclass(value, np.generic):
        return f"np.{value.__name__}"
    raise _Unwritable(f"{kind.__name__} {value!r}")


def _same(a: Any, b: Any) -> bool:
    """Whether a global rebuilt from its expression is the original, bit for bit."""
    if isinstance(a, np.generic):
        return type(a) is type(b) and a.tobytes() == b.tobytes()
    if type(a) is float:
        return type(b) is float and a.hex() == b.hex()
    return a is b or (type(a) is type(b) and a == b)


def _private(path: Path, file_type: int = stat.S_IFDIR) -> bool:
    """Whether ``path`` is of ``file_type`` (a real folder by default; never a link), owned by
    this user and writable by no one else."""
    info = path.lstat()
    owned = stat.S_IFMT(info.st_mode) == file_type and info.st_uid == os.getuid()
    return owned and not info.st_mode & 0o022


def _safe_parent(path: Path) -> bool:
    """Whether no other user can replace ``path``'s entries: owned by this user or root, and
    writable by no one else unless sticky (as ``/tmp``)."""
    info = path.stat()
    return info.st_uid in (0, os.getuid()) and (
        not info.st_mode & 0o022 or bool(info.st_mode & stat.S_ISVTX)
    )


def cache_directory() -> Path | None:
    """The private folder of the cache (module docstring), created if missing, or ``None``
    when the cache is off, the platform has no file owners (not POSIX), or the folder, the
    ``__pycache__`` in it where numba writes, or a folder above it cannot be trusted."""
    setting = os.environ.get("GNNKIT_KERNEL_CACHE")
    if (setting is not None and switched_off("GNNKIT_KERNEL_CACHE")) or not hasattr(os, "getuid"):
        return None
    try:
        if setting:
            folder = Path(setting).expanduser().absolute()
        else:
            base = Path(os.environ.get("XDG_CACHE_HOME") or "")
            if not base.is_absolute():  # unset, or relative, which the XDG spec ignores
                base = Path.home() / ".cache"
            folder = base / "gnnkit" / "kernels"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        pycache = folder / "__pycache__"
        pycache.mkdir(mode=0o700, exist_ok=True)
        if not (_private(folder) and _private(pycache)):
            return None
        if not all(_safe_parent(parent) for parent in folder.parents):
            return None
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        return None
    return folder


@functools.cache
def _intrinsics_digest() -> str:
    """A hash of :mod:`gnnkit.ops._jit`'s source: the intrinsics inlined into the kernels."""
    from gnnkit.ops import _jit

    return hashlib.sha256(Path(_jit.__file__).read_bytes()).hexdigest()


def _module_text(source: str, names: dict[str, Any]) -> str:
    """The module: the header's imports, one assignment per global, then ``source``."""
    lines = list(_HEADER)
    for name, value in names.items():
        if name in ("np", "carray"):
            continue  # imported by the header
        lines.append(f"{name} = {expression(value)}")
    return "\n".join(lines) + "\n\n\n" + source


def _write(path: Path, text: str) -> None:
    """Put ``text`` at ``path`` unless an equal regular file is there: through a temporary
    file moved into place; never over anything but a regular file."""
    data = text.encode()
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if path.read_bytes() == data:
            return
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _stem(text: str) -> str:
    """The module's name: a hash of its text, the intrinsics' source and numba's and
    llvmlite's versions (module docstring)."""
    import llvmlite
    import numba

    key = "\0".join([text, _intrinsics_digest(), numba.__version__, llvmlite.__version__])
    return "gnnkit_kernel_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _cache_files_private(folder: Path, stem: str) -> bool:
    """Whether numba's files for module ``stem`` in the folder's ``__pycache__`` (which
    numba unpickles) are this user's and writable by no one else."""
    return all(_private(path, stat.S_IFREG) for path in (folder / "__pycache__").glob(f"{stem}.*"))


def cached_module(source: str, label: str, names: dict[str, Any]) -> ModuleType | None:
    """The module defining generated ``source`` with ``names`` as its globals, backed by a
    file in the cache folder so that numba can cache what it compiles from it; ``None``
    when the cache is off or cannot serve this kernel (the caller then runs ``source``
    uncached), whatever went wrong. ``label`` names the kernel in the module's docstring."""
    folder = cache_directory()
    if folder is None:
        return None
    stem = None
    try:
        text = f'"""gnnkit kernel: {label}"""\n' + _module_text(source, names)
        stem = _stem(text)
        path = folder / f"{stem}.py"
        _write(path, text)
        if not _cache_files_private(folder, stem):
            return None
        spec = importlib.util.spec_from_file_location(stem, path)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        # numba imports the module by name when it loads a cached entry: register it first.
        sys.modules[stem] = module
        exec(compile(text, str(path), "exec"), module.__dict__)
        if all(_same(getattr(module, name), value) for name, value in names.items()):
            return module
    except Exception:  # a global it cannot write out, an unwritable folder...: no cache
        pass
    if stem is not None:
        sys.modules.pop(stem, None)
    return None
