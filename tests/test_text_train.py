"""Training, checkpoints and resume of gnnkit.seq.charlm."""

from __future__ import annotations

import fractions

import pytest
import torch

from gnnkit.errors import CheckpointError, InputError
from gnnkit.seq.charlm import (
    CharLSTM,
    CharLSTMConfig,
    TextDataset,
    TrainConfig,
    Trainer,
    Vocabulary,
    completions_table,
    evaluate,
    generate,
    load_model,
    load_run,
    plot_history,
    read_model_file,
    sample_table,
    save_model,
)
from gnnkit.seq.charlm.samples import Run
from gnnkit.seq.charlm.snapshot import RESERVED_KEYS, model_payload
from gnnkit.seq.charlm.training import CHECKPOINT_NAME
from gnnkit.train.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from gnnkit.train.engine import NonFiniteLossError
from gnnkit.utils.io import atomic_torch_save

SENTENCE = "the quick brown fox jumps over the lazy dog\n"
TINY = CharLSTMConfig(embedding_dim=8, hidden_size=24, num_layers=1, dropout=0.0)
SMALL = CharLSTMConfig(embedding_dim=8, hidden_size=16, num_layers=2, dropout=0.3)
CORPUS = (SENTENCE + "a stitch in time saves nine, said the scrivener.\n") * 12
PROMPTS = ("I would prefer not to.", "for i in range", "Do Re Mi")


pytestmark = pytest.mark.usefixtures("one_thread")


def _quick(**kwargs) -> TrainConfig:
    values = {
        "steps": 6,
        "batch_size": 4,
        "seq_length": 12,
        "lr": 1e-2,
        "weight_decay": 0.0,
        "lr_decay_every": 2,
        "lr_decay": 0.9,
        "eval_every": 3,
        "eval_windows": 8,
        "sample_every": 3,
        "sample_length": 10,
        "checkpoint_every": 3,
        "snapshot_every": 3,
        "val_fraction": 0.1,
        **kwargs,
    }
    return TrainConfig(**values)


def _setup(config: TrainConfig, model_config: CharLSTMConfig = SMALL, text: str = CORPUS):
    data = TextDataset(text, config.seq_length, val_fraction=config.val_fraction, name="toy")
    torch.manual_seed(0)
    return CharLSTM(data.vocabulary, model_config), data


def test_tiny_model_overfits_a_short_string():
    # one window holding the whole sentence: the model must memorise it from its first letter
    config = _quick(
        steps=150,
        batch_size=2,
        seq_length=len(SENTENCE) - 1,
        lr=2e-2,
        lr_decay=1.0,
        val_fraction=0.0,
        eval_every=0,
        sample_every=0,
        snapshot_every=0,
    )
    model, data = _setup(config, TINY, SENTENCE)
    assert len(data) == 1
    history = Trainer(model, data, config).run()
    assert history.train_acc[-1] == 1.0
    loss, acc = evaluate(model, *data.windows("train"))
    assert acc == 1.0 and loss < 0.1
    assert "t" + generate(model, "t", len(SENTENCE) - 1) == SENTENCE
    assert history.train_loss[-1] < history.train_loss[0] / 10


def test_history_and_outputs(tmp_path):
    config = _quick()
    model, data = _setup(config)
    trainer = Trainer(model, data, config, out_dir=tmp_path, preset="test")
    history = trainer.run()
    assert len(history.train_loss) == len(history.train_acc) == len(history.lr) == 6
    assert history.eval_step == [3, 6]
    assert len(history.val_acc) == len(history.train_eval_acc) == 2
    assert [s[0] for s in history.samples] == [3, 6]
    assert all(len(s[1]) == 10 for s in history.samples)
    # lr x 0.9 every 2 batches
    assert history.lr == pytest.approx([1e-2, 1e-2, 9e-3, 9e-3, 8.1e-3, 8.1e-3])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt",
        CHECKPOINT_NAME,
        "step_000003.pt",
        "step_000006.pt",
    ]
    summary = history.summary()
    assert summary["steps"] == 6 and 0 <= summary["val_acc"] <= 1
    # best.pt holds the weights of the evaluation with the lowest validation loss
    best = history.eval_step[history.val_loss.index(min(history.val_loss))]
    assert summary["best_step"] == best
    assert read_model_file(tmp_path / "best.pt")["step"] == best
    assert plot_history(history, tmp_path / "h.png", title="toy").stat().st_size > 0


