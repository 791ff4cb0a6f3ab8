"""How each forecaster kind gets its data, its module, its checkpoint and its predictions.

A kind is registered in FORECASTERS; later model families add an entry, not edit these.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from trainyard.errors import ConfigError, DataError
from trainyard.models.forecast.lstm import LSTMForecaster
from trainyard.models.forecast.tcn import TCNForecaster
from trainyard.models.forecast.window_forecaster import EncoderMixture
from trainyard.tasks.family import CHECKPOINT, TrainingSetup, load_checkpoint
from trainyard.tasks.forecast.config import STATISTICAL_KINDS, TARGET_TRANSFORMS, Params
from trainyard.tasks.forecast.metrics import seasonal_naive_scale
from trainyard.tasks.forecast.windows import (
    STOP,
    SeriesArrays,
    TargetTransform,
    WindowIndex,
    WindowLoader,
    check_positive,
    gather_windows,
    spread,
    stop_split,
    window_index,
)

PREDICT_BATCH = 1024  # windows per forward pass at prediction time


@dataclass
class Forecast:
    """Predictions for a list of windows."""

    point: np.ndarray  # [windows, horizon]
    quantiles: np.ndarray | None = None  # [windows, horizon, len(levels)]
    levels: list[float] | None = None  # quantile levels of the last axis


@dataclass
class ForecasterKind:
    """The functions that make one model kind trainable, loadable and predictable."""

    # Lightning kinds: the module and its loaders; None for kinds fitted directly.
    setup: Callable[[SeriesArrays, pd.DataFrame, Params], TrainingSetup] | None
    load: Callable[[Path, Params], L.LightningModule]  # (model folder, its training params)
    predict: Callable[
        [L.LightningModule, SeriesArrays, pd.DataFrame, WindowIndex, Params, Path], Forecast
    ]


def stops_on_train(arrays: SeriesArrays, params: Params) -> bool:
    """Returns whether the neural models stop early on the end of the train split: with
    train.stop_on "train" and enough data that a window fits wholly before the stop split
    and another's horizon lies in it; otherwise they stop on validation (check_prepared of
    the forecast family says so before any model trains)."""
    windows = params.windows
    if params.train.stop_on != "train":
        return False
    stopped = stop_split(arrays, windows.validation_length)
    return all(
        len(window_index(stopped, split, windows.encoder_length, windows.horizon)) > 0
        for split in ("train", STOP)
    )


def fit_and_stop_windows(arrays: SeriesArrays, params: Params) -> tuple[WindowIndex, WindowIndex]:
    """Returns the windows a neural model fits (every one) and those it stops early on (at
    most train.validation_windows, spread over the series): the validation split's, or with
    train.stop_on "train" (where the series allow: stops_on_train) the last
    windows.validation_length steps of the train split's."""
    windows, train = params.windows, params.train
    stop = "validation"
    if stops_on_train(arrays, params):
        arrays, stop = stop_split(arrays, windows.validation_length), STOP
    fit = window_index(arrays, "train", windows.encoder_length, windows.horizon)
    check = spread(
        window_index(arrays, stop, windows.encoder_length, windows.horizon),
        train.validation_windows,
    )
    for name, index in (("train", fit), ("validation", check)):
        if len(index) == 0:
            raise DataError(
                f"no complete {name} windows: every {name} window touches a missing target. "
                "Lengthen windows.validation_length or fix the gaps."
            )
    return fit, check


def _window_loaders(arrays: SeriesArrays, params: Params) -> tuple[WindowLoader, WindowLoader]:
    windows, train = params.windows, params.train
    return tuple(
        WindowLoader(
            arrays,
            index,
            windows.encoder_length,
            windows.horizon,
            train.batch_size,
            shuffle=shuffle,
            seed=train.seed,
        )
        for index, shuffle in zip(fit_and_stop_windows(arrays, params), (True, False), strict=True)
    )


COVARIATE_STATS = "covariate_stats"  # file (.json) beside a window model's checkpoint


