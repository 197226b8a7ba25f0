"""Atomic writes, safe loads, output checks and locks: the one safe file writer of gnnkit.

Results and checkpoints are never half-written: every writer here goes through
:func:`atomic_open`, which

- refuses a destination that is not a regular file (a folder, a device such as ``/dev/full``, a
  FIFO or a socket) and an empty path, with an :class:`~gnnkit.errors.OutputError` that names
  the path and the fix;
- follows a symbolic link to its final target: the link stays, the file it points to is
  replaced (what ``open(path, "w")`` would write to, but atomically); a dangling link gets its
  target created;
- writes a uniquely named temporary file beside the target (``.NAME.PID-RANDOM.gnnkit-tmp``),
  flushes and fsyncs it, then renames it over the destination (:func:`os.replace` is atomic
  on POSIX and Windows), so a crash leaves the old file or the new one, never a mix;
- removes, on the next write to the same destination, temporary files that a killed process
  (``kill -9``, power loss) left behind: those whose process id no longer runs on this host.

Every :class:`OSError` (permissions, a read-only or full disk, a file where a folder is expected)
becomes an :class:`~gnnkit.errors.OutputError` with one line naming the path and the fix
(:func:`describe_os_error`). :func:`check_output` and :func:`check_output_dir` run the same
checks before any work starts, so an unwritable ``--json`` is found before training, not after.
The inter-process locks of shared folders are in :mod:`gnnkit.utils.locks`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pickle
import re
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from gnnkit.errors import CheckpointError, InputError, OutputError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_open",
    "atomic_torch_save",
    "atomic_write_json",
    "atomic_write_text",
    "check_new_output",
    "check_output",
    "check_output_dir",
    "describe_os_error",
    "not_a_file",
    "remove_stale_temps",
    "safe_torch_load",
    "stale_temps",
]

#: Suffix of the writer's temporary files (``.NAME.PID-RANDOM.gnnkit-tmp`` beside the target).
TEMP_SUFFIX = ".gnnkit-tmp"

_FIXES = {
    errno.EACCES: "permission denied; choose a location you can write to, or change its permissions",
    errno.EPERM: "operation not permitted; choose a location you can write to",
    errno.EROFS: "the file system is read-only; choose a location on a writable disk",
    errno.ENOSPC: "no space left on the device; free some space or choose another disk",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EISDIR: "it is a folder; give a file name inside it",
    errno.ENOENT: "no such file or folder; check the path",
    errno.EEXIST: "a file is in the way; remove it or choose another path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.ELOOP: "too many levels of symbolic links; fix the link",
}


def describe_os_error(exc: OSError, what: str = "", path: Any = None) -> str:
    """One line for an :class:`OSError`: what failed, the path, why and how to fix it.

    Args:
        exc (OSError): the error.
        what (str, optional): what gnnkit was doing with the path (``"cannot write --json"``).
            (default: ``"cannot access"``)
        path (optional): the path to name. (default: the error's own ``filename``)
    """
    where = path if path is not None else exc.filename
    fix = _FIXES.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
    head = what or "cannot access"
    return f"{head} {where}: {fix}" if where is not None else f"{head}: {fix}"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # a process of another user, or not ours to ask: keep its file
    return True


def stale_temps(folder: Path, prefix: str) -> Iterator[str]:
    """The temporary entries ``PREFIX.PID-RANDOM`` + :data:`TEMP_SUFFIX` in ``folder`` whose
    writing process no longer runs on this host (a writer killed midway left them)."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
                continue
            pid = name[len(prefix) : -len(TEMP_SUFFIX)].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                yield entry.path


def remove_stale_temps(path: Path) -> None:
    """Remove this writer's temporary files for ``path`` whose process no longer runs."""
    for stale in stale_temps(path.parent, f".{path.name}."):
        with contextlib.suppress(OSError):
            os.unlink(stale)


def _kind(mode: int) -> str:
    """What a path that is not a regular file is, from its ``st_mode``."""
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    return "socket" if stat.S_ISSOCK(mode) else "special file"


def not_a_file(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be read as a file, as a message goes on after the path ("does not
    exist", "is a folder, not a file", "is a link to X, which does not exist", "is a FIFO,
    not a regular file"); ``""`` for a regular file (or a link to one)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:
        if path.is_symlink():
            return f"is a link to {os.readlink(path)}, which does not exist"
        return "does not exist"
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    return f"is a {_kind(mode)}, not a regular file"


def _destination(path: str | os.PathLike, option: str) -> Path:
    """The file a write to ``path`` replaces (symlinks followed); refuses non-regular files."""
    text = os.fspath(path)
    if not str(text).strip():
        raise OutputError(f"{option} is empty; give a file name such as result.json")
    try:
        target = Path(text).expanduser()
    except RuntimeError:  # "~user/..." for a user this machine does not know
        raise OutputError(
            f"{option} {text}: cannot expand '~' (no such user); fix the path"
        ) from None
    if target.is_symlink():
        if not target.exists():  # writing would create the file the link points to, anywhere
            raise OutputError(
                f"{option} {target} {not_a_file(target)}; remove the link or give another path"
            )
        target = Path(os.path.realpath(target))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except NotADirectoryError as exc:
        raise OutputError(_not_a_folder(option, target)) from exc
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"cannot write {option}", target)) from exc
    if stat.S_ISDIR(mode):
        raise OutputError(
            f"{option} {target} is a folder; give a file name such as {target / 'result.json'}"
        )
    if not stat.S_ISREG(mode):
        raise OutputError(
            f"{option} {target} is a {_kind(mode)}, not a regular file; gnnkit replaces files "
            "atomically and never writes into one: give the path of a regular file"
        )
    return target


def _make_folder(folder: Path, option: str) -> None:
    """Create ``folder`` and its parents; a file in the way or no permission: one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a file where a folder is expected
        raise OutputError(_not_a_folder(option, folder)) from exc
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"cannot write {option}", folder)) from exc


def _nearest_folder(folder: Path, option: str, shown: Path) -> Path:
    """``folder`` or, where it does not exist yet, its nearest ancestor that does: where
    :func:`_make_folder` will create the rest, so the place to probe for writability. A file
    (or a link to nothing) on the way is one line."""
    for part in [folder, *folder.parents]:
        if part.is_dir():
            return part
        if os.path.lexists(part):
            raise OutputError(_not_a_folder(option, shown))
    return Path.cwd()  # pragma: no cover - a relative path's parents end at "."


def _not_a_folder(option: str, path: Path) -> str:
    return (
        f"cannot write {option} {path}: {_first_file(path)} is a file, not a folder; fix the path"
    )


def _first_file(folder: Path) -> Path:
    """The first ancestor of ``folder`` (itself included) that exists and is not a folder."""
    for part in reversed([folder, *folder.parents]):  # from the root down
        if os.path.lexists(part) and not part.is_dir():
            return part
    return folder


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", *, option: str = "output", **kwargs: Any
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched. See the
    module docstring for what is refused and how symbolic links are followed.

    Args:
        path (str or PathLike): the destination.
        mode (str, optional): ``"w"`` (text) or ``"wb"`` (binary). (default: ``"w"``)
        option (str, optional): how to name the destination in messages (``"--json"``).
            (default: ``"output"``)
        **kwargs: passed to :func:`open` (``encoding``, ``newline``...).

    Raises:
        OutputError: the destination is empty, a folder, a device, a FIFO or a socket, or an
            OS error (permissions, read-only or full disk...) stopped the write.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports mode 'w' or 'wb', got {mode!r}")
    target = _destination(path, option)
    _make_folder(target.parent, option)
    remove_stale_temps(target)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}-", suffix=TEMP_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"cannot write {option}", target)) from exc
    # mkstemp creates 0600; give the result the mode a plain open() would: the existing file's
    # mode, or 0666 less the umask.
    os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(describe_os_error(exc, f"cannot write {option}", target)) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, option: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_open(path, "w", option=option) as handle:
        handle.write(text)
    return Path(path)


def _non_finite(obj: Any, where: str = "") -> str | None:
    """Where ``obj`` holds a NaN or an infinity (``"loss[3]"``), or ``None``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "the value"
    if isinstance(obj, dict):
        items: Iterable[tuple[str, Any]] = (
            (f"{where}.{k}" if where else str(k), v) for k, v in obj.items()
        )
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    return next((found for key, value in items if (found := _non_finite(value, key))), None)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, option: str = "output") -> Path:
    """Write ``obj`` as indented, strict JSON to ``path`` atomically and return the path.

    Raises:
        InputError: ``obj`` holds a NaN or an infinity (strict JSON has neither).
        OutputError: as :func:`atomic_open`.
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as exc:
        where = _non_finite(obj) or "a value"
        raise InputError(
            f"cannot write {option} {path}: {where} is NaN or infinite, which strict JSON cannot "
            "hold; check the inputs that produced it (a non-finite argument or a diverged run)"
        ) from exc
    return atomic_write_text(path, text, option=option)


def atomic_torch_save(obj: Any, path: str | os.PathLike, *, option: str = "checkpoint") -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb", option=option) as handle:
        torch.save(obj, handle)
    return Path(path)


def _probe(folder: Path, option: str, shown: Any) -> None:
    """Create and remove a temporary file in ``folder``: the only reliable writability test
    (``os.access`` says yes to root on a read-only disk)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".probe.{os.getpid()}-", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, f"cannot write {option}", shown)) from exc
    os.close(fd)
    os.unlink(tmp)


