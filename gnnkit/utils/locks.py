"""Inter-process locks of the folders several gnnkit processes may share.

:func:`file_lock` is the one lock (``filelock``) of a data root; :func:`folder_lock` is the lock
of an output folder (a checkpoint folder, a run's ``--out``, a shard folder), which two
commands must never write at once. The operating system drops the lock of a process that
dies, so a killed run never leaves a folder locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gnnkit.errors import OutputError
from gnnkit.utils.io import _make_folder, describe_os_error

__all__ = ["file_lock", "folder_lock"]

#: One lock object per lock file and process: a ``filelock`` lock is re-entrant per thread
#: (exclusive between threads and processes), and a second object on the same file in the same
#: thread would wait for the first forever.
_LOCKS: dict[str, Any] = {}


@contextlib.contextmanager
def file_lock(
    folder: str | os.PathLike,
    *,
    name: str = ".gnnkit.lock",
    timeout: float = 3600.0,
    option: str = "folder",
) -> Iterator[None]:
    """Hold an inter-process lock on ``folder`` (``filelock``, re-entrant in one process).

    Other gnnkit processes that lock the same folder wait; the operating system drops the lock
    of a process that dies, so a killed run never leaves the folder locked.

    Raises:
        OutputError: the folder cannot hold the lock file (read-only, a file...), or another
            process held the lock for longer than ``timeout`` seconds.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    _make_folder(folder, option)
    key = str(folder.resolve() / name)
    lock = _LOCKS.setdefault(key, FileLock(key))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        waited = "" if timeout <= 0 else f" for more than {timeout:.0f} s"
        raise OutputError(
            f"{option} {folder} is locked by another gnnkit process{waited} (lock file {key}); "
            "wait for it to finish, or choose another folder"
        ) from exc
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"cannot lock {option}", folder)) from exc
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, option: str, timeout: float = 0.0) -> Iterator[None]:
    """The lock of an output folder (a checkpoint folder, a run's ``--out``), kept beside it
    as ``.NAME.gnnkit-lock`` so the folder itself holds only what the run writes. With the
    default ``timeout=0`` a folder in use by another process is refused at once.

    The lock file stays after the command, as filelock leaves its Unix locks: deleting a file
    another process may have opened would let each of two processes hold "the lock" on a
    different file. Only where the parent folders had to be created for the lock and nothing
    was written are the lock file and those folders removed again."""
    # "a/b/.." and "a" are one folder with one lock; a link keeps its lock beside itself
    folder = Path(os.path.abspath(Path(folder).expanduser()))
    created = [p for p in [folder.parent, *folder.parent.parents] if not os.path.lexists(p)]
    lock = folder.parent / f".{folder.name}.gnnkit-lock"
    try:
        with file_lock(folder.parent, name=lock.name, timeout=timeout, option=option):
            yield
    finally:
        if created and not os.path.lexists(folder):
            lock.unlink(missing_ok=True)
            for parent in created:  # the deepest first; stops at one that is not empty
                try:
                    parent.rmdir()
                except OSError:
                    break
