"""Forecasters: output shapes, that each can fit a tiny batch, TCN receptive field and causality,
TFT metric names, and that training is reproducible and keeps its checkpoint where expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trainyard.errors import DataError
from trainyard.models.forecast.tcn import CausalConv1d, TCNForecaster, TCNNetwork, receptive_field
from trainyard.models.forecast.tft import split_metric_name
from trainyard.tasks.family import CHECKPOINT
from trainyard.tasks.forecast.config import Params, params_from_dict
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.forecasters import FORECASTERS, setup_tcn
from trainyard.tasks.forecast.prepare import prepare, read_prepared
from trainyard.tasks.forecast.windows import SeriesArrays, window_index
from trainyard.tasks.prepared import write_table
from trainyard.tasks.training import train_model

# pytorch-forecasting's from_dataset saves its loss modules as hyperparameters (as train does).
pytestmark = pytest.mark.filterwarnings("ignore:Attribute '.*' is an instance of `nn.Module`")

ENC, HOR, QUANTILES = 16, 4, [0.1, 0.5, 0.9]
BATCH = 16
OVERFIT_STEPS = 200
OVERFIT_FACTOR = 0.2  # after OVERFIT_STEPS Adam steps the loss must be < 0.2 x its start


def tiny_params(**train: object) -> Params:
    return params_from_dict(
        {
            "dataset": {
                "name": "data.csv",
                "target": "y",
                "series_columns": ["store"],
                "known_covariates": ["dow"],
                "frequency": "D",
                "season_length": 7,
            },
            "windows": {
                "encoder_length": ENC,
                "horizon": HOR,
                "validation_length": 16,
                "holdout_length": 8,
            },
            "train": {
                "batch_size": BATCH,
                "learning_rate": 0.01,
                "max_epochs": 2,
                "seed": 7,
                "lstm": {"hidden_size": 16, "num_layers": 1},
                "tcn": {"channels": 8, "kernel_size": 3, "dilations": [1, 2, 4]},
                "tft": {
                    "hidden_size": 8,
                    "attention_head_size": 1,
                    "hidden_continuous_size": 4,
                    "dropout": 0.0,
                    "quantiles": QUANTILES,
                },
                **train,
            },
        }
    )


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Runs these tiny models on one thread: faster than two, and steady on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns a prepared file: two daily series (trend + weekly cycle), 120 steps each."""
    root = tmp_path_factory.mktemp("raw")
    t = np.arange(120)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "date": pd.date_range("2020-01-01", periods=120, freq="D"),
                    "store": store,
                    "y": level + 0.05 * t + 3 * np.sin(2 * np.pi * t / 7 + phase),
                    "dow": np.sin(2 * np.pi * t / 7),
                }
            )
            for store, level, phase in (("a", 10.0, 0.0), ("b", 50.0, 1.0))
        ]
    )
    frame.to_csv(root / "data.csv", index=False)
    return Path(prepare(tiny_params(), root, root / "prepared").path)


@pytest.fixture(scope="module")
def prepared(prepared_path: Path) -> tuple[SeriesArrays, pd.DataFrame]:
    table, _ = read_prepared(prepared_path)
    return SeriesArrays.from_prepared(table, tiny_params().dataset), table