def test_checkpoint_round_trip(tmp_path):
    config = _quick(steps=3)
    model, data = _setup(config)
    Trainer(model, data, config, out_dir=tmp_path).run()
    # plain torch.load with weights_only=True reads it (tensors, dicts, lists, str, numbers)
    raw = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    # the training engine's one checkpoint format; the character model's parts under "task"
    assert raw["format"] == CHECKPOINT_FORMAT and raw["epoch"] == 3
    assert raw["finished"] == "epochs"
    assert raw["task"]["vocabulary"] == data.vocabulary.to_list()
    assert raw["task"]["model_config"] == SMALL.to_dict() and raw["task"]["seed"] == 0
    assert raw["task"]["corpus"]["sha256"] == data.sha256
    snapshot = torch.load(tmp_path / "step_000003.pt", weights_only=True)
    assert snapshot["format"] == "gnnkit.seq.charlm.CharLSTM" and snapshot["kind"] == "model"
    for path in (tmp_path / CHECKPOINT_NAME, tmp_path / "step_000003.pt"):
        loaded = load_model(path)
        assert loaded.vocabulary == model.vocabulary and loaded.config == model.config
        assert not loaded.training
        for key, value in model.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key])
        assert generate(loaded, "the ", 20) == generate(model, "the ", 20)
    save_model(model, tmp_path / "copy.pt", note="x")
    assert read_model_file(tmp_path / "copy.pt")["note"] == "x"
    # an extra entry the file could not be read back with is refused, and nothing written
    with pytest.raises(InputError, match=r"entry ratio has type fractions\.Fraction, which torch"):
        save_model(model, tmp_path / "ratio.pt", ratio=fractions.Fraction(1, 3))
    assert not (tmp_path / "ratio.pt").exists()


@pytest.mark.parametrize("key", RESERVED_KEYS)
def test_save_model_refuses_extra_entries_that_replace_its_own(tmp_path, key):
    model, _ = _setup(_quick())
    with pytest.raises(
        InputError,
        match=rf"^extra entry '{key}' is reserved for the model file's own data \(reserved: "
        r"format, version, kind, vocabulary, model_config, state_dict\); save it under",
    ):
        save_model(model, tmp_path / "m.pt", step=1, **{key: {}})
    assert not (tmp_path / "m.pt").exists()
    # every reserved key is one the file itself writes
    assert set(RESERVED_KEYS) <= set(read_model_file(save_model(model, tmp_path / "ok.pt")))


def test_save_model_refuses_another_module(tmp_path):
    with pytest.raises(
        InputError, match=r"model must be a gnnkit\.seq\.charlm\.CharLSTM, got Linear; save"
    ):
        save_model(torch.nn.Linear(2, 2), tmp_path / "linear.pt")
    assert not (tmp_path / "linear.pt").exists()


def test_resume_is_equivalent_to_an_uninterrupted_run(tmp_path):
    config = _quick(steps=6)
    model, data = _setup(config)  # dropout 0.3: the RNG state must be restored too
    straight = Trainer(model, data, config, out_dir=tmp_path / "a")
    straight.run()

    model_b, _ = _setup(config)
    Trainer(model_b, data, config, out_dir=tmp_path / "b").run(steps=3)
    torch.manual_seed(123)  # disturb the global RNG: resume must restore it
    model_c = CharLSTM(data.vocabulary, SMALL)
    resumed = Trainer(model_c, data, config, out_dir=tmp_path / "b", seed=99)
    assert resumed.resume() == 3
    resumed.run()
    assert resumed.step == 6
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, model_c.state_dict()[key]), key
    assert resumed.history.train_loss == straight.history.train_loss
    assert resumed.history.lr == straight.history.lr


