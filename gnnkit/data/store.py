"""Where dataset files come from: the data root, a local mirror, or the upstream download.

Resolution order for a dataset's raw files (see :func:`resolve`):

1. the **data root** (``root=``, ``$GNNKIT_DATA`` or ``./datasets``) when every file is there
   and matches its checksum;
2. a **local mirror** (``mirror=`` or ``$GNNKIT_MIRROR``), a read-only folder laid out like the
   data root: the files are staged as temporary files in the data root, verified, then renamed
   into place together, so a bad mirror file leaves nothing behind;
3. the **upstream download** through PyG / OGB / the corpus's home page, unless downloads are
   disabled (``download=False`` or ``$GNNKIT_OFFLINE=1``);
4. otherwise one :class:`~gnnkit.errors.DataUnavailableError` listing what was tried and how to
   fix it.

Checksums come from the package's ``manifest.json`` (the same file as ``datasets/manifest.json``
in a source checkout). The manifest is the authority for every file it knows: a local record
never overrides it, and an upstream download that differs from it is refused (deleted, with a
:class:`~gnnkit.errors.ChecksumError`). Only files the manifest lists as ``derived`` (the
mirror wrote them itself, so upstream's copy legitimately differs) accept a recorded upstream
checksum too. A file without a known checksum is verified on first use only: its sha256 is
recorded in ``<data root>/.gnnkit-checksums.json`` so later corruption is caught.

Processed caches (what PyG and OGB write under ``processed/``) are pickles, so gnnkit never
trusts one it did not write: :func:`record_processed` stores the sha256 of every cache file
right after gnnkit built it, and :func:`untrusted_processed` names any cache file that is
unrecorded or differs; the loaders delete such a cache and rebuild it from the checksummed raw
files (:mod:`gnnkit.data.loaders`). Every operation on a data root holds its lock
(:func:`gnnkit.utils.locks.file_lock`), so concurrent processes leave one consistent copy.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gnnkit.errors import ChecksumError, DataUnavailableError, GnnkitError, InputError
from gnnkit.utils.io import (
    TEMP_SUFFIX,
    atomic_write_json,
    describe_os_error,
    remove_stale_temps,
)
from gnnkit.utils.locks import file_lock

__all__ = [
    "LOCAL_CHECKSUMS",
    "FetchPlan",
    "data_lock",
    "data_root",
    "downloads_enabled",
    "forget_processed",
    "known_checksum",
    "mirror_root",
    "record_processed",
    "resolve_files",
    "sha256_file",
    "untrusted_processed",
    "verify_files",
]

logger = logging.getLogger(__name__)

#: File in the data root that records checksums of files with no manifest entry (trust on
#: first use) and of upstream downloads that legitimately differ from the mirror's copy.
LOCAL_CHECKSUMS = ".gnnkit-checksums.json"

_CHUNK = 1 << 20


@cache
def _manifest_json() -> dict[str, Any]:
    text = resources.files("gnnkit.data").joinpath("manifest.json").read_text(encoding="utf-8")
    return json.loads(text)


def _manifest() -> dict[str, str]:
    return _manifest_json()["files"]


def _derived() -> frozenset[str]:
    """Files the mirror derived itself: an upstream copy may differ from the manifest."""
    return frozenset(_manifest_json().get("derived", ()))


def known_checksum(relpath: str) -> str | None:
    """The manifest's sha256 for a file (path relative to the data root), or ``None``."""
    return _manifest().get(relpath)


def _accepted(relpath: str, local: dict[str, str]) -> set[str]:
    """The checksums a file may have: the manifest's (the authority), the local record only for
    files the manifest does not know or lists as derived."""
    known = known_checksum(relpath)
    if known is None:
        return {local[relpath]} if relpath in local else set()
    if relpath in _derived() and relpath in local:
        return {known, local[relpath]}
    return {known}


def data_lock(root: Path, *, timeout: float = 3600.0):
    """The data root's inter-process lock (a context manager); see :func:`file_lock`."""
    return file_lock(root, timeout=timeout, option="data root (--data-root, $GNNKIT_DATA)")


def _is_empty(path: str | os.PathLike) -> bool:
    """Whether a path given as text is empty or blank (``Path("")`` would mean ``.``)."""
    return isinstance(path, (str, bytes)) and not path.strip()


