"""Train a character-level LSTM on a corpus and generate text with it.

Shows the whole gnnkit.seq.charlm workflow (a character-level LSTM generator after Graves,
arXiv:1308.0850, and Karpathy's char-rnn) in one script: load a corpus (a registered one or any UTF-8 file), train the ``cpu`` preset for a few hundred
batches with checkpoints, reload the model from its checkpoint, then continue prompts
greedily, with temperature and with top-k sampling, one prompt and a batch of them.

Run (a few minutes on 2 cores; the full ``cpu`` preset, 1,200 batches, takes about 12):
    GNNKIT_MIRROR=/work/shared/datasets python examples/char_generation.py \
        --corpus bartleby --steps 400 --out runs/example-bartleby
    python examples/char_generation.py --corpus my_text.txt --steps 400 --out runs/mine

Run it again with a larger ``--steps`` and the same ``--out`` to continue training.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from gnnkit.seq.charlm import (
    CharLSTM,
    TextDataset,
    Trainer,
    generate,
    generate_batch,
    get_preset,
    load_corpus,
    load_model,
    plot_history,
)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--corpus", default="bartleby", help="bartleby, pydoc-tutorial or a file")
parser.add_argument("--steps", type=int, default=400, help="training batches")
parser.add_argument("--out", type=Path, default=Path("runs/example-charlm"))
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(message)s")  # see evaluations and samples

# 1. The corpus: Project Gutenberg licence text is stripped; the last 10 % validates.
preset = get_preset("cpu")
config = preset.train.replace(steps=args.steps, eval_every=100, sample_every=200)
text, name = load_corpus(args.corpus)
data = TextDataset(text, config.seq_length, name=name)
print(data)

# 2. The model: embedding -> 2-layer LSTM -> dropout -> linear, vocabulary attached.
torch.manual_seed(0)
model = CharLSTM(data.vocabulary, preset.model)
print(model)

# 3. Training on gnnkit's training engine: Adam, lr decay, clipping; checkpoint.pt in --out
#    resumes bit for bit.
trainer = Trainer(model, data, config, out_dir=args.out, seed=0, preset="cpu")
if (args.out / "checkpoint.pt").is_file():
    trainer.resume()
history = trainer.run() if trainer.step < config.steps else trainer.history
summary = history.summary()
print(
    f"after {summary['steps']} batches: training accuracy {summary['train_eval_acc']:.1%}, "
    f"validation accuracy {summary['val_acc']:.1%}"
)
print("curves:", plot_history(history, args.out / "history.png", title=name))

# 4. The checkpoint (like the snapshots best.pt, step_*.pt) holds config, vocabulary and
#    weights: reload the model from it like a user would.
model = load_model(args.out / "checkpoint.pt")

prompt = "I would prefer not to." if name == "bartleby" else "for i in range"
prompt = "".join(c for c in prompt if c in model.vocabulary)  # keep known characters
print(f"\nprompt: {prompt!r}")
print("greedy       :", repr(generate(model, prompt, 80)))
# gnnkit divides the logits by T (T -> 0 is greedy, T = 1 the model's own distribution).
for temperature in (0.5, 1.0, 2.0):
    sample = generate(model, prompt, 80, strategy="temperature", temperature=temperature, seed=0)
    print(f"T = {temperature:<9}:", repr(sample))
print("top-k (k=3)  :", repr(generate(model, prompt, 80, strategy="top-k", k=3, seed=0)))

# 5. Batched generation: prompts of different lengths advance together, one step per char.
starts = [c for c in ("Th", "A", "He said") if all(ch in model.vocabulary for ch in c)]
for start, continuation in zip(starts, generate_batch(model, starts, 60), strict=True):
    print(f"{start!r:>10} -> {continuation!r}")
