"""A character-level generative LSTM language model.

After Graves, *Generating Sequences With Recurrent Neural Networks* (arXiv:1308.0850) and
Karpathy's char-rnn, on the LSTM of Hochreiter & Schmidhuber (Neural Computation 1997):
corpora and vocabularies (:class:`TextDataset`, :class:`Vocabulary`), the model
(:class:`CharLSTM`), training on the training engine (:class:`Trainer`, :class:`CharLMTask`),
generation that carries the LSTM state (:func:`generate`, :func:`generate_batch`), model files
(:func:`save_model`, :func:`load_model`) and sample tables (:func:`sample_table`).

Example::

    from gnnkit.seq.charlm import CharLSTM, TextDataset, Trainer, generate, get_preset, load_corpus

    text, name = load_corpus("bartleby")
    preset = get_preset("cpu")
    data = TextDataset(text, preset.train.seq_length, name=name)
    model = CharLSTM(data.vocabulary, preset.model)
    history = Trainer(model, data, preset.train, out_dir="runs/bartleby").run()
    print(generate(model, "I would prefer", 50, strategy="temperature", temperature=0.8))
"""

from gnnkit.seq.charlm.config import PRESETS, CharLSTMConfig, Preset, TrainConfig, get_preset
from gnnkit.seq.charlm.corpus import TextDataset, Vocabulary, load_corpus, strip_gutenberg
from gnnkit.seq.charlm.generate import STRATEGIES, generate, generate_batch, pick_next
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.seq.charlm.samples import completions_table, load_run, sample_table, samples_table
from gnnkit.seq.charlm.snapshot import load_model, read_model_file, save_model
from gnnkit.seq.charlm.task import CharLMTask
from gnnkit.seq.charlm.training import History, Trainer, evaluate, plot_history

__all__ = [
    "PRESETS",
    "STRATEGIES",
    "CharLMTask",
    "CharLSTM",
    "CharLSTMConfig",
    "History",
    "Preset",
    "TextDataset",
    "TrainConfig",
    "Trainer",
    "Vocabulary",
    "completions_table",
    "evaluate",
    "generate",
    "generate_batch",
    "get_preset",
    "load_corpus",
    "load_model",
    "load_run",
    "pick_next",
    "plot_history",
    "read_model_file",
    "sample_table",
    "samples_table",
    "save_model",
    "strip_gutenberg",
]
