"""Memory tasks with gnnkit.seq: which recurrent network remembers, and why.

Shows, on two synthetic long-time-lag tasks (Hochreiter & Schmidhuber 1997):

1. the data: a random-combinations sample (a permutation missing its last number) and a
   palindrome (whose last digit repeats the first);
2. training an LSTM, a biLSTM and a vanilla RNN with gnnkit.seq.fit's protocol (Adam 1e-3,
   batch 128, clipping 10, stop after 3 perfect batches confirmed on fresh samples) and
   reading the result;
3. vanishing gradients (Bengio, Simard & Frasconi 1994): how strongly the last step's loss
   reaches back to each hidden state.

Run:
    .venv/bin/python examples/sequence_memory.py              # about a minute on one core
    .venv/bin/python examples/sequence_memory.py --seq-len 10  # longer sequences, slower
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gnnkit.seq import (
    Palindrome,
    RandomCombinations,
    TrainConfig,
    build_model,
    gradient_norms,
    run_experiment,
)

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seq-len", type=int, default=5, help="T for the training runs (default: 5)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--max-batches", type=int, default=2000)
args = parser.parse_args()
torch.set_num_threads(1)  # small models: one thread is fastest on a shared CPU

# 1. The data ------------------------------------------------------------------------------
rng = np.random.default_rng(args.seed)
tokens, label = RandomCombinations(6).sample(1, rng)
print(f"random combinations, T=6: input {tokens[0].tolist()} -> label {int(label[0])}")
tokens, label = Palindrome(9).sample(1, rng)
print(f"palindrome, T=9:          input {tokens[0].tolist()} -> label {int(label[0])}\n")

# 2. Training with gnnkit.seq.fit's protocol -----------------------------------------------
config = TrainConfig(max_batches=args.max_batches)
print(f"random combinations, T={args.seq_len}, embedding {2 * args.seq_len}, seed {args.seed}:")
for model in ("lstm", "bilstm", "rnn"):
    result = run_experiment("randomcomb", model, args.seq_len, seed=args.seed, config=config)
    when = (
        f"converged after {result.batches_to_converge:4d} batches"
        if result.converged
        else f"not converged in {result.batches} batches"
    )
    print(
        f"  {model:7s} {when}; validation accuracy {result.val_acc:.4f}, "
        f"loss {result.val_loss:.3f} ({result.seconds:.1f} s)"
    )
# result.loss and result.accuracy hold the per-batch curves, e.g. for plotting:
print(f"  last run's first/last training loss: {result.loss[0]:.3f} / {result.loss[-1]:.3f}\n")

# 3. Vanishing gradients -------------------------------------------------------------------
task = Palindrome(30)
batch = task.validation_set(128, seed=args.seed)
print("||dL/dh_t|| for the last step's loss, palindrome T=30, freshly initialised models:")
curves = {}
for label, name, forget_bias in [
    ("vanilla RNN", "rnn", None),
    ("LSTM (PyTorch init)", "lstm", None),
    ("LSTM (forget bias 1)", "lstm", 1.0),
    ("LSTM (forget bias 3)", "lstm", 3.0),
]:
    torch.manual_seed(args.seed)
    model = build_model(name, task, forget_bias=forget_bias)
    curves[label] = norms = gradient_norms(model, batch)
    per_step = (norms[0] / norms[-1]) ** (1 / (len(norms) - 1))
    print(
        f"  {label:22s} t=1: {norms[0]:.1e}  t=29: {norms[-1]:.1e}  "
        f"(x{per_step:.2f} per step back in time)"
    )
print(
    "\nThe RNN's gradient halves at every step: after 28 steps almost nothing of the loss "
    "reaches the\nfirst digit, which is exactly what a palindrome's label depends on. The "
    "LSTM's additive cell\nupdate passes gradients through the forget gate f; starting with "
    "f close to 1 keeps them alive."
)
