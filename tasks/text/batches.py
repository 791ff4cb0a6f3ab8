"""Truncated-BPTT batches: a token stream laid out as parallel rows, cut into segments.

As in PyTorch's word_language_model (`batchify` + `get_batch`): the stream is trimmed to
batch_size * L tokens and reshaped to [batch_size, L], so row b is one contiguous slice of the
stream. Segment i holds columns i*bptt .. i*bptt+bptt-1 as inputs and the same shifted by one
as targets, so row b of segment i+1 carries on exactly where row b of segment i stopped: a
model may carry its hidden state from one segment to the next, as long as the order is kept.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


class BPTTBatches(Dataset):
    """Segments of a token stream laid out as `batch_size` parallel rows.

    Item i is (inputs, targets), both LongTensor [batch_size, <= bptt]; the last item is
    shorter when the row length minus one is not a multiple of bptt.
    """

    def __init__(self, stream: np.ndarray, batch_size: int, bptt: int) -> None:
        stream = np.asarray(stream)
        if stream.ndim != 1 or not np.issubdtype(stream.dtype, np.integer):
            raise ValueError(
                f"BPTTBatches needs a 1-D stream of integer token ids, got a {stream.ndim}-D "
                f"array of {stream.dtype}"
            )
        if batch_size < 1 or bptt < 1:
            raise ValueError(
                f"batch_size and bptt must be at least 1, got batch_size={batch_size}, bptt={bptt}"
            )
        row_length = len(stream) // batch_size
        if row_length < 2:
            raise ValueError(
                f"a stream of {len(stream)} tokens is too short for batch_size={batch_size} "
                f"rows of at least 2 tokens (an input and its target): it needs at least "
                f"{2 * batch_size} tokens; use a smaller batch_size or a longer stream"
            )
        trimmed = stream[: batch_size * row_length].astype(np.int64).reshape(batch_size, -1)
        self.rows = torch.from_numpy(trimmed)  # [batch_size, row_length]
        self.bptt = bptt

    def __len__(self) -> int:
        """Returns the number of segments: ceil((row length - 1) / bptt)."""
        return -(-(self.rows.shape[1] - 1) // self.bptt)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Returns (inputs, targets) of segment `index`, each LongTensor [batch_size, <= bptt]."""
        if not 0 <= index < len(self):
            raise IndexError(f"segment {index} out of range: there are {len(self)}")
        start = index * self.bptt
        stop = min(start + self.bptt, self.rows.shape[1] - 1)
        return (
            self.rows[:, start:stop].contiguous(),
            self.rows[:, start + 1 : stop + 1].contiguous(),
        )


def bptt_loader(stream: np.ndarray, batch_size: int, bptt: int) -> DataLoader:
    """Returns a DataLoader over the stream's BPTT segments, in order.

    Unshuffled and in-process: carried hidden state is only valid if segment i+1 follows
    segment i.
    """
    return DataLoader(
        BPTTBatches(stream, batch_size, bptt), batch_size=None, shuffle=False, num_workers=0
    )
