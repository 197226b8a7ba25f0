"""An on-disk cache for the kernels gnnkit writes out per shape (generated numba source).

numba caches a compiled function's machine code only when the function lives in a source
file, which it stamps (modification time and size) to tell when the cache is stale. The
kernels written out per channel count or head count (:mod:`gnnkit.ops._spmm_narrow`,
:mod:`gnnkit.ops._gat_rows`, :mod:`gnnkit.ops._node_scores`) are generated source, so each
process used to compile every kernel it ran: a Cora GAT process compiled 21 of them, about
15 s before its first epoch. Here each generated kernel becomes a small module file, its
globals written out as Python expressions above the source, so that numba's ``cache=True``
keeps the machine code beside it and the next process loads it in a fraction of a second.

- **Where**: ``GNNKIT_KERNEL_CACHE`` (a folder; ``0``, ``off``, ``false`` or ``no`` turns the
  cache off), else ``$XDG_CACHE_HOME/gnnkit/kernels``, else ``~/.cache/gnnkit/kernels``;
  numba's own files go where numba puts them (``__pycache__`` there, or
  ``NUMBA_CACHE_DIR``).
- **Trust**: numba's cache files are pickles and the module files are Python, so the folder
  must be private: gnnkit creates it with mode 0700 and uses it only if it is a folder owned
  by the current user that no one else can write to; otherwise kernels compile in the
  process, uncached, as before. The module gnnkit runs is the text it has just generated,
  never what it reads back from the folder.
- **Staleness**: the file's name is a hash of its whole text (the source and every constant
  baked into it), of :mod:`gnnkit.ops._jit`'s source (the intrinsics the kernels call and
  the options they compile with) and numba's version; a changed generator, constant or
  intrinsic is a new file.
  numba keys its own entries on the signature and the CPU.
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
    "from gnnkit.ops._jit import _prefetch, address_pointer",
)


def register(obj: Any, source: str) -> Any:
    """Record that the expression ``source`` (in a generated module's namespace) rebuilds
    ``obj``, a cached factory's product; returns ``obj``."""
    _EXPRESSIONS[id(obj)] = source
    return obj


class _Unwritable(Exception):
    """A global that cannot be written out as an expression."""


def expression(value: Any) -> str:
    """A Python expression for a generated kernel's global ``value``: numbers and numpy
    scalars exactly (floats through their hexadecimal form, infinities included), numpy
    scalar types, and objects of gnnkit's factories (:func:`register`)."""
    if id(value) in _EXPRESSIONS:
        return _EXPRESSIONS[id(value)]
    if isinstance(value, np.floating):
        return f"np.{type(value).__name__}(float.fromhex({float(value).hex()!r}))"
    if isinstance(value, np.integer | np.bool_):
        return f"np.{type(value).__name__}({value.item()!r})"
    if isinstance(value, float):
        return f"float.fromhex({value.hex()!r})"
    if isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, type) and issubclass(value, np.generic):
        return f"np.{value.__name__}"
    raise _Unwritable(f"{type(value).__name__} {value!r}")


def _same(a: Any, b: Any) -> bool:
    """Whether a global rebuilt from its expression is the original (bits for scalars)."""
    if isinstance(a, np.generic):
        return type(a) is type(b) and a.tobytes() == b.tobytes()
    return a is b or (type(a) is type(b) and a == b)


def cache_directory() -> Path | None:
    """The private folder of the cache (module docstring), created if missing, or ``None``
    when the cache is off or the folder cannot be trusted or made."""
    setting = os.environ.get("GNNKIT_KERNEL_CACHE")
    if setting is not None and switched_off("GNNKIT_KERNEL_CACHE"):
        return None
    try:
        if setting:
            folder = Path(setting).expanduser()
        else:
            base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            folder = Path(base) / "gnnkit" / "kernels"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022:
        return None  # a link, or a folder others can write to
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
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
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if path.read_text() == text:
            return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def cached_module(source: str, label: str, names: dict[str, Any]) -> ModuleType | None:
    """The module defining generated ``source`` with ``names`` as its globals, backed by a
    file in the cache folder so that numba can cache what it compiles from it; ``None``
    when the cache is off or cannot serve this kernel (the caller then runs ``source``
    uncached). ``label`` names the kernel in the module's docstring."""
    folder = cache_directory()
    if folder is None:
        return None
    import numba

    try:
        text = f'"""gnnkit kernel: {label}"""\n' + _module_text(source, names)
    except _Unwritable:
        return None
    key = "\0".join([text, _intrinsics_digest(), numba.__version__])
    stem = "gnnkit_kernel_" + hashlib.sha256(key.encode()).hexdigest()[:32]
    path = folder / f"{stem}.py"
    try:
        _write(path, text)
    except OSError:
        return None
    spec = importlib.util.spec_from_file_location(stem, path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # numba imports the module by name when it loads a cached entry: register it first.
    sys.modules[stem] = module
    exec(compile(text, str(path), "exec"), module.__dict__)
    if not all(_same(getattr(module, name), value) for name, value in names.items()):
        del sys.modules[stem]
        return None  # not rebuilt exactly: compile uncached rather than trust the file
    return module
