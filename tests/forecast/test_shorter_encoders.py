"""windows.shorter_encoders: LSTM and TCN train a network per encoder length and forecast the
mean of all of theirs; the TFT reads the shortest. The evaluation, the ensemble and serving
read windows of the longest length and each network the last steps its own length asks for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.forecast.test_target_scaling import multiplicative, params
from trainyard.errors import ConfigError, DataError
from trainyard.models.forecast.window_forecaster import EncoderMixture
from trainyard.tasks.family import CHECKPOINT
from trainyard.tasks.forecast.config import Params, params_from_dict
from trainyard.tasks.forecast.evaluate import load_holdout, model_forecast
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.forecasters import FORECASTERS, MIXTURE, model_encoder, with_encoder
from trainyard.tasks.forecast.infer import Pins, infer_keys
from trainyard.tasks.forecast.prepare import prepare
from trainyard.tasks.training import train_model

pytestmark = pytest.mark.filterwarnings("ignore:Attribute '.*' is an instance of `nn.Module`")


def mixing(**train: object) -> Params:
    """Returns tiny params (encoder 16, horizon 4, validation 16, holdout 8) whose LSTM/TCN
    also train a network on an encoder of 8 steps."""
    values = params(**train).to_dict()
    values["windows"]["shorter_encoders"] = [8]
    return params_from_dict(values)


@pytest.fixture(scope="module")
def prepared_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixture")
    multiplicative({"a": 10.0, "b": 50.0}).to_csv(root / "data.csv", index=False)
    return Path(prepare(mixing(), root, root / "prepared").path)


@pytest.mark.parametrize("kind", ["lstm", "tcn"])
def test_a_model_of_two_encoder_lengths_forecasts_the_mean_of_its_networks(
    tmp_path: Path, prepared_path: Path, kind: str
) -> None:
    config = mixing(
        models=[kind], min_steps=0, max_epochs=2, patience=1, stop_on="train", refit=True
    )

    result = train_model(FORECAST, kind, prepared_path, config, tmp_path / "models")

    model_dir = Path(result.model_dir)
    assert result.hparams["encoder_length"] == "8, 16" and result.hparams["variants"] == 2
    assert len(result.hparams["refit_steps"].split(", ")) == 2  # each network refitted
    members = json.loads((model_dir / f"{MIXTURE}.json").read_text())["members"]
    assert [model_encoder(model_dir / m, config) for m in members] == [8, 16]
    assert model_encoder(model_dir, config) == 16  # it reads windows of the longest
    assert all((model_dir / m / CHECKPOINT).exists() for m in members)
    assert (model_dir / "intervals.json").exists()  # calibrated as one model
    assert not list((tmp_path / "models").glob(".*"))  # no work folder is left behind

    # At the holdout's windows (16 steps) each network reads its own last steps: the
    # forecast is the mean of each network's on windows of its own length.
    holdout = load_holdout(prepared_path, config)
    forecast = model_forecast(kind, model_dir, holdout, config)
    assert forecast.point.shape == holdout.actual.shape
    assert forecast.quantiles is not None and np.isfinite(forecast.quantiles).all()
    singles = []
    for member in members:
        own = with_encoder(config, model_encoder(model_dir / member, config))
        windows = load_holdout(prepared_path, own)
        assert (windows.index.origins == holdout.index.origins).all()
        singles.append(
            FORECASTERS[kind]
            .predict(
                FORECASTERS[kind].load(model_dir / member, own),
                windows.arrays,
                windows.table,
                windows.index,
                own,
                model_dir / member,
            )
            .point
        )
    np.testing.assert_allclose(forecast.point, np.mean(singles, axis=0), rtol=1e-5)
    assert not np.allclose(singles[0], singles[1])  # two different networks


def test_the_tft_reads_the_shortest_encoder_at_the_longest_windows_origins(
    tmp_path: Path, prepared_path: Path
) -> None:
    config = mixing(models=["tft"], min_steps=0, max_epochs=1, stop_on="train", refit=True)

    result = train_model(FORECAST, "tft", prepared_path, config, tmp_path)

    assert result.hparams["encoder_length"] == 8 and "variants" not in result.hparams
    holdout = load_holdout(prepared_path, config)
    forecast = model_forecast("tft", Path(result.model_dir), holdout, config)
    own = with_encoder(config, 8)
    again = model_forecast("tft", Path(result.model_dir), load_holdout(prepared_path, own), own)
    assert forecast.quantiles.shape == (*holdout.actual.shape, 3)
    np.testing.assert_allclose(forecast.quantiles, again.quantiles, rtol=1e-5)


def test_a_mixture_reads_each_networks_own_steps() -> None:
    """A member of encoder 2 ignores all but the last two encoder steps of a 6-step window."""

    class LastValue(torch.nn.Module):
        def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            target = batch["encoder_target"]
            return {"prediction": target[:, :1].expand(-1, 3), "std": target.std(1, True)}

    mixture = EncoderMixture([LastValue(), LastValue()], [2, 6])
    batch = {
        "encoder_target": torch.arange(12.0).reshape(2, 6),
        "encoder_covariates": torch.zeros(2, 6, 0),
        "decoder_known": torch.zeros(2, 3, 0),
    }
    out = mixture(batch)["prediction"]  # each member forecasts its first encoder step
    np.testing.assert_allclose(out[:, 0], [(4 + 0) / 2, (10 + 6) / 2])


def test_an_encoder_longer_than_the_windows_is_refused(tmp_path: Path, prepared_path: Path) -> None:
    config = mixing(models=["lstm"], min_steps=0, max_epochs=1, stop_on="validation")
    result = train_model(FORECAST, "lstm", prepared_path, with_encoder(config, 16), tmp_path)
    holdout = load_holdout(prepared_path, with_encoder(config, 8))  # windows of 8 steps

    with pytest.raises(DataError, match="reads 16 past steps but these windows hold 8"):
        model_forecast("lstm", Path(result.model_dir), holdout, with_encoder(config, 8))


def test_a_mixture_file_pointing_outside_its_folder_is_refused(
    tmp_path: Path, prepared_path: Path
) -> None:
    config = mixing(models=["lstm"], min_steps=0, max_epochs=1, stop_on="validation")
    result = train_model(FORECAST, "lstm", prepared_path, config, tmp_path / "models")
    path = Path(result.model_dir) / f"{MIXTURE}.json"
    path.write_text(json.dumps({"members": ["../../elsewhere"]}))

    with pytest.raises(DataError, match="must be subfolders of"):
        FORECASTERS["lstm"].load(Path(result.model_dir), config)


def test_shorter_encoders_must_be_shorter_than_the_encoder() -> None:
    values = params().to_dict()
    for bad in ([16], [24], [8, 8], [0]):
        values["windows"]["shorter_encoders"] = bad
        with pytest.raises(ConfigError, match=r"windows\.shorter_encoders must list"):
            params_from_dict(values)


def monthly(n: int) -> pd.DataFrame:
    t = np.arange(n)
    values = 100 + 0.2 * t + 10 * np.sin(2 * np.pi * t / 12)
    return pd.DataFrame({"month": pd.date_range("1990-01-01", periods=n, freq="MS"), "y": values})


def test_long_series_get_an_encoder_twice_as_long_as_well() -> None:
    long = infer_keys(monthly(240), "long.csv", Pins())
    assert long.windows["encoder_length"] == 48 and long.windows["shorter_encoders"] == [24]
    assert "average a network of each length" in "\n".join(long.lines())

    # 120 months: train 72 steps, stop split 24: no room for a year of 48-step windows.
    short = infer_keys(monthly(120), "short.csv", Pins())
    assert short.windows["encoder_length"] == 24 and short.windows["shorter_encoders"] == []

    pinned = infer_keys(monthly(240), "long.csv", Pins(encoder_length=30))
    assert pinned.windows["encoder_length"] == 30 and pinned.windows["shorter_encoders"] == []


def test_a_served_mixture_reads_only_the_steps_its_networks_read(
    tmp_path: Path, prepared_path: Path
) -> None:
    """Registered with the run's params (windows of 16 steps), a model made of networks of 8
    and 16 steps forecasts from the last 16 of each series' history; the one of 8 alone, from
    the last 8."""
    import mlflow

    from trainyard.tasks.forecast.serving import ForecasterModel

    config = mixing(models=["lstm"], min_steps=0, max_epochs=1, stop_on="validation")
    short = train_model(FORECAST, "lstm", prepared_path, with_encoder(config, 8), tmp_path / "8")
    mixed = train_model(FORECAST, "lstm", prepared_path, config, tmp_path / "mix")
    history = multiplicative({"a": 10.0, "b": 50.0}).groupby("store").tail(16)
    older = history.groupby("store").cumcount() < 8  # steps the 8-step network does not read
    for result, reads_older in ((short, False), (mixed, True)):
        saved = tmp_path / f"pyfunc-{reads_older}"
        mlflow.pyfunc.save_model(
            saved,
            python_model=ForecasterModel(),
            artifacts={"model_dir": result.model_dir},
            model_config={"kind": "lstm", "params": config.to_dict()},
        )
        model = mlflow.pyfunc.load_model(str(saved))

        forecast = model.predict(history)

        assert len(forecast) == 2 * config.windows.horizon
        changed = model.predict(history.assign(y=history["y"].where(~older, history["y"] * 3)))
        same = np.allclose(changed["prediction"], forecast["prediction"], rtol=1e-6)
        assert same != reads_older
        with pytest.raises(Exception, match="each needs at least 16 steps"):
            model.predict(history.groupby("store").tail(8))


def _stopped(
    family, error: type[Exception], match: str, config: Params, prepared_path: Path, root: Path
) -> Path:
    """Returns the resume folder of a training of `family` that raised `error` part way."""
    resume = root / "resume"
    with pytest.raises(error, match=match):
        train_model(family, "lstm", prepared_path, config, root / "a", resume_dir=resume)
    return resume


def _resumed_and_straight(
    resume: Path, config: Params, prepared_path: Path, root: Path, caplog
) -> tuple:
    """Returns the training started again on `resume` (which must keep what the stopped run
    fitted and refitted, not train it again) and one never stopped; their refits took as many
    steps."""
    with caplog.at_level("INFO", logger="trainyard.tasks.training"):
        resumed = train_model(
            FORECAST, "lstm", prepared_path, config, root / "a", resume_dir=resume
        )
    assert "kept what a stopped run fitted and refitted" in caplog.text  # not trained again
    straight = train_model(FORECAST, "lstm", prepared_path, config, root / "b")
    assert resumed.hparams["refit_steps"] == straight.hparams["refit_steps"]
    return resumed, straight


def _assert_same_weights(resumed, straight, member: str = "") -> None:
    ours, theirs = (
        torch.load(Path(r.model_dir) / member / CHECKPOINT, weights_only=True)["state_dict"]
        for r in (resumed, straight)
    )
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), (member, name)


def test_a_run_stopped_during_the_second_network_keeps_the_first_as_it_was(
    tmp_path: Path, prepared_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started again on the same resume folder, a run that stopped while training the second
    network keeps the first (fitted and refitted) and ends as a run never stopped."""
    from trainyard.tasks.forecast.family import ForecastFamily

    class StopsAtTheSecond(ForecastFamily):
        def variants(self, name: str, prepared_path: Path, params: Params) -> list:
            first, second = super().variants(name, prepared_path, params)
            train = second.train.model_copy(update={"learning_rate": -1.0})  # Adam refuses it
            return [first, second.model_copy(update={"train": train})]

    config = mixing(
        models=["lstm"], min_steps=0, max_epochs=2, patience=1, stop_on="train", refit=True
    )
    resume = _stopped(
        StopsAtTheSecond(), ValueError, "Invalid learning rate", config, prepared_path, tmp_path
    )
    assert (resume / "variant-0" / "finished.json").exists()

    resumed, straight = _resumed_and_straight(resume, config, prepared_path, tmp_path, caplog)

    assert resumed.history == straight.history
    for member in ("variants/0", "variants/1"):
        _assert_same_weights(resumed, straight, member)


