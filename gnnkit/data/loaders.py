"""Loaders: turn verified raw files in the data root into PyG / OGB objects, text or paths.

Every loader takes the data root and returns the dataset's natural object:

- node datasets: one :class:`torch_geometric.data.Data` with ``x``, ``y`` (shape (|V|,)),
  ``edge_index``, boolean ``train_mask`` / ``val_mask`` / ``test_mask`` and an int
  ``num_classes``;
- graph and link datasets: OGB's ``PygGraphPropPredDataset`` / ``PygLinkPropPredDataset``;
- text corpora: the text as one ``str`` (universal newlines: CRLF becomes LF);
- citation corpora: the path of the corpus file (parsed by :mod:`gnnkit.citation`).

No file in the data root runs code when it is loaded:

- every ``torch.load`` that PyG or OGB makes while gnnkit builds a dataset is forced to
  ``weights_only=True`` (:func:`weights_only_loads`), with :func:`ogb_safe_globals` as the
  allow-list: PyG's own fallback to ``weights_only=False`` and its ``pre_transform.pt`` /
  ``pre_filter.pt`` checks cannot unpickle arbitrary objects;
- a processed cache is used only if gnnkit wrote it (its sha256 is recorded in the data
  root; :func:`gnnkit.data.store.untrusted_processed`); any other cache is deleted and rebuilt
  from the checksummed raw files;
- Planetoid's raw files (Python 2 pickles of numpy and scipy arrays) are read with an
  unpickler that builds only those classes (:func:`restricted_pickle_load`).

OGB's interactive prompts are answered by an error, never by waiting, and its prints go to the
log instead of stdout. Downloads go through ``pooch`` (retries, a temporary file renamed into
place, sha256 checks against the manifest).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import os
import pickle
import shutil
import tempfile
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch_geometric.data import Data

from gnnkit.data.store import forget_processed, record_processed, untrusted_processed
from gnnkit.errors import ChecksumError, DatasetError
from gnnkit.utils.io import atomic_open, refused_global

__all__ = [
    "download_file",
    "load_karate",
    "load_ogb_graph",
    "load_ogb_link",
    "load_ogb_node",
    "load_planetoid",
    "no_prompts",
    "ogb_safe_globals",
    "restricted_pickle_load",
    "weights_only_loads",
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


@contextlib.contextmanager
def weights_only_loads(allow: list[Any]) -> Iterator[None]:
    """Force every ``torch.load`` inside the block to ``weights_only=True`` with ``allow``.

    NOTE: PyG reads ``processed/pre_transform.pt`` with ``weights_only=False`` and falls back
    to it for ``processed/data.pt``; neither can be configured, so :func:`torch.load` itself is
    replaced for the duration of the block (process-wide: a load in another thread meanwhile is
    only made safer).
    """
    original = torch.load

    def load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(f, map_location, *args, **kwargs)

    torch.load = load
    try:
        with torch.serialization.safe_globals(allow), warnings.catch_warnings():
            # PyG's note before its unsafe fallback, which is made safe here.
            warnings.filterwarnings("ignore", message="Weights only load failed")
            yield
    finally:
        torch.load = original


_UNREADABLE = (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError)


def _guarded_build(root: Path, processed: str, build: Callable[[], T], what: str) -> T:
    """Build a dataset from a processed cache gnnkit wrote, or rebuild the cache from raw files.

    A cache with a file gnnkit did not write (planted, edited, or from before gnnkit recorded
    caches) is deleted first; a cache that does not load is deleted and rebuilt once. After a
    successful build the cache's sha256 sums are recorded.
    """
    untrusted = untrusted_processed(root, processed)
    if untrusted:
        logger.warning(
            "%s: processed cache %s holds %d file(s) gnnkit did not write, or that changed since "
            "(first: %s); deleting it and rebuilding from the checksummed raw files",
            what,
            root / processed,
            len(untrusted),
            untrusted[0],
        )
        forget_processed(root, processed)
    try:
        result = build()
    except _UNREADABLE as exc:
        if not (root / processed).is_dir():
            raise DatasetError(f"{what} failed to load: {type(exc).__name__}: {exc}") from exc
        logger.warning(
            "%s: processed cache %s is unreadable (%s); rebuilding it from the raw files",
            what,
            root / processed,
            type(exc).__name__,
        )
        forget_processed(root, processed)
        try:
            result = build()
        except _UNREADABLE as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise DatasetError(
                f"{what} failed to load even after rebuilding its processed cache: "
                f"{type(exc).__name__}: {first}"
            ) from exc
    record_processed(root, processed)
    return result


#: The only globals Planetoid's raw pickles may name (numpy arrays, scipy CSR matrices, the
#: adjacency dict of lists), under their Python 2 and 3 module names.
_PLANETOID_GLOBALS = {
    (module, name)
    for modules, name in (
        (("numpy",), "ndarray"),
        (("numpy",), "dtype"),
        (("numpy.core.multiarray", "numpy._core.multiarray"), "_reconstruct"),
        (("scipy.sparse.csr", "scipy.sparse._csr"), "csr_matrix"),
        (("collections",), "defaultdict"),
        (("__builtin__", "builtins"), "list"),
        (("__builtin__", "builtins"), "object"),
        (("copy_reg", "copyreg"), "_reconstructor"),
    )
    for module in modules
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PLANETOID_GLOBALS:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a Planetoid raw file"
            )
        if name == "csr_matrix":  # scipy deprecates its old module path; same class
            import scipy.sparse

            return scipy.sparse.csr_matrix
        return super().find_class(module, name)


def restricted_pickle_load(file: Any, **kwargs: Any) -> Any:
    """:func:`pickle.load` that builds only numpy arrays, scipy CSR matrices, lists and
    defaultdicts (what Planetoid's raw files hold); anything else raises
    :class:`pickle.UnpicklingError`."""
    return _RestrictedUnpickler(file, **kwargs).load()


@contextlib.contextmanager
def _planetoid_reader() -> Iterator[None]:
    """PyG's Planetoid reader, with :func:`restricted_pickle_load` for its ``pickle.load``."""
    from torch_geometric.io import planetoid as reader

    original = reader.pickle
    reader.pickle = types.SimpleNamespace(load=restricted_pickle_load)
    try:
        yield
    finally:
        reader.pickle = original


# --------------------------------------------------------------------------- Planetoid


def planetoid_files(name: str) -> tuple[str, ...]:
    """Raw files of a Planetoid dataset, relative to the data root."""
    lower = name.lower()
    return tuple(
        f"planetoid/{name}/raw/ind.{lower}.{ext}"
        for ext in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    )


def planetoid_processed(name: str) -> str:
    """The processed cache folder of a Planetoid dataset, relative to the data root."""
    return f"planetoid/{name}/processed"


def _planetoid(root: Path, name: str):
    from torch_geometric.datasets import Planetoid

    with (
        no_prompts(f"Planetoid {name}"),
        weights_only_loads(ogb_safe_globals()),
        _planetoid_reader(),
    ):
        return Planetoid(str(root / "planetoid"), name)


def load_planetoid(root: Path, name: str) -> Data:
    """Planetoid ``name`` with its public split (Cora: 140 / 500 / 1000)."""
    dataset = _guarded_build(
        root, planetoid_processed(name), lambda: _planetoid(root, name), f"Planetoid {name}"
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


def ogb_processed(name: str) -> str:
    """The processed cache folder of an OGB dataset, relative to the data root."""
    return f"ogb/{ogb_dir(name)}/processed"


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
    with no_prompts(f"OGB {name}"), weights_only_loads(ogb_safe_globals()):
        return cls(name=name, root=str(root / "ogb"))


def _load_ogb(cls: Callable[..., T], root: Path, name: str) -> T:
    return _guarded_build(root, ogb_processed(name), lambda: _ogb(cls, root, name), f"OGB {name}")


def load_ogb_graph(root: Path, name: str):
    """An OGB graph-property dataset (``PygGraphPropPredDataset``)."""
    from ogb.graphproppred import PygGraphPropPredDataset

    return _load_ogb(PygGraphPropPredDataset, root, name)


class _SafeLinkDataset:
    """Mixin: OGB's ``get_edge_split`` with the allow-listed ``torch.load``."""

    def get_edge_split(self, split_type: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
        try:
            with weights_only_loads(ogb_safe_globals()):
                return super().get_edge_split(split_type)  # type: ignore[misc]
        except pickle.UnpicklingError as exc:
            raise DatasetError(
                f"a split file of {self.name} under {self.root}/split holds "
                f"{refused_global(str(exc))}, which gnnkit does not load (nothing in it was "
                "run); delete the folder's files that are not train.pt, valid.pt and test.pt "
                "(split_dict.pt...), or fetch the dataset again"
            ) from exc


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
    """Download an OGB dataset through the ``ogb`` package (from snap.stanford.edu).

    NOTE: the processed cache OGB builds here is not recorded as trusted: the downloaded raw
    files are checked against the manifest only afterwards, so the first load rebuilds the
    cache from the verified files.
    """
    if kind == "graph":
        from ogb.graphproppred import PygGraphPropPredDataset as cls
    elif kind == "link":
        from ogb.linkproppred import PygLinkPropPredDataset as cls
    else:
        from ogb.nodeproppred import PygNodePropPredDataset as cls
    folder = root / "ogb" / name.replace("-", "_")
    drop_empty_tree(folder)  # an earlier download that failed before writing a file
    try:
        _ogb(cls, root, name)
    except BaseException:
        drop_empty_tree(folder)
        raise


def drop_empty_tree(folder: Path) -> None:
    """Remove ``folder`` if it holds no file at all, only (empty) folders.

    A download that fails before its first file (no network) leaves OGB's dataset folder
    behind; OGB then takes it for an outdated release and asks on stdin whether to update it.
    A folder with any file in it is left alone, so no data is ever removed.
    """
    if not folder.is_dir() or folder.is_symlink():
        return
    if not any(not path.is_dir() or path.is_symlink() for path in folder.rglob("*")):
        shutil.rmtree(folder)


# --------------------------------------------------------------------------- text


def download_file(
    url: str,
    target: Path,
    *,
    member: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> None:
    """Download ``url`` to ``target`` through ``pooch``; with ``member``, extract it from a zip.

    pooch retries ``retries`` times, writes a temporary file and renames it into place, so an
    interrupted download leaves nothing half-written. With ``sha256`` (of the file, or of the
    member) a different download is deleted and refused with a :class:`ChecksumError`.
    """
    import pooch

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as staging:
        fetcher = pooch.create(
            path=staging,
            base_url="",
            registry={"payload": f"sha256:{sha256}" if sha256 and member is None else None},
            urls={"payload": url},
            retry_if_failed=retries,
        )
        try:
            fetched = Path(
                fetcher.fetch("payload", downloader=pooch.HTTPDownloader(timeout=timeout))
            )
        except ValueError as exc:  # pooch's hash mismatch
            raise ChecksumError(
                f"{url} does not match the known sha256 of {target.name} ({exc}); the download "
                "was deleted: try again, or use a mirror (GNNKIT_MIRROR)"
            ) from exc
        if member is None:
            os.replace(fetched, target)
            return
        with zipfile.ZipFile(fetched) as archive:
            matches = [n for n in archive.namelist() if n.endswith(member)]
            if not matches:
                raise DatasetError(f"{url} has no member {member!r}")
            payload = archive.read(matches[0])
    with atomic_open(target, "wb") as handle:
        handle.write(payload)


def read_text_files(root: Path, files: tuple[str, ...]) -> str:
    """The files' UTF-8 text concatenated in the given order (universal newlines)."""
    return "".join((root / f).read_text(encoding="utf-8") for f in files)
