"""Windows over prepared series: which windows exist, what they contain, and how they are batched.

The hand-made series hold their own global row number as the target (series "a" is 0..n-1,
series "b" continues from there), so the contents of every window are predictable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from trainyard.tasks.forecast.config import DatasetConfig, WindowConfig
from trainyard.tasks.forecast.prepare import assign_splits
from trainyard.tasks.forecast.windows import (
    STOP,
    STOP_CODE,
    SeriesArrays,
    WindowLoader,
    gather_windows,
    season_phase,
    spread,
    stop_split,
    window_index,
)

ENC, HOR = 8, 4
WINDOWS = WindowConfig(encoder_length=ENC, horizon=HOR, validation_length=8, holdout_length=8)
SPEC = DatasetConfig(
    name="hand-made",
    time_column="date",
    target="y",
    known_covariates=["k"],
    unknown_covariates=["u"],
    frequency="D",
)
SPLIT_CODES = {"train": 0, "validation": 1, "holdout": 2}


def prepared(lengths: dict[str, int], nan_rows: tuple[int, ...] = ()) -> pd.DataFrame:
    """Returns a prepared table; y is the global row number; k = 2t + 1 and u = t^2 per series."""
    pieces = []
    offset = 0
    for series_id, n in lengths.items():
        t = np.arange(n)
        pieces.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "time_idx": t,
                    "date": pd.date_range("2024-01-01", periods=n, freq="D"),
                    "y": (offset + t).astype(float),
                    # Covariate columns in the table deliberately list the unknown one first.
                    "u": (t**2).astype(float),
                    "k": 2.0 * t + 1.0,
                }
            )
        )
        offset += n
    table = pd.concat(pieces, ignore_index=True)
    table.loc[list(nan_rows), "y"] = np.nan
    table["split"] = assign_splits(table, WINDOWS)
    return table


def arrays_for(lengths: dict[str, int], nan_rows: tuple[int, ...] = ()) -> SeriesArrays:
    return SeriesArrays.from_prepared(prepared(lengths, nan_rows), SPEC)


def brute_force_windows(arrays: SeriesArrays, split: str, stride: int = 1) -> set[int]:
    """Returns window starts by checking every candidate start one by one."""
    code = SPLIT_CODES[split]
    target = arrays.target.numpy()
    found = set()
    for offset, n in zip(arrays.offsets, arrays.lengths, strict=True):
        split_rows = [r for r in range(offset, offset + n) if arrays.split[r] == code]
        for start in range(offset, offset + n - ENC - HOR + 1):
            horizon = range(start + ENC, start + ENC + HOR)
            if any(arrays.split[r] != code for r in horizon):
                continue
            if np.isnan(target[start : start + ENC + HOR]).any():
                continue
            if (start + ENC - split_rows[0]) % stride:
                continue
            found.add(start)
    return found


# --- which windows exist ----------------------------------------------------------------------


def test_series_arrays_bookkeeping() -> None:
    arrays = arrays_for({"a": 40, "b": 30})

    assert arrays.series_ids == ["a", "b"]
    assert arrays.offsets.tolist() == [0, 40]
    assert arrays.lengths.tolist() == [40, 30]
    assert arrays.target.dtype == torch.float32
    np.testing.assert_array_equal(arrays.target.numpy(), np.arange(70))
    assert arrays.covariates.shape == (70, 2)
    assert arrays.n_known == 1
    # a: 24 train, 8 validation, 8 holdout; b: 14 train, 8 validation, 8 holdout.
    assert arrays.split.tolist() == [0] * 24 + [1] * 8 + [2] * 8 + [0] * 14 + [1] * 8 + [2] * 8
    assert arrays.time_idx.tolist() == list(range(40)) + list(range(30))


@pytest.mark.parametrize(
    ("split", "starts"),
    [
        # Horizon rows [s + 8, s + 12) must lie in train rows 0..23, validation 24..31 or
        # holdout 32..39; the encoder may reach back into earlier splits.
        ("train", list(range(0, 13))),
        ("validation", list(range(16, 21))),
        ("holdout", list(range(24, 29))),
    ],
)
def test_window_starts_and_origins_per_split(split: str, starts: list[int]) -> None:
    arrays = arrays_for({"a": 40})

    index = window_index(arrays, split, ENC, HOR)

    assert index.starts.dtype == torch.int64
    assert index.starts.tolist() == starts
    assert index.origins.tolist() == [s + ENC for s in starts]
    assert index.series.tolist() == [0] * len(starts)
    assert len(index) == len(starts)


def test_window_shapes_and_contents() -> None:
    arrays = arrays_for({"a": 40})
    index = window_index(arrays, "validation", ENC, HOR)

    batch = gather_windows(arrays, index.starts, ENC, HOR)

    assert batch["encoder_target"].shape == (5, ENC)
    assert batch["encoder_covariates"].shape == (5, ENC, 2)
    assert batch["decoder_known"].shape == (5, HOR, 1)
    assert batch["target"].shape == (5, HOR)
    for row, start in enumerate(range(16, 21)):
        np.testing.assert_array_equal(batch["encoder_target"][row], np.arange(start, start + ENC))
        np.testing.assert_array_equal(batch["target"][row], np.arange(start + ENC, start + 12))


def test_windows_of_a_later_series_read_only_that_series() -> None:
    arrays = arrays_for({"a": 40, "b": 30})
    index = window_index(arrays, "train", ENC, HOR)

    # b's train rows are its steps 0..13 (rows 40..53): starts 40..42, origins 8..10.
    in_b = index.series == 1
    assert index.starts[torch.from_numpy(in_b)].tolist() == [40, 41, 42]
    assert index.origins[in_b].tolist() == [8, 9, 10]
    batch = gather_windows(arrays, index.starts, ENC, HOR)
    values = torch.cat([batch["encoder_target"], batch["target"]], dim=1)
    # Every window is 12 consecutive rows of one series: no window crosses from a into b.
    assert torch.equal(values - values[:, :1], torch.arange(ENC + HOR).float().expand_as(values))
    assert ((values < 40).all(dim=1) | (values >= 40).all(dim=1)).all()


def test_windows_touching_a_missing_target_are_excluded() -> None:
    # Row 10 (train), row 39 (the last holdout step).
    arrays = arrays_for({"a": 40}, nan_rows=(10, 39))

    train = window_index(arrays, "train", ENC, HOR)
    holdout = window_index(arrays, "holdout", ENC, HOR)
    validation = window_index(arrays, "validation", ENC, HOR)

    assert train.starts.tolist() == [11, 12]  # starts 0..10 all cover row 10
    assert holdout.starts.tolist() == [24, 25, 26, 27]  # start 28 covers row 39
    assert validation.starts.tolist() == list(range(16, 21))  # rows 16..31 are all observed
    for index in (train, holdout, validation):
        batch = gather_windows(arrays, index.starts, ENC, HOR)
        assert not batch["encoder_target"].isnan().any()
        assert not batch["target"].isnan().any()


def test_a_missing_target_in_the_encoder_also_excludes_the_window() -> None:
    arrays = arrays_for({"a": 40}, nan_rows=(20,))  # train row, inside validation encoders

    validation = window_index(arrays, "validation", ENC, HOR)

    assert validation.starts.tolist() == []  # validation encoders start at rows 16..20


def test_a_validation_cap_keeps_windows_of_every_series_spread_over_time() -> None:
    arrays = arrays_for({f"s{i}": 60 for i in range(10)})
    index = window_index(arrays, "train", ENC, HOR)  # 10 series x 37 windows

    kept = spread(index, 50)

    assert len(kept) == 50
    assert np.bincount(kept.series).tolist() == [5] * 10  # every series its share
    for series in range(10):
        mine = kept.origins[kept.series == series]
        assert (np.diff(mine) > 0).all() and np.ptp(mine) >= 24  # ordered, across its span
    chosen = {(s, o) for s, o in zip(kept.series, kept.origins, strict=True)}
    assert chosen <= set(zip(index.series, index.origins, strict=True))
    assert torch.equal(spread(index, 0).starts, index.starts)  # 0: all windows
    assert len(spread(index, 10_000)) == len(index)


def test_stop_split_takes_the_last_steps_of_each_train_split_and_nothing_else() -> None:
    arrays = arrays_for({"a": 40, "b": 31, "c": 25})  # train splits of 24, 15 and 9 steps
    stopped = stop_split(arrays, 6)

    for position, n_train in enumerate([24, 15, 9]):
        rows = slice(arrays.offsets[position], arrays.offsets[position] + arrays.lengths[position])
        before, after = arrays.split[rows], stopped.split[rows]
        assert (after[: n_train - 6] == SPLIT_CODES["train"]).all()
        assert (after[n_train - 6 : n_train] == STOP_CODE).all()
        assert (after[n_train:] == before[n_train:]).all()  # validation, holdout untouched
    assert (arrays.split != STOP_CODE).all()  # the input is not changed

    fit = window_index(stopped, "train", ENC, HOR)
    stop = window_index(stopped, STOP, ENC, HOR)
    a_fit, a_stop = fit.origins[fit.series == 0], stop.origins[stop.series == 0]
    assert a_fit.tolist() == list(range(ENC, 24 - 6 - HOR + 1))  # horizons end by step 17
    assert a_stop.tolist() == list(range(24 - 6, 24 - HOR + 1))  # horizons in steps 18..23
    assert 2 not in fit.series  # c: 3 train steps left, fewer than a window needs


def test_series_shorter_than_a_window_gives_no_windows() -> None:
    arrays = SeriesArrays.from_prepared(
        prepared({"a": 40, "short": ENC + HOR - 1}).assign(split="train"), SPEC
    )

    index = window_index(arrays, "train", ENC, HOR)

    assert set(index.series.tolist()) == {0}
    assert len(index) == 40 - ENC - HOR + 1


def test_no_windows_at_all_is_an_empty_index() -> None:
    arrays = SeriesArrays.from_prepared(prepared({"a": 10}).assign(split="train"), SPEC)

    index = window_index(arrays, "train", ENC, HOR)

    assert len(index) == 0
    assert index.starts.dtype == torch.int64


@pytest.mark.parametrize("split", ["train", "validation", "holdout"])
def test_horizons_lie_wholly_in_the_split_and_every_valid_window_is_found(split: str) -> None:
    rng = np.random.default_rng(0)
    lengths = {"a": 60, "b": 45, "c": 33, "d": 70}
    nan_rows = tuple(rng.choice(sum(lengths.values()), size=12, replace=False).tolist())
    arrays = arrays_for(lengths, nan_rows)

    index = window_index(arrays, split, ENC, HOR)

    starts = index.starts.numpy()
    horizon_rows = starts[:, None] + ENC + np.arange(HOR)
    assert (arrays.split[horizon_rows] == SPLIT_CODES[split]).all()
    assert set(starts.tolist()) == brute_force_windows(arrays, split)
    assert len(starts) > 0
    rows_series = np.repeat(np.arange(len(lengths)), arrays.lengths)
    assert (rows_series[starts] == index.series).all()
    assert (rows_series[starts + ENC + HOR - 1] == index.series).all()
    np.testing.assert_array_equal(index.origins, arrays.time_idx[starts + ENC])


@pytest.mark.parametrize(
    ("stride", "origins"),
    [(1, [32, 33, 34, 35, 36]), (2, [32, 34, 36]), (3, [32, 35]), (4, [32, 36]), (5, [32])],
)
def test_holdout_stride_steps_origins_from_the_first_holdout_step(
    stride: int, origins: list[int]
) -> None:
    arrays = arrays_for({"a": 40})

    index = window_index(arrays, "holdout", ENC, HOR, stride=stride)

    assert index.origins.tolist() == origins


def test_holdout_stride_is_anchored_per_series_and_unshifted_by_gaps() -> None:
    # b's holdout starts at its step 22 (row 52); a's holdout origin 32 is skipped by a NaN.
    arrays = arrays_for({"a": 40, "b": 30}, nan_rows=(39,))

    index = window_index(arrays, "holdout", ENC, HOR, stride=2)

    assert list(zip(index.series.tolist(), index.origins.tolist(), strict=True)) == [
        (0, 32),
        (0, 34),
        (1, 22),
        (1, 24),
        (1, 26),
    ]
    assert set(index.starts.tolist()) == brute_force_windows(arrays, "holdout", stride=2)


# --- covariates -------------------------------------------------------------------------------


def test_covariates_are_known_first_and_standardised_on_train_only() -> None:
    arrays = arrays_for({"a": 40, "b": 30})
    covariates = arrays.covariates.numpy()

    for offset, n, n_train in ((0, 40, 24), (40, 30, 14)):
        t = np.arange(n)
        known, unknown = 2.0 * t + 1.0, (t**2).astype(float)
        expected_known = (known - known[:n_train].mean()) / known[:n_train].std()
        expected_unknown = (unknown - unknown[:n_train].mean()) / unknown[:n_train].std()
        np.testing.assert_allclose(covariates[offset : offset + n, 0], expected_known, rtol=1e-5)
        np.testing.assert_allclose(
            covariates[offset : offset + n, 1], expected_unknown, rtol=1e-5, atol=1e-5
        )
        train = covariates[offset : offset + n_train]
        np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-5)


def test_decoder_gets_only_the_known_covariates_of_the_horizon() -> None:
    arrays = arrays_for({"a": 40, "b": 30})
    index = window_index(arrays, "holdout", ENC, HOR)

    batch = gather_windows(arrays, index.starts, ENC, HOR)

    for row, start in enumerate(index.starts.tolist()):
        expected_decoder = arrays.covariates[start + ENC : start + ENC + HOR, :1]
        assert torch.equal(batch["decoder_known"][row], expected_decoder)
        assert torch.equal(batch["encoder_covariates"][row], arrays.covariates[start : start + ENC])
    # k = 2t + 1 standardised is linear in t again: the slice of window (series a, origin)
    # is k at steps origin..origin+3, scaled by a's train-split mean and std.
    t_train = np.arange(24)
    mean, std = (2.0 * t_train + 1.0).mean(), (2.0 * t_train + 1.0).std()
    for row in np.flatnonzero(index.series == 0):
        steps = index.origins[row] + np.arange(HOR)
        expected = (2.0 * steps + 1.0 - mean) / std
        np.testing.assert_allclose(batch["decoder_known"][row, :, 0], expected, rtol=1e-5)


def test_no_covariates_gives_empty_covariate_tensors() -> None:
    spec = DatasetConfig(name="hand-made", time_column="date", target="y", frequency="D")
    arrays = SeriesArrays.from_prepared(prepared({"a": 40}), spec)
    index = window_index(arrays, "train", ENC, HOR)

    batch = gather_windows(arrays, index.starts, ENC, HOR)

    assert arrays.covariates.shape == (40, 0)
    assert batch["encoder_covariates"].shape == (len(index), ENC, 0)
    assert batch["decoder_known"].shape == (len(index), HOR, 0)


# --- the loader -------------------------------------------------------------------------------


def loader_starts(loader: WindowLoader) -> list[list[int]]:
    """Returns each batch's window starts (the first encoder value is the start row)."""
    return [batch["encoder_target"][:, 0].long().tolist() for batch in loader]


