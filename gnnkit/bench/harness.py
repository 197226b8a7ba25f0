"""The benchmark harness: the comparison protocol every benchmark shares, and its results.

A benchmark trains gnnkit's recipe (:mod:`gnnkit.recipes`) and the references that
``compare`` names (:func:`parse_compare`: ``"pyg"``, the model of PyG's example;
``"pyg-tuned"``, the strongest configuration of PyG's layers; or both, ``"pyg,pyg-tuned"``),
each from :func:`gnnkit.bench.pyg.reference` (the same optimiser, epochs and data, only the
model and its feature preparation differ), on the same seeds: run ``r`` of every
implementation uses seed ``seed + r``. The implementations alternate so that none always
trains on a warmer or busier machine, in one of two ways:

- **epoch by epoch** (:func:`interleave_seeds`, graph and link benchmarks): for each seed, one
  :class:`gnnkit.train.Run` per implementation, stepped in turn by
  :func:`gnnkit.train.interleave` (in order on even epochs, reversed on odd ones). Each
  run keeps its own random state, so each draws what it would draw alone.
- **run by run** (:func:`gnnkit.bench.node.run_node_benchmark`): each run trains to its end
  before the next implementation's starts (:func:`gnnkit.train.round_order`: in order on
  even runs, reversed on odd ones), because the node benchmark measures each run's peak
  memory, which two runs alive at once would mix.

Results: every benchmark's result is a :class:`Comparison` (one record per implementation and
seed; ``summary(impl)`` is one JSON block of statistics over the seeds, ``report()`` what
``gnnkit bench`` prints, ``to_json`` the whole ``--json`` payload). :func:`mean_std` and :func:`plot_panels` are also what the scripts that
collect several runs into one table use (``benchmarks/ddi_table.py``,
``benchmarks/ogbg_table.py``), so that no script depends on a benchmark's internals.
"""

from __future__ import annotations

import logging
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from gnnkit.errors import InputError
from gnnkit.utils.checks import check_device
from gnnkit.utils.table import format_table

__all__ = [
    "COLORS",
    "REFERENCES",
    "REFERENCE_LABELS",
    "Comparison",
    "check_compare",
    "check_resume",
    "check_runs",
    "checkpoint_path",
    "checkpoint_suffix",
    "implementations",
    "interleave_seeds",
    "machine",
    "mean_std",
    "mean_std_text",
    "parse_compare",
    "plot_panels",
    "plot_training_curves",
    "resolve_device",
    "run_checkpoints",
    "seeds",
    "speed_text",
]

logger = logging.getLogger(__name__)

#: Line colour of each implementation in the figures.
COLORS = {"gnnkit": "C0", "pyg": "C1", "pyg-tuned": "C2"}

#: The references ``--compare`` takes, in the order they train and report: the models of
#: PyG's examples (:mod:`gnnkit.bench.pyg`) and the strongest configuration of PyG's layers
#: (:mod:`gnnkit.bench.pyg_tuned`).
REFERENCES = ("pyg", "pyg-tuned")

#: How reports name each reference in their speed lines.
REFERENCE_LABELS = {"pyg": "PyG", "pyg-tuned": "tuned PyG"}

_RESUME_NEEDS_DIR = "--resume needs --checkpoint-dir (where the interrupted runs wrote checkpoints)"


