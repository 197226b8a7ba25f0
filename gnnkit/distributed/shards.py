"""Shard folders: one file per part and a manifest, written atomically, loaded safely.

A folder written by :func:`write_shards` holds ``part-00000.pt`` ... (one
:func:`torch.save` dict of tensors per part) and ``manifest.json``: the format, the dataset,
the number of parts P, the method, the graph's sizes, the version of gnnkit that cut it
(:func:`version_hash`) and the sha256 of every shard. A cut is all or nothing: every file
is written (through :func:`gnnkit.utils.io.atomic_open`) into a hidden staging folder, and only
the complete cut is put in place, so an interrupted ``gnnkit partition`` leaves the folder as
it was.

:func:`load_shard` reads one part only: it checks the manifest against the launch (P, dataset),
the shard's checksum, and loads it with ``torch.load(weights_only=True)`` (tensors only, never
arbitrary pickles). Each mismatch is one :class:`~gnnkit.errors.InputError` or
:class:`~gnnkit.errors.ChecksumError` line naming the folder and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import ChecksumError, InputError, OutputError
from gnnkit.utils.io import (
    TEMP_SUFFIX,
    _make_folder,
    _umask,
    atomic_open,
    atomic_write_json,
    describe_os_error,
    not_a_file,
    safe_torch_load,
    stale_temps,
)
from gnnkit.utils.signals import signals_held

__all__ = [
    "GRAPH_KEYS",
    "MANIFEST",
    "NODE_KEYS",
    "SHARD_FORMAT",
    "SHARD_KEYS",
    "claim_shard_folder",
    "load_shard",
    "read_manifest",
    "sha256_file",
    "version_hash",
    "write_shards",
]

#: The manifest's file name inside a shard folder.
MANIFEST = "manifest.json"
#: The format tag a manifest must carry.
SHARD_FORMAT = "gnnkit.partition/2"
#: The tensors of a shard that describe its graph and its halo exchange (what
#: :class:`gnnkit.distributed.PartitionGraph` is built from).
GRAPH_KEYS = (
    "node_ids",
    "halo_ids",
    "rowptr",
    "col",
    "edge_ids",
    "norm",
    "recv_counts",
    "send_idx",
    "send_counts",
)
#: The tensors of a shard that hold its nodes' data: features, labels, split masks.
NODE_KEYS = ("x", "y", "train_mask", "val_mask", "test_mask")
#: The tensors every shard holds.
SHARD_KEYS = GRAPH_KEYS + NODE_KEYS


def version_hash() -> str:
    """16 hex digits identifying this gnnkit: its version and the source of the code that
    cuts shards and trains on them (``gnnkit.distributed`` and ``gnnkit.ops``)."""
    try:
        text = version("gnnkit")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        text = "unknown"
    digest = hashlib.sha256(text.encode())
    root = Path(__file__).resolve().parents[1]
    for folder in ("distributed", "ops"):
        for path in sorted((root / folder).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shard_name(part: int) -> str:
    return f"part-{part:05d}.pt"


def _shard_files(folder: Path) -> list[Path]:
    """The files of a cut in ``folder``: the manifest first, then the parts."""
    found = [folder / MANIFEST] if os.path.lexists(folder / MANIFEST) else []
    return found + sorted(folder.glob("part-*.pt"))


def claim_shard_folder(folder: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Refuse a folder that already holds shards (a manifest or ``part-*.pt`` files) unless
    ``overwrite``. Deletes nothing: :func:`write_shards` replaces the earlier cut only once the
    new one is complete. Returns the shard files found, the manifest first.

    Parts without a manifest are an incomplete cut (an interrupted ``gnnkit partition`` of an
    earlier version) and are named so.

    Raises:
        OutputError: ``folder`` holds shards and ``overwrite`` is false, or one of its shard
            names is a folder or another entry that is not a regular file (or a link).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    existing = _shard_files(folder)
    for path in existing:
        mode = path.lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise OutputError(
                f"{path} {not_a_file(path)}; gnnkit replaces only the files of a cut: move it "
                "away, or choose another folder"
            )
    if existing and not overwrite:
        if existing[0].name != MANIFEST:
            raise OutputError(
                f"{folder} holds an incomplete cut ({existing[0].name} but no {MANIFEST}, left "
                "by an interrupted `gnnkit partition`); pass --overwrite (overwrite=True) to "
                "replace it, or choose another folder"
            )
        raise OutputError(
            f"{folder} already holds shards ({existing[0].name}); pass --overwrite "
            "(overwrite=True) to replace them, or choose another folder"
        )
    return existing


def _remove_stale_stages(folder: Path, prefix: str) -> None:
    """Remove the staging folders ``PREFIX.PID-RANDOM.gnnkit-tmp`` in ``folder`` that a killed
    :func:`write_shards` left behind (their process no longer runs on this host)."""
    for stale in stale_temps(folder, prefix):
        shutil.rmtree(stale, ignore_errors=True)


def _make_stage(folder: Path) -> tuple[Path, bool]:
    """A new, hidden staging folder on the file system of ``folder``, and whether it is inside
    ``folder``: inside where the folder exists (so a link to a folder elsewhere is followed),
    beside it where it does not."""
    inside = folder.is_dir()
    if inside:
        where, prefix = folder, ".cut."
    elif os.path.lexists(folder):
        raise OutputError(
            f"shard folder {folder} {not_a_file(folder) or 'is a file'}; give a folder"
        )
    else:
        where, prefix = folder.parent, f".{folder.name}."
        _make_folder(where, "shard folder")
    _remove_stale_stages(where, prefix)
    try:
        stage = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", suffix=TEMP_SUFFIX, dir=where)
        # mkdtemp creates 0700; the folder it may become gets what a plain mkdir would give
        os.chmod(stage, 0o777 & ~_umask())
    except OSError as exc:
        raise OutputError(describe_os_error(exc, "cannot write shard folder", folder)) from exc
    return Path(stage), inside


def _swap_in(folder: Path, stage: Path, names: list[str]) -> None:
    """Move the complete cut in ``stage`` into the existing ``folder``: the earlier cut's files
    go aside into the stage (its manifest first, so ``folder`` never claims a mix), the new
    parts come in, then the new manifest. A failure moves everything back."""
    aside = stage / ".replaced"
    aside.mkdir()
    old = [path.name for path in _shard_files(folder)]
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:  # each name is listed before its move: a rollback skips moves that did not happen
        for name in old:
            moved_aside.append(name)
            os.replace(folder / name, aside / name)
        for name in names:
            moved_in.append(name)
            os.replace(stage / name, folder / name)
    except BaseException:
        for name in reversed(moved_in):
            with contextlib.suppress(OSError):
                os.replace(folder / name, stage / name)
        for name in reversed(moved_aside):  # the parts back first, the manifest last
            with contextlib.suppress(OSError):
                os.replace(aside / name, folder / name)
        raise


def _commit(folder: Path, stage: Path, inside: bool, names: list[str]) -> None:
    """Put the complete cut staged in ``stage`` in place of ``folder``: one rename where the
    folder did not exist (the stage becomes the folder), else :func:`_swap_in`, after which the
    stage, and with it the earlier cut, is removed. After a failure the stage is removed only
    if no file of the earlier cut that could not be moved back is left in it."""
    committed = False
    try:
        # A Ctrl-C (or SIGTERM) cannot stop the commit between two renames: held back, it is
        # raised as this block ends.
        with signals_held(signal.SIGINT, signal.SIGTERM):
            if inside:
                _swap_in(folder, stage, names)
            else:
                os.rename(stage, folder)  # a folder made meanwhile: replaced only if empty
            committed = True
    except OSError as exc:
        message = describe_os_error(exc, "cannot write shard folder", folder)
        aside = stage / ".replaced"
        if aside.is_dir() and any(aside.iterdir()):
            message += f" (files of the earlier cut that could not be moved back are in {aside})"
        else:
            shutil.rmtree(stage, ignore_errors=True)
        raise OutputError(message) from exc
    finally:
        if committed and inside:
            shutil.rmtree(stage, ignore_errors=True)


def write_shards(
    folder: str | os.PathLike,
    shards: list[dict[str, Tensor]],
    info: dict[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write every shard and the manifest into a hidden staging folder, then put the complete
    cut in place; returns the manifest's path.

    A cut is all or nothing: an exception or a Ctrl-C while the shards are written removes the
    staging folder and leaves ``folder`` as it was (absent, or with the earlier cut intact).
    A new folder appears with one rename; in an existing one (``overwrite``, or a folder that
    holds no shards) the earlier cut is moved aside file by file only once the new one is
    complete, with Ctrl-C held back for those few renames.

    Args:
        folder (str or PathLike): the shard folder (created if missing).
        shards (list of dict): :func:`gnnkit.distributed.build_shards`'s output.
        info (dict): what the manifest records besides the shards (``dataset``, ``method``,
            ``num_nodes``, ``num_classes``...); ``dataset`` is required.
        overwrite (bool, optional): replace the shards ``folder`` already holds; without it
            such a folder is refused (:func:`claim_shard_folder`). (default: ``False``)
    """
    if "dataset" not in info:
        raise InputError("write_shards needs info['dataset'], the name shards are checked against")
    folder = Path(folder)
    claim_shard_folder(folder, overwrite=overwrite)
    stage, inside = _make_stage(folder)
    try:
        entries = [_write_shard(stage, part, shard) for part, shard in enumerate(shards)]
        manifest = {
            "format": SHARD_FORMAT,
            **info,
            "num_parts": len(shards),
            "version_hash": version_hash(),
            "shards": entries,
        }
        atomic_write_json(stage / MANIFEST, manifest, option="manifest")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _commit(folder, stage, inside, [entry["file"] for entry in entries] + [MANIFEST])
    return folder / MANIFEST


