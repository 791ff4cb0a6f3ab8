"""LSTM character language model trained with truncated backpropagation through time.

Shaped like PyTorch's word_language_model: embedding -> dropout -> stacked LSTM -> dropout ->
output layer, whose weight is the embedding's when the sizes match (Press & Wolf, 2017). Batches
are consecutive BPTT segments of parallel rows (`(inputs, targets)`, both [B, T]); the hidden
state at the end of one segment starts the next, detached so gradients stop at the segment
boundary. Train and validation carry their own state, reset at the start of every epoch.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

HiddenState = tuple[Tensor, Tensor]  # (h, c), each [num_layers, B, hidden_size]


def detach_hidden(hidden: HiddenState) -> HiddenState:
    """Returns the hidden state cut from its graph, so the next segment's backward stops here."""
    return tuple(h.detach() for h in hidden)


def token_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Returns the mean cross-entropy in nats per token of logits [B, T, V] on targets [B, T]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class LSTMLanguageModel(L.LightningModule):
    """Character LSTM language model; logs train/ and val/ loss (nats) and bpc (bits) per char."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 128,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.1,
        tie_weights: bool = True,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # nn.LSTM warns on dropout with 1 layer
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)
        # The embedding keeps PyTorch's N(0, 1) init. A small uniform init (+-0.1, as in word
        # models) starves the LSTM's gates of signal: on python_docs val bpc then stalls at the
        # unigram's 4.6 for two epochs, against 2.4 after two epochs with N(0, 1).
        nn.init.zeros_(self.decoder.bias)
        self.tied = bool(tie_weights and embedding_size == hidden_size)
        if self.tied:
            self.decoder.weight = self.embedding.weight
        # Hidden state carried between consecutive segments, per loop; never part of a checkpoint.
        self.carried: dict[str, HiddenState | None] = {"train": None, "val": None}

    def forward(
        self, tokens: Tensor, hidden: HiddenState | None = None
    ) -> tuple[Tensor, HiddenState]:
        """Returns (logits [B, T, V], final hidden state) for token ids [B, T]."""
        embedded = self.dropout(self.embedding(tokens))
        output, hidden = self.lstm(embedded, hidden)
        return self.decoder(self.dropout(output)), hidden

    def model_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        """Returns the mean loss (nats per char) of one segment, continuing `stage`'s state."""
        inputs, targets = batch
        hidden = self.carried[stage]
        if hidden is not None and hidden[0].shape[1] != inputs.shape[0]:
            hidden = None  # another number of rows: these are not the same streams
        logits, hidden = self(inputs, hidden)
        self.carried[stage] = detach_hidden(hidden)
        return token_cross_entropy(logits, targets)

    def on_train_epoch_start(self) -> None:
        self.carried["train"] = None

    def on_validation_epoch_start(self) -> None:
        self.carried["val"] = None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self.model_step(batch, "train")
        # Weighted by characters, so a short last segment counts for what it holds.
        size = batch[1].numel()
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=size)
        bpc = loss / math.log(2)
        self.log("train/bpc", bpc, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss = self.model_step(batch, "val")
        # Lightning's epoch mean weights each value by batch_size: per-character over the split.
        size = batch[1].numel()
        self.log("val/loss", loss, on_epoch=True, batch_size=size)
        self.log("val/bpc", loss / math.log(2), on_epoch=True, prog_bar=True, batch_size=size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # AdamW with weight_decay 0 is Adam; the fused kernel is one call for all parameters.
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.learning_rate,
            weight_decay=self.hparams.weight_decay,
            fused=True,
        )

    def _token_tensor(self, tokens: Tensor | np.ndarray | list[int], what: str) -> Tensor:
        """Returns tokens as a 1-D LongTensor on the model's device, checked against the vocab."""
        if isinstance(tokens, Tensor):
            ids = tokens.detach().to(device=self.device, dtype=torch.long).reshape(-1)
        else:
            array = np.asarray(tokens, dtype=np.int64).reshape(-1)
            ids = torch.as_tensor(array, device=self.device)
        vocab_size = self.hparams.vocab_size
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            raise ValueError(
                f"{what} holds ids outside 0..{vocab_size - 1} (min {int(ids.min())}, max "
                f"{int(ids.max())}): were they encoded with this model's vocabulary?"
            )
        return ids

    @torch.no_grad()
    def log2_probs(self, tokens: Tensor | np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Returns log2 P(tokens[t] | tokens[:t]) for t = 1..N-1 (float64, N-1 values).

        One stream read in chunks of `chunk` characters with the hidden state carried across,
        so every position sees its whole history, as the n-gram baseline's do.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        ids = self._token_tensor(tokens, "tokens")
        scores = np.zeros(max(len(ids) - 1, 0))
        was_training = self.training
        self.eval()
        hidden = None
        for start in range(0, len(scores), chunk):
            stop = min(start + chunk, len(scores))
            logits, hidden = self(ids[start:stop].unsqueeze(0), hidden)
            # float64 before the softmax: bpc is a mean of many small differences.
            log_probs = torch.log_softmax(logits[0].double(), dim=-1)
            picked = log_probs.gather(1, ids[start + 1 : stop + 1].unsqueeze(1)).squeeze(1)
            scores[start:stop] = picked.cpu().numpy() / math.log(2)
        self.train(was_training)
        return scores

    @torch.no_grad()
    def generate(
        self,
        prompt: list[int],
        length: int,
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Returns `length` token ids sampled after the prompt (temperature 0: greedy argmax).

        Deterministic given the generator's seed.
        """
        if len(prompt) == 0:
            raise ValueError("generate needs a prompt of at least one token")
        if temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or more, got {temperature}")
        ids = self._token_tensor(list(prompt), "prompt")
        was_training = self.training
        self.eval()
        logits, hidden = self(ids.unsqueeze(0))
        out: list[int] = []
        for step in range(length):
            last = logits[0, -1].double()
            if temperature == 0:
                token = int(last.argmax())
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            out.append(token)
            if step + 1 < length:
                next_input = torch.tensor([[token]], device=self.device)
                logits, hidden = self(next_input, hidden)
        self.train(was_training)
        return out