def _scaling(arrays: SeriesArrays) -> dict[str, Any]:
    """Returns the files a window model keeps: its covariates' training standardisation, as
    JSON ({series: {"mean": [...], "std": [...]}})."""
    stats = {
        series: {"mean": mean.tolist(), "std": std.tolist()}
        for series, (mean, std) in arrays.covariate_stats.items()
    }
    return {COVARIATE_STATS: stats}


def read_covariate_stats(model_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Returns the covariate standardisation a window model was trained with (None for the
    TFT, which keeps its own); a model saved before it was JSON must be trained again."""
    path = model_dir / f"{COVARIATE_STATS}.json"
    if not path.exists():
        if (model_dir / f"{COVARIATE_STATS}.pkl").exists():
            raise DataError(
                f"{model_dir}: the model keeps its covariate scaling as a pickle, which "
                "trainyard no longer loads (it runs code); train and register it again"
            )
        return None
    stats = json.loads(path.read_text())
    return {
        series: (np.asarray(v["mean"], dtype=np.float32), np.asarray(v["std"], dtype=np.float32))
        for series, v in stats.items()
    }


TARGET_TRANSFORM = "target_transform"  # JSON beside a neural model's checkpoint (absent: none)


def _transform_files(transform: TargetTransform) -> dict[str, Any]:
    """Returns the files a neural model keeps of its target transform (none: no file)."""
    return {} if transform.kind == "none" else {TARGET_TRANSFORM: transform.to_json()}


def read_target_transform(model_dir: Path) -> TargetTransform:
    """Returns the target transform a neural model was trained with (none without the file)."""
    path = Path(model_dir) / f"{TARGET_TRANSFORM}.json"
    if not path.exists():
        return TargetTransform()
    try:
        transform = TargetTransform.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a target transform trainyard wrote ({error})") from None
    if transform.kind not in TARGET_TRANSFORMS:
        raise DataError(f"{path}: unknown target transform {transform.kind!r}")
    return transform


ENCODER = "encoder"  # JSON beside a neural model's checkpoint: the encoder length it reads


def with_encoder(params: Params, encoder_length: int) -> Params:
    """Returns `params` whose models read `encoder_length` steps (and try no other)."""
    windows = params.windows.model_copy(
        update={"encoder_length": encoder_length, "shorter_encoders": []}
    )
    return params.model_copy(update={"windows": windows})


def model_encoder(model_dir: Path, params: Params) -> int:
    """Returns the encoder length the neural model in model_dir reads (its `encoder` file;
    windows.encoder_length for a folder without one)."""
    path = Path(model_dir) / f"{ENCODER}.json"
    if not path.exists():
        return params.windows.encoder_length
    try:
        length = json.loads(path.read_text())["encoder_length"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not an encoder length trainyard wrote ({error})") from None
    if not isinstance(length, int) or length < 1:
        raise DataError(f"{path}: encoder_length must be a whole number above 0, got {length!r}")
    return length


def own_windows(index: WindowIndex, params: Params, model_dir: Path) -> tuple[WindowIndex, Params]:
    """Returns `index` (windows of windows.encoder_length steps) cut to the encoder the model
    in model_dir reads, with params saying so: the same origins, the encoders' last steps."""
    own, longest = model_encoder(model_dir, params), params.windows.encoder_length
    if own == longest:
        return index, params
    if own > longest:
        raise DataError(
            f"{model_dir}: the model reads {own} past steps but these windows hold "
            f"{longest} (windows.encoder_length); forecast with the params it was trained with"
        )
    return cut_windows(index, longest, own), with_encoder(params, own)


def cut_windows(index: WindowIndex, encoder_length: int, own: int) -> WindowIndex:
    """Returns windows of `encoder_length` encoder steps cut to their last `own` (at most as
    many): the same origins and horizons."""
    return WindowIndex(index.starts + (encoder_length - own), index.series, index.origins)


def encoder_rows(index: WindowIndex, encoder_length: int) -> np.ndarray:
    """Returns the rows of SeriesArrays that the encoders of `index` read."""
    return (index.starts[:, None] + torch.arange(encoder_length)).numpy().reshape(-1)


def window_series(arrays: SeriesArrays, index: WindowIndex) -> np.ndarray:
    """Returns the series id of every window in `index`."""
    return np.asarray(arrays.series_ids)[index.series]


def _input_size(arrays: SeriesArrays) -> int:
    return 1 + arrays.covariates.shape[1]


def anchor_season(params: Params) -> int:
    """Returns the season LSTM/TCN anchor their forecasts on (1: the last value)."""
    season = params.dataset.season_length
    if params.train.anchor == "season" and 1 < season <= params.windows.encoder_length:
        return season
    return 1


def _encoder_file(params: Params) -> dict[str, Any]:
    return {ENCODER: {"encoder_length": params.windows.encoder_length}}


def _window_setup(
    module: type[L.LightningModule], hparams: dict[str, Any], arrays: SeriesArrays, params: Params
) -> TrainingSetup:
    """Returns `module(**hparams)` with window loaders over the transformed target; a target
    its transform cannot take is refused here, before anything trains or is written."""
    kind = params.train.target_transform
    transform = TargetTransform.fit(kind, arrays, params.dataset)
    return TrainingSetup(
        module(**hparams),
        *_window_loaders(transform.applied(arrays), params),
        {**hparams, "target_transform": kind, "encoder_length": params.windows.encoder_length},
        extra_files=_scaling(arrays) | _transform_files(transform) | _encoder_file(params),
        gradient_clip=params.train.gradient_clip,
    )


def setup_lstm(arrays: SeriesArrays, table: pd.DataFrame, params: Params) -> TrainingSetup:
    """Returns an LSTM forecaster with window loaders."""
    cfg = params.train.lstm
    hparams = {
        "input_size": _input_size(arrays),
        "n_known": arrays.n_known,
        "horizon": params.windows.horizon,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "dropout": cfg.dropout,
        "learning_rate": params.train.learning_rate,
        "anchor_season": anchor_season(params),
    }
    return _window_setup(LSTMForecaster, hparams, arrays, params)


def setup_tcn(arrays: SeriesArrays, table: pd.DataFrame, params: Params) -> TrainingSetup:
    """Returns a TCN forecaster with window loaders."""
    cfg = params.train.tcn
    hparams = {
        "input_size": _input_size(arrays),
        "n_known": arrays.n_known,
        "horizon": params.windows.horizon,
        "encoder_length": params.windows.encoder_length,
        "channels": cfg.channels,
        "kernel_size": cfg.kernel_size,
        "dilations": tuple(cfg.dilations),
        "dropout": cfg.dropout,
        "learning_rate": params.train.learning_rate,
        "anchor_season": anchor_season(params),
    }
    return _window_setup(TCNForecaster, hparams, arrays, params)


INTERVALS = "intervals"  # JSON beside a window model's checkpoint: its conformal intervals


@torch.no_grad()
def _window_outputs(
    module: L.LightningModule, arrays: SeriesArrays, index: WindowIndex, params: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Returns a WindowForecaster's predictions [windows, horizon] and each window's
    encoder scale [windows] (the std its inputs were divided by)."""
    module.eval()
    enc, hor = params.windows.encoder_length, params.windows.horizon
    points, scales = [], []
    for i in range(0, len(index), PREDICT_BATCH):
        output = module(gather_windows(arrays, index.starts[i : i + PREDICT_BATCH], enc, hor))
        points.append(output["prediction"])
        scales.append(output["std"].reshape(-1))
    return torch.cat(points).numpy(), torch.cat(scales).numpy()


def predict_windows(
    module: L.LightningModule,
    arrays: SeriesArrays,
    table: pd.DataFrame,
    index: WindowIndex,
    params: Params,
    model_dir: Path,
) -> Forecast:
    """Returns a WindowForecaster's forecasts for every window in `index`, with its conformal
    interval as the outer quantiles when its folder has one; in target units (a target
    transform's forecasts and interval bounds are transformed back)."""
    index, params = own_windows(index, params, model_dir)
    transform = read_target_transform(model_dir)
    rows = encoder_rows(index, params.windows.encoder_length)
    check_positive(arrays, transform.kind, params.dataset.target, rows)
    point, scale = _window_outputs(module, transform.applied(arrays), index, params)
    series = window_series(arrays, index)
    path = Path(model_dir) / f"{INTERVALS}.json"
    if not path.exists():
        return Forecast(point=transform.inverse(point, series))
    intervals = json.loads(path.read_text())
    lower = point + np.asarray(intervals["lower"])[None, :] * scale[:, None]
    upper = point + np.asarray(intervals["upper"])[None, :] * scale[:, None]
    tail = round((1 - intervals["level"] / 100) / 2, 6)
    # The transform is increasing: its bounds transformed back keep their coverage.
    quantiles = np.stack([np.minimum(lower, point), point, np.maximum(upper, point)], -1)
    quantiles = transform.inverse(quantiles, series)
    return Forecast(
        point=quantiles[..., 1], quantiles=quantiles, levels=[tail, 0.5, round(1 - tail, 6)]
    )


def conformal_intervals(
    kind: str, model_dir: Path, arrays: SeriesArrays, params: Params
) -> dict[str, Any]:
    """Returns the `intervals` file of a trained window model: per horizon step, the
    quantiles of its validation residuals in units of each window's encoder scale (split
    conformal; every validation window, stride 1), on its transformed target. Unless the
    model stopped early on the train split (train.stop_on), the windows also chose its early
    stop, so coverage on new data may fall a little short of the level: the holdout reports
    it."""
    windows, level = params.windows, params.train.interval_level
    index = window_index(arrays, "validation", windows.encoder_length, windows.horizon)
    module = FORECASTERS[kind].load(Path(model_dir), params)
    arrays = read_target_transform(model_dir).applied(arrays)
    point, scale = _window_outputs(module, arrays, index, params)
    rows = index.starts[:, None] + windows.encoder_length + torch.arange(windows.horizon)
    residuals = (arrays.target[rows].numpy() - point) / scale[:, None]
    n, alpha = len(residuals), 1 - level / 100
    # The finite-sample correction of split conformal: the ceil((n+1)(1-a/2))/n quantile.
    upper_q = min(1.0, np.ceil((n + 1) * (1 - alpha / 2)) / n)
    lower_q = max(0.0, 1 - upper_q)
    return {
        INTERVALS: {
            "level": level,
            "lower": np.quantile(residuals, lower_q, axis=0).tolist(),
            "upper": np.quantile(residuals, upper_q, axis=0).tolist(),
            "windows": n,
        }
    }


TFT_TRAINING_ROWS = "tft_training_rows"  # Parquet beside the TFT checkpoint: its train split
TFT_HPARAMS = "tft_hparams"  # JSON beside the TFT checkpoint: the arguments of for_dataset


def _tft_rows(table: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Returns the rows a TimeSeriesDataSet takes: observed targets, string series ids."""
    rows = table[table[params.dataset.target].notna()].copy()
    rows["series_id"] = rows["series_id"].astype(str)
    return rows


def _tft_training_rows(table: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Returns the train-split rows the TFT's encoders and scalers are fitted on, with only
    the columns its dataset reads (what the model folder keeps to rebuild them)."""
    spec = params.dataset
    rows = _tft_rows(table, params)
    columns = ["series_id", "time_idx", spec.target, *spec.known_covariates]
    columns += [name for name in spec.unknown_covariates if name not in columns]
    return rows.loc[rows["split"] == "train", columns].reset_index(drop=True)


def window_keys(arrays: SeriesArrays, index: WindowIndex) -> pd.MultiIndex:
    """Returns (series id, first forecast step) of every window in `index`."""
    return pd.MultiIndex.from_arrays([window_series(arrays, index), index.origins])


def tft_target_scales(rows: pd.DataFrame, params: Params) -> dict[str, float]:
    """Returns each series' scale from its train rows: the in-sample MAE of its seasonal naive
    forecast (MASE's denominator); a series constant in training gets its mean absolute value
    (1 if that is 0)."""
    scales = {}
    for series, part in rows.groupby("series_id", sort=False):
        steps = part["time_idx"].to_numpy()
        history = np.full(steps.max() - steps.min() + 1, np.nan)  # on the time grid, gaps NaN
        history[steps - steps.min()] = part[params.dataset.target].to_numpy()
        try:
            scales[series] = seasonal_naive_scale(history, params.dataset.season_length)
        except ValueError:
            scales[series] = float(np.nanmean(np.abs(history))) or 1.0
    return scales


@dataclass
class TFTTarget:
    """The target the TFT trains on: transformed (train.target_transform), then divided by
    its series' scale, so its loss weighs every series alike and reads in those units (as
    MASE does), not the target's. pytorch-forecasting scores outputs after undoing its own
    normalisation: without this, the largest series would dominate the loss."""

    transform: TargetTransform
    scales: dict[str, float]  # per series: tft_target_scales of its transformed train rows

    @classmethod
    def fit(cls, train_rows: pd.DataFrame, params: Params, transform: TargetTransform) -> TFTTarget:
        """Returns the TFT target of `train_rows` (_tft_training_rows, in target units)."""
        target = params.dataset.target
        series = train_rows["series_id"].to_numpy()
        values = transform.forward(train_rows[target].to_numpy(dtype=np.float64), series)
        return cls(transform, tft_target_scales(train_rows.assign(**{target: values}), params))

    def scaled(self, rows: pd.DataFrame, params: Params) -> pd.DataFrame:
        """Returns `rows` with the target on this scale. A value the transform cannot take
        (not above 0) becomes 0: only where no encoder reads it (callers check encoders)."""
        target = params.dataset.target
        series = rows["series_id"].to_numpy()
        values = self.transform.forward(rows[target].to_numpy(dtype=np.float64), series)
        scales = rows["series_id"].map(self.scales).to_numpy(dtype=np.float64)
        if np.isnan(scales).any():
            unknown = rows["series_id"][np.isnan(scales)].unique()[:5]
            raise DataError(
                f"series {', '.join(map(repr, unknown))}: not among the series the TFT was "
                "trained on; forecast those it trained on"
            )
        return rows.assign(**{target: np.nan_to_num(values / scales, nan=0.0)})

    def unscaled(self, values: np.ndarray, series: np.ndarray) -> np.ndarray:
        """Returns `values` ([windows, ...], window i of `series[i]`) in target units."""
        scales = np.array([self.scales[name] for name in series])
        scales = scales.reshape((-1,) + (1,) * (values.ndim - 1))
        return self.transform.inverse(values * scales, series)


def _tft_columns(params: Params) -> dict[str, str]:
    """Returns the TFT's name for the target and each covariate: the user's, except that
    pytorch-forecasting refuses column names with a dot (an SDMX code such as
    STS.M.I7.W.TOVT), which become underscores. Names are kept otherwise because the TFT's
    weights are keyed by them (a model trained before reads its own)."""
    spec = params.dataset
    names: dict[str, str] = {}
    taken = {"series_id", "time_idx", "split", *spec.columns}
    for name in [spec.target, *spec.known_covariates, *spec.unknown_covariates]:
        safe = name
        if "." in name:
            safe = name.replace(".", "_")
            while safe in taken:
                safe += "_"
            taken.add(safe)
        names.setdefault(name, safe)
    return names


def _tft_frame(rows: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Returns `rows` (target on the TFT's scale) with the TFT's column names."""
    return rows.rename(columns=_tft_columns(params))


def _tft_training_dataset(
    train_rows: pd.DataFrame, params: Params, target: TFTTarget | None = None
):
    """Returns the TimeSeriesDataSet fitted on `train_rows` (_tft_training_rows) with the
    target on `target`'s scale (default: untransformed, scaled per series): the same
    encoders and scalers each time it is built from the same rows."""
    from pytorch_forecasting import TimeSeriesDataSet
    from pytorch_forecasting.data import EncoderNormalizer

    spec, windows = params.dataset, params.windows
    target = target or TFTTarget.fit(train_rows, params, TargetTransform())
    statics = ["series_id"] if train_rows["series_id"].nunique() > 1 else []
    names = _tft_columns(params)
    return TimeSeriesDataSet(
        _tft_frame(target.scaled(train_rows, params), params),
        time_idx="time_idx",
        target=names[spec.target],
        group_ids=["series_id"],
        max_encoder_length=windows.encoder_length,
        min_encoder_length=windows.encoder_length,
        max_prediction_length=windows.horizon,
        min_prediction_length=windows.horizon,
        static_categoricals=statics,
        time_varying_known_reals=[names[name] for name in spec.known_covariates],
        time_varying_unknown_reals=[
            names[name] for name in [spec.target, *spec.unknown_covariates]
        ],
        target_normalizer=EncoderNormalizer(),  # the same per-window scaling as LSTM/TCN
        add_relative_time_idx=True,
        allow_missing_timesteps=True,
    )


def _tft_datasets(table: pd.DataFrame, params: Params, target: TFTTarget | None = None):
    """Returns (training dataset fitted on the train split, dataset over every row), with
    the target on `target`'s scale (default: untransformed, scaled per series)."""
    from pytorch_forecasting import TimeSeriesDataSet

    train_rows = _tft_training_rows(table, params)
    target = target or TFTTarget.fit(train_rows, params, TargetTransform())
    training = _tft_training_dataset(train_rows, params, target)
    rows = _tft_frame(target.scaled(_tft_rows(table, params), params), params)
    everything = TimeSeriesDataSet.from_dataset(training, rows, stop_randomization=True)
    return training, everything


def _same_windows(dataset, arrays: SeriesArrays, index: WindowIndex):
    """Returns `dataset` filtered to exactly the windows in `index` (series, first step)."""
    wanted = window_keys(arrays, index)
    decoded = dataset.decoded_index
    keys = pd.MultiIndex.from_arrays(
        [decoded["series_id"].astype(str), decoded["time_idx_first_prediction"]]
    )
    return dataset.filter(lambda _: keys.isin(wanted))


def setup_tft(arrays: SeriesArrays, table: pd.DataFrame, params: Params) -> TrainingSetup:
    """Returns a TFT with pytorch-forecasting loaders over the same windows as LSTM/TCN, on
    its TFTTarget; its folder keeps its training rows (Parquet), hyperparameters and target
    transform (JSON) to be rebuilt. A target the transform cannot take is refused here."""
    from trainyard.models.forecast.tft import TFTForecaster

    train = params.train
    transform = TargetTransform.fit(train.target_transform, arrays, params.dataset)
    train_rows = _tft_training_rows(table, params)
    target = TFTTarget.fit(train_rows, params, transform)
    training, everything = _tft_datasets(table, params, target)
    loaders = []
    for index, is_train in zip(fit_and_stop_windows(arrays, params), (True, False), strict=True):
        dataset = _same_windows(training if is_train else everything, arrays, index)
        generator = torch.Generator().manual_seed(train.seed)
        loaders.append(
            dataset.to_dataloader(
                train=is_train, batch_size=train.batch_size, num_workers=0, generator=generator
            )
        )
    cfg = train.tft
    if 0.5 not in cfg.quantiles:
        raise ConfigError("train.tft.quantiles must include 0.5 (the point forecast)")
    hparams = {
        "quantiles": list(cfg.quantiles),
        "hidden_size": cfg.hidden_size,
        "attention_head_size": cfg.attention_head_size,
        "hidden_continuous_size": cfg.hidden_continuous_size,
        "dropout": cfg.dropout,
        "learning_rate": train.learning_rate,
    }
    module = TFTForecaster.for_dataset(training, **hparams)
    module.target_scaling = target
    return TrainingSetup(
        module,
        loaders[0],
        loaders[1],
        {
            **hparams,
            "target_transform": transform.kind,
            "encoder_length": params.windows.encoder_length,
        },
        extra_files={TFT_HPARAMS: hparams} | _transform_files(transform) | _encoder_file(params),
        tables={TFT_TRAINING_ROWS: train_rows},
        gradient_clip=train.gradient_clip,
    )


def _tft_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """Returns the state dict in model_dir/best.ckpt, read as weights only: a file that needs
    an unpickler that runs code (an old TFT checkpoint, or a planted pickle) is refused."""
    path = model_dir / CHECKPOINT
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return checkpoint["state_dict"]
    except FileNotFoundError:
        raise DataError(f"{path}: no checkpoint; run `trainyard train --family forecast`") from None
    except Exception as error:  # noqa: BLE001 - a corrupt or foreign file: say which
        raise DataError(
            f"{path}: the tft checkpoint cannot be loaded as weights ({error}); train it "
            "again with `trainyard train --family forecast`"
        ) from None


def load_tft(model_dir: Path, params: Params) -> L.LightningModule:
    """Returns the TFT in model_dir, rebuilt from its training rows, hyperparameters and
    target transform with the weights of its checkpoint (nothing read from the folder can run
    code); its per-series target scales are computed from those rows again."""
    from trainyard.models.forecast.tft import TFTForecaster

    model_dir = Path(model_dir)
    rows_path = model_dir / f"{TFT_TRAINING_ROWS}.parquet"
    hparams_path = model_dir / f"{TFT_HPARAMS}.json"
    if not rows_path.exists() and (model_dir / "dataset_parameters.pkl").exists():
        # Written before the TFT kept its training rows; never unpickled (it runs code).
        raise DataError(
            f"{model_dir}: the TFT keeps its fitted dataset as a pickle, which trainyard no "
            "longer loads (it runs code); train and register it again"
        )
    for path in (rows_path, hparams_path):
        if not path.exists():
            raise DataError(
                f"{path}: missing, so the TFT cannot be rebuilt; train it again with "
                "`trainyard train --family forecast`"
            )
    weights = _tft_weights(model_dir)
    train_rows = pd.read_parquet(rows_path)
    params = with_encoder(params, model_encoder(model_dir, params))
    target = TFTTarget.fit(train_rows, params, read_target_transform(model_dir))
    training = _tft_training_dataset(train_rows, params, target)
    module = TFTForecaster.for_dataset(training, **json.loads(hparams_path.read_text()))
    module.target_scaling = target
    try:
        module.load_state_dict(weights)
    except RuntimeError as error:
        raise DataError(
            f"{model_dir / CHECKPOINT}: the weights do not fit the TFT its folder describes "
            f"({error}); train it again with `trainyard train --family forecast`"
        ) from None
    return module


@torch.no_grad()
def predict_tft(
    module: L.LightningModule,
    arrays: SeriesArrays,
    table: pd.DataFrame,
    index: WindowIndex,
    params: Params,
    model_dir: Path,
) -> Forecast:
    """Returns TFT quantile forecasts for every window in `index`, in `index` order, in
    target units."""
    from pytorch_forecasting import TimeSeriesDataSet

    # The module was built from its fitted training dataset (load_tft): same encoders.
    index, params = own_windows(index, params, model_dir)
    target: TFTTarget = module.target_scaling
    rows = encoder_rows(index, params.windows.encoder_length)
    check_positive(arrays, target.transform.kind, params.dataset.target, rows)
    everything = TimeSeriesDataSet.from_parameters(
        module.dataset_parameters,
        _tft_frame(target.scaled(_tft_rows(table, params), params), params),
        stop_randomization=True,
    )
    dataset = _same_windows(everything, arrays, index)
    loader = dataset.to_dataloader(train=False, batch_size=PREDICT_BATCH, num_workers=0)
    result = module.predict(
        loader,
        mode="quantiles",
        return_index=True,
        trainer_kwargs={
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
    )
    quantiles = result.output.numpy()
    order = pd.MultiIndex.from_arrays(
        [result.index["series_id"].astype(str), result.index["time_idx"]]
    )
    wanted = window_keys(arrays, index)
    positions = order.get_indexer(wanted)
    if (positions < 0).any():
        missing = ", ".join(
            f"{series} at step {step}" for series, step in wanted[positions < 0][:5]
        )
        raise DataError(f"the TFT could not forecast {missing}: an incomplete encoder window")
    quantiles = target.unscaled(quantiles[positions], window_series(arrays, index))
    levels = list(module.loss.quantiles)
    return Forecast(point=quantiles[..., levels.index(0.5)], quantiles=quantiles, levels=levels)


MIXTURE = "mixture"  # JSON of an LSTM/TCN made of networks of several encoder lengths


def mixture_files(member_dirs: list[Path], params: Params) -> dict[str, Any]:
    """Returns the files of an LSTM/TCN whose forecast is the mean of the networks in
    member_dirs (subfolders of its folder, each a model folder of one encoder length): their
    list, the encoder it reads (the longest of theirs), and the covariate scaling and target
    transform they share, all fitted on the same train split."""
    first = Path(member_dirs[0])
    files = {
        MIXTURE: {"members": [f"{Path(d).parent.name}/{Path(d).name}" for d in member_dirs]},
        ENCODER: {"encoder_length": max(model_encoder(d, params) for d in member_dirs)},
    }
    for name in (COVARIATE_STATS, TARGET_TRANSFORM):
        if (first / f"{name}.json").exists():
            files[name] = json.loads((first / f"{name}.json").read_text())
    return files


def load_window_forecaster(
    cls: type[L.LightningModule], kind: str
) -> Callable[[Path, Params], torch.nn.Module]:
    """Returns a loader of a model folder's `cls` checkpoint onto the CPU, as weights only;
    for a folder of several encoder lengths (its `mixture` file), the EncoderMixture of its
    members."""

    def load(model_dir: Path, params: Params) -> torch.nn.Module:
        path = Path(model_dir) / f"{MIXTURE}.json"
        if not path.exists():
            return load_checkpoint(cls, model_dir, kind, "forecast")
        try:
            folders = [
                Path(model_dir) / member for member in json.loads(path.read_text())["members"]
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path}: not a mixture trainyard wrote ({error})") from None
        if not folders or any(
            Path(model_dir).resolve() not in f.resolve().parents for f in folders
        ):
            raise DataError(f"{path}: its members must be subfolders of {model_dir}")
        members = [load_checkpoint(cls, folder, kind, "forecast") for folder in folders]
        return EncoderMixture(members, [model_encoder(folder, params) for folder in folders])

    return load


FORECASTERS: dict[str, ForecasterKind] = {
    "lstm": ForecasterKind(
        setup_lstm, load_window_forecaster(LSTMForecaster, "lstm"), predict_windows
    ),
    "tcn": ForecasterKind(setup_tcn, load_window_forecaster(TCNForecaster, "tcn"), predict_windows),
    "tft": ForecasterKind(setup_tft, load_tft, predict_tft),
}


def _deferred(module: str, function: str) -> Callable[..., Any]:
    """Returns a call of trainyard.tasks.forecast.<module>.<function>, imported when called
    (the statistical and ensemble modules import this one)."""

    def call(*args: Any) -> Any:
        return getattr(import_module(f"trainyard.tasks.forecast.{module}"), function)(*args)

    return call


STATISTICAL = ForecasterKind(
    None, _deferred("statistical", "load"), _deferred("statistical", "predict")
)
FORECASTERS.update(dict.fromkeys(STATISTICAL_KINDS, STATISTICAL))
FORECASTERS["ensemble"] = ForecasterKind(
    None, _deferred("ensemble", "load"), _deferred("ensemble", "predict")
)
