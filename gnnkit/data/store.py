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
in a source checkout). A file without a known checksum is verified on first use only: its
sha256 is recorded in ``<data root>/.gnnkit-checksums.json`` so later corruption is caught.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gnnkit.errors import ChecksumError, DataUnavailableError, GnnkitError
from gnnkit.utils.io import atomic_write_json

__all__ = [
    "LOCAL_CHECKSUMS",
    "FetchPlan",
    "data_root",
    "downloads_enabled",
    "known_checksum",
    "mirror_root",
    "resolve_files",
    "sha256_file",
    "verify_files",
]

logger = logging.getLogger(__name__)

#: File in the data root that records checksums of files with no manifest entry (trust on
#: first use) and of upstream downloads that legitimately differ from the mirror's copy.
LOCAL_CHECKSUMS = ".gnnkit-checksums.json"

_CHUNK = 1 << 20


@cache
def _manifest() -> dict[str, str]:
    text = resources.files("gnnkit.data").joinpath("manifest.json").read_text(encoding="utf-8")
    return json.loads(text)["files"]


def known_checksum(relpath: str) -> str | None:
    """The manifest's sha256 for a file (path relative to the data root), or ``None``."""
    return _manifest().get(relpath)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The writable data root: ``root``, else ``$GNNKIT_DATA``, else ``./datasets``."""
    chosen = root if root is not None else os.environ.get("GNNKIT_DATA") or "datasets"
    return Path(chosen).expanduser().resolve()


def mirror_root(mirror: str | os.PathLike | None = None) -> Path | None:
    """The read-only local mirror: ``mirror``, else ``$GNNKIT_MIRROR``, else ``None``."""
    chosen = mirror if mirror is not None else os.environ.get("GNNKIT_MIRROR")
    return Path(chosen).expanduser().resolve() if chosen else None


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

    @property
    def complete(self) -> bool:
        """Every file is present and none contradicts its checksum."""
        return not self.missing and not self.mismatched


def verify_files(root: Path, files: Iterable[str]) -> VerifyReport:
    """Check each file under ``root`` against its recorded or manifest checksum."""
    report = VerifyReport()
    local = _local_checksums(root)
    for relpath in files:
        path = root / relpath
        if not path.is_file():
            report.missing.append(relpath)
            continue
        expected = local.get(relpath) or known_checksum(relpath)
        if expected is None:
            report.unknown.append(relpath)
        elif sha256_file(path) == expected:
            report.ok.append(relpath)
        else:
            report.mismatched.append(relpath)
    return report


def _copy_from_mirror(mirror: Path, root: Path, files: list[str]) -> None:
    """Stage every file as a temporary file in the data root, verify all, then rename all.

    Raises :class:`ChecksumError` naming the first bad file; no staged file survives an error.
    """
    staged: list[tuple[Path, Path]] = []
    recorded: dict[str, str] = {}
    try:
        for relpath in files:
            source, target = mirror / relpath, root / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.gnnkit-tmp")
            staged.append((temp, target))
            shutil.copyfile(source, temp)
            os.chmod(temp, 0o644)  # the mirror is read-only; the copy must not be
            actual, expected = sha256_file(temp), known_checksum(relpath)
            if expected is None:
                recorded[relpath] = actual
            elif actual != expected:
                raise ChecksumError(
                    f"checksum mismatch for {source}: expected sha256 {expected}, got {actual}; "
                    "the mirror copy is corrupt or truncated: replace it (or unset GNNKIT_MIRROR)"
                )
        for temp, target in staged:
            os.replace(temp, target)
        staged.clear()
    finally:
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
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
    """Record checksums of downloaded files; a manifest mismatch is reported, then trusted.

    The manifest holds checksums of the mirror's copies; an upstream release may differ (a
    re-packed archive, a derived split file), so a mismatch after an HTTPS download from the
    official source is a warning, and the new sha256 is recorded for later verification.
    """
    recorded: dict[str, str] = {}
    for relpath in files:
        actual, expected = sha256_file(root / relpath), known_checksum(relpath)
        if expected != actual:
            recorded[relpath] = actual
            if expected is not None:
                logger.warning(
                    "%s downloaded from %s differs from the manifest's checksum of the mirror copy; "
                    "keeping the upstream file and recording its sha256",
                    relpath,
                    source,
                )
    _record_local_checksums(root, recorded, drop=[f for f in files if f not in recorded])


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