def test_loader_without_shuffle_keeps_index_order_in_full_batches() -> None:
    arrays = arrays_for({"a": 60, "b": 45})
    index = window_index(arrays, "train", ENC, HOR)
    loader = WindowLoader(arrays, index, ENC, HOR, batch_size=8)

    batches = loader_starts(loader)

    assert len(index) == 33 + 18  # a: 44 train rows - 11; b: 29 train rows - 11
    assert len(loader) == 7
    assert [len(b) for b in batches] == [8] * 6 + [3]
    assert sum(batches, []) == index.starts.tolist()
    assert loader_starts(loader) == batches


def test_shuffled_loader_yields_every_window_once_per_epoch() -> None:
    arrays = arrays_for({"a": 60, "b": 45})
    index = window_index(arrays, "train", ENC, HOR)
    loader = WindowLoader(arrays, index, ENC, HOR, batch_size=8, shuffle=True, seed=3)

    epochs = [sum(loader_starts(loader), []) for _ in range(3)]

    for order in epochs:
        assert sorted(order) == sorted(index.starts.tolist())  # each window exactly once
    assert epochs[0] != index.starts.tolist()  # actually shuffled
    assert epochs[0] != epochs[1] != epochs[2]  # a new order every epoch


def test_shuffled_loader_is_deterministic_for_a_seed() -> None:
    arrays = arrays_for({"a": 60, "b": 45})
    index = window_index(arrays, "train", ENC, HOR)

    def run(seed: int) -> list[list[list[int]]]:
        loader = WindowLoader(arrays, index, ENC, HOR, batch_size=8, shuffle=True, seed=seed)
        return [loader_starts(loader) for _ in range(2)]

    torch.manual_seed(0)
    first = run(7)
    torch.manual_seed(123)  # the global RNG state does not matter
    assert run(7) == first
    assert run(8) != first


