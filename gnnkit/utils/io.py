"""Atomic writes and safe loads.

Results and checkpoints are never half-written: every writer here writes a temporary file in the
destination folder, flushes and fsyncs it, then renames it over the destination
(:func:`os.replace` is atomic on POSIX and Windows). A crash leaves either the old file or the
new one, never a truncated mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from gnnkit.errors import CheckpointError

__all__ = [
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_json",
    "atomic_write_text",
    "safe_torch_load",
]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.

    Args:
        path (str or PathLike): the destination.
        mode (str, optional): ``"w"`` (text) or ``"wb"`` (binary). (default: ``"w"``)
        **kwargs: passed to :func:`open` (``encoding``, ``newline``...).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600; give the result the mode a plain open() would: the existing file's
    # mode, or 0666 less the umask.
    os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return Path(path)


def safe_torch_load(
    path: str | os.PathLike,
    *,
    allow: Iterable[Any] = (),
    map_location: Any = "cpu",
    what: str = "checkpoint",
) -> Any:
    """Load a file with ``torch.load(weights_only=True)``, never executing arbitrary pickles.

    Args:
        path (str or PathLike): the file.
        allow (iterable, optional): extra classes or functions the unpickler may build, passed to
            :func:`torch.serialization.safe_globals`. (default: none)
        map_location (optional): passed to :func:`torch.load`. (default: ``"cpu"``)
        what (str, optional): how to name the file in error messages. (default: ``"checkpoint"``)

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, or holds objects outside the
            allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" not in text and "GLOBAL" not in text:
            # torch's weights-only unpickler met bytes that are no pickle at all
            raise CheckpointError(
                f"{what} {path} is not a torch checkpoint, or it is corrupt (it does not "
                "unpickle); check the path, or delete the file and write it again"
            ) from exc
        first = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), "")
        raise CheckpointError(
            f"{what} {path} holds objects that are not allowed to load safely ({first}); "
            "it was not written by this version of gnnkit or it is not a gnnkit file"
        ) from exc
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"{what} {path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "delete it and write it again"
        ) from exc
    except Exception as exc:  # the unpickler's KeyError, IndexError... on arbitrary bytes
        raise CheckpointError(
            f"{what} {path} is not a torch checkpoint, or it is corrupt "
            f"({type(exc).__name__} while unpickling); check the path, or delete the file and "
            "write it again"
        ) from exc
