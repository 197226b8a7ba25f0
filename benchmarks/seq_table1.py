"""The reference report's Table 1 beside a ``gnnkit seq bench`` sweep.

The report trains an LSTM and a biLSTM on random combinations (T = 5, 10, 15, three seeds) and
reports the validation loss and the batches until its 3-batch rule fired, mean +- std
(:data:`REPORT_TABLE1`). This script reads the JSON ``gnnkit seq bench --json`` wrote, adds
the report's numbers and the ratio of the batch counts to every row it has (``report``,
``batches_ratio``), and writes the table as JSON and Markdown.

Run (the bench defaults are the report's set-up; about 10 minutes on one core):
    gnnkit seq bench --threads 1 --json runs/seq_bench.json \\
        --plot benchmarks/results/seq_table1.png
    python benchmarks/seq_table1.py runs/seq_bench.json \\
        [--json benchmarks/results/seq_table1.json] [--markdown benchmarks/results/seq_table1.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gnnkit.seq.sweep import SUMMARY_COLUMNS, Column, format_mean_std, markdown_summary
from gnnkit.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"

#: The report's Table 1 (random combinations, mean +- std over three seeds):
#: ``(model, seq_len) -> {"loss": (mean, std), "accuracy": (mean, std), "batches": (mean, std)}``.
REPORT_TABLE1: dict[tuple[str, int], dict[str, tuple[float, float]]] = {
    ("lstm", 5): {"loss": (0.29, 2.7e-2), "accuracy": (1.0, 0.0), "batches": (25.0, 2.2)},
    ("lstm", 10): {"loss": (0.04, 1.0e-3), "accuracy": (1.0, 0.0), "batches": (124.7, 15.1)},
    ("lstm", 15): {"loss": (0.02, 5.9e-3), "accuracy": (1.0, 0.0), "batches": (544.7, 71.0)},
    ("bilstm", 5): {"loss": (0.23, 7.5e-3), "accuracy": (1.0, 0.0), "batches": (18.3, 0.5)},
    ("bilstm", 10): {"loss": (0.02, 4.6e-3), "accuracy": (1.0, 0.0), "batches": (80.7, 12.4)},
    ("bilstm", 15): {"loss": (0.02, 3.8e-3), "accuracy": (1.0, 0.0), "batches": (298.3, 21.5)},
}

#: The report's task: its Table 1 is on random combinations only.
REPORT_TASK = "randomcomb"


def compare(rows: list[dict[str, Any]], task: str = REPORT_TASK) -> list[dict[str, Any]]:
    """The summary rows with ``report`` (the report's row, or ``None``) and
    ``batches_ratio`` (our mean batches / the report's, or ``None``) added."""
    out = []
    for row in rows:
        report = REPORT_TABLE1.get((row["model"], row["seq_len"])) if task == REPORT_TASK else None
        batches = row["batches"]
        out.append(
            {
                **row,
                "report": {k: list(v) for k, v in report.items()} if report else None,
                "batches_ratio": batches[0] / report["batches"][0] if batches and report else None,
            }
        )
    return out


def _report_cell(key: str, fmt: str):
    def cell(row: dict[str, Any]) -> str:
        return format_mean_std(row["report"][key], fmt) if row["report"] else "-"

    return cell


#: The report's columns, after gnnkit's (:data:`gnnkit.seq.sweep.SUMMARY_COLUMNS`).
REPORT_COLUMNS: tuple[Column, ...] = (
    ("report loss", "r", _report_cell("loss", ".2f")),
    ("report batches", "r", _report_cell("batches", ".1f")),
    (
        "ours / report",
        "r",
        lambda row: f"**{row['batches_ratio']:.2f}x**" if row["batches_ratio"] else "-",
    ),
)


def markdown(payload: dict[str, Any]) -> str:
    """The bench payload, with :func:`compare` rows, as the Markdown table of results/."""
    return markdown_summary(
        payload,
        columns=(*SUMMARY_COLUMNS, *REPORT_COLUMNS),
        title=f"The reference report's Table 1 on {payload['task']}: gnnkit against the report",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bench", type=Path, help="the JSON of gnnkit seq bench --json")
    parser.add_argument("--json", type=Path, default=RESULTS / "seq_table1.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "seq_table1.md")
    args = parser.parse_args(argv)
    payload = json.loads(args.bench.read_text())
    payload["summary"] = compare(payload["summary"], payload["task"])
    text = markdown(payload)
    atomic_write_json(args.json, payload)
    atomic_write_text(args.markdown, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
