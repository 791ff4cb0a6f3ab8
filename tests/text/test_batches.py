"""Truncated-BPTT batches: layout, shapes, contiguity across segments, the short last segment,
and streams that cannot be laid out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainyard.tasks.text.batches import BPTTBatches, bptt_loader


def _segments(batches: BPTTBatches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [batches[i] for i in range(len(batches))]


def test_rows_are_contiguous_slices_of_the_trimmed_stream():
    stream = np.arange(103)
    batches = BPTTBatches(stream, batch_size=4, bptt=5)
    # 103 // 4 = 25 tokens per row; the last 3 tokens do not fill a row and are dropped.
    assert batches.rows.shape == (4, 25)
    for b in range(4):
        np.testing.assert_array_equal(batches.rows[b].numpy(), stream[b * 25 : (b + 1) * 25])


def test_segments_have_the_right_shapes_and_a_short_last_one():
    batches = BPTTBatches(np.arange(103), batch_size=4, bptt=5)
    # 24 (input, target) pairs per row: 4 segments of 5 and one of 4.
    assert len(batches) == 5
    shapes = [inputs.shape for inputs, _ in _segments(batches)]
    assert shapes == [(4, 5)] * 4 + [(4, 4)]
    for inputs, targets in _segments(batches):
        assert inputs.dtype == targets.dtype == torch.long
        assert inputs.shape == targets.shape


def test_segments_tile_each_row_exactly_once_without_a_short_last_one():
    batches = BPTTBatches(np.arange(44), batch_size=4, bptt=5)  # rows of 11: 10 pairs = 2 x 5
    assert len(batches) == 2
    inputs = torch.cat([x for x, _ in _segments(batches)], dim=1)
    targets = torch.cat([y for _, y in _segments(batches)], dim=1)
    torch.testing.assert_close(inputs, batches.rows[:, :-1])
    torch.testing.assert_close(targets, batches.rows[:, 1:])


def test_targets_are_inputs_shifted_by_one_and_each_row_carries_on_into_the_next_segment():
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 30, size=997)
    segments = _segments(BPTTBatches(stream, batch_size=6, bptt=7))
    for inputs, targets in segments:
        torch.testing.assert_close(targets[:, :-1], inputs[:, 1:])
    for (_, targets), (next_inputs, _) in zip(segments, segments[1:], strict=False):
        # Row b of segment i+1 starts at the token row b of segment i was predicting last.
        torch.testing.assert_close(next_inputs[:, 0], targets[:, -1])
    # On a counting stream the same property reads: each row continues the count.
    counting = _segments(BPTTBatches(np.arange(200), batch_size=3, bptt=9))
    for (inputs, _), (next_inputs, _) in zip(counting, counting[1:], strict=False):
        torch.testing.assert_close(next_inputs[:, 0], inputs[:, -1] + 1)


def test_small_integer_dtypes_become_long():
    inputs, targets = BPTTBatches(np.arange(40, dtype=np.uint8), 2, 4)[0]
    assert inputs.dtype == targets.dtype == torch.long
    assert inputs.tolist() == [[0, 1, 2, 3], [20, 21, 22, 23]]


def test_the_loader_yields_the_segments_in_order_uncollated():
    stream = np.arange(103)
    batches = BPTTBatches(stream, batch_size=4, bptt=5)
    loaded = list(bptt_loader(stream, batch_size=4, bptt=5))
    assert len(loaded) == len(batches)
    for (inputs, targets), (expected_inputs, expected_targets) in zip(
        loaded, _segments(batches), strict=True
    ):
        torch.testing.assert_close(inputs, expected_inputs)
        torch.testing.assert_close(targets, expected_targets)


def test_a_stream_too_short_for_the_rows_is_refused_with_the_sizes():
    with pytest.raises(ValueError, match=r"7 tokens is too short for batch_size=4.*at least 8"):
        BPTTBatches(np.arange(7), batch_size=4, bptt=3)
    BPTTBatches(np.arange(8), batch_size=4, bptt=3)  # rows of 2 tokens: one pair each


def test_bad_streams_and_sizes_are_refused():
    with pytest.raises(ValueError, match="1-D stream of integer"):
        BPTTBatches(np.zeros((4, 10), dtype=np.int64), 2, 3)
    with pytest.raises(ValueError, match="1-D stream of integer"):
        BPTTBatches(np.zeros(40), 2, 3)
    with pytest.raises(ValueError, match="at least 1"):
        BPTTBatches(np.arange(40), 2, 0)
    with pytest.raises(IndexError, match="out of range"):
        BPTTBatches(np.arange(40), 2, 5)[4]