def _same_run(a: Trainer, b: Trainer) -> None:
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    first, second = a.history.to_dict(), b.history.to_dict()
    del first["train_seconds"], second["train_seconds"]
    assert first == second


def test_resume_after_an_interruption_is_bit_identical(tmp_path):
    config = _quick(steps=7, eval_every=2, sample_every=2, checkpoint_every=0)
    model, data = _setup(config)
    straight = Trainer(model, data, config, out_dir=tmp_path / "a")
    straight.run()

    model_b, _ = _setup(config)
    stopped = Trainer(model_b, data, config, out_dir=tmp_path / "b")
    stopped.run(on_step=lambda step, metrics: step == 3)  # Ctrl-C after batch 3
    assert stopped.step == 3
    torch.manual_seed(7)  # disturb the global RNG: the checkpoint restores it
    resumed = Trainer(CharLSTM(data.vocabulary, SMALL), data, config, out_dir=tmp_path / "b")
    assert resumed.resume() == 3 and resumed.history.eval_step == [2]
    resumed.run()
    assert resumed.step == 7
    _same_run(straight, resumed)
    assert [s[0] for s in resumed.history.samples] == [2, 4, 6, 7]
    # both runs wrote the same snapshots, and the same best model
    assert (
        read_model_file(tmp_path / "a" / "best.pt")["step"]
        == read_model_file(tmp_path / "b" / "best.pt")["step"]
    )
    assert read_model_file(tmp_path / "b" / CHECKPOINT_NAME)["step"] == 7


def test_run_continues_in_the_same_process(tmp_path):
    config = _quick(steps=6)
    model, data = _setup(config)
    straight = Trainer(model, data, config)
    straight.run()
    model_b, _ = _setup(config)
    twice = Trainer(model_b, data, config, out_dir=tmp_path)
    twice.run(steps=3)
    assert twice.step == 3 and twice.history.eval_step == [3]
    torch.manual_seed(7)  # the run keeps its own random state between the calls
    twice.run(steps=6)
    # evaluations and samples at 3 (the end of the first call) come on top of the straight run's
    assert twice.history.eval_step == [3, 6] == straight.history.eval_step
    assert twice.history.train_loss == straight.history.train_loss
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, twice.model.state_dict()[key]), key
    assert twice.run(steps=4) is not None and twice.step == 6  # nothing left to do


def test_seed_and_samples_come_back_from_the_checkpoint(tmp_path):
    config = _quick(steps=3)
    model, data = _setup(config)
    Trainer(model, data, config, out_dir=tmp_path, seed=5, preset="cpu").run()
    resumed = Trainer(
        CharLSTM(data.vocabulary, SMALL), data, config.replace(steps=4), out_dir=tmp_path, seed=99
    )
    resumed.resume()
    assert resumed.seed == 5 and resumed.preset == "cpu"
    assert [s[0] for s in resumed.history.samples] == [3]
    assert resumed.state_dict()["seed"] == 5
    assert resumed.state_dict()["generator"].dtype == torch.uint8


