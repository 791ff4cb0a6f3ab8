"""LSTM language model: shapes, weight tying, one Lightning step, carried and detached hidden
state, exact validation bpc, log2_probs, generation, and overfitting a tiny corpus."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from trainyard.models.text.lstm_lm import LSTMLanguageModel, detach_hidden
from trainyard.tasks.text.batches import bptt_loader

VOCAB = 12


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Runs each test on one torch thread: for these tiny nets, a second thread only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(**overrides) -> LSTMLanguageModel:
    torch.manual_seed(0)
    settings = {"embedding_size": 16, "hidden_size": 16, "num_layers": 2, "dropout": 0.1}
    return LSTMLanguageModel(VOCAB, **{**settings, **overrides})


def quick_trainer(tmp_path, **overrides) -> L.Trainer:
    settings = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "accelerator": "cpu",
        "gradient_clip_val": 1.0,
        "default_root_dir": tmp_path,
    }
    return L.Trainer(**{**settings, **overrides})


def random_stream(length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=length)


class LSTMCalls:
    """Records, per call of the model's LSTM: training mode, hidden state in and out."""

    def __init__(self, model: LSTMLanguageModel) -> None:
        self.calls: list[tuple[bool, tuple | None, tuple]] = []
        model.lstm.register_forward_hook(self._record)
        self.model = model

    def _record(self, module, args, output) -> None:
        given = args[1] if len(args) > 1 else None
        clone = None if given is None else tuple(h.clone() for h in given)
        self.calls.append((self.model.training, clone, tuple(h.clone() for h in output[1])))


# --- the network ------------------------------------------------------------------------------


def test_forward_returns_logits_per_position_and_the_hidden_state():
    model = tiny_model(hidden_size=20, embedding_size=8, num_layers=3)
    logits, (h, c) = model(torch.randint(0, VOCAB, (3, 7)))
    assert logits.shape == (3, 7, VOCAB)
    assert h.shape == c.shape == (3, 3, 20)


def test_weights_are_tied_only_when_sizes_match():
    tied = tiny_model()
    assert tied.tied and tied.decoder.weight is tied.embedding.weight
    untied_count = sum(p.numel() for p in tiny_model(tie_weights=False).parameters())
    assert sum(p.numel() for p in tied.parameters()) == untied_count - VOCAB * 16
    for model in (tiny_model(embedding_size=8), tiny_model(tie_weights=False)):
        assert not model.tied
        assert model.decoder.weight is not model.embedding.weight


def test_hyperparameters_rebuild_the_model():
    model = tiny_model(embedding_size=8)
    rebuilt = LSTMLanguageModel(**model.hparams)
    rebuilt.load_state_dict(model.state_dict())
    tokens = random_stream(30)
    np.testing.assert_array_equal(rebuilt.log2_probs(tokens), model.log2_probs(tokens))


# --- training with Lightning ------------------------------------------------------------------


def test_one_epoch_trains_and_logs_loss_and_bpc(tmp_path):
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quick_trainer(tmp_path)
    # Rows of 17 tokens, bptt 8: two training steps; validation rows of 20: three steps.
    validation = bptt_loader(random_stream(40, seed=1), 2, 8)
    trainer.fit(model, bptt_loader(random_stream(68), 4, 8), validation)
    assert trainer.global_step == 2
    metrics = trainer.callback_metrics
    for split in ("train", "val"):
        loss, bpc = float(metrics[f"{split}/loss"]), float(metrics[f"{split}/bpc"])
        assert bpc == pytest.approx(loss / math.log(2), rel=1e-6)
        assert 0 < bpc < 2 * math.log2(VOCAB)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_detach_hidden_cuts_the_graph():
    leaf = torch.ones(2, 3, requires_grad=True)
    hidden = detach_hidden((leaf * 2, leaf + 1))
    assert all(not h.requires_grad and h.grad_fn is None for h in hidden)
    torch.testing.assert_close(hidden[0], torch.full((2, 3), 2.0))


def test_a_step_leaves_a_detached_carried_state():
    model = tiny_model()
    inputs = torch.randint(0, VOCAB, (3, 5))
    loss = model.model_step((inputs, inputs), "train")
    assert loss.requires_grad
    carried = model.carried["train"]
    assert carried is not None and carried[0].shape == (2, 3, 16)
    assert all(not h.requires_grad and h.grad_fn is None for h in carried)
    assert model.carried["val"] is None


