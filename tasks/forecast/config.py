"""The `forecast:` section of params.yaml, typed: dataset, windows, train, evaluate."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from trainyard.config import (
    EvaluateBase,
    FamilySection,
    Flag,
    Number,
    NumberList,
    Section,
    Text,
    TextList,
    TrainBase,
    WholeNumber,
    WholeNumberList,
    outside,
    too_small,
)
from trainyard.errors import ConfigError
from trainyard.models.forecast.statistical import STATISTICAL_KINDS  # statsforecast, per series

SECTION = "forecast"
METRICS = ("mae", "rmse", "smape", "mase")  # holdout metrics; all lower-is-better
NEURAL_KINDS = ("lstm", "tcn", "tft")  # trained with Lightning
MODEL_KINDS = NEURAL_KINDS + STATISTICAL_KINDS  # the forecasters train.models can name
TARGET_TRANSFORMS = ("none", "log", "boxcox")  # train.target_transform: the neural models' target
ANCHORS = ("last", "season")  # train.anchor: what LSTM/TCN forecast an offset from
STOP_ON = ("validation", "train")  # train.stop_on: the windows the neural models stop early on
# dataset.layout: a row per series and time; a row per series and a column per date; a row per
# time and a column per series; a row per year (and series) and a column per month or quarter.
LAYOUTS = ("long", "dates_as_columns", "series_as_columns", "periods_as_columns")


class DatasetConfig(Section):
    """Which table to forecast and how to read it."""

    name: Text = "co2"  # a built-in dataset name (see `trainyard datasets`) or a CSV/Parquet path
    # How the file holds its series (LAYOUTS). A wide one (dates_as_columns, series_as_columns)
    # is melted as it is read into a long table whose columns the keys below name.
    layout: Text = "long"
    time_column: Text = "date"  # column holding timestamps (or years, with period_column)
    # A column of quarters (1-4, Q1-Q4) or months (1-12, M01, Jan) completing time_column's
    # years (a table with year and quarter columns); "": the time column alone holds the times.
    period_column: Text = ""
    target: Text = "co2"  # column to forecast
    series_columns: TextList = Field(default_factory=list)  # columns identifying a series
    known_covariates: TextList = Field(default_factory=list)  # known in advance (calendar, price)
    unknown_covariates: TextList = Field(default_factory=list)  # observed only up to now
    frequency: Text = "W-SAT"  # pandas offset alias of the time grid
    season_length: WholeNumber = 52  # steps per season, for seasonal naive and MASE
    # "error": a NaN target is invalid; "gap": it marks a missing step.
    missing_target: Text = "error"
    # A series shorter than the windows need (validate.steps_needed): "error" refuses the table;
    # "drop" leaves such series out of the prepared data (named in its summary and log).
    short_series: Text = "error"
    # A series constant (or exactly seasonal) over its training part, whose MASE has nothing
    # to divide by (prepare.check_scales): "error" refuses the table; "drop" leaves it out.
    flat_series: Text = "error"

    @property
    def columns(self) -> list[str]:
        """Returns every column the input table must have: time, target, ids, covariates."""
        return [
            self.time_column,
            self.target,
            *self.series_columns,
            *self.known_covariates,
            *self.unknown_covariates,
        ]

    @property
    def label(self) -> str:
        """Returns the dataset's short name: the built-in name or the file's stem."""
        return Path(self.name).stem


class WindowConfig(Section):
    """How series are cut into encoder/horizon windows and split in time."""

    encoder_length: WholeNumber = 48  # past steps a model sees (the longest)
    # Shorter encoder lengths: LSTM and TCN also train a network on each and forecast the mean
    # of all of theirs; the TFT reads the shortest.
    shorter_encoders: WholeNumberList = Field(default_factory=list)
    horizon: WholeNumber = 12  # future steps a model predicts
    validation_length: WholeNumber = 104  # last steps before the holdout, for early stopping
    holdout_length: WholeNumber = 104  # last steps of every series, never seen in training


class LSTMConfig(Section):
    """LSTM forecaster size."""

    hidden_size: WholeNumber = 64  # LSTM units per layer
    num_layers: WholeNumber = 2  # stacked LSTM layers
    dropout: Number = 0.0  # dropout between LSTM layers


class TCNConfig(Section):
    """Temporal convolutional network size."""

    channels: WholeNumber = 32  # channels in every residual block
    kernel_size: WholeNumber = 3  # taps per causal convolution
    dilations: WholeNumberList = Field(default_factory=lambda: [1, 2, 4, 8, 16])  # one block each
    dropout: Number = 0.0  # dropout inside residual blocks


class TFTConfig(Section):
    """Temporal Fusion Transformer size (pytorch-forecasting)."""

    hidden_size: WholeNumber = 16  # width of every TFT layer
    attention_head_size: WholeNumber = 2  # attention heads
    hidden_continuous_size: WholeNumber = 8  # width of continuous-variable embeddings
    dropout: Number = 0.1  # dropout in TFT layers
    quantiles: NumberList = Field(default_factory=lambda: [0.1, 0.5, 0.9])  # predicted quantiles


class StatisticalConfig(Section):
    """The statistical forecasters (statsforecast): their seasons."""

    # Seasons beside dataset.season_length (e.g. [168] for hourly data with a weekly cycle
    # too): MSTL decomposes all of them; the others model the longest that fits.
    extra_seasons: WholeNumberList = Field(default_factory=list)


class TrainConfig(TrainBase):
    """What to train and how long."""

    models: TextList = Field(
        default_factory=lambda: ["lstm", "tcn", "tft", "autoets", "autoarima", "autotheta"]
    )
    gradient_clip: Number = 1.0  # max gradient norm
    batch_size: WholeNumber = 64  # windows per optimiser step
    learning_rate: Number = 3e-3  # Adam step size
    # % prediction interval of every forecast: statsforecast's own for the statistical
    # models, conformal (from validation residuals) for LSTM/TCN; the TFT has its quantiles.
    interval_level: WholeNumber = 80
    # The neural models' target, before their scaling: "none", or "log" / "boxcox" (one Box-Cox
    # lambda per series, Guerrero's method on its train split) for positive series whose
    # swings grow with their level; forecasts are transformed back. Needs every target > 0.
    target_transform: Text = "none"
    # Validation windows the neural models score after each epoch (early stopping, the best
    # checkpoint), evenly spread over the series; 0 = all. A 10,000-series panel has 130,000.
    # The evaluation still scores every validation origin at evaluate.stride.
    validation_windows: WholeNumber = 20000
    # Where the neural models stop early and keep their best checkpoint: "validation", or
    # "train" (the last windows.validation_length steps of each series' train split, which
    # they then do not fit): validation then scores them as it scores the statistical models,
    # which never see it, so the challenger is chosen without an early-stopping bias.
    # params.yaml sets "train" with refit; a section without the keys keeps the old way.
    stop_on: Text = "validation"
    # With stop_on "train": train each neural model again from scratch on every train window
    # (the stop split too) for as many epochs as its best checkpoint took.
    refit: Flag = False
    # What LSTM and TCN forecast an offset from: "last" (the last observed value: an untrained
    # network is the naive forecast) or "season" (the value a season before each step:
    # seasonal naive; "last" where dataset.season_length is 1 or longer than the encoder).
    anchor: Text = "last"
    # LSTM and TCN also read the sine and cosine of each step's position in its season (the
    # month of the year for monthly data), for the encoder and the horizon alike, as known
    # covariates (windows.season_phase); none where dataset.season_length is 1.
    season_features: Flag = False
    lstm: LSTMConfig = Field(default_factory=LSTMConfig)
    tcn: TCNConfig = Field(default_factory=TCNConfig)
    tft: TFTConfig = Field(default_factory=TFTConfig)
    statistical: StatisticalConfig = Field(default_factory=StatisticalConfig)


class EvaluateConfig(EvaluateBase):
    """How models and baselines are scored on the holdout."""

    metric: Text = "mase"  # the gate metric: mae, rmse, smape or mase (all lower is better)
    stride: WholeNumber = 1  # steps between rolling forecast origins in the holdout
    # An extra fixed baseline: "ets" (statsmodels Holt-Winters) or "none". The statistical
    # candidates (train.models: autoets, ...) are models, chosen and gated like the others.
    classical: Text = "none"
    plot_series: WholeNumber = 4  # series drawn in forecast plots
    # Most members of the ensemble candidate (mean or median of the best k on validation,
    # k >= 2, all chosen on validation); 0 or 1: no ensemble.
    ensemble_size: WholeNumber = 4


class Params(FamilySection):
    """The whole `forecast:` section."""

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    section_name = SECTION

    def problems(self) -> list[str]:
        """Returns what is wrong with values whatever the data (empty when nothing is)."""
        params = self
        w = params.windows
        problems = too_small(w, "windows", 1, "encoder_length", "horizon")
        if any(not 1 <= length < w.encoder_length for length in w.shorter_encoders) or len(
            set(w.shorter_encoders)
        ) < len(w.shorter_encoders):
            problems.append(
                f"windows.shorter_encoders must list different whole numbers from 1 to below "
                f"windows.encoder_length ({w.encoder_length}), got {w.shorter_encoders}"
            )
        problems += [
            f"windows.{name} ({getattr(w, name)}) must be at least windows.horizon ({w.horizon})"
            for name in ("validation_length", "holdout_length")
            if getattr(w, name) < w.horizon
        ]
        if params.dataset.missing_target not in ("error", "gap"):
            problems.append("dataset.missing_target must be 'error' or 'gap'")
        for key in ("short_series", "flat_series"):
            if getattr(params.dataset, key) not in ("error", "drop"):
                problems.append(f"dataset.{key} must be 'error' or 'drop'")
        dataset = params.dataset
        if dataset.layout not in LAYOUTS:
            problems.append(
                f"dataset.layout must be one of {', '.join(LAYOUTS)}, got {dataset.layout!r}"
            )
        elif dataset.layout == "series_as_columns" and len(dataset.series_columns) != 1:
            problems.append(
                "dataset.layout series_as_columns: dataset.series_columns names the one column "
                f"the series' headers go to (e.g. [series]), got {dataset.series_columns}"
            )
        problems += too_small(params.dataset, "dataset", 1, "season_length")
        problems += params.train.common_problems()
        problems += self.model_problems()
        if params.evaluate.classical not in ("ets", "none"):
            problems.append("evaluate.classical must be 'ets' or 'none'")
        problems += too_small(params.evaluate, "evaluate", 1, "stride")
        problems += too_small(params.evaluate, "evaluate", 0, "plot_series", "ensemble_size")
        if params.evaluate.metric not in METRICS:
            problems.append(f"evaluate.metric must be one of {', '.join(METRICS)}")
        return problems

    def model_problems(self) -> list[str]:
        """Returns what is wrong with the optimiser and model sizes (checked before prepare, so
        a bad TFT setting cannot fail after the other models trained for minutes)."""
        train = self.train
        problems = too_small(train, "train", 1, "batch_size")
        for name in ("gradient_clip", "learning_rate"):
            if getattr(train, name) <= 0:
                problems.append(f"train.{name} must be above 0, got {getattr(train, name)}")
        problems += too_small(train.lstm, "train.lstm", 1, "hidden_size", "num_layers")
        problems += too_small(train.tcn, "train.tcn", 1, "channels", "kernel_size")
        if not train.tcn.dilations or min(train.tcn.dilations) < 1:
            problems.append(
                f"train.tcn.dilations must list whole numbers of at least 1, got "
                f"{train.tcn.dilations}"
            )
        problems += too_small(
            train.tft,
            "train.tft",
            1,
            "hidden_size",
            "attention_head_size",
            "hidden_continuous_size",
        )
        for name in ("lstm", "tcn", "tft"):
            problems += outside(
                getattr(train, name), f"train.{name}", "dropout", 0, 1, open_high=True
            )
        stats = train.statistical
        problems += outside(train, "train", "interval_level", 1, 100, open_high=True)
        if train.target_transform not in TARGET_TRANSFORMS:
            problems.append(
                f"train.target_transform must be one of {', '.join(TARGET_TRANSFORMS)}, got "
                f"{train.target_transform!r}"
            )
        if train.anchor not in ANCHORS:
            problems.append(
                f"train.anchor must be one of {', '.join(ANCHORS)}, got {train.anchor!r}"
            )
        if train.stop_on not in STOP_ON:
            problems.append(
                f"train.stop_on must be one of {', '.join(STOP_ON)}, got {train.stop_on!r}"
            )
        if train.refit and train.stop_on != "train":
            problems.append(
                "train.refit trains the neural models again on the data their early stop held "
                "out: it needs train.stop_on: train"
            )
        if any(season < 1 for season in stats.extra_seasons):
            problems.append(
                f"train.statistical.extra_seasons must list whole numbers of at least 1, got "
                f"{stats.extra_seasons}"
            )
        quantiles = train.tft.quantiles
        if "tft" in train.models and (
            0.5 not in quantiles
            or any(not 0 < q < 1 for q in quantiles)
            or quantiles != sorted(set(quantiles))
        ):
            problems.append(
                "train.tft.quantiles must lie between 0 and 1, be increasing without repeats and "
                f"include 0.5 (the point forecast), e.g. [0.1, 0.5, 0.9]; got {quantiles}"
            )
        return problems


load_params = Params.load
params_from_dict = Params.from_dict

__all__ = ["ConfigError", "Params", "load_params", "params_from_dict"]
