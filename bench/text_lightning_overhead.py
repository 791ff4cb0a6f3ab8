"""Benchmarks training the LSTM language model with the Lightning Trainer against a plain loop.

Both train the same `LSTMLanguageModel` (same seed, so the same initial weights and dropout
masks) on the same truncated-BPTT batches of real text (the Python docs' topic pages shipped
with CPython, `pydoc_data.topics`), for the same number of batches, in one process:

  (a) Lightning: `Trainer.fit` with the module's own training_step (loss + train/ metrics),
      gradient clipping as the pipeline does, no logger, progress bar or checkpoints;
  (b) plain PyTorch: forward, loss, backward, clip, step, with the same carried, detached state.

Runs alternate a, b, a, b, ... so drifting machine load hits both. Printed: characters/s of
each and the ratio Lightning time / plain time (target <= 1.10). Run from the project root:

    .venv/bin/python bench/text_lightning_overhead.py               # 150 batches x 3 repeats
    .venv/bin/python bench/text_lightning_overhead.py --batches 20 --repeats 1   # seconds
    .venv/bin/python bench/text_lightning_overhead.py --hidden 256  # a wider network
"""

from __future__ import annotations

import argparse
import pydoc_data.topics
import statistics
import time
import warnings
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from trainyard.models.text.lstm_lm import LSTMLanguageModel, detach_hidden, token_cross_entropy
from trainyard.tasks.text.batches import BPTTBatches

GRADIENT_CLIP = 1.0  # max gradient norm, as text.train.gradient_clip in params.yaml
SEED = 0


@dataclass
class Run:
    """One timed training run."""

    name: str
    seconds: float  # wall time of the whole run: building the Trainer and fit, or the loop
    characters: int  # target characters trained on
    final_loss: float  # loss of the last batch, nats per character

    @property
    def characters_per_second(self) -> float:
        """Returns the run's training throughput in characters per second."""
        return self.characters / self.seconds


def encoded_text() -> tuple[np.ndarray, int]:
    """Returns (token stream, vocabulary size) of the pydoc topics, one id per character."""
    text = "".join(pydoc_data.topics.topics.values())
    chars = sorted(set(text))
    lookup = np.zeros(max(map(ord, chars)) + 1, dtype=np.int64)
    lookup[[ord(c) for c in chars]] = np.arange(len(chars))
    return lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)], len(chars)


def fresh_model(vocab_size: int, args: argparse.Namespace) -> LSTMLanguageModel:
    """Returns the network both runs train, seeded so both start from the same weights."""
    torch.manual_seed(SEED)
    return LSTMLanguageModel(
        vocab_size, embedding_size=args.hidden, hidden_size=args.hidden, num_layers=args.layers
    )


def run_lightning(loader: DataLoader, vocab_size: int, args: argparse.Namespace) -> Run:
    """Returns the timing of Trainer.fit over the loader's batches."""
    model = fresh_model(vocab_size, args)
    losses: list[float] = []

    class LastLoss(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if batch_idx == len(loader) - 1:
                losses.append(float(outputs["loss"]))

    start = time.perf_counter()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        gradient_clip_val=GRADIENT_CLIP,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[LastLoss()],
    )
    trainer.fit(model, loader)
    seconds = time.perf_counter() - start
    return Run("lightning", seconds, characters(loader), losses[-1])


def run_plain(loader: DataLoader, vocab_size: int, args: argparse.Namespace) -> Run:
    """Returns the timing of a hand-written loop doing the same steps over the same batches."""
    model = fresh_model(vocab_size, args)
    start = time.perf_counter()
    model.train()
    optimizer = model.configure_optimizers()
    hidden = None
    for inputs, targets in loader:
        logits, hidden = model(inputs, hidden)
        hidden = detach_hidden(hidden)
        loss = token_cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP)
        optimizer.step()
    seconds = time.perf_counter() - start
    return Run("plain", seconds, characters(loader), float(loss))


def characters(loader: DataLoader) -> int:
    """Returns the number of target characters in the loader's batches."""
    return sum(targets.numel() for _, targets in loader)


def main() -> None:
    """Returns nothing; times both runs alternately and prints the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150, help="training batches per run")
    parser.add_argument("--batch-size", type=int, default=64, help="parallel rows per batch")
    parser.add_argument("--bptt", type=int, default=100, help="characters per segment")
    parser.add_argument("--hidden", type=int, default=128, help="embedding and LSTM width")
    parser.add_argument("--layers", type=int, default=2, help="stacked LSTM layers")
    parser.add_argument("--repeats", type=int, default=3, help="timed (a, b) pairs")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()

    warnings.filterwarnings("ignore")  # Lightning's tips about workers and loggers
    torch.set_num_threads(args.threads)
    stream, vocab_size = encoded_text()
    # The text fills ~72 batches of 64 x 100; for more, it is repeated (timing does not care).
    needed = args.batch_size * (args.batches * args.bptt + 1)
    copies = -(-needed // len(stream))
    batches = BPTTBatches(np.tile(stream, copies), args.batch_size, args.bptt)
    loader = DataLoader(Subset(batches, range(args.batches)), batch_size=None, shuffle=False)
    warmup = DataLoader(Subset(batches, range(3)), batch_size=None, shuffle=False)
    run_lightning(warmup, vocab_size, args)  # imports, allocator and thread-pool warm-up
    run_plain(warmup, vocab_size, args)

    model = fresh_model(vocab_size, args)
    print(
        f"text: {len(stream):,} characters, {vocab_size} symbols (repeated x{copies}); "
        f"{args.batches} batches of {args.batch_size} x {args.bptt}; "
        f"LSTM {args.layers} x {args.hidden} "
        f"(tied: {model.tied}, {sum(p.numel() for p in model.parameters()):,} parameters); "
        f"{args.threads} torch threads"
    )
    runs: dict[str, list[Run]] = {"lightning": [], "plain": []}
    header = f"{'repeat':>6} {'lightning chars/s':>18} {'plain chars/s':>14} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for repeat in range(args.repeats):
        lightning = run_lightning(loader, vocab_size, args)
        plain = run_plain(loader, vocab_size, args)
        runs["lightning"].append(lightning)
        runs["plain"].append(plain)
        print(
            f"{repeat + 1:>6} {lightning.characters_per_second:>18,.0f} "
            f"{plain.characters_per_second:>14,.0f} {lightning.seconds / plain.seconds:>6.3f}"
        )
    chars = runs["plain"][0].characters
    print("-" * len(header))
    # Best-of is the least disturbed by other work on the machine; the median is shown too.
    for label, pick in (("best", min), ("median", statistics.median)):
        seconds = {name: pick(r.seconds for r in rs) for name, rs in runs.items()}
        print(
            f"{label:>6} {chars / seconds['lightning']:>18,.0f} "
            f"{chars / seconds['plain']:>14,.0f} {seconds['lightning'] / seconds['plain']:>6.3f}"
        )
    best = min(r.seconds for r in runs["lightning"]) / min(r.seconds for r in runs["plain"])
    verdict = "meets" if best <= 1.10 else "misses"
    print(f"Lightning time / plain time (best of each) = {best:.3f} ({verdict} the <= 1.10 target)")
    losses = {name: rs[-1].final_loss for name, rs in runs.items()}
    print(
        f"last-batch loss: lightning {losses['lightning']:.4f}, plain {losses['plain']:.4f} "
        "nats/char (same seed and batches: equal up to float rounding)"
    )


if __name__ == "__main__":
    main()
