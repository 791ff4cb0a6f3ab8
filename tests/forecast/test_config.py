"""params.yaml -> typed dataclasses: defaults, profiles, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainyard.tasks.forecast.config import (
    ConfigError,
    DatasetConfig,
    LSTMConfig,
    Params,
    TCNConfig,
    TFTConfig,
    TrainConfig,
    WindowConfig,
    load_params,
    params_from_dict,
)

PARAMS_YAML = Path(__file__).resolve().parents[2] / "params.yaml"


def write_params(tmp_path: Path, values: dict) -> Path:
    """Writes `values` as the forecast section (and each profile's forecast overrides)."""
    profiles = values.get("profiles", {})
    section = {key: value for key, value in values.items() if key != "profiles"}
    wrapped = {
        "forecast": section,
        "profiles": {name: {"forecast": body} for name, body in profiles.items()},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(wrapped))
    return path


def test_params_yaml_loads_into_typed_dataclasses() -> None:
    params = load_params(PARAMS_YAML)

    assert isinstance(params, Params)
    assert isinstance(params.dataset, DatasetConfig)
    assert isinstance(params.windows, WindowConfig)
    assert isinstance(params.train, TrainConfig)
    assert isinstance(params.train.lstm, LSTMConfig)
    assert isinstance(params.train.tcn, TCNConfig)
    assert isinstance(params.train.tft, TFTConfig)
    assert params.dataset.name == "co2"
    assert params.dataset.missing_target == "gap"
    assert params.dataset.series_columns == []
    assert (params.windows.encoder_length, params.windows.horizon) == (48, 12)
    assert params.train.models == ["lstm", "tcn", "tft", "autoets", "autoarima", "autotheta"]
    assert params.train.tcn.dilations == [1, 2, 4, 8, 16]
    assert params.train.tft.quantiles == [0.1, 0.5, 0.9]


def test_yaml_numbers_take_the_field_type() -> None:
    # learning_rate: an int in YAML still becomes a float; dropout 0.0 stays a float.
    params = params_from_dict({"train": {"learning_rate": 1, "lstm": {"dropout": 0}}})

    assert params.train.learning_rate == 1.0
    assert isinstance(params.train.learning_rate, float)
    assert isinstance(params.train.lstm.dropout, float)
    assert isinstance(params.train.max_epochs, int)


def test_missing_keys_take_their_defaults() -> None:
    params = params_from_dict({"windows": {"horizon": 6}})

    assert params.windows.horizon == 6
    assert params.windows.encoder_length == WindowConfig().encoder_length
    assert params.train == TrainConfig()
    assert params_from_dict({}) == Params()


def test_quick_profile_overrides_only_its_keys() -> None:
    base = load_params(PARAMS_YAML)
    quick = load_params(PARAMS_YAML, profile="quick")

    assert quick.train.max_epochs == 3
    assert quick.train.limit_train_batches == 8
    assert quick.evaluate.stride == 4
    # Everything the profile does not mention is untouched, including siblings in its sections.
    assert quick.train.batch_size == base.train.batch_size
    assert quick.train.lstm == base.train.lstm
    assert quick.evaluate.classical == base.evaluate.classical
    assert quick.dataset == base.dataset
    assert quick.windows == base.windows
    assert base.train.max_epochs == 30


def test_profile_merges_nested_sections(tmp_path: Path) -> None:
    path = write_params(
        tmp_path,
        {
            "train": {"tcn": {"channels": 8, "kernel_size": 2}},
            "profiles": {"tiny": {"train": {"tcn": {"channels": 4}}}},
        },
    )

    params = load_params(path, profile="tiny")

    assert params.train.tcn.channels == 4
    assert params.train.tcn.kernel_size == 2  # kept from the base, not reset to the default


def test_unknown_profile_names_the_defined_ones() -> None:
    with pytest.raises(ConfigError, match=r"no profile 'fast'.*quick"):
        load_params(PARAMS_YAML, profile="fast")


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such parameter file"):
        load_params(tmp_path / "absent.yaml")


def test_section_hash_changes_only_with_its_section() -> None:
    base = params_from_dict({})
    other = params_from_dict({"train": {"max_epochs": 7}})

    assert base.section_hash("dataset", "windows") == other.section_hash("dataset", "windows")
    assert base.section_hash("train") != other.section_hash("train")
    assert base.section_hash() == params_from_dict({}).section_hash()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"datasett": {}}, "datasett"),
        ({"windows": {"horizn": 3}}, "horizn"),
        ({"train": {"lstm": {"hidden": 3}}}, "hidden"),
    ],
)
def test_unknown_key_raises_naming_it(values: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) {named}"):
        params_from_dict(values)