def check_runs(runs: Any) -> None:
    """Refuse a number of runs that is not a positive ``int``."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise InputError(f"runs must be a positive integer, got {runs!r}")


def parse_compare(compare: Any) -> tuple[str, ...]:
    """The references of ``compare``, in the order given, each once.

    ``compare`` is ``None`` (no reference), one name, a comma list (``"pyg,pyg-tuned"``) or a
    list of those; the names are :data:`REFERENCES`.

    Raises:
        InputError: an unknown or empty name.
    """
    if compare is None:
        return ()
    items = [compare] if isinstance(compare, str) else compare
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise InputError(f"--compare takes names of references, got {compare!r}")
    names: list[str] = []
    for name in (part.strip() for item in items for part in item.split(",")):
        if name not in REFERENCES:
            raise InputError(
                f"--compare takes {' and/or '.join(REFERENCES)} (a comma list), got {name!r}"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def check_compare(compare: Any) -> None:
    """Refuse a ``compare`` that :func:`parse_compare` does not take."""
    parse_compare(compare)


def check_resume(resume: bool, checkpoint_dir: Any) -> None:
    """Refuse ``resume`` without a checkpoint folder (``None``) to resume from."""
    if resume and checkpoint_dir is None:
        raise InputError(_RESUME_NEEDS_DIR)


def resolve_device(device: Any) -> torch.device:
    """``device`` as a :class:`torch.device`; refused when malformed or when CUDA is missing."""
    return check_device("--device", device)


def implementations(recipe: Any, compare: Any) -> dict[str, Any]:
    """``{"gnnkit": recipe}``, plus each reference of ``compare`` by name (``"pyg"``,
    ``"pyg-tuned"``): its recipe from :func:`gnnkit.bench.pyg.reference`.

    Args:
        recipe (Recipe): gnnkit's model and recipe (:mod:`gnnkit.recipes`).
        compare: the references (:func:`parse_compare`), or ``None``.
    """
    references = parse_compare(compare)
    recipes = {"gnnkit": recipe}
    if references:
        from gnnkit.bench.pyg import reference

        for kind in references:
            recipes[kind] = reference(recipe, kind)
    return recipes


def seeds(seed: int, runs: int) -> list[int]:
    """The seed of every run: ``seed``, ``seed + 1``, ..., ``seed + runs - 1``."""
    return [seed + r for r in range(runs)]


def checkpoint_path(
    checkpoint_dir: str | Path | None, stem: str, impl: str, seed: int, suffix: str = ""
) -> Path | None:
    """The checkpoint file of one run, ``DIR/STEM-IMPL-seedSEED[SUFFIX].pt`` (the stem names
    the dataset and model); ``None`` without a checkpoint folder."""
    if checkpoint_dir is None:
        return None
    return Path(checkpoint_dir) / _checkpoint_name(stem, impl, seed, suffix)


def _checkpoint_name(stem: str, impl: str, seed: int, suffix: str) -> str:
    return f"{stem}-{impl}-seed{seed}{suffix}.pt"


def checkpoint_suffix(sampling: Any) -> str:
    """What a mini-batch run adds to its checkpoint's name (``-minibatch``; ``""`` for
    full-batch runs, ``sampling`` ``None``), so the two modes never share a file."""
    return "" if sampling is None else "-minibatch"


def run_checkpoints(stem: str, compare: Any, seed: int, runs: int, suffix: str = "") -> list[str]:
    """The names of every checkpoint a benchmark writes: one per implementation (gnnkit and
    each reference of ``compare``) and seed (:func:`checkpoint_path`), so ``--overwrite``
    and the refusal of an existing checkpoint concern these files and no other run's."""
    impls = ("gnnkit", *parse_compare(compare))
    return [_checkpoint_name(stem, impl, s, suffix) for impl in impls for s in seeds(seed, runs)]


def interleave_seeds(
    recipes: Mapping[str, Any],
    run_seeds: list[int],
    start: Callable[[str, Any, int], Any],
    finish: Callable[[str, int, Any], Any],
    *,
    time_budget_s: float | None = None,
) -> dict[str, list[Any]]:
    """Train every implementation on every seed, stepping their runs in turn epoch by epoch.

    For each seed, and for each implementation in order, :func:`gnnkit.train.seed_everything`
    seeds the process and ``start(impl, recipe, seed)`` builds the model and returns its
    :class:`gnnkit.train.Run`; :func:`gnnkit.train.interleave` then steps the runs to their
    end and ``finish(impl, seed, run_result)`` makes each run's record.

    Args:
        recipes (mapping): implementation -> recipe (:func:`implementations`).
        run_seeds (list of int): the seeds, one run of each implementation per seed.
        start (callable): ``start(impl, recipe, seed)`` -> a fresh (or resumed) ``Run``.
        finish (callable): ``finish(impl, seed, run_result)`` -> the record kept.
        time_budget_s (float, optional): stop every run cleanly (with its checkpoint) before
            an epoch round that would end past this many seconds from now; the seeds after
            the one stopped are not started. (default: none)

    Returns:
        dict: implementation -> one record per seed trained, in seed order.
    """
    from gnnkit.train import interleave, seed_everything

    records: dict[str, list[Any]] = {impl: [] for impl in recipes}
    began = time.perf_counter()
    for seed in run_seeds:
        runs = {}
        for impl, recipe in recipes.items():
            seed_everything(seed)
            runs[impl] = start(impl, recipe, seed)
        left = None if time_budget_s is None else time_budget_s - (time.perf_counter() - began)
        stopped = interleave(runs, time_budget_s=left)
        for impl, run in runs.items():
            records[impl].append(finish(impl, seed, run.result()))
        if stopped:
            logger.info("time budget reached; the runs stopped with a checkpoint")
            break
    return records