def test_loader_batches_match_gather_windows() -> None:
    arrays = arrays_for({"a": 40})
    index = window_index(arrays, "holdout", ENC, HOR)
    loader = WindowLoader(arrays, index, ENC, HOR, batch_size=64)

    (batch,) = list(loader)

    expected = gather_windows(arrays, index.starts, ENC, HOR)
    assert batch.keys() == expected.keys()
    for key in batch:
        assert torch.equal(batch[key], expected[key])


@pytest.mark.parametrize("stop_on", ["validation", "train"])
def test_neural_models_fit_train_windows_and_stop_on_windows_they_do_not_fit(stop_on: str) -> None:
    from trainyard.tasks.forecast.config import params_from_dict
    from trainyard.tasks.forecast.forecasters import fit_and_stop_windows

    arrays = arrays_for({"a": 40, "b": 60})
    params = params_from_dict(
        {"windows": WINDOWS.model_dump(), "train": {"stop_on": stop_on, "validation_windows": 0}}
    )

    fit, stop = fit_and_stop_windows(arrays, params)

    if stop_on == "validation":
        assert torch.equal(fit.starts, window_index(arrays, "train", ENC, HOR).starts)
        assert torch.equal(stop.starts, window_index(arrays, "validation", ENC, HOR).starts)
    else:  # the last validation_length (8) train steps: a's train is 0..23, b's 0..43
        stopped = stop_split(arrays, WINDOWS.validation_length)
        assert torch.equal(fit.starts, window_index(stopped, "train", ENC, HOR).starts)
        assert stop.origins[stop.series == 0].tolist() == list(range(16, 24 - HOR + 1))
        assert stop.origins[stop.series == 1].tolist() == list(range(36, 44 - HOR + 1))
    for position in (0, 1):  # no fitted horizon reaches a step the stop windows score
        last_fit = fit.origins[fit.series == position].max() + HOR - 1
        assert last_fit < stop.origins[stop.series == position].min()


