"""Character-level generative LSTM (the reference report's section 2).

Example::

    from gnnkit.seq.charlm import CharLSTM, TextDataset, Trainer, generate, get_preset, load_corpus

    text, name = load_corpus("bartleby")
    preset = get_preset("cpu")
    data = TextDataset(text, preset.train.seq_length, name=name)
    model = CharLSTM(data.vocabulary, preset.model)
    history = Trainer(model, data, preset.train, out_dir="runs/bartleby").run()
    print(generate(model, "I would prefer", 50, strategy="temperature", temperature=0.8))
"""

from gnnkit.seq.charlm.checkpoint import load_checkpoint, load_model, save_model
from gnnkit.seq.charlm.config import PRESETS, CharLSTMConfig, Preset, TrainConfig, get_preset
from gnnkit.seq.charlm.corpus import TextDataset, Vocabulary, load_corpus, strip_gutenberg
from gnnkit.seq.charlm.generate import STRATEGIES, generate, generate_batch, pick_next, report_tau
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.seq.charlm.samples import load_run, sample_table
from gnnkit.seq.charlm.training import History, Trainer, evaluate, plot_history

__all__ = [
    "PRESETS",
    "STRATEGIES",
    "CharLSTM",
    "CharLSTMConfig",
    "History",
    "Preset",
    "TextDataset",
    "TrainConfig",
    "Trainer",
    "Vocabulary",
    "evaluate",
    "generate",
    "generate_batch",
    "get_preset",
    "load_checkpoint",
    "load_corpus",
    "load_model",
    "load_run",
    "pick_next",
    "plot_history",
    "report_tau",
    "sample_table",
    "save_model",
    "strip_gutenberg",
]