def check_output(path: str | os.PathLike | None, option: str) -> Path | None:
    """Check, before any work, that ``path`` can be written by :func:`atomic_open`.

    Creates nothing: missing parent folders are made when the file is written, so a command
    refused later leaves no trace. ``None`` (no such output) passes.

    Raises:
        OutputError: the path is empty, not a regular file, or its folder cannot be written.
    """
    if path is None:
        return None
    target = _destination(path, option)
    _probe(_nearest_folder(target.parent, option, target), option, target)
    return target


def check_new_output(
    path: str | os.PathLike | None, option: str, *, replace: bool = False
) -> Path | None:
    """:func:`check_output`, and refuse a file that already exists unless ``replace``: an
    earlier result is never replaced without being asked (``--overwrite``).

    Raises:
        OutputError: :func:`check_output`'s refusals, or the file exists and not ``replace``.
    """
    target = check_output(path, option)
    if target is not None and target.exists() and not replace:
        raise OutputError(
            f"{option} {target} already exists; pass --overwrite to replace it, or choose "
            "another path"
        )
    return target


def check_output_dir(path: str | os.PathLike | None, option: str) -> Path | None:
    """Check, before any work, that the folder ``path`` exists or can be made, and is writable.
    Creates nothing (the folder is made when something is written into it).

    Raises:
        OutputError: the path is empty, a file, or a folder that cannot be written.
    """
    if path is None:
        return None
    if not str(os.fspath(path)).strip():
        raise OutputError(f"{option} is empty; give a folder name")
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file, not a folder; give a folder name")
    _probe(_nearest_folder(folder, option, folder), option, folder)
    return folder