def _write_shard(stage: Path, part: int, shard: dict[str, Tensor]) -> dict[str, Any]:
    """Save one shard into the staging folder; returns its manifest entry."""
    path = stage / _shard_name(part)
    with atomic_open(path, "wb", option="shard") as handle:
        torch.save(shard, handle)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "num_nodes": int(shard["node_ids"].numel()),
        "num_halo": int(shard["halo_ids"].numel()),
        "num_edges": int(shard["col"].numel()),
    }


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a shard folder, checked for its format.

    Raises:
        InputError: no manifest, unreadable JSON, or another format.
    """
    path = Path(folder) / MANIFEST
    parts = sorted(Path(folder).glob("part-*.pt")) if not path.is_file() else []
    if parts:
        raise InputError(
            f"{folder} is not a complete shard folder ({parts[0].name} but no {MANIFEST}: a cut "
            "that was interrupted); cut it again with `gnnkit partition ... --overwrite`"
        )
    if not path.is_file():
        raise InputError(
            f"{folder} is not a shard folder (no {MANIFEST}); cut one with `gnnkit partition`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc}); cut the shards again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != SHARD_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise InputError(
            f"{path} has format {found!r}, not {SHARD_FORMAT!r}; cut the shards again with "
            "this version of gnnkit"
        )
    return manifest


def load_shard(
    folder: str | os.PathLike,
    part: int,
    *,
    num_parts: int | None = None,
    dataset: str | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load part ``part`` of a shard folder, and the manifest.

    Args:
        folder (str or PathLike): the shard folder.
        part (int): the part to load (a rank loads its own).
        num_parts (int, optional): the P the launch expects (the world size); a folder cut
            into another number of parts is refused. (default: not checked)
        dataset (str, optional): the dataset the launch expects. (default: not checked)

    Raises:
        InputError: another P or dataset, a missing shard, or a shard without every tensor.
        ChecksumError: the shard's bytes do not match the manifest's sha256.
    """
    manifest = read_manifest(folder)
    parts = int(manifest["num_parts"])
    if num_parts is not None and parts != num_parts:
        raise InputError(
            f"{folder} holds {parts} parts but the job has {num_parts} ranks; launch "
            f"{parts} processes (torchrun --nproc-per-node {parts}) or cut "
            f"{num_parts} parts with `gnnkit partition --parts {num_parts}`"
        )
    if dataset is not None and manifest.get("dataset") != dataset:
        raise InputError(
            f"{folder} holds shards of {manifest.get('dataset')!r}, not {dataset!r}; "
            "point --shards at the right folder or cut the dataset again"
        )
    if not 0 <= part < parts:
        raise InputError(f"part {part} is out of range for {folder}, which holds {parts} parts")
    entry = manifest["shards"][part]
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise InputError(f"shard {path} is missing; cut the shards again with `gnnkit partition`")
    if sha256_file(path) != entry["sha256"]:
        raise ChecksumError(
            f"shard {path} does not match the sha256 in {MANIFEST} (corrupt, or from another "
            "cut); cut the shards again with `gnnkit partition`"
        )
    shard = safe_torch_load(path, what="shard")
    if not isinstance(shard, dict):
        shard = {}
    missing = [key for key in SHARD_KEYS if not isinstance(shard.get(key), Tensor)]
    if missing:
        raise InputError(f"shard {path} lacks {', '.join(missing)}; cut the shards again")
    return shard, manifest
