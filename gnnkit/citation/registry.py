"""The citation models by name: :data:`MODELS` and :func:`make_model`.

The names and the ablations are recipes (:data:`gnnkit.recipes.CITATION_MODELS`,
:data:`gnnkit.recipes.CITATION_VARIANTS`), which the command line reads without importing any
model.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from gnnkit.citation.base import CitationModel
from gnnkit.citation.graph import GraphModel
from gnnkit.citation.hybrid import HybridModel
from gnnkit.citation.labeltrick import LabelTrickModel
from gnnkit.citation.rgcn import RGCNModel
from gnnkit.citation.smoothing import CorrectSmoothModel
from gnnkit.citation.svm import SVMModel
from gnnkit.citation.text import TextModel
from gnnkit.citation.textgcn import TextGCNModel
from gnnkit.errors import InputError
from gnnkit.recipes import CITATION_MODEL_NAMES as MODEL_NAMES
from gnnkit.recipes import CITATION_VARIANTS as VARIANTS

__all__ = ["MODELS", "MODEL_NAMES", "SIBLING_MODELS", "VARIANTS", "make_model"]

#: The five models of the benchmark, by name, in the order of
#: :data:`gnnkit.recipes.CITATION_MODELS`.
MODELS: dict[str, type[CitationModel]] = {
    cls.name: cls for cls in (SVMModel, TextModel, GraphModel, HybridModel, TextGCNModel)
}
#: The models that read the sentence graph's training labels, in the order of
#: :data:`gnnkit.recipes.CITATION_SIBLING_MODELS`.
SIBLING_MODELS: dict[str, type[CitationModel]] = {
    cls.name: cls for cls in (LabelTrickModel, CorrectSmoothModel, RGCNModel)
}


def make_model(name: str, *, seed: int = 0, **overrides: Any) -> CitationModel:
    """A fresh model by name (:data:`MODELS` or a :data:`VARIANTS` ablation), with overrides.

    Raises:
        InputError: an unknown name or hyper-parameter.
    """
    if name in VARIANTS:
        base, preset = VARIANTS[name]
        overrides = {**preset, **overrides}
    elif name in MODELS or name in SIBLING_MODELS:
        base = name
    else:
        raise InputError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    cls = MODELS.get(base) or SIBLING_MODELS[base]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(
            f"model {name!r} has no hyper-parameter {', '.join(unknown)}; "
            f"it has {', '.join(sorted(known))}"
        )
    return cls(seed=seed, **overrides)