# --------------------------------------------------------------------------------- results


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (``0.0`` for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std_text(mean: float, std: float, runs: int, fmt: str = ".4f", unit: str = "") -> str:
    """``"mean +- std"`` over ``runs`` runs, or the mean alone for one run (which has no spread).

    Example: ``mean_std_text(81.7, 0.8, 20, ".1f", " %")`` is ``"81.7 +- 0.8 %"``.
    """
    if runs > 1:
        return f"{mean:{fmt}} +- {std:{fmt}}{unit}"
    return f"{mean:{fmt}}{unit}"


def speed_text(ratio: float, fmt: str = ".1f") -> str:
    """A speed ratio (the reference's time over gnnkit's) in words: ``"2.5 x faster"`` when
    gnnkit is faster, ``"1.4 x slower"`` (the inverse ratio) when it is slower."""
    if ratio >= 1:
        return f"{ratio:{fmt}} x faster"
    return f"{1 / ratio:{fmt}} x slower"


@dataclass
class Comparison(ABC):
    """What every benchmark result shares: its setting, the records, the table and the payload.

    A result (:class:`~gnnkit.bench.node_result.NodeBenchResult`,
    :class:`~gnnkit.bench.graph.GraphBenchResult`, :class:`~gnnkit.bench.link.LinkBenchResult`)
    adds its own fields and implements :meth:`summary` (one JSON block per implementation),
    :meth:`title`, :meth:`header` and :meth:`row` (its table: one row per implementation, aligned
    by :attr:`align`), :meth:`notes` (the lines under the table) and ``to_json`` (the ``--json``
    payload, through :meth:`payload`); :attr:`speed_key` names the summary's time whose PyG /
    gnnkit ratio is the speedup.

    Args:
        dataset (str): the dataset's name.
        model (str): gnnkit's recipe (:mod:`gnnkit.recipes`).
        epochs (int): epochs per run.
        seeds (list of int): the seed of every run, in order.
        records (dict): implementation -> one record per seed.
    """

    speed_key: ClassVar[str]
    align: ClassVar[str]

    dataset: str
    model: str
    epochs: int
    seeds: list[int]
    records: dict[str, list[Any]]

    @abstractmethod
    def summary(self, impl: str) -> dict[str, Any]:
        """One implementation's JSON block of statistics over its seeds."""

    @abstractmethod
    def title(self) -> str:
        """The line above the table."""

    @abstractmethod
    def header(self) -> Sequence[str]:
        """The table's column names."""

    @abstractmethod
    def row(self, impl: str, summary: Mapping[str, Any]) -> Sequence[str]:
        """One implementation's table row, from its :meth:`summary`."""

    def notes(self) -> list[str]:
        """The lines under the table (the speedup...)."""
        return []

    @property
    def references(self) -> list[str]:
        """The references trained beside gnnkit (``"pyg"``, ``"pyg-tuned"``), in order."""
        return [impl for impl in self.records if impl != "gnnkit"]

    @property
    def compared(self) -> bool:
        """Whether a reference was trained too."""
        return bool(self.references)

    def speedup_over(self, impl: str) -> float | None:
        """``impl``'s :attr:`speed_key` over gnnkit's; ``None`` without ``impl`` or a time."""
        if impl not in self.records:
            return None
        g, p = self.summary("gnnkit")[self.speed_key], self.summary(impl)[self.speed_key]
        return p / g if g and p else None

    @property
    def speedups(self) -> dict[str, float | None]:
        """:meth:`speedup_over` of every reference, by name."""
        return {impl: self.speedup_over(impl) for impl in self.references}

    @property
    def speedup(self) -> float | None:
        """The speed-up over PyG's examples (``"pyg"``); ``None`` without them or a time."""
        return self.speedup_over("pyg")

    def payload(self, head: Mapping[str, Any], tail: Mapping[str, Any]) -> dict[str, Any]:
        """The ``--json`` payload: ``head``, the summary block of gnnkit and of each
        reference, ``speedup`` (over ``"pyg"``), ``speedups`` (over each reference), then
        ``tail``."""
        blocks: dict[str, Any] = {impl: self.summary(impl) for impl in self.records}
        return {**head, **blocks, "speedup": self.speedup, "speedups": self.speedups, **tail}

    def table(self) -> str:
        """:meth:`header` over one :meth:`row` per implementation."""
        header = self.header()
        rows = [self.row(impl, self.summary(impl)) for impl in self.records]
        return format_table(header, rows, self.align[: len(header)])

    def report(self) -> str:
        """What ``gnnkit bench`` prints: :meth:`title`, :meth:`table`, then :meth:`notes`."""
        return "\n".join([self.title(), self.table(), *self.notes()])


def machine(device: Any) -> str:
    """``"<device>, <torch's CPU threads> thread(s)"``: where a benchmark ran, for its title."""
    return f"{device}, {torch.get_num_threads()} thread(s)"


def plot_panels(
    records: Mapping[str, Sequence[Any]],
    panels: Sequence[tuple[str, str]],
    path: str | Path,
    *,
    title: str,
    window: int = 1,
    x: Callable[[str, Sequence[Any]], Sequence[float] | None] | None = None,
) -> Path:
    """One panel per ``(history key, panel title)``: every seed light, the mean dark.

    Args:
        records (mapping): a label (an implementation, or a setting) -> one result per seed,
            each with a ``history`` dict of per-epoch (or per-evaluation) series.
        panels (sequence): ``(key, title)`` of each panel, left to right.
        path (str or Path): the figure file (PNG, PDF or SVG).
        title (str): the figure's title.
        window (int, optional): smoothing window of the mean. (default: ``1``)
        x (callable, optional): ``x(key, records)``, the x values of a panel's series
            (default: epochs 1, 2, ...).

    Raises:
        InputError: the figure cannot be written (named as ``--plot PATH``).
    """
    from gnnkit.utils.plotting import plot_seed_curves, save_figure, subplots

    fig, axes = subplots(1, len(panels), figsize=(5.0 * len(panels), 3.8), layout="constrained")
    for ax, (key, panel_title) in zip(axes, panels, strict=True):
        for label, runs in records.items():
            plot_seed_curves(
                ax,
                [r.history[key] for r in runs],
                label=label,
                color=COLORS.get(label),
                window=window,
                x=None if x is None else x(key, runs),
            )
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    try:
        return save_figure(fig, path)
    except OSError as exc:
        raise InputError(f"cannot write --plot {path}: {exc.strerror or exc}") from exc


def plot_training_curves(
    result: Comparison,
    path: str | Path,
    panels: Sequence[tuple[str, str]],
    *,
    max_window: int,
    label: str = "",
) -> Path:
    """The training loss, then ``panels`` (:func:`plot_panels`), per epoch of every seed (light)
    and their mean (dark, smoothed over up to ``max_window`` epochs: one per 20 epochs).

    ``label`` follows the dataset's name in the title.
    """
    window = max(1, min(max_window, result.epochs // 20))
    title = (
        f"{result.model.upper()} on {result.dataset}{label}: {len(result.seeds)} seed(s), "
        f"mean (dark, smoothed over {window}) and each seed (light)"
    )
    panels = (("loss", "training loss"), *panels)
    return plot_panels(result.records, panels, path, title=title, window=window)
