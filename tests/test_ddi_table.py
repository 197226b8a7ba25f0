"""benchmarks/ddi_table.py: full-protocol ogbl-ddi seeds merged into one table."""

from __future__ import annotations

import json
import math
import statistics
import sys

import pytest

from benchmarks import ddi_table

ENV = {"cpu": "Test CPU", "threads": 1, "device": "cpu"}


def bench_json(seeds, tests, valid_peaks, finished=None, epochs=10):
    """A ``bench link --json`` payload: evaluations every 5 epochs, one history per seed."""
    histories = []
    for test, peak in zip(tests, valid_peaks, strict=True):
        histories.append(
            {
                "loss": [1.0 / (e + 1) for e in range(epochs)],
                "epoch_time": [2.0, 4.0, 3.0] + [3.0] * (epochs - 3),
                "eval_epoch": [5, 10],
                "valid_hits@20": [peak - 0.1, peak],
                "test_hits@20": [test + 0.05, test],
            }
        )
    finished = finished or ["epochs"] * len(seeds)
    return {
        "dataset": "ogbl-ddi",
        "model": "gcn",
        "metric": "hits@20",
        "gnnkit": {
            "test": list(tests),
            "best_epoch": [10] * len(seeds),
            "epochs_run": [epochs if f == "epochs" else 5 for f in finished],
            "finished": finished,
            "wall_s": [600.0] * len(seeds),
            "history": histories,
        },
        "epochs": epochs,
        "seeds": list(seeds),
        "options": {"epochs": epochs},
        "env": ENV,
    }


def run(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["ddi_table.py", *map(str, args)])
    ddi_table.main()


def write(path, payload):
    path.write_text(json.dumps(payload))
    return path


def test_seeds_merge_and_the_marked_section_is_rewritten(tmp_path, monkeypatch):
    collection = write(
        tmp_path / "ddi.json",
        {"epoch_time_compare": {"speedup": 2.0}, "full_runs": {}},
    )
    first = write(tmp_path / "a.json", bench_json([0, 1], [0.30, 0.50], [0.55, 0.56]))
    markdown = tmp_path / "ddi.md"
    markdown.write_text(
        "# ddi\n\nbefore\n<!-- seeds:begin -->\nold table\n<!-- seeds:end -->\nafter\n"
    )
    plot = tmp_path / "seeds.png"
    run(monkeypatch, first, "--json", collection, "--markdown", markdown, "--plot", plot)
    # A later run of seed 1 replaces its entry; seed 0 and the other keys stay.
    second = write(tmp_path / "b.json", bench_json([1], [0.40], [0.57]))
    run(monkeypatch, second, "--json", collection, "--markdown", markdown, "--plot", plot)

    merged = json.loads(collection.read_text())
    assert merged["epoch_time_compare"] == {"speedup": 2.0}
    assert sorted(merged["full_runs"]) == ["0", "1"]
    assert merged["full_runs"]["1"]["test"] == 0.40
    assert merged["full_runs"]["0"]["valid"] == 0.55  # the best validation evaluation
    assert merged["full_runs"]["0"]["epoch_s_median"] == 3.0

    text = markdown.read_text()
    assert text.startswith("# ddi\n\nbefore\n<!-- seeds:begin -->\n| seed |")
    assert text.endswith("<!-- seeds:end -->\nafter\n") and "old table" not in text
    rows = [line for line in text.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert rows[0].startswith(
        "| 0 | **0.3000** | 0.5500 | 10 | 0.350, 0.300 | 0.3250 | -1.00 | 3.0 s | 10.0 min"
    )
    assert rows[1].startswith("| 1 | **0.4000** | 0.5700 |")
    mean, std = 0.35, statistics.stdev([0.30, 0.40])
    assert f"**{mean:.4f} ± {std:.4f}**" in text
    assert "Target test Hits@20 >= 0.37: **not met**" in text
    sem = std / math.sqrt(2)
    assert f"{std:.4f} / √2 = {sem:.4f}; the mean lies 0.0200 below the target, " in text
    assert f", {0.02 / sem:.2f} standard errors." in text
    late = statistics.stdev([0.325, 0.425])  # each seed's mean test over its evaluations
    assert f"last 10 evaluations averages 0.3750 ± {late:.4f}" in text
    assert plot.stat().st_size > 0

    run(monkeypatch, "--json", collection, "--markdown", markdown, "--plot", plot, "--target", 0.3)
    assert "Target test Hits@20 >= 0.3: **met**" in markdown.read_text()


def test_an_unfinished_seed_is_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    partial = write(tmp_path / "p.json", bench_json([2], [0.3], [0.5], finished=["time-budget"]))
    out = tmp_path / "ddi.json"
    with pytest.raises(SystemExit):
        run(monkeypatch, partial, "--json", out, "--markdown", tmp_path / "d.md")
    err = capsys.readouterr().err
    assert "seed 2 stopped at epoch 5 of 10 (time-budget)" in err and "--resume" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"dataset": "ogbg-molesol", "gnnkit": {"test_mean": 1.0}}, "is not a `gnnkit bench"),
        (None, "Expecting value"),
    ],
)
def test_files_that_are_not_bench_link_results_are_refused(
    tmp_path, monkeypatch, capsys, content, message
):
    path = tmp_path / "x.json"
    path.write_text("" if content is None else json.dumps(content))
    with pytest.raises(SystemExit):
        run(monkeypatch, path, "--json", tmp_path / "o.json", "--markdown", tmp_path / "o.md")
    assert message in capsys.readouterr().err


def test_a_markdown_without_the_markers_is_refused(tmp_path, monkeypatch, capsys):
    run_file = write(tmp_path / "a.json", bench_json([0], [0.3], [0.5]))
    markdown = tmp_path / "ddi.md"
    markdown.write_text("# hand-written, no markers\n")
    with pytest.raises(SystemExit):
        run(monkeypatch, run_file, "--json", tmp_path / "o.json", "--markdown", markdown)
    assert "no <!-- seeds:begin --> ... <!-- seeds:end --> section" in capsys.readouterr().err
    assert markdown.read_text() == "# hand-written, no markers\n"


def test_late_correlation_against_numpy_and_constant_series():
    numpy = pytest.importorskip("numpy")
    valid = [0.1, 0.4, 0.35, 0.5, 0.45, 0.2]
    test = [0.3, 0.2, 0.45, 0.4, 0.1, 0.5]
    entry = {"metric": "hits@20", "history": {"valid_hits@20": valid, "test_hits@20": test}}
    expected = numpy.corrcoef(valid[-4:], test[-4:])[0, 1]
    assert ddi_table.late_correlation(entry, n=4) == pytest.approx(expected)
    entry["history"]["valid_hits@20"] = [0.5] * 6
    assert math.isnan(ddi_table.late_correlation(entry))