def forward(name: str, module: torch.nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (training loss, output) for one batch, as each kind's training step computes it."""
    if name == "tft":
        x, y = batch
        prediction = module(x)["prediction"]
        return module.loss(prediction, y), prediction
    output = module(batch)["prediction"]
    return module.model_step(batch)[0], output


def optimizer_of(module) -> torch.optim.Optimizer:
    configured = module.configure_optimizers()
    if isinstance(configured, torch.optim.Optimizer):
        return configured
    if isinstance(configured, dict):
        return configured["optimizer"]
    first = configured[0]
    return first[0] if isinstance(first, list) else first


@pytest.mark.parametrize("name", ["lstm", "tcn", "tft"])
def test_one_forward_and_training_step(name: str, prepared) -> None:
    arrays, table = prepared
    torch.manual_seed(0)
    setup = FORECASTERS[name].setup(arrays, table, tiny_params())
    batch = next(iter(setup.train_loader))

    loss, output = forward(name, setup.module, batch)
    loss.backward()

    expected = (BATCH, HOR, len(QUANTILES)) if name == "tft" else (BATCH, HOR)
    assert tuple(output.shape) == expected
    assert loss.ndim == 0 and torch.isfinite(loss)
    grads = [p.grad for p in setup.module.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("name", ["lstm", "tcn", "tft"])
def test_loaders_cover_the_same_windows_for_every_kind(name: str, prepared) -> None:
    arrays, table = prepared
    setup = FORECASTERS[name].setup(arrays, table, tiny_params())

    # 120 steps - 24 validation/holdout = 96 train rows -> 77 windows a series; validation 13.
    expected_train = len(window_index(arrays, "train", ENC, HOR))
    expected_val = len(window_index(arrays, "validation", ENC, HOR))
    assert (expected_train, expected_val) == (2 * 77, 2 * 13)
    if name == "tft":
        assert len(setup.train_loader.dataset) == expected_train
        assert len(setup.val_loader.dataset) == expected_val
    else:
        assert len(setup.train_loader.index) == expected_train
        assert len(setup.val_loader.index) == expected_val


@pytest.mark.parametrize("name", ["lstm", "tcn", "tft"])
def test_overfits_a_tiny_fixed_batch_loss_falls_below_a_fifth(name: str, prepared) -> None:
    """200 Adam steps on one fixed batch of 16 windows: final loss < 0.2 x initial loss."""
    arrays, table = prepared
    torch.manual_seed(0)
    setup = FORECASTERS[name].setup(arrays, table, tiny_params())
    batch = next(iter(setup.train_loader))
    module = setup.module.train()
    optimizer = optimizer_of(module)

    losses = []
    for _ in range(OVERFIT_STEPS):
        optimizer.zero_grad()
        loss, _ = forward(name, module, batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < OVERFIT_FACTOR * losses[0], (losses[0], losses[-1])


# --- TCN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel_size", "dilations", "field"),
    [(2, [1], 3), (3, [1, 2, 4], 29), (3, [1, 2, 4, 8, 16], 125), (5, [1, 3], 33)],
)
def test_receptive_field_formula(kernel_size: int, dilations: list[int], field: int) -> None:
    assert receptive_field(kernel_size, dilations) == field
    assert field == 1 + 2 * (kernel_size - 1) * sum(dilations)


@pytest.mark.parametrize(("kernel_size", "dilations"), [(2, [1, 2]), (3, [1, 2, 4])])
def test_receptive_field_matches_what_the_network_sees(
    kernel_size: int, dilations: list[int]
) -> None:
    """The last output depends on exactly the last `receptive_field` input steps."""
    torch.manual_seed(0)
    network = TCNNetwork(3, 0, HOR, 16, kernel_size, dilations, 0.0)
    steps = 60
    inputs = torch.randn(1, 3, steps, requires_grad=True)

    network.blocks(inputs)[0, :, -1].sum().backward()

    reach = inputs.grad.abs().sum(dim=1)[0]  # [steps]: sensitivity of the last output
    field = receptive_field(kernel_size, dilations)
    assert (reach[: steps - field] == 0).all()
    assert (reach[steps - field :] > 0).all()
    assert network.receptive_field == field


def test_tcn_whose_receptive_field_is_shorter_than_the_encoder_raises() -> None:
    TCNForecaster(1, 0, HOR, encoder_length=29, kernel_size=3, dilations=(1, 2, 4))  # 29 = 29

    with pytest.raises(ValueError, match="receptive field 29 is shorter than encoder_length 30"):
        TCNForecaster(1, 0, HOR, encoder_length=30, kernel_size=3, dilations=(1, 2, 4))


def test_tcn_setup_rejects_a_too_short_config(prepared) -> None:
    arrays, table = prepared
    params = tiny_params(tcn={"channels": 8, "kernel_size": 2, "dilations": [1, 2]})  # field 7

    with pytest.raises(ValueError, match="receptive field 7 .* encoder_length 16"):
        setup_tcn(arrays, table, params)


def test_causal_conv_keeps_length_and_looks_only_back() -> None:
    torch.manual_seed(0)
    conv = CausalConv1d(2, 4, kernel_size=3, dilation=2)
    inputs = torch.randn(1, 2, 20)
    changed = inputs.clone()
    changed[..., 12] += 1.0

    before, after = conv(inputs), conv(changed)

    assert before.shape == (1, 4, 20)
    assert torch.equal(before[..., :12], after[..., :12])
    assert not torch.equal(before[..., 12], after[..., 12])


@pytest.mark.parametrize("step", [0, 10, 31])
def test_tcn_conv_stack_is_causal(step: int) -> None:
    """Changing input step t changes no output before t, and does change output t."""
    torch.manual_seed(0)
    network = TCNNetwork(2, 0, HOR, 8, 3, [1, 2, 4], 0.0).eval()
    inputs = torch.randn(4, 2, 32)
    changed = inputs.clone()
    changed[:, :, step] += 5.0

    with torch.no_grad():
        before, after = network.blocks(inputs), network.blocks(changed)

    assert torch.equal(before[..., :step], after[..., :step])
    assert not torch.equal(before[..., step:], after[..., step:])


# --- TFT ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logged", "renamed"),
    [
        ("val_loss", "val/loss"),
        ("train_loss", "train/loss"),
        ("train_SMAPE", "train/smape"),
        ("test_MAE", "test/mae"),
        ("val_RMSE", "val/rmse"),
        ("predict_loss", "predict/loss"),
        ("loss", "loss"),  # no stage: unchanged
        ("lr-Adam", "lr-Adam"),
        ("learning_rate", "learning_rate"),  # "learning" is not a stage
        ("val/loss", "val/loss"),  # already in the project's form
    ],
)
def test_tft_metric_names_are_split_by_stage(logged: str, renamed: str) -> None:
    assert split_metric_name(logged) == renamed


def test_tft_log_passes_renamed_names_on(prepared, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_forecasting import TemporalFusionTransformer

    arrays, table = prepared
    module = FORECASTERS["tft"].setup(arrays, table, tiny_params()).module
    logged = []
    monkeypatch.setattr(
        TemporalFusionTransformer,
        "log",
        lambda self, name, value, *args, **kwargs: logged.append((name, value, kwargs)),
        raising=False,
    )

    module.log("val_loss", 1.5, prog_bar=True)
    module.log("train_SMAPE", 0.25)

    assert logged == [("val/loss", 1.5, {"prog_bar": True}), ("train/smape", 0.25, {})]


# --- training ---------------------------------------------------------------------------------


def test_lstm_training_is_deterministic_and_keeps_its_best_checkpoint(
    prepared_path: Path, tmp_path: Path
) -> None:
    params = tiny_params(max_epochs=2, limit_train_batches=4)

    first = train_model(FORECAST, "lstm", prepared_path, params, tmp_path / "first")
    second = train_model(FORECAST, "lstm", prepared_path, params, tmp_path / "second")

    assert first.best_score == second.best_score
    assert first.history == second.history
    assert first.epochs == 2
    assert [h["epoch"] for h in first.history] == [0, 1]
    # Each epoch's row holds that epoch's own train/ and val/ aggregates (none missing).
    assert all({"train/loss", "val/loss", "val/mae"} <= set(h) for h in first.history)
    assert first.best_score == min(h["val/loss"] for h in first.history)
    checkpoint = tmp_path / "first" / "lstm" / CHECKPOINT
    assert checkpoint.is_file()
    assert Path(first.model_dir) == checkpoint.parent
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == ["lstm"]  # no temp dirs left

    # The checkpoint loads back and forecasts every holdout window.
    table, _ = read_prepared(prepared_path)
    arrays = SeriesArrays.from_prepared(table, params.dataset)
    kind = FORECASTERS["lstm"]
    module = kind.load(checkpoint.parent, params)
    index = window_index(arrays, "holdout", ENC, HOR)
    forecast = kind.predict(module, arrays, table, index, params, checkpoint.parent)
    assert forecast.point.shape == (len(index), HOR) == (2 * 5, HOR)
    assert np.isfinite(forecast.point).all()


def test_a_window_model_carries_conformal_intervals_that_cover_its_validation(
    prepared_path: Path, tmp_path: Path
) -> None:
    params = tiny_params(max_epochs=2, limit_train_batches=4, interval_level=80)

    result = train_model(FORECAST, "tcn", prepared_path, params, tmp_path)

    intervals = json.loads((Path(result.model_dir) / "intervals.json").read_text())
    assert intervals["level"] == 80 and len(intervals["lower"]) == len(intervals["upper"]) == HOR
    assert all(lo < hi for lo, hi in zip(intervals["lower"], intervals["upper"], strict=True))
    table, _ = read_prepared(prepared_path)
    arrays = SeriesArrays.from_prepared(table, params.dataset)
    kind = FORECASTERS["tcn"]
    module = kind.load(Path(result.model_dir), params)
    validation = window_index(arrays, "validation", ENC, HOR)
    assert intervals["windows"] == len(validation)
    forecast = kind.predict(module, arrays, table, validation, params, Path(result.model_dir))
    assert forecast.levels == [0.1, 0.5, 0.9]
    low, mid, high = np.moveaxis(forecast.quantiles, -1, 0)
    np.testing.assert_array_equal(mid, forecast.point)
    rows = validation.starts[:, None] + ENC + torch.arange(HOR)
    actual = arrays.target[rows].numpy()
    # Split conformal: on the windows it was calibrated on, each step covers >= 80%.
    covered = (actual >= low - 1e-6) & (actual <= high + 1e-6)
    assert (covered.mean(axis=0) >= 0.8).all(), covered.mean(axis=0)
    # Without the file, the model gives points only (as models trained before it did).
    (Path(result.model_dir) / "intervals.json").unlink()
    bare = kind.predict(module, arrays, table, validation, params, Path(result.model_dir))
    assert bare.quantiles is None
    np.testing.assert_array_equal(bare.point, forecast.point)


def test_a_different_seed_trains_a_different_model(prepared_path: Path, tmp_path: Path) -> None:
    one = train_model(FORECAST, "lstm", prepared_path, tiny_params(max_epochs=1, seed=1), tmp_path)
    two = train_model(FORECAST, "lstm", prepared_path, tiny_params(max_epochs=1, seed=2), tmp_path)

    assert one.best_score != two.best_score
    assert (tmp_path / "lstm" / CHECKPOINT).is_file()  # a retrain replaces the model's folder


def test_tft_trains_logging_project_metric_names(prepared_path: Path, tmp_path: Path) -> None:
    params = tiny_params(max_epochs=1, limit_train_batches=2)

    result = train_model(FORECAST, "tft", prepared_path, params, tmp_path)

    # pytorch-forecasting logs train_loss/val_loss; early stopping and the checkpoint monitor
    # val/loss, and the epoch history keeps only train/ and val/ names.
    assert {"train/loss", "val/loss"} <= set(result.history[0])
    assert result.best_score == result.history[0]["val/loss"]
    model_dir = tmp_path / "tft"
    assert (model_dir / CHECKPOINT).is_file()
    # Nothing in the folder needs an unpickler: weights, JSON and Parquet only.
    assert sorted(p.name for p in model_dir.iterdir()) == [
        CHECKPOINT,
        "encoder.json",
        "tft_hparams.json",
        "tft_training_rows.parquet",
    ]
    torch.load(model_dir / CHECKPOINT, weights_only=True)
    table, _ = read_prepared(prepared_path)
    arrays = SeriesArrays.from_prepared(table, params.dataset)
    index = window_index(arrays, "holdout", ENC, HOR)
    kind = FORECASTERS["tft"]
    forecast = kind.predict(kind.load(model_dir, params), arrays, table, index, params, model_dir)
    assert forecast.point.shape == (len(index), HOR)
    assert forecast.quantiles.shape == (len(index), HOR, len(QUANTILES))
    assert forecast.levels == QUANTILES
    np.testing.assert_array_equal(forecast.point, forecast.quantiles[..., 1])


def test_tft_takes_column_names_with_dots(prepared_path: Path, tmp_path: Path) -> None:
    # Statistical offices name series by dotted codes (STS.M.I7.W.TOVT); pytorch-forecasting
    # refuses such column names, so the TFT must never see the user's.
    table, meta = read_prepared(prepared_path)
    dotted = table.rename(columns={"y": "y.eur", "dow": "dow.sin"})
    params = tiny_params(max_epochs=1, limit_train_batches=2)
    params = params.model_copy(
        update={
            "dataset": params.dataset.model_copy(
                update={"target": "y.eur", "known_covariates": ["dow.sin"]}
            )
        }
    )
    meta = {**meta, "dataset": params.dataset.model_dump()}
    path = tmp_path / "prepared" / "series.parquet"
    write_table(dotted, meta, path)

    train_model(FORECAST, "tft", path, params, tmp_path / "models")

    arrays = SeriesArrays.from_prepared(dotted, params.dataset)
    index = window_index(arrays, "holdout", ENC, HOR)
    kind, model_dir = FORECASTERS["tft"], tmp_path / "models" / "tft"
    forecast = kind.predict(kind.load(model_dir, params), arrays, dotted, index, params, model_dir)
    assert forecast.point.shape == (len(index), HOR) and np.isfinite(forecast.point).all()


def test_tft_sees_exactly_the_lstm_windows_on_data_with_gaps(tmp_path: Path) -> None:
    from tests.conftest import ROOT
    from trainyard.tasks.forecast.config import load_params
    from trainyard.tasks.forecast.forecasters import _same_windows, _tft_datasets, window_keys
    from trainyard.tasks.forecast.prepare import prepare

    params = load_params(ROOT / "params.yaml")  # co2: 59 missing weeks
    summary = prepare(params, ROOT, tmp_path)
    table, _ = read_prepared(Path(summary.path))
    arrays = SeriesArrays.from_prepared(table, params.dataset)
    training, everything = _tft_datasets(table, params)
    windows = params.windows
    for split, dataset in (("train", training), ("validation", everything)):
        index = window_index(arrays, split, windows.encoder_length, windows.horizon)
        decoded = _same_windows(dataset, arrays, index).decoded_index
        tft_keys = set(zip(decoded["series_id"], decoded["time_idx_first_prediction"], strict=True))
        assert tft_keys == set(window_keys(arrays, index))
        assert len(decoded) == len(index)
        # Every TFT window spans exactly encoder + horizon steps: none bridges a gap.
        span = decoded["time_idx_last"] - decoded["time_idx_first"] + 1
        assert (span == windows.encoder_length + windows.horizon).all()


def test_a_window_model_keeps_its_covariate_scaling_as_json_not_a_pickle(
    prepared_path: Path, tmp_path: Path
) -> None:
    from trainyard.tasks.forecast.forecasters import read_covariate_stats

    params = tiny_params(max_epochs=1, limit_train_batches=2)
    train_model(FORECAST, "lstm", prepared_path, params, tmp_path)
    model_dir = tmp_path / "lstm"
    assert not list(model_dir.glob("*.pkl"))
    table, _ = read_prepared(prepared_path)
    expected = SeriesArrays.from_prepared(table, params.dataset).covariate_stats
    stats = read_covariate_stats(model_dir)
    assert stats.keys() == expected.keys()
    for series, (mean, std) in expected.items():
        np.testing.assert_allclose(stats[series][0], mean)
        np.testing.assert_allclose(stats[series][1], std)
    # A model saved with the old pickle is refused, never unpickled.
    (model_dir / "covariate_stats.json").rename(model_dir / "covariate_stats.pkl")
    with pytest.raises(DataError, match="no longer loads"):
        read_covariate_stats(model_dir)


@pytest.mark.parametrize("kind", ["lstm", "tcn"])
@pytest.mark.parametrize("anchor", ["last", "season"])
def test_an_untrained_offset_forecasts_the_naive_or_seasonal_naive_anchor(
    kind: str, anchor: str, prepared
) -> None:
    """With the network's offset zeroed, the forecast is its anchor: the last encoder value,
    or (train.anchor season, season 7) the encoder's last 7 values repeated over the horizon."""
    arrays, table = prepared
    setup = FORECASTERS[kind].setup(arrays, table, tiny_params(anchor=anchor))
    module, batch = setup.module, next(iter(setup.train_loader))
    assert module.hparams.anchor_season == (7 if anchor == "season" else 1)
    module.network.forward = lambda encoder, known: torch.zeros(len(encoder), HOR)

    forecast = module(batch)["prediction"]

    encoder = batch["encoder_target"]
    if anchor == "season":  # HOR (4) < the season: one season back from each step
        expected = encoder[:, ENC - 7 : ENC - 7 + HOR]
    else:
        expected = encoder[:, -1:].expand(-1, HOR)
    torch.testing.assert_close(forecast, expected, rtol=1e-5, atol=1e-4)


def test_a_season_longer_than_the_encoder_anchors_on_the_last_value() -> None:
    from trainyard.tasks.forecast.forecasters import anchor_season

    values = tiny_params(anchor="season").to_dict()
    assert anchor_season(params_from_dict(values)) == 7
    values["dataset"]["season_length"] = ENC + 1  # co2 weekly: 52 weeks, encoder 48
    assert anchor_season(params_from_dict(values)) == 1
    values["dataset"]["season_length"], values["train"]["anchor"] = 7, "last"
    assert anchor_season(params_from_dict(values)) == 1


def test_a_seasonally_anchored_model_loads_back_with_its_anchor(
    prepared_path: Path, tmp_path: Path
) -> None:
    params = tiny_params(max_epochs=1, limit_train_batches=2, anchor="season")
    result = train_model(FORECAST, "tcn", prepared_path, params, tmp_path / "models")
    assert result.hparams["anchor_season"] == 7

    # Loaded with params that say "last", it still anchors as it was trained (its checkpoint).
    module = FORECASTERS["tcn"].load(Path(result.model_dir), tiny_params())
    assert module.anchor_season == 7


def test_a_model_with_season_features_reads_the_dates_of_its_history(
    prepared_path: Path, tmp_path: Path
) -> None:
    """With train.season_features the network reads each step's place in the week from its
    date, in training and in serving: the same values a day later forecast otherwise, which
    a model without them cannot tell apart."""
    import mlflow

    from trainyard.tasks.forecast.serving import ForecasterModel

    kind = "lstm"  # TCN reads the same arrays (SeriesArrays.from_prepared)
    rows = read_prepared(prepared_path)[0][["date", "store", "y", "dow"]]
    history = rows.groupby("store").tail(ENC + HOR).copy()
    future = history.groupby("store").cumcount(ascending=False) < HOR  # dow known ahead
    history.loc[future, "y"] = np.nan
    later = history.assign(date=history["date"] + pd.Timedelta(days=1))
    forecasts = {}
    for features in (False, True):
        params = tiny_params(max_epochs=1, limit_train_batches=4, season_features=features)
        result = train_model(FORECAST, kind, prepared_path, params, tmp_path / f"{features}")
        module = FORECASTERS[kind].load(Path(result.model_dir), params)
        assert module.hparams["input_size"] == 2 + 2 * features  # target, dow (+ sin, cos)
        saved = tmp_path / f"pyfunc-{features}"
        mlflow.pyfunc.save_model(
            saved,
            python_model=ForecasterModel(),
            artifacts={"model_dir": result.model_dir},
            model_config={"kind": kind, "params": params.to_dict()},
        )
        model = mlflow.pyfunc.load_model(str(saved))
        forecasts[features] = [model.predict(h)["prediction"].to_numpy() for h in (history, later)]
        assert np.isfinite(forecasts[features][0]).all()
    np.testing.assert_allclose(*forecasts[False], rtol=1e-6)
    assert not np.allclose(*forecasts[True], rtol=1e-3)