def test_unknown_key_in_file_names_file_and_section(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train": {"tcn": {"dilation": [1, 2]}}})

    with pytest.raises(ConfigError) as caught:
        load_params(path)

    message = str(caught.value)
    assert str(path) in message
    assert ".train.tcn" in message
    assert "dilation" in message
    assert "dilations" in message  # the known keys are listed as a hint


def test_unknown_key_in_profile_raises(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"profiles": {"quick": {"train": {"epochs": 3}}}})

    load_params(path)  # the profile is only checked when applied
    with pytest.raises(ConfigError, match=r"unknown key\(s\) epochs"):
        load_params(path, profile="quick")


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"windows": {"horizon": "twelve"}}, "params.windows.horizon must be a number"),
        ({"train": {"learning_rate": "fast"}}, "params.train.learning_rate must be a number"),
        ({"train": {"max_epochs": True}}, "params.train.max_epochs must be a number"),
        ({"train": {"models": "lstm"}}, "params.train.models must be a list"),
        ({"train": {"tcn": {"dilations": 4}}}, "params.train.tcn.dilations must be a list"),
        ({"dataset": {"series_columns": "store"}}, "params.dataset.series_columns must be a list"),
        ({"train": {"lstm": 64}}, "params.train.lstm must be a mapping"),
    ],
)
def test_wrongly_typed_value_raises_naming_the_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        params_from_dict(values)

    assert key in str(caught.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_fractional_value_for_a_whole_number_field_is_rejected() -> None:
    from trainyard.tasks.forecast.config import ConfigError, params_from_dict

    with pytest.raises(ConfigError, match=r"windows.encoder_length must be a whole number"):
        params_from_dict({"windows": {"encoder_length": 12.5}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"windows": {"horizon": 12, "holdout_length": 8}},
            r"holdout_length \(8\) must be at least",
        ),
        ({"train": {"models": ["lstm", "lstm"]}}, "lists a model twice"),
        ({"train": {"models": []}}, "at least one model"),
        ({"evaluate": {"classical": "arima"}}, "evaluate.classical must be 'ets' or 'none'"),
        ({"evaluate": {"metric": "r2"}}, "evaluate.metric must be one of"),
    ],
)
def test_impossible_values_are_config_errors(values: dict, message: str) -> None:
    from trainyard.tasks.forecast.config import ConfigError, params_from_dict

    with pytest.raises(ConfigError, match=message):
        params_from_dict(values)


def test_unknown_model_name_is_refused_before_any_work() -> None:
    from trainyard.tasks.forecast.config import ConfigError, params_from_dict
    from trainyard.tasks.forecast.family import FORECAST
    from trainyard.tasks.training import check_model_names

    with pytest.raises(ConfigError, match="unknown model.*nbeats.*known: lstm, tcn, tft"):
        check_model_names(FORECAST, params_from_dict({"train": {"models": ["lstm", "nbeats"]}}))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"batch_size": 0}}, "params.train.batch_size must be at least 1, got 0"),
        ({"train": {"batch_size": -8}}, "params.train.batch_size must be at least 1, got -8"),
        ({"train": {"max_epochs": 0}}, "params.train.max_epochs must be at least 1, got 0"),
        ({"train": {"patience": -1}}, "params.train.patience must be at least 1, got -1"),
        ({"train": {"seed": -1}}, "params.train.seed must be at least 0, got -1"),
        ({"train": {"learning_rate": 0}}, "params.train.learning_rate must be above 0, got 0.0"),
        ({"train": {"learning_rate": -1e-3}}, "params.train.learning_rate must be above 0"),
        ({"windows": {"encoder_length": 0}}, "params.windows.encoder_length must be at least 1"),
        ({"windows": {"horizon": 0}}, "params.windows.horizon must be at least 1, got 0"),
        (
            {"windows": {"horizon": 12, "validation_length": 6}},
            "params.windows.validation_length (6) must be at least windows.horizon (12)",
        ),
        ({"train": {"lstm": {"dropout": 1.0}}}, "params.train.lstm.dropout must be in [0, 1)"),
        ({"train": {"tcn": {"dilations": []}}}, "params.train.tcn.dilations must list whole"),
        ({"train": {"tcn": {"kernel_size": 0}}}, "params.train.tcn.kernel_size must be at least 1"),
        (
            {"train": {"tft": {"attention_head_size": 0}}},
            "params.train.tft.attention_head_size must be at least 1, got 0",
        ),
        ({"evaluate": {"plot_series": -1}}, "params.evaluate.plot_series must be at least 0"),
        (
            {"train": {"stop_on": "holdout"}},
            "train.stop_on must be one of validation, train, got 'holdout'",
        ),
        ({"train": {"refit": True}}, "train.refit trains the neural models again"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_allowed_range(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        params_from_dict(values)

    assert message in str(caught.value)


@pytest.mark.parametrize(
    "quantiles",
    [[0.1, 0.9], [0.0, 0.5, 0.9], [0.1, 0.5, 1.2], [0.9, 0.5, 0.1], [0.1, 0.5, 0.5, 0.9]],
)
def test_tft_quantiles_are_checked_when_the_params_load(quantiles: list[float]) -> None:
    # Before this check, quantiles without 0.5 failed in the TFT's setup, after the other models
    # had trained for minutes.
    with pytest.raises(ConfigError) as caught:
        params_from_dict({"train": {"models": ["lstm", "tft"], "tft": {"quantiles": quantiles}}})

    message = str(caught.value)
    assert "params.train.tft.quantiles must lie between 0 and 1" in message
    assert "increasing without repeats and include 0.5" in message
    assert f"got {quantiles}" in message


def test_value_problems_in_a_file_name_the_file_and_the_dotted_key(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train": {"batch_size": 0, "max_epochs": 0}})

    with pytest.raises(ConfigError) as caught:
        load_params(path)

    message = str(caught.value)
    assert f"{path}: forecast.train.batch_size must be at least 1, got 0" in message
    assert f"{path}: forecast.train.max_epochs must be at least 1, got 0" in message


def test_a_zero_batch_size_is_refused_by_the_command_before_prepare_writes(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from trainyard.cli import app

    path = write_params(tmp_path, {"train": {"batch_size": 0}})

    result = CliRunner().invoke(app, ["prepare", "--family", "forecast", "--params", str(path)])

    assert result.exit_code == 2
    assert "forecast.train.batch_size must be at least 1, got 0" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()
