"""benchmarks/ddi_table.py: full-protocol ogbl-ddi seeds merged into one table."""

from __future__ import annotations

import json
import math
import statistics
import sys

import ddi_table
import pytest
from scipy import stats as scipy_stats

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
    assert text.startswith("# ddi\n\nbefore\n<!-- seeds:begin -->\n| seed | ran on |")
    assert text.endswith("<!-- seeds:end -->\nafter\n") and "old table" not in text
    rows = [line for line in text.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert rows[0].startswith(
        "| 0 | CPU | **0.3000** | 0.5500 | 10 | 0.350, 0.300 | 0.3250 | -1.00 | 3.0 s | 10.0 min"
    )
    assert rows[1].startswith("| 1 | CPU | **0.4000** | 0.5700 |")
    mean, std = 0.35, statistics.stdev([0.30, 0.40])
    sem = std / math.sqrt(2)
    valid = f"{0.56:.4f} ± {statistics.stdev([0.55, 0.57]):.4f}"
    assert (
        f"| 0, 1 | CPU | 2 | {mean:.4f} ± {std:.4f} | {valid} | {sem:.4f} | 0.0200 below "
        f"({0.02 / sem:.2f} SE) |" in text
    )
    assert "**OGB's protocol**" not in text and "every seed" not in text  # one setting
    assert f"Over the 2 seeds of OGB's protocol: test Hits@20 **{mean:.4f} ± {std:.4f}**" in text
    assert "Target test Hits@20 >= 0.37, read from the mean over those seeds: **not met**" in text
    late = statistics.stdev([0.325, 0.425])  # each seed's mean test over its evaluations
    assert f"last 10 evaluations averages 0.3750 ± {late:.4f}" in text
    assert plot.stat().st_size > 0

    run(monkeypatch, "--json", collection, "--markdown", markdown, "--plot", plot, "--target", 0.3)
    assert "Target test Hits@20 >= 0.3, read from the mean over those seeds: **met**" in (
        markdown.read_text()
    )


def test_seeds_of_two_machines_are_summarised_apart_and_together(tmp_path, monkeypatch):
    cpu_tests, gpu_tests = [0.30, 0.36, 0.33], [0.41, 0.45, 0.38, 0.44]
    cpu = write(tmp_path / "cpu.json", bench_json([0, 1, 2], cpu_tests, [0.55] * 3))
    on_gpu = bench_json([10, 11, 12, 13], gpu_tests, [0.56] * 4)
    on_gpu["env"] = {**ENV, "device": "cuda (NVIDIA Test GPU)"}
    gpu = write(tmp_path / "gpu.json", on_gpu)
    markdown = tmp_path / "ddi.md"
    run(monkeypatch, gpu, cpu, "--json", tmp_path / "o.json", "--markdown", markdown,
        "--plot", tmp_path / "p.png")  # fmt: skip
    text = markdown.read_text()

    assert (
        "| 0 | CPU | **0.3000** |" in text and "| 13 | GPU (NVIDIA Test GPU) | **0.4400** |" in text
    )
    assert "| 0-2 | CPU | 3 | 0.3300 ± 0.0300 |" in text
    assert "| 10-13 | GPU (NVIDIA Test GPU) | 4 |" in text
    pooled = cpu_tests + gpu_tests
    mean, std = statistics.fmean(pooled), statistics.stdev(pooled)
    row = f"| **OGB's protocol** | PyG's sampler, any machine | 7 | {mean:.4f} ± {std:.4f} |"
    assert row in text and "every seed" not in text
    assert mean > 0.38 and "read from the mean over those seeds: **met**" in text

    # Welch's t from its formula; the p-value from the Welch-Satterthwaite degrees of freedom.
    va, vb = (statistics.variance(x) / len(x) for x in (cpu_tests, gpu_tests))
    t = (statistics.fmean(cpu_tests) - statistics.fmean(gpu_tests)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    p = 2 * scipy_stats.t.sf(abs(t), dof)
    assert f"CPU seeds against GPU (NVIDIA Test GPU): t = {t:.2f}, p = {p:.2g}." in text
    lb_mean, lb_std = ddi_table.LEADERBOARD["test"]
    va, vb = std**2 / 7, lb_std**2 / 10
    t = (mean - lb_mean) / math.sqrt(va + vb)
    p = 2 * scipy_stats.t.sf(abs(t), (va + vb) ** 2 / (va**2 / 6 + vb**2 / 9))
    assert (
        "the 7 seeds of OGB's protocol against the leaderboard's (its mean, std and 10 seeds): "
        f"t = {t:.2f}, p = {p:.2g}." in text
    )


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


def test_seeds_of_another_sampler_are_shown_but_left_out_of_the_verdict(tmp_path, monkeypatch):
    ogb = bench_json([0, 1], [0.36, 0.40], [0.55, 0.55])
    device = bench_json([5, 6, 7], [0.20, 0.22, 0.24], [0.55] * 3)
    device["options"] = {**device["options"], "negatives": "device"}
    markdown = tmp_path / "ddi.md"
    run(monkeypatch, write(tmp_path / "a.json", ogb), write(tmp_path / "b.json", device),
        "--json", tmp_path / "o.json", "--markdown", markdown, "--plot", tmp_path / "p.png")  # fmt: skip
    text = markdown.read_text()

    assert (
        "| 5 | CPU, device negatives | **0.2000** |" in text and "| 0 | CPU | **0.3600** |" in text
    )
    assert (
        "| 0, 1 | CPU | 2 | 0.3800 ± " in text
        and "| 5-7 | CPU, device negatives | 3 | 0.2200" in text
    )
    assert "| **OGB's protocol** | PyG's sampler, any machine | 2 | 0.3800 ± " in text
    every = statistics.fmean([0.36, 0.40, 0.20, 0.22, 0.24])
    assert f"| every seed | any sampler | 5 | {every:.4f} ± " in text
    # The verdict reads the two seeds of OGB's protocol (0.38), not all five (0.284).
    assert "Over the 2 seeds of OGB's protocol: test Hits@20 **0.3800 ± " in text
    assert "read from the mean over those seeds: **met**" in text
    assert "- Welch t-test of the test Hits@20, CPU seeds against CPU, device negatives: " in text
    assert "Bonferroni" not in text  # one pair only
    late = statistics.fmean([statistics.fmean([t + 0.05, t]) for t in (0.36, 0.40)])
    assert (
        f"evaluations averages {late:.4f} ± " in text and "over the seeds of OGB's protocol" in text
    )


def test_a_seed_number_already_collected_from_another_setting_is_refused(
    tmp_path, monkeypatch, capsys
):
    out, markdown = tmp_path / "o.json", tmp_path / "d.md"
    run(monkeypatch, write(tmp_path / "cpu.json", bench_json([0], [0.3], [0.5])),
        "--json", out, "--markdown", markdown, "--plot", tmp_path / "p.png")  # fmt: skip
    before = out.read_text()
    on_device = bench_json([0], [0.2], [0.5])
    on_device["options"] = {**on_device["options"], "negatives": "device"}
    with pytest.raises(SystemExit):
        run(monkeypatch, write(tmp_path / "dev.json", on_device), "--json", out,
            "--markdown", markdown)  # fmt: skip
    err = capsys.readouterr().err
    assert "seed 0 ran on CPU, device negatives, but seed 0 is already collected from CPU" in err
    assert "rerun with another --seed" in err and out.read_text() == before
    # The same setting replaces its seed.
    run(monkeypatch, write(tmp_path / "again.json", bench_json([0], [0.4], [0.5])), "--json", out,
        "--markdown", markdown, "--plot", tmp_path / "p.png")  # fmt: skip
    assert json.loads(out.read_text())["full_runs"]["0"]["test"] == 0.4


@pytest.mark.parametrize(
    ("device", "label"),
    [("cpu", "CPU"), ("cuda (NVIDIA H100 80GB HBM3)", "GPU (NVIDIA H100 80GB HBM3)"),
     ("cuda:1 (Tesla T4)", "GPU (Tesla T4)"), ("mps", "MPS")],
)  # fmt: skip
def test_machine_labels(device, label):
    assert ddi_table.machine({"env": {"device": device}}) == label