def test_a_train_split_too_short_to_stop_on_stops_on_validation() -> None:
    from trainyard.tasks.forecast.config import params_from_dict
    from trainyard.tasks.forecast.forecasters import fit_and_stop_windows, stops_on_train

    arrays = arrays_for({"a": 30, "b": 40})  # 14 and 24 train steps: 6 and 16 once 8 are taken
    params = params_from_dict({"windows": WINDOWS.model_dump(), "train": {"stop_on": "train"}})
    assert stops_on_train(arrays, params)  # b holds a window before its stop split

    arrays = arrays_for({"a": 30})
    assert not stops_on_train(arrays, params)
    fit, stop = fit_and_stop_windows(arrays, params)
    assert torch.equal(fit.starts, window_index(arrays, "train", ENC, HOR).starts)
    assert torch.equal(stop.starts, window_index(arrays, "validation", ENC, HOR).starts)


# --- season features (train.season_features) --------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "season", "start", "expected"),
    [
        ("MS", 12, "2023-11-01", [10, 11, 0, 1]),  # the month of the year, from 0
        ("ME", 12, "2023-11-30", [10, 11, 0, 1]),
        ("QE-DEC", 4, "2023-06-30", [1, 2, 3, 0]),
        ("QS-OCT", 4, "2023-04-01", [1, 2, 3, 0]),
        ("h", 24, "2024-01-01 22:00", [22, 23, 0, 1]),  # the hour of the day
    ],
)
def test_season_phase_is_the_position_in_the_calendar_season(
    frequency: str, season: int, start: str, expected: list[int]
) -> None:
    spec = DatasetConfig(frequency=frequency, season_length=season)
    times = pd.Series(pd.date_range(start, periods=4, freq=frequency))
    assert season_phase(times, spec).tolist() == expected


