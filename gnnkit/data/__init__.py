"""Datasets: a registry of named datasets, resolved from the data root, a mirror or upstream.

>>> from gnnkit.data import load
>>> cora = load("cora")          # Data with x, y, edge_index, train/val/test masks, num_classes

See :mod:`gnnkit.data.store` for where files come from and how they are verified.
"""

from gnnkit.data.registry import DATASETS, DatasetSpec, get_spec, load, resolve, status, verify
from gnnkit.data.store import data_root, mirror_root

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "data_root",
    "get_spec",
    "load",
    "mirror_root",
    "resolve",
    "status",
    "verify",
]
