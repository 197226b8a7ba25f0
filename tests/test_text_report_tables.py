"""benchmarks/charlm.py --tables-only: the report's Tables 2 and 3 for trained runs."""

from __future__ import annotations

import charlm
import pytest
import torch

from gnnkit.seq.charlm import CharLSTM, CharLSTMConfig, TextDataset, TrainConfig, Trainer

CORPUS = (
    "I would prefer not to, said Bartleby. for i in range(10): print(i)\n"
    "The scrivener sat in the office by the window, copying law papers.\n"
) * 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """A 4-batch run with snapshots at 2 and 4, where the script looks for Bartleby's."""
    root = tmp_path_factory.mktemp("runs")
    config = TrainConfig(
        steps=4, batch_size=4, seq_length=12, eval_every=2, eval_windows=4, sample_every=0,
        checkpoint_every=2, snapshot_every=2, lr_decay_every=2,
    )  # fmt: skip
    data = TextDataset(CORPUS, config.seq_length, name="bartleby")
    torch.manual_seed(0)
    model = CharLSTM(data.vocabulary, CharLSTMConfig(8, 16, 1, 0.0))
    Trainer(model, data, config, out_dir=root / "bartleby-cpu", preset="cpu").run()
    return root


def test_report_tau_mapping():
    assert charlm.report_tau(0.5) == 2.0
    assert charlm.report_tau(2.0) == 0.5
    assert [charlm.report_tau(t) for t in charlm.REPORT_TEMPERATURES] == [2.0, 1.0, 0.5]


def test_tables_only_writes_the_reports_layout(runs, tmp_path, sample_table_rows):
    assert charlm.main(["--runs", str(runs), "--tables-only", "--tables-dir", str(tmp_path)]) == 0
    # only the runs that exist get a table; the tutorial's run is missing here
    assert sorted(p.name for p in tmp_path.iterdir()) == ["charlm_table_bartleby.md"]
    lines = (tmp_path / "charlm_table_bartleby.md").read_text().splitlines()
    assert lines[0].startswith("Table 2: samples of 30 characters from random start characters")
    sample_table_rows(
        lines,
        columns=["bartleby"],
        greedy={2: 5, 4: 5},
        temperatures=["0.5 (report's τ = 2)", "1 (report's τ = 1)", "2 (report's τ = 0.5)"],
        prompts=charlm.REPORT_PROMPTS,
    )
    assert any(line.startswith("Table 3: greedy completions") for line in lines)


def test_other_presets_get_their_own_file_name(runs, tmp_path):
    (runs / "bartleby-cpu").rename(runs / "bartleby-paper")
    try:
        written = charlm.write_tables(runs, "paper", tmp_path)
    finally:
        (runs / "bartleby-paper").rename(runs / "bartleby-cpu")
    assert [p.name for p in written] == ["charlm_paper_table_bartleby.md"]
