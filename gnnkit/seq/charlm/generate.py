r"""Text generation from a :class:`~gnnkit.seq.charlm.CharLSTM` that carries the LSTM state.

The prompt is read once, in one forward pass; each new character then costs one LSTM step on
the carried state ``(h, c)``, so generating :math:`n` characters is :math:`O(n)` work, not the
:math:`O(n^2)` of re-reading the growing text.

Strategies, for logits :math:`z` over the vocabulary:

- ``"greedy"``: :math:`\arg\max_i z_i` (deterministic);
- ``"temperature"``: sample from :math:`\mathrm{softmax}(z / T)`; :math:`T \to 0` tends to greedy,
  :math:`T = 1` is the model's distribution, :math:`T \to \infty` tends to uniform;
- ``"top-k"``: the same, restricted to the :math:`k` most likely characters.

State carrying and temperature sampling as in Graves, *Generating Sequences With Recurrent
Neural Networks* (arXiv:1308.0850), and Karpathy's char-rnn.

NOTE: some texts *multiply* the logits by an inverse temperature :math:`\tau` (large
:math:`\tau` = greedy). gnnkit divides by :math:`T`, like char-rnn and PyTorch's examples, so
such a :math:`\tau` is :math:`1 / T` here: :math:`\tau = 0.5, 1, 2` are :math:`T = 2, 1, 0.5`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from gnnkit.errors import InputError
from gnnkit.seq.charlm.corpus import Unknown
from gnnkit.seq.charlm.model import CharLSTM, State
from gnnkit.utils.checks import check_seed

__all__ = ["STRATEGIES", "generate", "generate_batch", "pick_next"]

#: The sampling strategies :func:`generate` accepts.
STRATEGIES = ("greedy", "temperature", "top-k")
#: :func:`generate`'s temperature unless told otherwise (the model's own distribution).
DEFAULT_TEMPERATURE = 1.0


def _check_sampling(strategy: str, temperature: float, k: int | None) -> None:
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    if strategy == "greedy":
        if k is not None:
            raise InputError(
                f"k={k!r} is only used by strategy='top-k' (got strategy='greedy'); "
                "drop k or choose top-k"
            )
        # greedy takes the argmax, which no temperature changes: only the default passes
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or temperature != DEFAULT_TEMPERATURE
        ):
            raise InputError(
                f"temperature={temperature!r} is only used by strategy='temperature' or "
                "'top-k' (got strategy='greedy'); drop temperature or choose one of those"
            )
        return
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or math.isnan(temperature)
    ):
        raise InputError(f"temperature must be a number > 0, got {temperature!r}")
    if temperature <= 0 or math.isinf(temperature):
        raise InputError(
            f"temperature must be a finite number > 0, got {temperature!r}; for the most likely "
            "character at every step (the T -> 0 limit) use strategy='greedy' (--strategy greedy)"
        )
    if strategy == "top-k":
        if k is None:
            raise InputError("strategy='top-k' needs k, the number of candidates (k >= 1)")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be an integer >= 1, got {k!r}")
    elif k is not None:
        raise InputError(
            f"k={k!r} is only used by strategy='top-k' (got strategy={strategy!r}); "
            "drop k or choose top-k"
        )


def pick_next(
    logits: Tensor,
    strategy: str = "greedy",
    *,
    temperature: float = 1.0,
    k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The next character id of every row of ``logits`` ``(B, V)`` -> ``(B,)``.

    ``k`` larger than the vocabulary is plain temperature sampling. Arguments are not checked
    here (see :func:`generate`).
    """
    if strategy == "greedy":
        return logits.argmax(dim=-1)
    if strategy == "top-k" and k < logits.shape[-1]:
        values, indices = logits.topk(k, dim=-1)  # (B, k)
        probs = _probabilities(values, temperature)
        choice = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        return indices.gather(-1, choice)[:, 0]
    probs = _probabilities(logits, temperature)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _probabilities(logits: Tensor, temperature: float) -> Tensor:
    """:math:`\\mathrm{softmax}(z / T)`, finite for every finite ``T > 0``.

    NOTE: a tiny ``T`` (1e-45) overflows ``z / T`` to infinities and softmax to NaN; then the
    logits are shifted by their maximum first (the same distribution: all mass on the largest
    logits). Ordinary temperatures take the unshifted path, bit for bit as before.
    """
    scaled = logits.float() / temperature
    if not torch.isfinite(scaled).all():
        shifted = logits.double() - logits.double().amax(dim=-1, keepdim=True)
        scaled = shifted / temperature  # (B, V), in [-inf, 0]; float64 keeps T > 0 from 0
    return torch.softmax(scaled, dim=-1)