def test_save_writes_the_engine_checkpoint_anywhere(tmp_path):
    config = _quick(steps=2)
    model, data = _setup(config)
    trainer = Trainer(model, data, config, out_dir=tmp_path / "run")
    trainer.save(tmp_path / "at_start.pt")  # before any batch
    assert read_model_file(tmp_path / "at_start.pt")["step"] == 0
    trainer.run()
    trainer.save(tmp_path / "copy.pt")
    raw = torch.load(tmp_path / "copy.pt", weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["epoch"] == 2
    assert (tmp_path / "run" / CHECKPOINT_NAME).is_file()
    loaded = load_model(tmp_path / "copy.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_engine_checkpoint_holds_what_load_model_needs(tmp_path):
    config = _quick(steps=3)
    model, data = _setup(config)
    Trainer(model, data, config, out_dir=tmp_path, preset="cpu").run()
    payload = read_model_file(tmp_path / CHECKPOINT_NAME)
    assert payload["step"] == 3 and payload["preset"] == "cpu"
    assert payload["corpus"]["name"] == "toy" and payload["model_config"] == SMALL.to_dict()
    run = load_run(tmp_path / CHECKPOINT_NAME)  # the checkpoint and the snapshots beside it
    assert [step for step, _ in run.models] == [3] and run.name == "toy"


def test_files_written_before_the_training_engine(tmp_path):
    config = _quick(steps=3)
    model, data = _setup(config)
    # the old layout: a model file whose kind says "training" (save_model reserves "kind")
    payload = {**model_payload(model, step=3), "kind": "training"}
    old = atomic_torch_save(payload, tmp_path / CHECKPOINT_NAME)
    assert load_model(old).config == SMALL  # still a model file
    trainer = Trainer(CharLSTM(data.vocabulary, SMALL), data, config, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"written by an earlier gnnkit.*cannot be resumed"):
        trainer.resume()


def test_checkpoint_of_another_training_task(tmp_path):
    config = _quick(steps=3)
    model, data = _setup(config)
    state = {"run": {}, "epoch": 1, "model": {}, "optimizer": None, "task": {}}
    state.update(history={}, best={}, best_state=None, times={}, rng={})
    path = save_checkpoint(state, tmp_path / CHECKPOINT_NAME)
    trainer = Trainer(model, data, config, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="not written by a character-LSTM run"):
        trainer.resume()
    with pytest.raises(CheckpointError, match="training checkpoint of another model"):
        load_model(path)


def test_resume_refuses_a_run_longer_than_asked(tmp_path):
    config = _quick(steps=4)
    model, data = _setup(config)
    Trainer(model, data, config, out_dir=tmp_path).run()
    shorter = config.replace(steps=2)
    trainer = Trainer(CharLSTM(data.vocabulary, SMALL), data, shorter, out_dir=tmp_path)
    with pytest.raises(
        CheckpointError,
        match="already trained 4 batches, more than the 2 asked for; ask for at least 4 batches",
    ):
        trainer.resume()
    with pytest.raises(CheckpointError, match="does not exist"):
        trainer.resume(tmp_path / "nothing.pt")


def test_a_nonfinite_loss_stops_the_run_and_keeps_the_checkpoint(tmp_path):
    config = _quick(steps=4, checkpoint_every=1)
    model, data = _setup(config)
    trainer = Trainer(model, data, config, out_dir=tmp_path)
    trainer.run(steps=2)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite at batch 3 \(train_loss=nan\)"):
        trainer.run()
    assert read_model_file(tmp_path / CHECKPOINT_NAME)["step"] == 2


def test_on_step_can_stop_and_checkpoint(tmp_path):
    config = _quick(steps=6, checkpoint_every=0)
    model, data = _setup(config)
    trainer = Trainer(model, data, config, out_dir=tmp_path)
    seen = []
    trainer.run(on_step=lambda step, metrics: seen.append((step, sorted(metrics))) or step == 2)
    assert trainer.step == 2 and seen == [(1, ["acc", "loss", "lr"]), (2, ["acc", "loss", "lr"])]
    assert read_model_file(tmp_path / CHECKPOINT_NAME)["step"] == 2
    # interrupted, not finished: the checkpoint says so, and resumes
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["finished"] is None


def test_sample_table_layout(tmp_path, sample_table_rows):
    config = _quick()
    model, data = _setup(config)
    Trainer(model, data, config, out_dir=tmp_path).run()
    run = load_run(tmp_path)
    assert run.name == "toy" and [step for step, _ in run.models] == [3, 6]
    assert [s for s, _ in load_run(tmp_path / "step_000003.pt").models] == [3]
    markdown = sample_table(
        [run, run],
        prompts=PROMPTS,
        temperatures=(0.5, 1.0, 2.0),
        greedy_samples=2,
        sample_length=12,
        completion_length=30,
    )
    sample_table_rows(
        markdown.splitlines(),
        columns=["toy", "toy"],
        greedy={3: 2, 6: 2},
        temperatures=["0.5", "1", "2"],
        prompts=["I would prefer not to."],
    )
    # "I", "D", "R" and "M" are not in the toy vocabulary: skipped and said so
    assert "(skipped 'DMR')" in markdown
    assert "Samples of 12 characters" in markdown and "prompts to 30 characters" in markdown
    with pytest.raises(InputError, match="greedy_samples must be an integer >= 1"):
        sample_table([run], prompts=PROMPTS, temperatures=(1.0,), greedy_samples=0)
    with pytest.raises(InputError, match="completion_length must be an integer >= 1"):
        sample_table([run], prompts=PROMPTS, temperatures=(1.0,), completion_length=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"holds no checkpoint\.pt"):
        load_run(tmp_path / "empty")


def test_sample_table_refuses_paths_and_one_string():
    model, _ = _setup(_quick())
    run = Run("toy", [(0, model.eval())])
    options = {"prompts": PROMPTS, "temperatures": (1.0,), "sample_length": 5}
    with pytest.raises(
        InputError,
        match=r"runs\[1\] must be a Run from load_run\(path\), got str; pass "
        r"load_run\('runs/dir'\)",
    ):
        sample_table([run, "runs/dir"], **options)
    with pytest.raises(InputError, match=r"runs must be a list of Runs from load_run\(path\)"):
        sample_table("runs/dir", **options)
    with pytest.raises(InputError, match=r"for one run pass \[run\]"):
        sample_table(run, **options)
    with pytest.raises(InputError, match="give at least one run"):
        sample_table([], **options)
    with pytest.raises(
        InputError, match=r"prompts must be a list of strings; for one prompt pass \['the'\]"
    ):
        sample_table([run], prompts="the", temperatures=(1.0,))
    with pytest.raises(InputError, match="prompt 1 must be a str, got int"):
        completions_table([run], prompts=["the", 3])


def test_completions_table_says_which_prompts_it_cannot_continue():
    model, _ = _setup(_quick())
    run = Run("toy", [(0, model.eval())])
    markdown = completions_table([run], prompts=iter(["", "XYZ", "the"]), completion_length=8)
    rows = markdown.splitlines()[2:]
    assert rows[0] == "|  | (empty prompt: nothing to continue) |"
    assert rows[1] == "| `XYZ` | (no character of the prompt is in the vocabulary) |"
    assert rows[2].startswith("| `the` | `the") and len(rows) == 3


# ---------------------------------------------------------------------------- bad input
def test_truncated_checkpoint(tmp_path):
    config = _quick(steps=3)
    model, _ = _setup(config)
    path = save_model(model, tmp_path / "model.pt")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nothing.pt")


def test_checkpoint_of_another_model(tmp_path):
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pt")
    with pytest.raises(CheckpointError, match="not a gnnkit character-model checkpoint"):
        load_model(tmp_path / "linear.pt")
    torch.save({"format": "gnnkit.seq.Something", "state_dict": {}}, tmp_path / "seq.pt")
    with pytest.raises(CheckpointError, match=r"format: 'gnnkit\.seq\.Something'"):
        load_model(tmp_path / "seq.pt")


def test_checkpoint_with_another_vocabulary_or_shape(tmp_path):
    config = _quick(steps=3)
    model, _ = _setup(config)
    payload = read_model_file(save_model(model, tmp_path / "m.pt"))
    payload["vocabulary"] = [*payload["vocabulary"], "#"]
    torch.save(payload, tmp_path / "vocab.pt")
    with pytest.raises(
        CheckpointError, match="vocabulary of 30 characters but it stores a vocabulary of 31"
    ):
        load_model(tmp_path / "vocab.pt")
    payload = read_model_file(tmp_path / "m.pt")
    payload["model_config"]["hidden_size"] = 32
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="weights do not fit a CharLSTM"):
        load_model(tmp_path / "shape.pt")
    payload["model_config"]["hidden"] = 32
    torch.save(payload, tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match="invalid vocabulary or config"):
        load_model(tmp_path / "config.pt")
    payload = read_model_file(tmp_path / "m.pt")
    payload["version"] = 99
    torch.save(payload, tmp_path / "version.pt")
    with pytest.raises(CheckpointError, match="layout version 99"):
        load_model(tmp_path / "version.pt")


def test_resume_refuses_mismatches(tmp_path):
    config = _quick(steps=3)
    model, data = _setup(config)
    Trainer(model, data, config, out_dir=tmp_path).run()

    other = TextDataset(CORPUS.upper(), config.seq_length, name="upper")
    trainer = Trainer(CharLSTM(other.vocabulary, SMALL), other, config, out_dir=tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"trained on another vocabulary \(30 characters; this corpus has 30, 26 of them new",
    ):
        trainer.resume()

    # the same characters in another order: other ids, refused with the way out, which works
    chars = data.vocabulary.to_list()
    reordered = TextDataset(CORPUS, config.seq_length, vocabulary=Vocabulary(chars[::-1]))
    trainer = Trainer(CharLSTM(reordered.vocabulary, SMALL), reordered, config, out_dir=tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"trained on the same 30 characters in another order, so the character ids "
        r"differ; build the dataset in the checkpoint's order .*read_model_file\(",
    ):
        trainer.resume()
    stored = Vocabulary(read_model_file(tmp_path / CHECKPOINT_NAME)["vocabulary"])
    fixed = TextDataset(CORPUS, config.seq_length, vocabulary=stored, name="toy")
    assert Trainer(CharLSTM(stored, SMALL), fixed, config, out_dir=tmp_path).resume() == 3

    shuffled = TextDataset(CORPUS[::-1], config.seq_length, name="reversed")
    trainer = Trainer(CharLSTM(shuffled.vocabulary, SMALL), shuffled, config, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="trained on another text \\('toy'"):
        trainer.resume()

    trainer = Trainer(CharLSTM(data.vocabulary, TINY), data, config, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="holds a model"):
        trainer.resume()

    changed = config.replace(lr=0.5)
    trainer = Trainer(CharLSTM(data.vocabulary, SMALL), data, changed, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"different schedule \(lr: 0.01 -> 0.5\)"):
        trainer.resume()

    trainer = Trainer(CharLSTM(data.vocabulary, SMALL), data, config, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="model snapshot without optimizer state"):
        trainer.resume(tmp_path / "step_000003.pt")


def test_trainer_bad_arguments():
    config = _quick()
    model, data = _setup(config)
    other = TextDataset(CORPUS.upper(), config.seq_length)
    with pytest.raises(InputError, match=r"dataset's vocabulary .* differs from the model's"):
        Trainer(model, other, config)
    with pytest.raises(InputError, match=r"windows have length 12 but config\.seq_length is 5"):
        Trainer(model, data, config.replace(seq_length=5))
    with pytest.raises(InputError, match="config must be a TrainConfig"):
        Trainer(model, data, {"steps": 3})
    with pytest.raises(InputError, match="steps must be an integer >= 1"):
        Trainer(model, data, config).run(steps=0)
    with pytest.raises(InputError, match="nowhere to write the checkpoint"):
        Trainer(model, data, config).save()
