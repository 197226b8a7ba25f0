"""Shard folders: one file per part and a manifest, written atomically, loaded safely.

A folder written by :func:`write_shards` holds ``part-00000.pt`` ... (one
:func:`torch.save` dict of tensors per part) and ``manifest.json``: the format, the dataset,
the number of parts P, the method, the graph's sizes, the version of gnnkit that cut it
(:func:`version_hash`) and the sha256 of every shard. Every file goes through
:func:`gnnkit.utils.io.atomic_open`, the manifest last, so a folder is complete or has no
(new) manifest.

:func:`load_shard` reads one part only: it checks the manifest against the launch (P, dataset),
the shard's checksum, and loads it with ``torch.load(weights_only=True)`` (tensors only, never
arbitrary pickles). Each mismatch is one :class:`~gnnkit.errors.InputError` or
:class:`~gnnkit.errors.ChecksumError` line naming the folder and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import ChecksumError, InputError, OutputError
from gnnkit.utils.io import atomic_open, atomic_write_json, safe_torch_load

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


def claim_shard_folder(folder: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Refuse a folder that already holds shards (a manifest or ``part-*.pt`` files), or with
    ``overwrite`` delete them, the manifest first (so an interrupted rewrite leaves no folder
    that claims to be complete) and every part (so no part of the earlier cut is left beside
    the new one's). Returns the files deleted.

    Raises:
        OutputError: ``folder`` holds shards and ``overwrite`` is false.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    existing = [folder / MANIFEST] if os.path.lexists(folder / MANIFEST) else []
    existing += sorted(folder.glob("part-*.pt"))
    if existing and not overwrite:
        raise OutputError(
            f"{folder} already holds shards ({existing[0].name}); pass --overwrite "
            "(overwrite=True) to replace them, or choose another folder"
        )
    for path in existing:
        path.unlink(missing_ok=True)
    return existing


def write_shards(
    folder: str | os.PathLike,
    shards: list[dict[str, Tensor]],
    info: dict[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write every shard, then the manifest, atomically; returns the manifest's path.

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
    entries = []
    for part, shard in enumerate(shards):
        path = folder / _shard_name(part)
        with atomic_open(path, "wb", option="shard") as handle:
            torch.save(shard, handle)
        entries.append(
            {
                "file": path.name,
                "sha256": sha256_file(path),
                "num_nodes": int(shard["node_ids"].numel()),
                "num_halo": int(shard["halo_ids"].numel()),
                "num_edges": int(shard["col"].numel()),
            }
        )
    manifest = {
        "format": SHARD_FORMAT,
        **info,
        "num_parts": len(shards),
        "version_hash": version_hash(),
        "shards": entries,
    }
    return atomic_write_json(folder / MANIFEST, manifest, option="manifest")


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a shard folder, checked for its format.

    Raises:
        InputError: no manifest, unreadable JSON, or another format.
    """
    path = Path(folder) / MANIFEST
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