def _from_env(name: str) -> str | None:
    """``$name``, or ``None`` when it is unset, empty or blank (the shell idiom ``NAME=``)."""
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The writable data root: ``root``, else ``$GNNKIT_DATA``, else ``./datasets``.

    An empty ``root`` is refused (it would silently mean the current folder), and so is one
    that names an existing file; an empty ``$GNNKIT_DATA`` counts as unset.
    """
    if root is not None and _is_empty(root):
        raise InputError(
            "data root (--data-root, root=) is empty: give a folder for the datasets, or leave "
            "it out to use $GNNKIT_DATA or ./datasets"
        )
    chosen = root if root is not None else _from_env("GNNKIT_DATA") or "datasets"
    path = Path(chosen).expanduser().resolve()
    if path.exists() and not path.is_dir():
        source = "--data-root, root=" if root is not None else "$GNNKIT_DATA"
        raise InputError(
            f"data root ({source}) {path} is a file, not a folder: give a folder for the "
            "datasets (one that does not exist yet is created)"
        )
    return path


def mirror_root(mirror: str | os.PathLike | None = None) -> Path | None:
    """The read-only local mirror: ``mirror``, else ``$GNNKIT_MIRROR``, else ``None``.

    An empty ``mirror`` is refused, and so is a mirror that is not an existing folder; an
    empty ``$GNNKIT_MIRROR`` counts as unset.
    """
    if mirror is not None and _is_empty(mirror):
        raise InputError(
            "mirror (--mirror, mirror=) is empty: give the folder of a local mirror laid out "
            "like the data root, or leave it out to use $GNNKIT_MIRROR"
        )
    source = "mirror (--mirror, mirror=)" if mirror is not None else "mirror ($GNNKIT_MIRROR)"
    chosen = mirror if mirror is not None else _from_env("GNNKIT_MIRROR")
    if chosen is None:
        return None
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        fix = "" if mirror is not None else ", or unset GNNKIT_MIRROR"
        raise DataUnavailableError(
            f"{source} {path} {what}: give the folder of a local mirror laid out like the data "
            f"root (for example a copy of the project's shared datasets mirror){fix}"
        )
    return path


def downloads_enabled(download: bool | None = None) -> bool:
    """Whether upstream downloads may be tried: ``download``, else not ``$GNNKIT_OFFLINE=1``."""
    if download is not None:
        return download
    return os.environ.get("GNNKIT_OFFLINE", "").strip().lower() not in ("1", "true", "yes")


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _local_checksums(root: Path) -> dict[str, str]:
    path = root / LOCAL_CHECKSUMS
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        logger.warning("%s is unreadable; ignoring it (checksums will be recorded again)", path)
        return {}


def _record_local_checksums(
    root: Path, checksums: dict[str, str], drop: Iterable[str] = ()
) -> None:
    """Add ``checksums`` to the data root's record and forget the paths in ``drop``."""
    current = _local_checksums(root)
    merged = {k: v for k, v in current.items() if k not in set(drop)}
    merged.update(checksums)
    if merged != current:
        atomic_write_json(root / LOCAL_CHECKSUMS, dict(sorted(merged.items())))