def refused_global(message: str) -> str:
    """What torch's weights-only unpickler refused, from its error ``message``: ``"the global
    exec"``, say. Only the name: the rest of torch's message suggests allow-listing it or
    loading with ``weights_only=False``, which would run a planted file."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return f"the global {found.group(1)}" if found else "objects outside the allow-list"


def _damaged(what: str, path: Path, exc: BaseException) -> CheckpointError:
    """The one-line refusal of a file whose bytes torch or :mod:`zipfile` cannot read."""
    empty = path.is_file() and os.path.getsize(path) == 0
    state = "is empty (0 bytes)" if empty else "is truncated or corrupt"
    return CheckpointError(
        f"{what} {path} {state} ({type(exc).__name__}: {exc}); delete it and write it again"
    )


def _record_intact(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether a record's bytes match its stored CRC-32 (``zipfile`` checks at the end)."""
    try:
        with archive.open(info) as record:
            while record.read(1 << 22):
                pass
    except zipfile.BadZipFile as exc:
        if "CRC" not in str(exc):
            raise
        return False
    return True


def _check_records(path: Path, what: str) -> None:
    """Refuse a damaged file in torch's zip format by the CRC-32 torch stored with each record.

    torch does not check them when it loads, so a flipped byte in a tensor's data loaded
    silently as a slightly different number; this reads the file once more (about half the
    time of the load itself). A record stored with a CRC of 0 is not checked: torch writes 0
    when ``torch.utils.serialization.config.save.compute_crc32`` is off. A file in torch's
    legacy format has no checksums to check.
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = [
                i.filename for i in archive.infolist() if i.CRC and not _record_intact(archive, i)
            ]
    except Exception as exc:  # a damaged header: BadZipFile, an "encrypted" flag, a method...
        raise _damaged(what, path, exc) from exc
    if bad:
        raise CheckpointError(
            f"{what} {path} is corrupt: its record {bad[0]} does not match the checksum "
            "written with it (damaged on disk or in a copy); delete it and write it again"
        )


def safe_torch_load(
    path: str | os.PathLike,
    *,
    allow: Iterable[Any] = (),
    map_location: Any = "cpu",
    what: str = "checkpoint",
) -> Any:
    """Load a file with ``torch.load(weights_only=True)``, never executing arbitrary pickles,
    after checking the checksum of each of its records (a damaged file is refused, not loaded
    with changed numbers).

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
    problem = not_a_file(path)
    if problem:
        raise CheckpointError(f"{what} {path} {problem}")
    _check_records(path, what)
    try:
        with torch.serialization.safe_globals(list(allow)), warnings.catch_warnings():
            # (a plain pickle makes torch warn about its protocol before the refusal below)
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" not in text and "GLOBAL" not in text:
            # torch's weights-only unpickler met bytes that are no pickle at all
            raise CheckpointError(
                f"{what} {path} is not a torch checkpoint, or it is corrupt (it does not "
                "unpickle); check the path, or delete the file and write it again"
            ) from exc
        raise CheckpointError(
            f"{what} {path} holds {refused_global(text)}, which gnnkit does not load (only "
            "tensors and plain data; nothing in it was run); it was not written by this "
            "version of gnnkit or it is not a gnnkit file"
        ) from exc
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError) as exc:
        raise _damaged(what, path, exc) from exc
    except Exception as exc:  # the unpickler's KeyError, IndexError... on arbitrary bytes
        raise CheckpointError(
            f"{what} {path} is not a torch checkpoint, or it is corrupt "
            f"({type(exc).__name__} while unpickling); check the path, or delete the file and "
            "write it again"
        ) from exc
