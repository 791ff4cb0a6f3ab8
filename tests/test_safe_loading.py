"""Nothing the product loads from a model folder or the registry is a pickle: planted pickles
are refused by name and never run, logged pyfuncs are MLflow models-from-code, and a file
changed after registration is refused by its digest."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.forecast.test_models import tiny_params
from trainyard.errors import DataError
from trainyard.tasks.family import CHECKPOINT
from trainyard.tasks.forecast.config import params_from_dict
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.forecasters import (
    FORECASTERS,
    TFT_TRAINING_ROWS,
    _tft_datasets,
    _tft_training_dataset,
    _tft_training_rows,
    read_covariate_stats,
)
from trainyard.tasks.forecast.prepare import prepare, read_prepared
from trainyard.tasks.registry import (
    ARTIFACT_DIGESTS,
    PYFUNC_CLASS,
    log_pyfunc,
    rescore_registered,
    verify_artifacts,
)
from trainyard.tasks.training import train_model

# pytorch-forecasting's from_dataset saves its loss modules as hyperparameters.
pytestmark = pytest.mark.filterwarnings("ignore:Attribute '.*' is an instance of `nn.Module`")


class Canary:
    """Unpickled, it creates the file `path`: proof that loading ran code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.path), "w")


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """Returns the path a planted pickle would create when unpickled (checked to do so)."""
    path = tmp_path / "canary"
    pickle.loads(pickle.dumps(Canary(path))).close()
    assert path.exists(), "the payload must run code when unpickled, or the tests prove nothing"
    path.unlink()
    return path


def _payload(canary: Path) -> bytes:
    return pickle.dumps(Canary(canary))


@pytest.fixture(scope="module")
def forecast(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Returns tiny forecast data, its params and an LSTM and a TFT trained on it (1 epoch)."""
    root = tmp_path_factory.mktemp("safe-forecast")
    t = np.arange(120)
    frame = pd.concat(
        pd.DataFrame(
            {
                "date": pd.date_range("2020-01-01", periods=120, freq="D"),
                "store": store,
                "y": level + 0.05 * t + 3 * np.sin(2 * np.pi * t / 7),
            }
        )
        for store, level in (("a", 10.0), ("b", 50.0))
    )
    frame.to_csv(root / "data.csv", index=False)
    # No known covariates: the pyfunc's input example (history only) then also forecasts,
    # so MLflow infers the signature by loading and running the logged model.
    values = tiny_params(max_epochs=1, limit_train_batches=2).to_dict()
    values["dataset"]["known_covariates"] = []
    params = params_from_dict(values)
    prepared = prepare(params, root, root / "prepared")
    dirs = {
        kind: Path(
            train_model(FORECAST, kind, Path(prepared.path), params, root / "models").model_dir
        )
        for kind in ("lstm", "tft")
    }
    history = frame[frame["store"] == "a"].tail(params.windows.encoder_length)
    return {"params": params, "prepared": prepared, "dirs": dirs, "history": history}


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / model_dir.name))


def _same(a: Any, b: Any, where: str = "parameters") -> None:
    """Asserts a and b hold equal values, attribute by attribute (encoders, scalers)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {a.keys()} != {b.keys()}"
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where}: {a} != {b}"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{where}: {a} != {b}"
    elif isinstance(a, pd.Series | pd.DataFrame | pd.Index):
        assert a.equals(b), f"{where}: {a} != {b}"
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        _same(vars(a), vars(b), where)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), f"{where}: nan != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# --- the TFT without pickles ------------------------------------------------------------------


def test_the_tft_dataset_rebuilt_from_its_parquet_rows_has_the_fitted_encoders(forecast):
    params, model_dir = forecast["params"], forecast["dirs"]["tft"]
    table, _ = read_prepared(Path(forecast["prepared"].path))
    original, _ = _tft_datasets(table, params)

    rows = pd.read_parquet(model_dir / f"{TFT_TRAINING_ROWS}.parquet")
    pd.testing.assert_frame_equal(rows, _tft_training_rows(table, params))
    rebuilt = _tft_training_dataset(rows, params)

    expected = original.get_parameters()
    _same(rebuilt.get_parameters(), expected)
    # The fitted parts: series id encoder, per-column scalers, target normalizer.
    assert expected["categorical_encoders"] and expected["scalers"]
    module = FORECASTERS["tft"].load(model_dir, params)
    _same(module.dataset_parameters, expected)