@dataclass
class VerifyReport:
    """What :func:`verify_files` found, file by file (paths relative to the data root)."""

    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    untrusted: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every raw file is present and none contradicts its checksum (processed caches are
        judged by :attr:`trusted`)."""
        return not self.missing and not self.mismatched

    @property
    def trusted(self) -> bool:
        """:attr:`complete`, and every processed cache file is one gnnkit wrote."""
        return self.complete and not self.untrusted


def verify_files(root: Path, files: Iterable[str], processed: Iterable[str] = ()) -> VerifyReport:
    """Check each file under ``root`` against its manifest (or recorded) checksum, and the
    processed cache folders ``processed`` against what gnnkit recorded when it wrote them."""
    report = VerifyReport()
    local = _local_checksums(root)
    for relpath in files:
        path = root / relpath
        if not path.is_file():
            report.missing.append(relpath)
            continue
        accepted = _accepted(relpath, local)
        if not accepted:
            report.unknown.append(relpath)
        elif sha256_file(path) in accepted:
            report.ok.append(relpath)
        else:
            report.mismatched.append(relpath)
    for folder in processed:
        report.untrusted.extend(untrusted_processed(root, folder, local))
    return report


def _processed_files(root: Path, folder: str) -> list[str]:
    base = root / folder
    if not base.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if not p.is_dir())


def untrusted_processed(root: Path, folder: str, local: dict[str, str] | None = None) -> list[str]:
    """Files under the processed cache ``folder`` (relative to ``root``) that gnnkit did not
    write: no recorded sha256, another one, or not a regular file."""
    local = _local_checksums(root) if local is None else local
    return [
        relpath
        for relpath in _processed_files(root, folder)
        if relpath not in local
        or not (root / relpath).is_file()
        or (root / relpath).is_symlink()
        or sha256_file(root / relpath) != local[relpath]
    ]


def record_processed(root: Path, folder: str) -> None:
    """Record the sha256 of every file under the processed cache ``folder``, which gnnkit has
    just written, and forget the records of files no longer there."""
    prefix = folder.rstrip("/") + "/"
    present = _processed_files(root, folder)
    stale = [k for k in _local_checksums(root) if k.startswith(prefix) and k not in present]
    _record_local_checksums(root, {f: sha256_file(root / f) for f in present}, drop=stale)


def forget_processed(root: Path, folder: str) -> None:
    """Delete the processed cache ``folder`` and its records (it is rebuilt from raw files)."""
    shutil.rmtree(root / folder, ignore_errors=True)
    prefix = folder.rstrip("/") + "/"
    _record_local_checksums(
        root, {}, drop=[k for k in _local_checksums(root) if k.startswith(prefix)]
    )


def _copy_from_mirror(mirror: Path, root: Path, files: list[str]) -> None:
    """Stage every file as a temporary file in the data root, verify all, then rename all.

    Raises :class:`ChecksumError` naming the first bad file; no staged file survives an error.
    """
    staged: list[tuple[Path, Path]] = []
    recorded: dict[str, str] = {}
    made: list[Path] = []  # folders this copy created, removed again if it fails
    try:
        for relpath in files:
            source, target = mirror / relpath, root / relpath
            made += [d for d in reversed(target.parents) if root in d.parents and not d.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target)  # of a copy killed midway
            fd, name = tempfile.mkstemp(
                prefix=f".{target.name}.{os.getpid()}-", suffix=TEMP_SUFFIX, dir=target.parent
            )
            os.close(fd)
            temp = Path(name)
            staged.append((temp, target))
            shutil.copyfile(source, temp)
            os.chmod(temp, 0o644)  # the mirror is read-only; the copy must not be
            actual, expected = sha256_file(temp), known_checksum(relpath)
            if expected is None:
                recorded[relpath] = actual
            elif actual != expected:
                raise ChecksumError(
                    f"checksum mismatch for {source}: expected sha256 {expected}, got {actual}; "
                    "the mirror copy is corrupt or truncated: replace it, or use another "
                    "mirror (--mirror, GNNKIT_MIRROR) or none"
                )
        for temp, target in staged:
            os.replace(temp, target)
        staged.clear()
        made.clear()
    finally:
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        for folder in reversed(made):  # deepest first; only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
    if recorded:
        logger.warning(
            "no known checksum for %d file(s) copied from the mirror (%s...); verification skipped, "
            "their sha256 is recorded in %s",
            len(recorded),
            next(iter(recorded)),
            root / LOCAL_CHECKSUMS,
        )
    # Files verified against the manifest no longer need a local record.
    _record_local_checksums(root, recorded, drop=[f for f in files if f not in recorded])


def _after_download(root: Path, files: list[str], source: str) -> None:
    """Check downloaded files against the manifest; refuse a mismatch, record the rest.

    A file the manifest knows must match it: otherwise it is deleted and a
    :class:`ChecksumError` names it. Files the manifest lists as derived (the mirror wrote them
    itself) may differ upstream: their sha256 is recorded, with a warning. Files the manifest
    does not know are recorded (trust on first use).
    """
    recorded: dict[str, str] = {}
    for relpath in files:
        actual, expected = sha256_file(root / relpath), known_checksum(relpath)
        if expected is None:
            recorded[relpath] = actual
        elif actual != expected and relpath in _derived():
            recorded[relpath] = actual
            logger.warning(
                "%s downloaded from %s differs from the mirror's derived copy; keeping the "
                "upstream file and recording its sha256",
                relpath,
                source,
            )
        elif actual != expected:
            (root / relpath).unlink(missing_ok=True)
            raise ChecksumError(
                f"checksum mismatch for {relpath} downloaded from {source}: expected sha256 "
                f"{expected}, got {actual}; the file was deleted. The download was corrupted "
                "or the upstream file changed: try again, or use a mirror (GNNKIT_MIRROR)"
            )
    _record_local_checksums(root, recorded, drop=[f for f in files if f not in recorded])


#: OS errors about the data root itself (not the network), reported as such.
_USER_OS_ERRORS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}
)


@dataclass(frozen=True)
class FetchPlan:
    """What :func:`resolve_files` needs to know about one dataset.

    Attributes:
        name (str): the dataset name, for messages.
        files (tuple of str): required files, relative to the data root.
        source (str): where the upstream download comes from, for messages.
        download (callable, optional): downloads the files into the data root given as argument.
    """

    name: str
    files: tuple[str, ...]
    source: str
    download: Callable[[Path], Any] | None = None


def resolve_files(
    plan: FetchPlan,
    *,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    download: bool | None = None,
) -> Path:
    """Make every file of ``plan`` present and verified in the data root; return the root.

    See the module docstring for the order in which sources are tried.
    """
    root_path = data_root(root)
    if mirror is not None:
        mirror_root(mirror)  # a mirror given explicitly is checked even where it is not needed
    with data_lock(root_path):
        return _resolve_locked(plan, root_path, mirror, download)


def _resolve_locked(
    plan: FetchPlan, root_path: Path, mirror: str | os.PathLike | None, download: bool | None
) -> Path:
    files = list(plan.files)
    report = verify_files(root_path, files)
    if report.unknown and not report.missing and not report.mismatched:
        logger.info(
            "%s: %d file(s) have no known checksum; verification skipped for them",
            plan.name,
            len(report.unknown),
        )
        _record_local_checksums(root_path, {f: sha256_file(root_path / f) for f in report.unknown})
    if report.complete:
        return root_path
    for relpath in report.mismatched:
        logger.warning(
            "%s in %s does not match its checksum; fetching it again", relpath, root_path
        )
    needed = report.missing + report.mismatched
    tried = [
        f"data root {root_path}: {len(needed)} of {len(files)} file(s) missing or corrupt "
        f"(first: {needed[0]})"
    ]

    mirror_path = mirror_root(mirror)
    if mirror_path is None:
        tried.append("local mirror: none configured (GNNKIT_MIRROR is not set)")
    else:
        absent = [f for f in needed if not (mirror_path / f).is_file()]
        if absent:
            tried.append(
                f"local mirror {mirror_path}: {len(absent)} file(s) absent (first: {absent[0]})"
            )
        else:
            root_path.mkdir(parents=True, exist_ok=True)
            _copy_from_mirror(mirror_path, root_path, needed)
            logger.info("%s: copied %d file(s) from mirror %s", plan.name, len(needed), mirror_path)
            return root_path

    if plan.download is None:
        tried.append("upstream download: not available for this dataset")
    elif not downloads_enabled(download):
        tried.append("upstream download: disabled (download=False or GNNKIT_OFFLINE=1)")
    else:
        root_path.mkdir(parents=True, exist_ok=True)
        try:
            plan.download(root_path)
        except GnnkitError:
            raise
        except OSError as exc:
            if exc.filename is not None and exc.errno in _USER_OS_ERRORS:
                raise DataUnavailableError(
                    describe_os_error(exc, f"cannot store dataset {plan.name!r}")
                ) from exc
            tried.append(
                f"upstream download from {plan.source}: failed ({type(exc).__name__}: {exc})"
            )
        except Exception as exc:  # network errors come in many types (URLError, OSError, HTTP...)
            tried.append(
                f"upstream download from {plan.source}: failed ({type(exc).__name__}: {exc})"
            )
        else:
            still_missing = [f for f in files if not (root_path / f).is_file()]
            if not still_missing:
                _after_download(root_path, files, plan.source)
                return root_path
            tried.append(
                f"upstream download from {plan.source}: finished without {still_missing[0]}"
            )

    lines = "\n".join(f"  - {line}" for line in tried)
    raise DataUnavailableError(
        f"cannot obtain dataset {plan.name!r}. Tried:\n{lines}\n"
        "Fix: set GNNKIT_MIRROR to a folder laid out like the data root (for example a copy of "
        "the project's shared datasets mirror), allow network access to the upstream source, or "
        f"copy the files into {root_path} yourself."
    )
