"""train.stop_on: where the neural forecasters stop early. On "train" nothing of the validation
split reaches a trained model, so validation scores it as it scores the statistical models; on
"validation" (the default) the validation windows choose its early stop and best checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.forecast.test_target_scaling import STEPS, multiplicative, params
from trainyard.tasks.family import CHECKPOINT
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.prepare import prepare
from trainyard.tasks.training import train_model

pytestmark = pytest.mark.filterwarnings("ignore:Attribute '.*' is an instance of `nn.Module`")

VALIDATION_ROWS = slice(STEPS - 8 - 16, STEPS - 8)  # tiny_params: holdout 8, validation 16


def prepared_with_validation_scaled(root: Path, factor: float) -> Path:
    """Returns a prepared copy of two multiplicative series whose validation targets are
    multiplied by `factor` (train and holdout untouched)."""
    frame = multiplicative({"a": 10.0, "b": 50.0}).reset_index(drop=True)
    for store in ("a", "b"):
        rows = frame.index[frame["store"] == store][VALIDATION_ROWS]
        frame.loc[rows, "y"] *= factor
    root.mkdir(parents=True)
    frame.to_csv(root / "data.csv", index=False)
    return Path(prepare(params(), root, root / "prepared").path)


def weights(model_dir: str) -> dict[str, torch.Tensor]:
    return torch.load(Path(model_dir) / CHECKPOINT, map_location="cpu", weights_only=True)[
        "state_dict"
    ]


@pytest.mark.parametrize("kind", ["lstm", "tft"])
def test_stopping_on_train_makes_a_model_blind_to_its_validation_split(
    tmp_path: Path, kind: str
) -> None:
    trained = {}
    for stop_on in ("train", "validation"):
        config = params(models=[kind], min_steps=0, max_epochs=3, patience=1, stop_on=stop_on)
        for factor in (1.0, 1.5):
            path = prepared_with_validation_scaled(tmp_path / f"{stop_on}-{factor}", factor)
            out = tmp_path / f"{stop_on}-{factor}-models"
            trained[stop_on, factor] = train_model(FORECAST, kind, path, config, out)

    blind = [weights(trained["train", f].model_dir) for f in (1.0, 1.5)]
    for name, tensor in blind[0].items():
        assert torch.equal(tensor, blind[1][name]), name
    assert trained["train", 1.0].history == trained["train", 1.5].history
    # On validation, the same change moves every epoch's validation loss: it chose the stop.
    seen = [[e["val/loss"] for e in trained["validation", f].history] for f in (1.0, 1.5)]
    assert len(seen[0]) == len(seen[1]) and all(a != b for a, b in zip(*seen, strict=True))


def test_a_refit_trains_on_the_stop_split_too_and_stays_blind_to_validation(
    tmp_path: Path,
) -> None:
    """train.refit: after stopping on the end of the train split, the model is trained again
    from scratch on every train window for as many epochs as its best checkpoint took."""
    from trainyard.tasks.forecast.evaluate import load_holdout, model_forecast

    trained, paths = {}, {}
    for refit in (False, True):
        config = params(
            models=["tcn"], min_steps=0, max_epochs=3, patience=1, stop_on="train", refit=refit
        )
        for factor in (1.0, 1.5):
            paths[factor] = prepared_with_validation_scaled(tmp_path / f"{refit}-{factor}", factor)
            out = tmp_path / f"{refit}-{factor}-models"
            trained[refit, factor] = train_model(FORECAST, "tcn", paths[factor], config, out)

    stopped, refitted = trained[False, 1.0], trained[True, 1.0]
    assert "refit_steps" not in stopped.hparams
    # As many epochs as its best checkpoint took (the one of the lowest val/loss), each of
    # the batches of every train window: more per epoch than the stopped fit had.
    losses = [epoch["val/loss"] for epoch in trained[True, 1.0].history]
    best_epochs = losses.index(min(losses)) + 1
    all_windows = params(models=["tcn"], stop_on="validation")
    batches = len(FORECAST.setup("tcn", paths[1.0], all_windows).train_loader)
    assert batches > trained[True, 1.0].train_batches
    assert refitted.hparams["refit_steps"] == best_epochs * batches
    again = [weights(trained[True, f].model_dir) for f in (1.0, 1.5)]
    for name, tensor in again[0].items():
        assert torch.equal(tensor, again[1][name]), name  # validation never reached it
    before = weights(stopped.model_dir)
    assert any(not torch.equal(before[n], again[0][n]) for n in before)  # trained again

    holdout = load_holdout(paths[1.0], config)
    forecast = model_forecast("tcn", Path(refitted.model_dir), holdout, config)
    assert forecast.point.shape == holdout.actual.shape
    assert np.isfinite(forecast.point).all()


def test_series_too_short_to_stop_on_train_are_told_and_stop_on_validation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """tiny_params: encoder 16 + horizon 4, validation 16, holdout 8: 50 steps leave a train
    split of 26, too short for a window (20 steps) before a stop split of 16."""
    frame = multiplicative({"a": 10.0}).head(50)
    tmp_path.mkdir(exist_ok=True)
    frame.to_csv(tmp_path / "data.csv", index=False)
    config = params(models=["lstm"], stop_on="train", refit=True)
    summary = prepare(params(), tmp_path, tmp_path / "prepared")

    with caplog.at_level("WARNING"):
        FORECAST.check_prepared(summary, config)

    assert "the neural models stop early on validation instead" in caplog.text
    assert "windows.validation_length (16)" in caplog.text
    assert FORECAST.refit_params("lstm", Path(summary.path), config) is None
    longer = prepared_with_validation_scaled(tmp_path / "longer", 1.0)
    assert FORECAST.refit_params("lstm", longer, config).train.stop_on == "validation"
    assert FORECAST.refit_params("autoets", longer, config) is None