@contextlib.contextmanager
def _native_lstm_kernel(device: torch.device) -> Iterator[None]:
    """Use PyTorch's own CPU LSTM kernel instead of oneDNN's for one-step calls.

    oneDNN prepares its RNN primitive (weight reorders included) on every call: about 1 ms for
    a 2 x 256 LSTM at batch 1, five times the native kernel's 0.2 ms. For training (long
    sequences, large batches) oneDNN is the faster one and stays on.
    NOTE: the switch (``torch.backends.mkldnn.enabled``) is process-wide while it lasts.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def _read_prompts(model: CharLSTM, ids: list[Tensor]) -> tuple[Tensor, State]:
    """Logits after the last prompt character of each row ``(B, V)`` and the state there."""
    device = model.head.weight.device
    lengths = [t.numel() for t in ids]
    if len(set(lengths)) == 1:
        batch = torch.stack(ids).to(device)  # (B, P)
        out, state = model.lstm(model.embedding(batch))
        return model.head(out[:, -1]), state
    # Prompts of different lengths: pack them so each row's state stops at its own last
    # character (exact, no padding ever enters the LSTM).
    padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True).to(device)
    packed = pack_padded_sequence(
        model.embedding(padded), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    _, (h, c) = model.lstm(packed)
    return model.head(h[-1]), (h, c)


def prompt_list(prompts: Any, single: str) -> list[str]:
    """``prompts`` (any iterable of str but one str, which would be split into characters) as
    a list, read once; ``single`` ends the refusal of one str, ``{prompt}`` standing for it."""
    if isinstance(prompts, str):
        fix = single.format(prompt=repr(prompts))
        raise InputError(f"prompts must be a list of strings; {fix}")
    if not isinstance(prompts, Iterable):
        raise InputError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    prompts = list(prompts)
    for n, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"prompt {n} must be a str, got {type(prompt).__name__}")
    return prompts


def _encode_prompts(model: CharLSTM, prompts: Sequence[str], unknown: Unknown) -> list[Tensor]:
    """Every prompt's character ids (``prompt_list``'s strings), refusing the prompts that
    are empty (after skipping)."""
    ids = []
    for n, prompt in enumerate(prompts):
        what = "prompt" if len(prompts) == 1 else f"prompt {n}"
        encoded = model.vocabulary.encode(prompt, unknown=unknown, what=what)
        if encoded.numel() == 0:
            raise InputError(
                f"{what} is empty{' after skipping unknown characters' if prompt else ''}; "
                "give at least one character to start from"
            )
        ids.append(encoded)
    return ids


def generate_batch(
    model: CharLSTM,
    prompts: Iterable[str],
    length: int = 100,
    *,
    strategy: str = "greedy",
    temperature: float = DEFAULT_TEMPERATURE,
    k: int | None = None,
    seed: int | None = None,
    unknown: Unknown = "error",
) -> list[str]:
    """Continue several prompts at once (one batched LSTM step per new character).

    Args:
        model (CharLSTM): the model (put in eval mode for the call, then restored).
        prompts (iterable of str): non-empty prompts (a list, a tuple, a generator...; not
            one str); lengths may differ.
        length (int, optional): new characters per prompt. (default: 100)
        strategy (str, optional): ``"greedy"``, ``"temperature"`` or ``"top-k"``.
            (default: ``"greedy"``)
        temperature (float, optional): :math:`T > 0` for the sampling strategies (the
            logits are divided by :math:`T`). Greedy refuses any other value than the
            default, as no temperature changes its choice. (default: 1.0)
        k (int, optional): candidates kept by ``"top-k"`` (required there, refused elsewhere).
        seed (int, optional): seed of the sampler, a 64-bit integer (what
            ``torch.Generator.manual_seed`` takes); the same seed gives the same text.
            (default: a fresh random seed)
        unknown (str, optional): ``"error"`` refuses prompt characters outside the vocabulary
            and lists them; ``"skip"`` drops them. (default: ``"error"``)

    Returns:
        The continuations (without their prompts), one per prompt, each ``length`` characters.
    """
    if not isinstance(model, CharLSTM):
        raise InputError(f"model must be a CharLSTM, got {type(model).__name__}")
    texts = prompt_list(prompts, "for one prompt use generate()")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise InputError(f"length must be an integer >= 0, got {length!r}")
    _check_sampling(strategy, temperature, k)
    check_seed("seed", seed)
    if not texts:
        return []
    ids = _encode_prompts(model, texts, unknown)
    device = model.head.weight.device
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _native_lstm_kernel(device):
            out = torch.empty((len(ids), length), dtype=torch.long, device=device)
            if length:
                logits, state = _read_prompts(model, ids)
                for i in range(length):
                    nxt = pick_next(
                        logits, strategy, temperature=temperature, k=k, generator=generator
                    )
                    out[:, i] = nxt
                    if i + 1 < length:
                        logits, state = model.step(nxt, state)
    finally:
        model.train(was_training)
    decode = model.vocabulary.decode
    return [decode(row) for row in out.cpu().tolist()]


def generate(model: CharLSTM, prompt: str, length: int = 100, **options: Any) -> str:
    """Continue one prompt by ``length`` characters; returns the continuation only.

    ``options`` are :func:`generate_batch`'s keyword arguments (``strategy``,
    ``temperature``, ``k``, ``seed``, ``unknown``), which also documents the others. Example::

        text = generate(model, "I would prefer not to.", 100, strategy="temperature",
                        temperature=0.8, seed=0)
    """
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a str, got {type(prompt).__name__}")
    return generate_batch(model, [prompt], length, **options)[0]
