"""Collect full-protocol ``gnnkit bench link`` runs on ogbl-ddi into ``benchmarks/results/ddi``.

Each argument is the JSON one ``gnnkit bench link --dataset ogbl-ddi --epochs 200 --seed S
--json PATH`` run wrote (any number of seeds per file). Every seed replaces its entry under
``"full_runs"`` in ``--json`` (other seeds and other keys are kept). Then these are rewritten
between the markers ``<!-- seeds:begin -->`` and ``<!-- seeds:end -->`` of ``--markdown`` (the
rest of the file is left alone):

- the seed table;
- the mean ± std of each setting (the machine the seeds ran on, and the sampler when it is not
  OGB's: ``--negatives device``), of all seeds of OGB's protocol, and of every seed;
- Welch t-tests against the leaderboard and between settings;
- the verdict against the target, read from the mean over the seeds of OGB's protocol (PyG's
  ``negative_sampling``, on any machine).

``--plot`` draws the loss and the validation and test Hits@K of every seed, one colour per
setting.

A seed that stopped before its last epoch (``--time-budget``) is refused: resume it first.

Run:
    python benchmarks/ddi_table.py RUN.json [RUN.json ...] [--json benchmarks/results/ddi.json]
        [--markdown benchmarks/results/ddi.md] [--plot benchmarks/results/ddi_gcn_seeds.png]
        [--target 0.37]
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _collect import RESULTS, collection_parser, read_collection

from gnnkit.bench.harness import mean_std, plot_panels
from gnnkit.train.link import DEFAULT_NEGATIVES
from gnnkit.utils.io import atomic_write_json, atomic_write_text

BEGIN, END = "<!-- seeds:begin -->", "<!-- seeds:end -->"
#: OGB leaderboard, GCN on ogbl-ddi (10 seeds): test and validation Hits@20.
LEADERBOARD = {"test": (0.3707, 0.0507), "valid": (0.5550, 0.0208)}
#: Evaluations averaged by :func:`late_test_mean`.
LATE = 10
#: Evaluations over which :func:`late_correlation` compares validation and test.
CORRELATION_WINDOW = 20


def split_seeds(run: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """One entry per seed of a ``bench link --json`` payload (gnnkit's implementation).

    Raises:
        ValueError: the payload is not a bench link result, or a seed did not finish.
    """
    block = run.get("gnnkit")
    if not isinstance(block, dict) or "history" not in block or "seeds" not in run:
        raise ValueError(f"{source} is not a `gnnkit bench link --json` result")
    entries = {}
    metric = run["metric"]
    for i, seed in enumerate(run["seeds"]):
        if block["finished"][i] != "epochs":
            raise ValueError(
                f"{source}: seed {seed} stopped at epoch {block['epochs_run'][i]} of "
                f"{run['epochs']} ({block['finished'][i]}); finish it with --resume and the "
                "same --checkpoint-dir before collecting it"
            )
        history = block["history"][i]
        entries[str(seed)] = {
            "seed": seed,
            "dataset": run["dataset"],
            "model": run["model"],
            "metric": metric,
            "epochs": run["epochs"],
            "test": block["test"][i],
            "valid": max(history[f"valid_{metric}"]),
            "best_epoch": block["best_epoch"][i],
            "epoch_s_median": statistics.median(history["epoch_time"]),
            "wall_s": block["wall_s"][i],
            "history": history,
            "options": run["options"],
            "env": run["env"],
        }
    return entries


def merge_seeds(
    runs: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], source: str
) -> None:
    """Put ``new``'s seeds into ``runs``: a seed of the same setting replaces its entry.

    Raises:
        ValueError: a seed is already collected under another setting (machine or sampler).
    """
    for key, entry in new.items():
        old = runs.get(key)
        if old is not None and setting(old) != setting(entry):
            raise ValueError(
                f"{source}: seed {entry['seed']} ran on {setting(entry)}, but seed "
                f"{old['seed']} is already collected from {setting(old)}; one seed number "
                "stands for one run here: rerun with another --seed"
            )
        runs[key] = entry


def _series(entry: dict[str, Any], part: str) -> list[float]:
    """``part``'s (``"valid"`` or ``"test"``) score at every evaluation of a seed."""
    return entry["history"][f"{part}_{entry['metric']}"]


def _tail(entry: dict[str, Any], n: int = 6) -> str:
    return ", ".join(f"{v:.3f}" for v in _series(entry, "test")[-n:])


def late_test_mean(entry: dict[str, Any], n: int = LATE) -> float:
    """The mean test score of the last ``n`` evaluations (not OGB's statistic: no selection)."""
    return statistics.fmean(_series(entry, "test")[-n:])


def late_correlation(entry: dict[str, Any], n: int = CORRELATION_WINDOW) -> float:
    """Pearson correlation of validation and test score over the last ``n`` evaluations.

    Near zero, picking the best validation evaluation picks a test score at random among
    them. ``nan`` when either series is constant or shorter than two evaluations.
    """
    valid, test = _series(entry, "valid")[-n:], _series(entry, "test")[-n:]
    try:
        return statistics.correlation(valid, test)
    except statistics.StatisticsError:
        return math.nan


def machine(entry: dict[str, Any]) -> str:
    """Where a seed ran, from its run's environment: ``"GPU (<name>)"`` for CUDA, else the
    device type in capitals (``"CPU"``, ``"MPS"``)."""
    device = entry["env"].get("device", "cpu")  # "cpu", "cuda (NVIDIA H100 ...)", "mps", ...
    kind = device.split(" ")[0].split(":")[0]
    if kind == "cuda":
        return f"GPU ({device.partition('(')[2].rstrip(')') or 'cuda'})"
    return kind.upper()


def is_protocol(entry: dict[str, Any]) -> bool:
    """Whether a seed drew its negatives as OGB does, with PyG's ``negative_sampling``."""
    return entry["options"].get("negatives", DEFAULT_NEGATIVES) == DEFAULT_NEGATIVES


def setting(entry: dict[str, Any]) -> str:
    """The machine, and the sampler when it is not OGB's (``--negatives device``)."""
    if is_protocol(entry):
        return machine(entry)
    return f"{machine(entry)}, {entry['options']['negatives']} negatives"


def by_setting(runs: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The seeds of each setting, ordered by seed; settings in the order of their first seed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(runs.values(), key=lambda e: e["seed"]):
        groups.setdefault(setting(entry), []).append(entry)
    return groups


def _seed_range(entries: list[dict[str, Any]]) -> str:
    seeds = [e["seed"] for e in entries]
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _summary_row(label: str, where: str, entries: list[dict[str, Any]], target: float) -> str:
    """One row of the summary table: mean ± std, standard error, distance to ``target``."""
    test_mean, test_std = mean_std([e["test"] for e in entries])
    valid_mean, valid_std = mean_std([e["valid"] for e in entries])
    sem = test_std / math.sqrt(len(entries))
    gap = test_mean - target
    side = f"{abs(gap):.4f} {'above' if gap >= 0 else 'below'}"
    if sem > 0:
        side += f" ({abs(gap) / sem:.2f} SE)"
    return (
        f"| {label} | {where} | {len(entries)} | {test_mean:.4f} ± {test_std:.4f} | "
        f"{valid_mean:.4f} ± {valid_std:.4f} | {sem:.4f} | {side} |"
    )


def statistics_lines(
    groups: dict[str, list[dict[str, Any]]], protocol: list[dict[str, Any]], k: str
) -> list[str]:
    """Welch t-tests (scipy): OGB-protocol seeds against the leaderboard, setting against setting."""
    from scipy import stats

    lines = []
    if len(protocol) > 1:
        mean, std = mean_std([e["test"] for e in protocol])
        lb_mean, lb_std = LEADERBOARD["test"]
        t, p = stats.ttest_ind_from_stats(mean, std, len(protocol), lb_mean, lb_std, 10, False)
        lines.append(
            f"- Welch t-test of the test Hits@{k} of the {len(protocol)} seeds of OGB's protocol "
            f"against the leaderboard's (its mean, std and 10 seeds): t = {t:.2f}, p = {p:.2g}."
        )
    compared = [(name, entries) for name, entries in groups.items() if len(entries) > 1]
    for (a, first), (b, second) in itertools.combinations(compared, 2):
        t, p = stats.ttest_ind(
            [e["test"] for e in first], [e["test"] for e in second], equal_var=False
        )
        lines.append(f"- Welch t-test of the test Hits@{k}, {a} seeds against {b}: "
                     f"t = {t:.2f}, p = {p:.2g}.")  # fmt: skip
    if len(compared) > 2:
        lines.append(
            f"- {len(compared) * (len(compared) - 1) // 2} pairs compared: multiply each p by "
            "that number (Bonferroni) before reading it as a difference."
        )
    return lines


def seeds_markdown(runs: dict[str, dict[str, Any]], target: float) -> str:
    """The seed table, the mean ± std per setting and over all seeds, and the verdict.

    The verdict against ``target`` reads the mean over every seed of OGB's protocol (PyG's
    ``negative_sampling``, any machine); seeds drawn by another sampler are shown apart.
    """
    groups = by_setting(runs)
    ordered = sorted(runs.values(), key=lambda e: e["seed"])
    protocol = [e for e in ordered if is_protocol(e)]
    metric = ordered[0]["metric"]
    k = metric.split("@")[1]
    lines = [
        f"| seed | ran on | test Hits@{k} at the best validation | validation Hits@{k} there | "
        f"best epoch | test Hits@{k}, last six evaluations | mean test of the last {LATE} | "
        f"valid/test correlation, last {CORRELATION_WINDOW} | median epoch | wall time |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for e in ordered:
        lines.append(
            f"| {e['seed']} | {setting(e)} | **{e['test']:.4f}** | {e['valid']:.4f} | "
            f"{e['best_epoch']} | {_tail(e)} | {late_test_mean(e):.4f} | "
            f"{late_correlation(e):.2f} | {e['epoch_s_median']:.1f} s | "
            f"{e['wall_s'] / 60:.1f} min |"
        )
    (lb_test, lb_test_std), (lb_valid, lb_valid_std) = LEADERBOARD["test"], LEADERBOARD["valid"]
    lines += [
        "",
        f"| seeds | ran on | n | test Hits@{k} | validation Hits@{k} | standard error of the "
        f"test mean | test mean against {target} |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for where, entries in groups.items():
        lines.append(_summary_row(_seed_range(entries), where, entries, target))
    if len(groups) > 1 and protocol:
        lines.append(_summary_row("**OGB's protocol**", "PyG's sampler, any machine", protocol,
                                  target))  # fmt: skip
    if protocol and len(protocol) < len(ordered):
        lines.append(_summary_row("every seed", "any sampler", ordered, target))
    lines.append(
        f"| OGB leaderboard GCN | | 10 | {lb_test:.4f} ± {lb_test_std:.4f} | {lb_valid:.4f} ± "
        f"{lb_valid_std:.4f} | {lb_test_std / math.sqrt(10):.4f} | |"
    )
    lines.append("")
    if protocol:
        test_mean, test_std = mean_std([e["test"] for e in protocol])
        verdict = "**met**" if test_mean >= target else "**not met**"
        lines.append(
            f"Over the {len(protocol)} seeds of OGB's protocol: test Hits@{k} **{test_mean:.4f} "
            f"± {test_std:.4f}** (sample std). Target test Hits@{k} >= {target}, read from the "
            f"mean over those seeds: {verdict}."
        )
    else:
        lines.append(
            f"No seed ran OGB's protocol (PyG's negative_sampling): no verdict on the target "
            f"test Hits@{k} >= {target}."
        )
    late_mean, late_std = mean_std([late_test_mean(e) for e in protocol or ordered])
    over = "seeds of OGB's protocol" if protocol else "seeds"
    lines += [
        "",
        *statistics_lines(groups, protocol, k),
        f"- Without the selection, the mean test Hits@{k} of each seed's last {LATE} "
        f"evaluations averages {late_mean:.4f} ± {late_std:.4f} over the {over} (not OGB's "
        "statistic; it shows where the test score sits, apart from which evaluation the "
        "validation score happens to pick).",
    ]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """``text`` with what lies between the seed markers replaced by ``section``."""
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise ValueError(f"the markdown has no {BEGIN} ... {END} section to rewrite")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{section}\n{END}{tail}"


def plot_seeds(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    """Training loss, validation and test Hits@K of every seed (light) and the mean (dark).

    One colour per setting: the machine the seeds ran on, and the sampler if not PyG's.
    """
    groups = by_setting(runs)
    ordered = sorted(runs.values(), key=lambda e: e["seed"])
    metric = ordered[0]["metric"]
    records = {
        f"{where}, {len(entries)} seeds": [SimpleNamespace(history=e["history"]) for e in entries]
        for where, entries in groups.items()
    }
    panels = (
        ("loss", "training loss"),
        (f"valid_{metric}", f"validation {metric}"),
        (f"test_{metric}", f"test {metric}"),
    )
    evaluations = max(ordered, key=lambda e: len(e["history"]["eval_epoch"]))
    title = f"{ordered[0]['model'].upper()} on {ordered[0]['dataset']}: {len(ordered)} seeds"
    return plot_panels(
        records,
        panels,
        path,
        title=title,
        x=lambda key, _: None if key == "loss" else evaluations["history"]["eval_epoch"],
    )


def main() -> None:
    parser = collection_parser(__doc__, "link", "ddi")
    parser.add_argument("--plot", type=Path, default=RESULTS / "ddi_gcn_seeds.png")
    parser.add_argument("--target", type=float, default=0.37, help="test Hits@K target")
    args = parser.parse_args()
    collection = read_collection(args.json)
    runs = collection.setdefault("full_runs", {})
    try:
        for path in args.runs:
            merge_seeds(runs, split_seeds(json.loads(path.read_text()), str(path)), str(path))
        if not runs:
            parser.error("no full runs: pass the JSON of at least one bench link run")
        markdown = args.markdown.read_text() if args.markdown.exists() else f"{BEGIN}\n{END}\n"
        markdown = replace_section(markdown, seeds_markdown(runs, args.target))
    except (OSError, ValueError) as error:
        parser.error(str(error))
    atomic_write_json(args.json, collection)
    atomic_write_text(args.markdown, markdown)
    plot_seeds(runs, args.plot)
    print(f"wrote {args.json}, {args.markdown} and {args.plot} ({len(runs)} seeds)")


if __name__ == "__main__":
    main()