def test_a_run_stopped_after_the_refit_keeps_the_refitted_model(
    tmp_path: Path, prepared_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One network (no shorter encoders): a run stopped after its fit and refit, before its
    model folder is assembled, keeps the refitted network when started again, and ends as a
    run never stopped (it is not refitted again over its refitted weights)."""
    from trainyard.tasks.forecast.family import ForecastFamily

    class StopsAfterTheRefit(ForecastFamily):
        def calibrate(self, name, model_dir, prepared_path, params):
            raise RuntimeError("stopped before the model folder was assembled")

    config = params(
        models=["lstm"], min_steps=0, max_epochs=2, patience=1, stop_on="train", refit=True
    )
    resume = _stopped(
        StopsAfterTheRefit(), RuntimeError, "stopped before", config, prepared_path, tmp_path
    )

    resumed, straight = _resumed_and_straight(resume, config, prepared_path, tmp_path, caplog)

    _assert_same_weights(resumed, straight)


def test_a_holder_of_a_shorter_encoder_is_rescored_on_longer_windows(
    tmp_path: Path, prepared_path: Path
) -> None:
    """A champion registered with an encoder of 8 steps (before the encoder was lengthened,
    its folder without encoder.json) is scored on this run's 16-step holdout windows from
    their last 8 steps, at the same origins; one of a longer encoder than the windows is not."""
    from trainyard.tasks.forecast.evaluate import score
    from trainyard.tasks.forecast.prepare import summary_of

    config = mixing(models=["lstm"], min_steps=0, max_epochs=1, stop_on="validation")
    old = with_encoder(config, 8)
    result = train_model(FORECAST, "lstm", prepared_path, old, tmp_path)
    (Path(result.model_dir) / "encoder.json").unlink()  # as folders were written before
    summary = summary_of(prepared_path, config)
    registered = {"kind": "lstm", "params": old.to_dict()}

    value = FORECAST.rescore(registered, {"model_dir": result.model_dir}, summary, config)

    own = load_holdout(prepared_path, old)
    direct = score(own.actual, model_forecast("lstm", Path(result.model_dir), own, old), own.scale)
    assert value == pytest.approx(direct["mase"], rel=1e-6)
    longer = {"kind": "lstm", "params": config.to_dict()}
    folder = {"model_dir": result.model_dir}
    assert FORECAST.rescore(longer, folder, summary, with_encoder(config, 8)) is None
