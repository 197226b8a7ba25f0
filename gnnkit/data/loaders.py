"""Loaders: turn verified raw files in the data root into PyG / OGB objects, text or paths.

Every loader takes the data root and returns the dataset's natural object:

- node datasets: one :class:`torch_geometric.data.Data` with ``x``, ``y`` (shape (|V|,)),
  ``edge_index``, boolean ``train_mask`` / ``val_mask`` / ``test_mask`` and an int
  ``num_classes``;
- graph and link datasets: OGB's ``PygGraphPropPredDataset`` / ``PygLinkPropPredDataset``;
- text corpora: the text as one ``str`` (universal newlines: CRLF becomes LF);
- citation corpora: the path of the corpus file (parsed by :mod:`gnnkit.citation`).

OGB on torch >= 2.6: ``torch.load`` defaults to ``weights_only=True``, which rejects what ogb
1.3.6 pickles. :func:`ogb_safe_globals` allow-lists exactly the classes those files need;
``weights_only`` is never turned off. OGB's interactive prompts are answered by an error, never
by waiting, and its prints go to the log instead of stdout.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import pickle
import shutil
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch_geometric.data import Data

from gnnkit.errors import DatasetError
from gnnkit.utils.io import atomic_open

__all__ = [
    "download_file",
    "load_karate",
    "load_ogb_graph",
    "load_ogb_link",
    "load_ogb_node",
    "load_planetoid",
    "no_prompts",
    "ogb_safe_globals",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _numpy_globals() -> list[Any]:
    from numpy._core import multiarray

    # Split files written with numpy 1.x name the function numpy.core.multiarray._reconstruct,
    # files written with numpy 2.x numpy._core.multiarray._reconstruct: allow both names.
    return [
        multiarray._reconstruct,
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        np.dtypes.Int64DType,
    ]


def ogb_safe_globals() -> list[Any]:
    """Exactly the globals that ogb 1.3.6's files need under ``torch.load(weights_only=True)``.

    - processed datasets (``geometric_data_processed.pt``): PyG's ``GlobalStorage``,
      ``DataEdgeAttr`` and ``DataTensorAttr``;
    - link split files (``split/*/*.pt``, old pickle format): numpy arrays of int64.
    """
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    return [GlobalStorage, DataEdgeAttr, DataTensorAttr, *_numpy_globals()]


@contextlib.contextmanager
def no_prompts(what: str) -> Iterator[None]:
    """Run upstream code that may ask ``input()`` questions or print: never wait, never print.

    A prompt raises :class:`DatasetError` at once (ogb asks before re-downloading an outdated
    folder or a download above 1 GB); printed lines go to the debug log.
    """

    def refuse(prompt: object = "") -> str:
        raise DatasetError(
            f"{what} asked an interactive question ({str(prompt).strip()!r}); gnnkit never answers "
            "prompts. If the dataset folder is outdated or incomplete, delete it and run again."
        )

    captured = io.StringIO()
    original_input = builtins.input
    builtins.input = refuse
    try:
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            # ogb converts read-only numpy arrays; harmless, and not the user's to fix.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            yield
    finally:
        builtins.input = original_input
        for line in captured.getvalue().splitlines():
            if line.strip():
                logger.debug("%s: %s", what, line.strip())


def _with_cache_retry(processed_dir: Path, build: Callable[[], T], what: str) -> T:
    """Build a dataset; if its processed cache is corrupt, delete the cache and rebuild once."""
    try:
        return build()
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        if not processed_dir.is_dir():
            raise DatasetError(f"{what} failed to load: {type(exc).__name__}: {exc}") from exc
        logger.warning(
            "%s: processed cache %s is unreadable (%s); rebuilding it from the raw files",
            what,
            processed_dir,
            type(exc).__name__,
        )
        shutil.rmtree(processed_dir)
    try:
        return build()
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        raise DatasetError(
            f"{what} failed to load even after rebuilding its processed cache: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


# --------------------------------------------------------------------------- Planetoid


def planetoid_files(name: str) -> tuple[str, ...]:
    """Raw files of a Planetoid dataset, relative to the data root."""
    lower = name.lower()
    return tuple(
        f"planetoid/{name}/raw/ind.{lower}.{ext}"
        for ext in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    )


def _planetoid(root: Path, name: str):
    from torch_geometric.datasets import Planetoid

    with no_prompts(f"Planetoid {name}"):
        return Planetoid(str(root / "planetoid"), name)


def load_planetoid(root: Path, name: str) -> Data:
    """Planetoid ``name`` with its public split (Cora: 140 / 500 / 1000)."""
    dataset = _with_cache_retry(
        root / "planetoid" / name / "processed", lambda: _planetoid(root, name), f"Planetoid {name}"
    )
    data = dataset[0]
    data.num_classes = int(dataset.num_classes)
    return data


def download_planetoid(root: Path, name: str) -> None:
    """Download Planetoid raw files through PyG (from the kimiyoung/planetoid repository)."""
    _planetoid(root, name)


# --------------------------------------------------------------------------- KarateClub


def load_karate(root: Path | None = None, seed: int = 0) -> Data:
    """Zachary's karate club from PyG's embedded :class:`~torch_geometric.datasets.KarateClub`.

    NOTE: PyG labels one node per class (4 training nodes) and defines no validation or test
    set; gnnkit splits the other 30 nodes into 15 validation and 15 test nodes with a fixed
    seeded permutation, so node classification has all three masks.
    """
    from torch_geometric.datasets import KarateClub

    data = KarateClub()[0]
    rest = (~data.train_mask).nonzero().view(-1)
    order = rest[torch.randperm(rest.numel(), generator=torch.Generator().manual_seed(seed))]
    half = order.numel() // 2
    data.val_mask = torch.zeros_like(data.train_mask)
    data.test_mask = torch.zeros_like(data.train_mask)
    data.val_mask[order[:half]] = True
    data.test_mask[order[half:]] = True
    data.num_classes = int(data.y.max()) + 1
    return data


# --------------------------------------------------------------------------- OGB


def ogb_dir(name: str) -> str:
    """OGB's folder name for a dataset: ``ogbg-molbace`` -> ``ogbg_molbace``."""
    return name.replace("-", "_")


def ogb_files(name: str) -> tuple[str, ...]:
    """The files of an OGB dataset in OGB's raw on-disk format, relative to the data root."""
    base = f"ogb/{ogb_dir(name)}"
    if name.startswith("ogbg-mol"):
        raw = ["edge", "edge-feat", "node-feat", "graph-label", "num-node-list", "num-edge-list"]
        split = [f"split/scaffold/{part}.csv.gz" for part in ("train", "valid", "test")]
    elif name == "ogbn-arxiv":
        raw = ["edge", "node-feat", "node-label", "node_year", "num-node-list", "num-edge-list"]
        split = [f"split/time/{part}.csv.gz" for part in ("train", "valid", "test")]
    elif name == "ogbl-ddi":
        raw = ["edge", "num-node-list", "num-edge-list"]
        split = [f"split/target/{part}.pt" for part in ("train", "valid", "test")]
    else:
        raise DatasetError(f"gnnkit does not know the file layout of OGB dataset {name!r}")
    files = ["RELEASE_v1.txt", *(f"raw/{stem}.csv.gz" for stem in raw), *split]
    return tuple(f"{base}/{file}" for file in files)


def _ogb(cls: Callable[..., T], root: Path, name: str) -> T:
    with no_prompts(f"OGB {name}"), torch.serialization.safe_globals(ogb_safe_globals()):
        return cls(name=name, root=str(root / "ogb"))


def _load_ogb(cls: Callable[..., T], root: Path, name: str) -> T:
    processed = root / "ogb" / ogb_dir(name) / "processed"
    return _with_cache_retry(processed, lambda: _ogb(cls, root, name), f"OGB {name}")


def load_ogb_graph(root: Path, name: str):
    """An OGB graph-property dataset (``PygGraphPropPredDataset``)."""
    from ogb.graphproppred import PygGraphPropPredDataset

    return _load_ogb(PygGraphPropPredDataset, root, name)


class _SafeLinkDataset:
    """Mixin: OGB's ``get_edge_split`` with the allow-listed ``torch.load``."""

    def get_edge_split(self, split_type: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
        with torch.serialization.safe_globals(ogb_safe_globals()):
            return super().get_edge_split(split_type)  # type: ignore[misc]


def load_ogb_link(root: Path, name: str):
    """An OGB link-property dataset whose ``get_edge_split()`` loads safely."""
    from ogb.linkproppred import PygLinkPropPredDataset

    safe_cls = type("PygLinkPropPredDataset", (_SafeLinkDataset, PygLinkPropPredDataset), {})
    return _load_ogb(safe_cls, root, name)


def load_ogb_node(root: Path, name: str) -> Data:
    """An OGB node-property dataset as one ``Data`` with split masks.

    ``y`` is flattened to shape (|V|,); ``edge_index`` is kept exactly as OGB stores it (for
    ogbn-arxiv: directed citation edges; symmetrise it for an undirected GCN).
    """
    from ogb.nodeproppred import PygNodePropPredDataset

    dataset = _load_ogb(PygNodePropPredDataset, root, name)
    data = dataset[0]
    data.y = data.y.view(-1)
    for split, key in (("train", "train_mask"), ("valid", "val_mask"), ("test", "test_mask")):
        mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        mask[dataset.get_idx_split()[split]] = True
        data[key] = mask
    data.num_classes = int(dataset.num_classes)
    return data


def download_ogb(root: Path, name: str, kind: str) -> None:
    """Download an OGB dataset through the ``ogb`` package (from snap.stanford.edu)."""
    if kind == "graph":
        load_ogb_graph(root, name)
    elif kind == "link":
        load_ogb_link(root, name)
    else:
        load_ogb_node(root, name)


# --------------------------------------------------------------------------- text


def download_file(
    url: str, target: Path, *, member: str | None = None, timeout: float = 60.0
) -> None:
    """Download ``url`` to ``target`` atomically; with ``member``, extract it from a zip."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        payload = response.read()
    if member is not None:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            matches = [n for n in archive.namelist() if n.endswith(member)]
            if not matches:
                raise DatasetError(f"{url} has no member {member!r}")
            payload = archive.read(matches[0])
    with atomic_open(target, "wb") as handle:
        handle.write(payload)


def read_text_files(root: Path, files: tuple[str, ...]) -> str:
    """The files' UTF-8 text concatenated in the given order (universal newlines)."""
    return "".join((root / f).read_text(encoding="utf-8") for f in files)