def test_state_is_carried_between_batches_and_reset_each_epoch(tmp_path):
    model = tiny_model()
    calls = LSTMCalls(model)
    train = bptt_loader(random_stream(3 * 4 * 5 + 4), 4, 5)  # rows of 16 tokens: 3 segments
    validation = bptt_loader(random_stream(2 * 11, 1), 2, 5)  # rows of 11: 2 segments
    quick_trainer(tmp_path, max_epochs=2).fit(model, train, validation)
    # Per epoch: 3 training calls, then 2 validation calls.
    assert [training for training, _, _ in calls.calls] == ([True] * 3 + [False] * 2) * 2
    for epoch in range(2):
        for first, count in ((epoch * 5, 3), (epoch * 5 + 3, 2)):
            assert calls.calls[first][1] is None  # reset at the loop's epoch start
            for i in range(first + 1, first + count):
                previous_out, given = calls.calls[i - 1][2], calls.calls[i][1]
                for h_given, h_previous in zip(given, previous_out, strict=True):
                    torch.testing.assert_close(h_given, h_previous, rtol=0, atol=0)


def test_state_is_reset_when_the_number_of_rows_changes():
    model = tiny_model()
    calls = LSTMCalls(model)
    model.model_step((torch.zeros(3, 4, dtype=torch.long),) * 2, "train")
    model.model_step((torch.zeros(2, 4, dtype=torch.long),) * 2, "train")
    assert calls.calls[1][1] is None
    assert model.carried["train"][0].shape[1] == 2


def test_validation_bpc_is_the_character_weighted_mean_over_the_whole_split(tmp_path):
    model = tiny_model()
    stream = random_stream(50, seed=3)
    # One row of 50 tokens, bptt 8: six segments of 8 and a last one of 1 character.
    (metrics,) = quick_trainer(tmp_path).validate(model, bptt_loader(stream, 1, 8), verbose=False)
    expected = -np.mean(model.log2_probs(stream))
    assert metrics["val/bpc"] == pytest.approx(expected, rel=1e-5)
    assert metrics["val/loss"] == pytest.approx(expected * math.log(2), rel=1e-5)


# --- scoring and generation -------------------------------------------------------------------


def test_log2_probs_match_one_full_sequence_forward():
    model = tiny_model()
    tokens = random_stream(41, seed=5)
    scores = model.log2_probs(tokens, chunk=6)  # 40 positions in chunks: state carried across
    assert scores.shape == (40,) and scores.dtype == np.float64
    assert np.all(scores <= 0)
    model.eval()
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(tokens[:-1]).unsqueeze(0))
    direct = torch.log_softmax(logits[0].double(), -1)[torch.arange(40), tokens[1:]]
    np.testing.assert_allclose(scores, direct.numpy() / math.log(2), atol=1e-6)
    np.testing.assert_allclose(model.log2_probs(torch.as_tensor(tokens)), scores, atol=1e-6)
    assert model.log2_probs(tokens[:1]).shape == (0,)


def test_log2_probs_leave_training_mode_as_found_and_refuse_foreign_ids():
    model = tiny_model()
    model.log2_probs(random_stream(10))
    assert model.training
    with pytest.raises(ValueError, match=r"ids outside 0\.\.11"):
        model.log2_probs(np.array([1, 2, VOCAB]))


def test_generate_is_deterministic_for_a_seed():
    model = tiny_model()

    def sample(seed: int) -> list[int]:
        return model.generate([1, 2, 3], 30, 1.0, torch.Generator().manual_seed(seed))

    first = sample(7)
    assert len(first) == 30 and all(0 <= token < VOCAB for token in first)
    assert sample(7) == first
    assert sample(8) != first


def test_generate_at_temperature_zero_is_greedy():
    model = tiny_model()
    generated = model.generate([4, 5], 10, 0.0)
    model.eval()
    context = [4, 5]
    with torch.no_grad():
        for _ in range(10):
            logits, _ = model(torch.tensor([context]))
            context.append(int(logits[0, -1].argmax()))
    assert generated == context[2:]


def test_generate_refuses_an_empty_prompt_and_a_negative_temperature():
    model = tiny_model()
    with pytest.raises(ValueError, match="prompt"):
        model.generate([], 5, 1.0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate([1], 5, -0.1)
    assert model.generate([1], 0, 1.0) == []


# --- learning ---------------------------------------------------------------------------------


class EpochBPC(Callback):
    """Collects train/bpc at the end of every training epoch."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.values.append(float(trainer.callback_metrics["train/bpc"]))


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no")
def test_overfits_a_repeated_sentence(tmp_path):
    text = "the quick brown fox jumps over the lazy dog; pack my box. " * 12
    chars = sorted(set(text))
    stream = np.array([chars.index(c) for c in text])
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        len(chars), embedding_size=32, hidden_size=32, num_layers=1, dropout=0.0, learning_rate=0.01
    )
    history = EpochBPC()
    quick_trainer(tmp_path, max_epochs=40, callbacks=[history]).fit(
        model, bptt_loader(stream, 4, 25)
    )
    uniform = math.log2(len(chars))  # ~4.9 bits: what an untrained model scores
    assert history.values[0] > 0.6 * uniform
    assert history.values[-1] < 0.25  # reaches ~0.02 in 40 epochs (~2 s); 0.5 by epoch 14
