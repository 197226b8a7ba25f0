"""The citation models' names, importable without the models.

:mod:`gnnkit.citation.registry` maps these names to the model classes; the command line
(:mod:`gnnkit.cli.citation`) builds its help and checks ``--models`` from this module alone,
so ``gnnkit --help`` never loads scikit-learn or the models.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BASE_MODELS", "MODEL_NAMES", "VARIANTS"]

#: The five models of the benchmark: a linear SVM, a BiLSTM, a GNN, the hybrid, TextGCN.
BASE_MODELS: tuple[str, ...] = ("svm", "text", "graph", "hybrid", "textgcn")
#: Named variants for ablations: name -> (base model, hyper-parameter overrides).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "hybrid-concat": ("hybrid", {"fusion": "concat"}),
    "hybrid-gated": ("hybrid", {"fusion": "gated"}),
    "hybrid-gat": ("hybrid", {"conv": "gat"}),
    "hybrid-structure": ("hybrid", {"features": "embedding"}),
    "graph-gat": ("graph", {"conv": "gat"}),
    "graph-structure": ("graph", {"features": "embedding"}),
    "graph-text": ("graph", {"features": "text"}),
}
#: Every name :func:`gnnkit.citation.make_model` accepts: the models, then the variants.
MODEL_NAMES: tuple[str, ...] = BASE_MODELS + tuple(VARIANTS)