def test_season_phase_of_a_time_is_the_same_in_every_series_and_table() -> None:
    spec = DatasetConfig(frequency="W-SAT", season_length=52)
    early = pd.Series(pd.date_range("2020-01-04", periods=200, freq="W-SAT"))
    late = early.iloc[37:].reset_index(drop=True)  # a served history starting later
    np.testing.assert_array_equal(season_phase(early, spec)[37:], season_phase(late, spec))
    assert np.all(np.diff(season_phase(early, spec)) % 52 == 1)  # one step a week


def test_no_season_or_no_fixed_step_count_gives_no_phase() -> None:
    times = pd.Series(pd.date_range("2024-01-01", periods=10, freq="B"))
    assert season_phase(times, DatasetConfig(frequency="B", season_length=5)) is None
    assert season_phase(times, DatasetConfig(frequency="D", season_length=1)) is None


def test_season_features_are_the_first_known_covariates() -> None:
    table = prepared({"a": 40, "b": 30})
    spec = SPEC.model_copy(update={"season_length": 7})
    plain = SeriesArrays.from_prepared(table, spec)
    seasonal = SeriesArrays.from_prepared(table, spec, season_features=True)
    assert seasonal.n_known == plain.n_known + 2
    assert seasonal.covariates.shape == (70, plain.covariates.shape[1] + 2)
    torch.testing.assert_close(seasonal.covariates[:, 2:], plain.covariates)
    phase = season_phase(table.sort_values(["series_id", "time_idx"])["date"], spec)
    angle = torch.as_tensor(2 * np.pi * phase / 7, dtype=torch.float32)
    torch.testing.assert_close(seasonal.covariates[:, 0], torch.sin(angle))
    torch.testing.assert_close(seasonal.covariates[:, 1], torch.cos(angle))
    batch = gather_windows(seasonal, torch.tensor([0]), ENC, HOR)
    # The horizon's season position is known in advance: the decoder reads it.
    torch.testing.assert_close(
        batch["decoder_known"][0, :, :2], seasonal.covariates[ENC : ENC + HOR, :2]
    )
