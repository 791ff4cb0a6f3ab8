"""The forecasting family: time-series tables -> LSTM/TCN/TFT forecasters scored on a holdout."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from trainyard.tasks.family import (
    DirectFit,
    EvaluationResult,
    Family,
    PyfuncSpec,
    TrainingSetup,
)
from trainyard.tasks.forecast import prepare as preparation
from trainyard.tasks.forecast.config import (
    METRICS,
    MODEL_KINDS,
    STATISTICAL_KINDS,
    DatasetConfig,
    Params,
    WindowConfig,
    params_from_dict,
)
from trainyard.tasks.prepared import table_suffix

# Files --dataset hands to this family (behind a compression suffix too: sales.csv.gz).
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# The neural kinds that train a network per length of windows.shorter_encoders and average
# them; the TFT, which trains 3-5 times as long as LSTM/TCN, reads the shortest.
ENCODER_MIXERS = ("lstm", "tcn")


log = logging.getLogger(__name__)


class ForecastFamily(Family):
    """Forecasters of one table's series; the gate metric is a holdout error (lower wins)."""

    name = "forecast"
    section = Params
    registry_suffix = "forecaster"
    metrics = dict.fromkeys(METRICS, False)
    serving_requirements = (
        "pytorch-forecasting",
        "pandera",
        "pyarrow",
        "statsmodels",
        "statsforecast",
    )
    prepared_type = preparation.PrepareSummary
    distributed_kinds = ("lstm", "tcn")  # the TFT's loader and logging are pytorch-forecasting's
    direct_kinds = STATISTICAL_KINDS  # statsforecast models, fitted per series in seconds

    def label(self, params: Params) -> str:
        """Returns the dataset's short name, e.g. co2."""
        return params.dataset.label

    def model_kinds(self) -> list[str]:
        """Returns the neural (lstm, tcn, tft) and statistical (autoets, ...) forecasters."""
        return list(MODEL_KINDS)

    def dataset_values(self, values: dict[str, Any], dataset: str) -> dict[str, Any] | None:
        """Returns the forecast section reading table `dataset` (a CSV/Parquet path or a
        built-in), or None when it is not a table."""
        from trainyard.tasks.forecast.datasets import BUILTIN_DATASETS, builtin_overrides

        if dataset not in BUILTIN_DATASETS and table_suffix(Path(dataset)) not in TABLE_SUFFIXES:
            return None
        table = {**values.get("dataset", {}), "name": dataset, **builtin_overrides(dataset)}
        return {**values, "dataset": table}

    # Validates the table and writes the prepared series; cached by a hash of the raw table,
    # the dataset/windows params and the prepare code.
    prepare = staticmethod(preparation.prepare)
    prepare_key = staticmethod(preparation.prepare_input_key)

    def prepared(self, params: Params, out_dir: Path) -> preparation.PrepareSummary:
        """Returns the summary of the prepared file in out_dir (checked against params)."""
        return preparation.summary_of(out_dir / preparation.PREPARED_FILE, params)

    def setup(self, name: str, prepared_path: Path, params: Params) -> TrainingSetup:
        """Returns forecaster `name` with its window loaders over the prepared series."""
        from trainyard.tasks.forecast.forecasters import FORECASTERS
        from trainyard.tasks.forecast.windows import SeriesArrays

        table = preparation.read_prepared_for(prepared_path, params)
        arrays = SeriesArrays.from_prepared(
            table, params.dataset, season_features=params.train.season_features
        )
        return FORECASTERS[name].setup(arrays, table, params)

    def calibrate(
        self, name: str, model_dir: Path, prepared_path: Path, params: Params
    ) -> dict[str, Any]:
        """Returns LSTM/TCN conformal intervals from their validation residuals (the other
        kinds give their own)."""
        from trainyard.tasks.forecast.forecasters import conformal_intervals

        if name not in ("lstm", "tcn"):
            return {}
        _, arrays = self._table(prepared_path, params)
        return conformal_intervals(name, model_dir, arrays, params)

    def variants(self, name: str, prepared_path: Path, params: Params) -> list[Params]:
        """Returns an LSTM's or TCN's settings, one per encoder length of
        windows.shorter_encoders and windows.encoder_length (longest last); a TFT's, the
        shortest (ENCODER_MIXERS). With train.stop_on train, a length that leaves no window
        before the stop split where another length has one is left out, so that every variant
        stops early the same way."""
        from trainyard.tasks.forecast.forecasters import stops_on_train, with_encoder

        windows = params.windows
        if name in self.direct_kinds or not windows.shorter_encoders:
            return [params]
        lengths = sorted({windows.encoder_length, *windows.shorter_encoders})
        if name not in ENCODER_MIXERS:
            return [with_encoder(params, lengths[0])]
        variants = [with_encoder(params, length) for length in lengths]
        if params.train.stop_on == "train":
            arrays = self._table(prepared_path, params)[1]
            stopping = [stops_on_train(arrays, variant) for variant in variants]
            if any(stopping) and not all(stopping):
                dropped = [n for n, ok in zip(lengths, stopping, strict=True) if not ok]
                log.warning(
                    "%s: encoder length(s) %s leave no training window before the stop split "
                    "(train.stop_on: train): not trained",
                    name,
                    ", ".join(map(str, dropped)),
                )
                variants = [v for v, ok in zip(variants, stopping, strict=True) if ok]
        return variants

    def variant_files(self, name: str, variant_dirs: list[Path], params: Params) -> dict[str, Any]:
        """Returns the files of an LSTM/TCN made of networks of several encoder lengths: the
        list of their folders (its forecast is their mean), the encoder of the windows it
        reads (the longest) and the covariate scaling and target transform they share."""
        from trainyard.tasks.forecast.forecasters import mixture_files

        return mixture_files(variant_dirs, params)

    def refit_params(self, name: str, prepared_path: Path, params: Params) -> Params | None:
        """Returns, for a neural model that stopped early on the end of the train split with
        train.refit, the params that fit it on every train window (its validation loader is
        then not used)."""
        from trainyard.tasks.forecast.forecasters import stops_on_train

        train = params.train
        if name in self.direct_kinds or train.stop_on != "train" or not train.refit:
            return None
        if not stops_on_train(self._table(prepared_path, params)[1], params):
            return None
        return params.model_copy(
            update={"train": train.model_copy(update={"stop_on": "validation"})}
        )

    def check_prepared(self, prepared: preparation.PrepareSummary, params: Params) -> None:
        """Raises DataError naming the first series and step whose target the neural models'
        train.target_transform (log, boxcox) cannot take: before any model trains."""
        if not set(params.train.models) - set(self.direct_kinds):
            return
        from trainyard.tasks.forecast.forecasters import stops_on_train, with_encoder
        from trainyard.tasks.forecast.windows import check_positive

        _, arrays = self._table(Path(prepared.path), params)
        kind, windows = params.train.target_transform, params.windows
        if kind != "none":
            check_positive(arrays, kind, params.dataset.target)
        shortest = with_encoder(params, min([windows.encoder_length, *windows.shorter_encoders]))
        if params.train.stop_on == "train" and not stops_on_train(arrays, shortest):
            log.warning(
                "train.stop_on: train needs a train split of more than windows.validation_length "
                "(%d) + encoder_length (%d) + horizon (%d) steps with no missing target, and no "
                "series has one: the neural models stop early on validation instead",
                windows.validation_length,
                shortest.windows.encoder_length,
                windows.horizon,
            )

    def fit_direct(self, name: str, prepared_path: Path, params: Params) -> DirectFit:
        """Returns statistical forecaster `name` fitted to every series' train split, with
        its validation MASE over origins a horizon apart (windows that do not overlap: it
        depends on no evaluate setting, so changing one re-runs no training; the evaluation
        scores validation at its own stride for the selection)."""
        from trainyard.tasks.forecast import statistical
        from trainyard.tasks.forecast.evaluate import score, split_windows

        table, arrays = self._table(prepared_path, params)
        fitted, models = statistical.fit(name, arrays, params)
        validation = split_windows(
            table, arrays, params, "validation", stride=params.windows.horizon
        )
        forecast = statistical.predict(models, arrays, table, validation.index, params)
        fitted.best_score = score(validation.actual, forecast, validation.scale)["mase"]
        fitted.monitor = "val/mase"
        return fitted

    def _table(self, prepared_path: Path, params: Params):
        """Returns the prepared table and its series as arrays."""
        from trainyard.tasks.forecast.windows import SeriesArrays

        table = preparation.read_prepared_for(prepared_path, params)
        return table, SeriesArrays.from_prepared(
            table, params.dataset, season_features=params.train.season_features
        )

    def evaluate(
        self,
        prepared: preparation.PrepareSummary,
        model_dirs: dict[str, Path],
        params: Params,
        report_dir: Path,
        histories: dict[str, list[dict[str, float]]],
    ) -> EvaluationResult:
        """Returns holdout scores of every forecaster and baseline; writes the reports."""
        from trainyard.tasks.forecast.evaluate import evaluate

        return evaluate(Path(prepared.path), model_dirs, params, report_dir, histories)

    def evaluation_key(self, prepared: preparation.PrepareSummary, params: Params) -> str:
        """Returns a hash naming the holdout windows: data version, windows and stride."""
        parts = f"{prepared.md5}|{params.section_hash('windows')}|{params.evaluate.stride}"
        return hashlib.sha256(parts.encode()).hexdigest()[:12]

    def dataset_frame(self, prepared: preparation.PrepareSummary) -> tuple[pd.DataFrame, str]:
        """Returns the prepared table and its target column."""
        table, meta = preparation.read_prepared(Path(prepared.path))
        return table, meta["dataset"]["target"]

    def model_input(
        self, frame: pd.DataFrame, model_config: dict[str, Any], path: Path
    ) -> pd.DataFrame:
        """Returns a history table in the layout the model's training file had (a row per
        series with dates as headers, or a column per series) melted to the long table the
        model reads; a long table as it is. Of a model trained with short_series: drop, the
        series too short for its encoder are left out and named in the log (the same file it
        was trained on forecasts the series it can); the model itself refuses them."""
        from trainyard.tasks.forecast.datasets import DATES_AS_COLUMNS, LONG, to_long

        model_params = model_config.get("params") or {}
        dataset = dict(model_params.get("dataset") or {})
        spec = DatasetConfig.model_validate({**dataset, "missing_target": "gap"})
        columns = {str(name) for name in frame.columns}
        melted = spec.time_column if spec.layout == DATES_AS_COLUMNS else spec.target
        if spec.layout != LONG and melted not in columns:
            frame = to_long(frame, spec, str(path))
        elif spec.period_column in columns:
            frame = _dated(frame, spec, path)
        if set(spec.columns) <= {str(name) for name in frame.columns}:
            frame = frame[spec.columns]  # other columns of the file are not the model's
        if spec.short_series == "drop":
            windows = WindowConfig.model_validate(model_params.get("windows") or {})
            frame = _without_short_histories(frame, spec, windows, path)
        return frame

    def pyfunc(
        self, name: str, model_dir: Path, prepared: preparation.PrepareSummary, params: Params
    ) -> PyfuncSpec:
        """Returns forecaster `name` as a pyfunc: history table in, forecasts out."""
        from trainyard.tasks.forecast.serving import ForecasterModel

        return PyfuncSpec(
            python_model=ForecasterModel,
            artifacts={"model_dir": str(model_dir)},
            model_config={"kind": name, "params": params.to_dict()},
            input_example=input_example(prepared, params),
        )

    def rescore(
        self,
        model_config: dict[str, Any],
        artifacts: dict[str, Path],
        prepared: preparation.PrepareSummary,
        params: Params,
    ) -> float | None:
        """Returns a registered forecaster's gate metric on this holdout, or None when it was
        trained for other windows or columns and cannot forecast these windows. A model of a
        shorter encoder (e.g. registered before zero-config inference lengthened it) reads
        the last steps of these windows, at the same origins."""
        from dataclasses import replace

        from trainyard.tasks.forecast.evaluate import load_holdout, model_forecast, score
        from trainyard.tasks.forecast.forecasters import cut_windows

        theirs = params_from_dict(model_config["params"])
        if (
            theirs.windows.encoder_length > params.windows.encoder_length
            or theirs.windows.horizon != params.windows.horizon
            or theirs.dataset.target != params.dataset.target
            or theirs.dataset.known_covariates != params.dataset.known_covariates
            or theirs.dataset.unknown_covariates != params.dataset.unknown_covariates
            or theirs.train.season_features != params.train.season_features
        ):
            return None
        holdout = load_holdout(Path(prepared.path), params)
        longest, own = params.windows.encoder_length, theirs.windows.encoder_length
        index = cut_windows(holdout.index, longest, own)
        forecast = model_forecast(
            model_config["kind"], artifacts["model_dir"], replace(holdout, index=index), theirs
        )
        return score(holdout.actual, forecast, holdout.scale)[params.evaluate.metric]


