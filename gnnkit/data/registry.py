"""The registry of named datasets gnnkit knows how to obtain, verify and load."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from gnnkit.data import loaders
from gnnkit.data.store import (
    FetchPlan,
    VerifyReport,
    data_lock,
    data_root,
    known_checksum,
    mirror_root,
    resolve_files,
    verify_files,
)
from gnnkit.errors import UnknownDatasetError

__all__ = ["DATASETS", "DatasetSpec", "get_spec", "load", "resolve", "status", "verify"]

logger = logging.getLogger(__name__)

Kind = Literal["node", "graph", "link", "text", "citation"]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    Attributes:
        name (str): the registry name (``"cora"``, ``"ogbg-molbace"``...).
        kind (str): ``"node"``, ``"graph"``, ``"link"``, ``"text"`` or ``"citation"``.
        description (str): one line for listings.
        source (str): the upstream home of the files (``"embedded"`` for built-in data).
        files (tuple of str): raw files, relative to the data root; empty when embedded.
        loader (callable): data root -> the loaded object (see :mod:`gnnkit.data.loaders`).
        download (callable, optional): data root -> downloads the files upstream.
        processed (tuple of str): the processed cache folders PyG / OGB write, relative to the
            data root (checked by :func:`verify`, rebuilt when gnnkit did not write them).
    """

    name: str
    kind: Kind
    description: str
    source: str
    files: tuple[str, ...]
    loader: Callable[[Path], Any]
    download: Callable[[Path], Any] | None = None
    processed: tuple[str, ...] = ()

    @property
    def embedded(self) -> bool:
        """Built into a library (nothing to download or verify)."""
        return not self.files

    def plan(self) -> FetchPlan:
        return FetchPlan(self.name, self.files, self.source, self.download)


def _planetoid(name: str, display: str, description: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind="node",
        description=description,
        source="https://github.com/kimiyoung/planetoid (via torch_geometric.datasets.Planetoid)",
        files=loaders.planetoid_files(display),
        loader=partial(loaders.load_planetoid, name=display),
        download=partial(loaders.download_planetoid, name=display),
        processed=(loaders.planetoid_processed(display),),
    )


def _ogb(name: str, kind: Kind, description: str, loader: Callable[..., Any]) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        kind=kind,
        description=description,
        source="http://snap.stanford.edu/ogb (via the ogb package)",
        files=loaders.ogb_files(name),
        loader=partial(loader, name=name),
        download=partial(loaders.download_ogb, name=name, kind=kind),
        processed=(loaders.ogb_processed(name),),
    )


def _text(
    name: str, description: str, source: str, files: tuple[str, ...], urls: tuple[str, ...]
) -> DatasetSpec:
    def download(root: Path) -> None:
        for relpath, url in zip(files, urls, strict=True):
            if not (root / relpath).is_file():
                loaders.download_file(url, root / relpath, sha256=known_checksum(relpath))

    return DatasetSpec(
        name=name,
        kind="text",
        description=description,
        source=source,
        files=files,
        loader=partial(loaders.read_text_files, files=files),
        download=download,
    )


_PYDOC_FILES = (
    "appendix", "appetite", "classes", "controlflow", "datastructures", "errors", "floatingpoint",
    "index", "inputoutput", "interactive", "interpreter", "introduction", "modules", "stdlib",
    "stdlib2", "venv", "whatnow",
)  # fmt: skip
_PYDOC_URL = "https://raw.githubusercontent.com/python/cpython/v3.11.2/Doc/tutorial/{}.rst"
_ATHAR_FILE = "citation_sentiment/citation_sentiment_corpus.txt"
_ATHAR_URL = (
    "https://www.cl.cam.ac.uk/~aa496/citation-sentiment-corpus/citation_sentiment_corpus.zip"
)


def _athar_download(root: Path) -> None:
    loaders.download_file(_ATHAR_URL, root / _ATHAR_FILE, member="citation_sentiment_corpus.txt")


#: Every molecule dataset of OGB's ``graphproppred/master.csv``: the same raw layout, so one
#: loader serves them all.
_OGB_MOLECULES = {
    "ogbg-molbace": "BACE inhibition, ROC-AUC",
    "ogbg-molbbbp": "blood-brain barrier, ROC-AUC",
    "ogbg-molchembl": "ChEMBL bioactivity, 1,310 tasks, ROC-AUC",
    "ogbg-molclintox": "clinical toxicity, 2 tasks, ROC-AUC",
    "ogbg-molesol": "water solubility, RMSE",
    "ogbg-molfreesolv": "hydration free energy, RMSE",
    "ogbg-molhiv": "HIV inhibition, ROC-AUC",
    "ogbg-mollipo": "lipophilicity, RMSE",
    "ogbg-molmuv": "MUV bioassays, 17 tasks, AP",
    "ogbg-molpcba": "PubChem bioassays, 128 tasks, AP",
    "ogbg-molsider": "side effects, 27 tasks, ROC-AUC",
    "ogbg-moltox21": "toxicity, 12 tasks, ROC-AUC",
    "ogbg-moltoxcast": "toxicity, 617 tasks, ROC-AUC",
}