@pytest.mark.parametrize("kind", ["lstm", "tft"])
@pytest.mark.parametrize("format", ["raw pickle", "torch zip"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_checkpoint_that_is_a_pickle_payload_is_refused_and_never_run(
    forecast, kind, format, canary, tmp_path
):
    folder = _copy(forecast["dirs"][kind], tmp_path)
    if format == "raw pickle":
        (folder / CHECKPOINT).write_bytes(_payload(canary))
    else:
        torch.save({"state_dict": Canary(canary)}, folder / CHECKPOINT)

    message = rf"{re.escape(str(folder / CHECKPOINT))}: the {kind} checkpoint cannot be loaded"
    with pytest.raises(DataError, match=message):
        FORECASTERS[kind].load(folder, forecast["params"])
    assert not canary.exists()


def test_an_old_tft_folder_with_pickled_dataset_parameters_is_refused_and_never_run(
    forecast, canary, tmp_path
):
    folder = _copy(forecast["dirs"]["tft"], tmp_path)
    (folder / f"{TFT_TRAINING_ROWS}.parquet").unlink()
    (folder / "dataset_parameters.pkl").write_bytes(_payload(canary))

    message = rf"{re.escape(str(folder))}: .*pickle.*train and register it again"
    with pytest.raises(DataError, match=message):
        FORECASTERS["tft"].load(folder, forecast["params"])
    assert not canary.exists()


def test_pickled_covariate_stats_in_a_model_folder_are_refused_and_never_run(
    forecast, canary, tmp_path
):
    folder = _copy(forecast["dirs"]["lstm"], tmp_path)
    (folder / "covariate_stats.json").unlink()
    (folder / "covariate_stats.pkl").write_bytes(_payload(canary))

    message = rf"{re.escape(str(folder))}: .*pickle.*train and register it again"
    with pytest.raises(DataError, match=message):
        read_covariate_stats(folder)
    assert not canary.exists()


# --- models-from-code pyfuncs and their digests ----------------------------------------------


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Returns a fresh experiment whose artifacts are local files (to tamper with)."""
    store = tmp_path_factory.mktemp("safe-artifacts")
    return mlflow.create_experiment("safe-loading", artifact_location=store.as_uri())


def _logged_run(experiment: str) -> str:
    with mlflow.start_run(experiment_id=experiment) as run:
        return run.info.run_id


def _register(experiment: str, kind: str, model_dir: Path, forecast, registered: str):
    """Returns (what log_pyfunc returned, the registered version, its stored model folder)."""
    spec = FORECAST.pyfunc(kind, model_dir, forecast["prepared"], forecast["params"])
    logged = log_pyfunc(_logged_run(experiment), FORECAST, spec)
    version = mlflow.register_model(logged.model_uri, registered)
    return logged, version, _stored(logged.model_uri)


def _stored(model_uri: str) -> Path:
    """Returns the folder a logged model's files are stored in (a local artifact store)."""
    model_id = model_uri.removeprefix("models:/")
    stored = Path(urlparse(mlflow.get_logged_model(model_id).artifact_location).path)
    assert (stored / "MLmodel").is_file()
    return stored


def _assert_models_from_code(stored: Path, served: str) -> dict[str, Any]:
    """Asserts the logged model holds no pickle and is served by `served`; returns its
    MLmodel."""
    mlmodel = yaml.safe_load((stored / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    assert "model_code_path" in flavor and "python_model" not in flavor  # no cloudpickle
    assert not [p for p in stored.rglob("*") if p.suffix in (".pkl", ".pickle")]
    assert mlmodel["signature"]["inputs"]  # still inferred from the input example
    assert flavor["config"][PYFUNC_CLASS] == served
    return mlmodel


def _rescore(version, forecast) -> float | None:
    return rescore_registered(
        version,
        FORECAST,
        lambda config, artifacts: FORECAST.rescore(
            config, artifacts, forecast["prepared"], forecast["params"]
        ),
    )


@pytest.mark.parametrize("kind", ["lstm", "tft"])
def test_a_forecaster_pyfunc_is_models_from_code_and_forecasts(
    forecast, experiment, kind, monkeypatch
):
    params = forecast["params"]
    logged, version, stored = _register(
        experiment, kind, forecast["dirs"][kind], forecast, f"safe-{kind}"
    )
    mlmodel = _assert_models_from_code(stored, "trainyard.tasks.forecast.serving:ForecasterModel")
    config = mlmodel["flavors"]["python_function"]["config"]
    assert config[ARTIFACT_DIGESTS] == logged.artifact_digests
    assert f"model_dir/{CHECKPOINT}" in logged.artifact_digests

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model(f"models:/safe-{kind}/{version.version}")
    out = model.predict(forecast["history"])
    assert out["step"].tolist() == list(range(1, params.windows.horizon + 1))
    assert np.isfinite(out["prediction"]).all()
    assert _rescore(version, forecast) is not None  # the gate reads it without running it


def test_a_tampered_artifact_is_refused_by_its_digest(forecast, experiment):
    _, version, stored = _register(
        experiment, "lstm", forecast["dirs"]["lstm"], forecast, "safe-tampered"
    )
    stats = stored / "artifacts" / "lstm" / "covariate_stats.json"
    stats.write_text(stats.read_text() + "\n")  # still the same JSON: only the digest tells

    with pytest.raises(DataError, match=r"covariate_stats\.json was changed after logging"):
        mlflow.pyfunc.load_model(f"models:/safe-tampered/{version.version}")
    with pytest.raises(DataError, match=r"models:/safe-tampered/\d+: .*covariate_stats\.json"):
        _rescore(version, forecast)


def test_a_pickle_planted_in_registered_artifacts_is_refused_and_never_run(
    forecast, experiment, canary
):
    _, version, stored = _register(
        experiment, "lstm", forecast["dirs"]["lstm"], forecast, "safe-planted"
    )
    artifacts = stored / "artifacts" / "lstm"
    (artifacts / "covariate_stats.json").unlink()
    (artifacts / "covariate_stats.pkl").write_bytes(_payload(canary))

    pattern = r"covariate_stats\.json is missing; .*covariate_stats\.pkl was not logged with it"
    with pytest.raises(DataError, match=pattern):
        mlflow.pyfunc.load_model(f"models:/safe-planted/{version.version}")
    with pytest.raises(DataError, match=pattern):
        _rescore(version, forecast)
    assert not canary.exists()


def test_a_model_folder_holding_a_pickle_is_never_logged(forecast, experiment, canary, tmp_path):
    folder = _copy(forecast["dirs"]["lstm"], tmp_path)
    (folder / "covariate_stats.json").unlink()
    (folder / "covariate_stats.pkl").write_bytes(_payload(canary))
    spec = FORECAST.pyfunc("lstm", folder, forecast["prepared"], forecast["params"])

    with pytest.raises(DataError, match=r"lstm/covariate_stats\.pkl: .*pickle"):
        log_pyfunc(_logged_run(experiment), FORECAST, spec)
    assert not canary.exists()


def test_a_config_naming_a_class_outside_trainyard_is_refused(forecast, experiment):
    logged, _, _ = _register(experiment, "lstm", forecast["dirs"]["lstm"], forecast, "safe-class")
    with pytest.raises(DataError, match="'os:system': not a trainyard serving class"):
        mlflow.pyfunc.load_model(logged.model_uri, model_config={PYFUNC_CLASS: "os:system"})


def test_a_model_without_recorded_digests_is_refused(tmp_path):
    (tmp_path / "best.ckpt").write_bytes(b"weights")
    with pytest.raises(DataError, match="old-model: no artifact digests recorded"):
        verify_artifacts({"model_dir": tmp_path}, None, "old-model")


def test_an_agent_pyfunc_loads_from_code_and_acts(experiment, tmp_path, monkeypatch):
    from trainyard.tasks.rl.config import params_from_dict as rl_params
    from trainyard.tasks.rl.family import RL

    params = rl_params(
        {
            "scenarios": {"episodes": 4, "seed": 5},
            "train": {
                "models": ["dqn"],
                "max_epochs": 1,
                "steps_per_epoch": 5,
                "num_envs": 2,
                "validation_episodes": 2,
                "dqn": {"learning_starts": 10, "batch_size": 8},
            },
        }
    )
    prepared = RL.prepare(params, tmp_path, tmp_path / "prepared")
    result = train_model(RL, "dqn", Path(prepared.path), params, tmp_path / "models")
    spec = RL.pyfunc("dqn", Path(result.model_dir), prepared, params)
    logged = log_pyfunc(_logged_run(experiment), RL, spec)
    _assert_models_from_code(_stored(logged.model_uri), "trainyard.tasks.rl.serving:AgentModel")

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    actions = mlflow.pyfunc.load_model(logged.model_uri).predict(spec.input_example)
    assert len(actions) == len(spec.input_example)
    assert all(column.endswith("_action") for column in actions.columns)


def test_a_language_model_pyfunc_loads_from_code_and_writes(experiment, tmp_path, monkeypatch):
    from tests.text.test_text_family import _params, _write_corpus
    from trainyard.tasks.text.family import TEXT

    params = _params(_write_corpus(tmp_path / "corpus", documents=6), max_epochs=1)
    prepared = TEXT.prepare(params, tmp_path, tmp_path / "prepared")
    result = train_model(TEXT, "lstm", Path(prepared.path), params, tmp_path / "models")
    spec = TEXT.pyfunc("lstm", Path(result.model_dir), prepared, params)
    logged = log_pyfunc(_logged_run(experiment), TEXT, spec)
    _assert_models_from_code(
        _stored(logged.model_uri), "trainyard.tasks.text.serving:TextGenerator"
    )

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    prompts, _ = spec.input_example
    out = mlflow.pyfunc.load_model(logged.model_uri).predict(prompts, params={"length": 5})
    assert out["prompt"].tolist() == prompts["prompt"].tolist()
    assert all(len(text) == 5 for text in out["continuation"])