def _dated(frame: pd.DataFrame, spec: DatasetConfig, path: Path) -> pd.DataFrame:
    """Returns a history of years and quarters or months (dataset.period_column) with its
    times as dates, as the model reads them (and as training read its file)."""
    from trainyard.tasks.forecast.validate import DataValidationError, read_times

    times, problems = read_times(frame, spec)
    if problems:
        raise DataValidationError(str(path), problems)
    return frame.drop(columns=[spec.period_column]).assign(**{spec.time_column: times})


def _without_short_histories(
    frame: pd.DataFrame, spec: DatasetConfig, windows: WindowConfig, path: Path
) -> pd.DataFrame:
    """Returns a history without the series the model's short_series: drop leaves out: those
    prepare's check (validate_table) leaves out for its windows, as its training did (a
    statistical model has none of theirs), and those whose last encoder steps are not all
    observed; naming them in the log. As it was when that check refuses the table, or when
    every series would go: the model's own check then says why."""
    from trainyard.errors import DataError
    from trainyard.tasks.forecast.validate import series_labels, steps_needed, validate_table

    try:
        typed, short = validate_table(frame, spec, windows, str(path))
    except DataError:
        return frame
    labels = series_labels(typed, spec.series_columns)
    observed = typed[spec.target].notna().to_numpy()
    offset = pd.tseries.frequencies.to_offset(spec.frequency)
    encoder = windows.encoder_length
    gappy = [
        label
        for label, stamps in typed[spec.time_column][observed].groupby(labels[observed].to_numpy())
        # at least `encoder` values: validate_table kept the series
        if stamps.sort_values().iloc[-encoder] + (encoder - 1) * offset != stamps.max()
    ]
    if len(gappy) == labels.nunique():
        return frame
    short = sorted(short + gappy)
    if not short:
        return frame
    log.warning(
        "%s: left out %d series with fewer than the %d values the model's windows need, or "
        "gaps in their last %d steps (its dataset.short_series is drop): %s",
        path,
        len(short),
        steps_needed(windows, spec.season_length)[0],
        encoder,
        ", ".join(map(str, short[:10]))
        + (f" and {len(short) - 10} more" if len(short) > 10 else ""),
    )
    return frame[~series_labels(frame, spec.series_columns).isin(short).to_numpy()].reset_index(
        drop=True
    )


EXAMPLE_STEPS = 24  # the shortest input example (statsforecast's AutoETS needs 12 or more)


def input_example(prepared: preparation.PrepareSummary, params: Params) -> pd.DataFrame:
    """Returns a small history in the input table's format, for the pyfunc signature: the
    last steps of the first series, an encoder's worth and at least EXAMPLE_STEPS (MLflow
    forecasts it to infer the signature, and statsforecast refuses a tiny history)."""
    spec = params.dataset
    table, _ = preparation.read_prepared(Path(prepared.path))
    first = table[table["series_id"] == table["series_id"].iloc[0]]
    steps = max(params.windows.encoder_length, 2 * spec.season_length, EXAMPLE_STEPS)
    first = first[first[spec.target].notna()].tail(steps)
    return first[spec.columns].reset_index(drop=True)


FORECAST = ForecastFamily()