_SPECS = [
    _planetoid("cora", "Cora", "Planetoid Cora citations: 2,708 nodes, 1,433 features, 7 classes"),
    _planetoid(
        "citeseer",
        "CiteSeer",
        "Planetoid CiteSeer citations: 3,327 nodes, 3,703 features, 6 classes",
    ),
    _planetoid(
        "pubmed", "PubMed", "Planetoid PubMed citations: 19,717 nodes, 500 features, 3 classes"
    ),
    DatasetSpec(
        name="karate",
        kind="node",
        description="Zachary's karate club: 34 nodes, 4 classes (PyG's KarateClub, embedded)",
        source="embedded",
        files=(),
        loader=loaders.load_karate,
    ),
    *(
        _ogb(name, "graph", f"OGB molecules, {description}", loaders.load_ogb_graph)
        for name, description in _OGB_MOLECULES.items()
    ),
    _ogb(
        "ogbl-ddi",
        "link",
        "OGB drug-drug interactions, 4,267 nodes, Hits@20",
        loaders.load_ogb_link,
    ),
    _ogb(
        "ogbn-arxiv",
        "node",
        "OGB arXiv citations, 169,343 nodes, 40 classes",
        loaders.load_ogb_node,
    ),
    _text(
        "bartleby",
        "Melville, Bartleby, the Scrivener (Project Gutenberg #11231)",
        "https://www.gutenberg.org/ebooks/11231",
        ("text/bartleby.txt",),
        ("https://www.gutenberg.org/cache/epub/11231/pg11231.txt",),
    ),
    _text(
        "pydoc-tutorial",
        "The Python 3.11.2 tutorial sources, 17 .rst files concatenated in sorted order",
        "https://github.com/python/cpython/tree/v3.11.2/Doc/tutorial",
        tuple(f"text/pydoc_tutorial/{stem}.rst" for stem in _PYDOC_FILES),
        tuple(_PYDOC_URL.format(stem) for stem in _PYDOC_FILES),
    ),
    DatasetSpec(
        name="athar-citations",
        kind="citation",
        description="Athar (2011) citation sentiment corpus: 8,736 sentences, o/p/n labels",
        source=_ATHAR_URL,
        files=(_ATHAR_FILE,),
        loader=lambda root: root / _ATHAR_FILE,
        download=_athar_download,
    ),
]

#: Every registered dataset by name.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; raises :class:`UnknownDatasetError` listing the known ones."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        known = ", ".join(DATASETS)
        raise UnknownDatasetError(
            f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; known datasets: {known}"
        ) from None


def did_you_mean(name: object, names: Iterable[str]) -> str:
    """``" (did you mean 'cora'?)"`` for the closest of ``names`` to a mistyped ``name``
    (case ignored), else ``""``."""
    if not isinstance(name, str):
        return ""
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.85)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _data_root(root: str | os.PathLike | None, mirror: str | os.PathLike | None) -> Path:
    """The data root (:func:`~gnnkit.data.store.data_root`); a ``mirror`` given explicitly is
    checked now (:func:`~gnnkit.data.store.mirror_root`), even where it is not needed."""
    if mirror is not None:
        mirror_root(mirror)
    return data_root(root)


def resolve(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    download: bool | None = None,
) -> Path:
    """Make ``name``'s raw files present and verified in the data root; return the data root.

    Tries the data root, then the mirror, then the upstream download (see
    :mod:`gnnkit.data.store`). Embedded datasets need nothing and return the data root as is.
    """
    spec = get_spec(name)
    if spec.embedded:
        return _data_root(root, mirror)
    return resolve_files(spec.plan(), root=root, mirror=mirror, download=download)


def load(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    download: bool | None = None,
) -> Any:
    """Resolve and load a registered dataset.

    Returns:
        node datasets: a :class:`~torch_geometric.data.Data` with split masks and
        ``num_classes``; graph / link datasets: OGB's PyG dataset; text: a ``str``; citation:
        the corpus path. See :mod:`gnnkit.data.loaders`.

    Example:
        >>> data = load("karate")
        >>> int(data.train_mask.sum()), data.num_classes
        (4, 4)
    """
    spec = get_spec(name)
    root_path = _data_root(root, mirror)
    if spec.embedded:
        return spec.loader(root_path)
    with data_lock(root_path):  # re-entrant: resolve takes it too
        return spec.loader(resolve(name, root=root_path, mirror=mirror, download=download))


def status(
    name: str, *, root: str | os.PathLike | None = None, mirror: str | os.PathLike | None = None
) -> str:
    """Where a dataset is now: ``embedded``, ``present``, ``in mirror`` or ``remote``.

    ``present`` means every file exists in the data root (checksums are checked by
    :func:`verify`, not here).
    """
    spec = get_spec(name)
    root_path = _data_root(root, mirror)
    if spec.embedded:
        return "embedded"
    if all((root_path / f).is_file() for f in spec.files):
        return "present"
    mirror_path = mirror_root(mirror)
    if mirror_path is not None and all((mirror_path / f).is_file() for f in spec.files):
        return "in mirror"
    return "remote"


def verify(name: str, *, root: str | os.PathLike | None = None) -> VerifyReport:
    """Check the raw files of ``name`` in the data root against their checksums, and its
    processed caches against what gnnkit recorded when it wrote them."""
    spec = get_spec(name)
    root_path = data_root(root)
    if not root_path.is_dir() or not os.access(root_path, os.W_OK):
        return verify_files(root_path, spec.files, spec.processed)  # nothing can change it
    with data_lock(root_path):
        return verify_files(root_path, spec.files, spec.processed)
