"""A training process SIGKILLed mid-training resumes from its last checkpoint when started
again on the same inputs; an unreadable checkpoint is set aside and training starts over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainyard.tasks.forecast.config import load_params
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.training import resume_dir, train_model

CHILD = """
import sys
from pathlib import Path
from trainyard.tasks.forecast.config import Params
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.training import train_model
params = Params.model_validate_json(Path(sys.argv[1]).read_text())
prepared, out, resume = (Path(arg) for arg in sys.argv[2:5])
train_model(FORECAST, "lstm", prepared, params, out, None, 1, resume)
"""


@pytest.fixture(scope="module")
def lstm_inputs(tmp_path_factory):
    """Returns (params, prepared file): a small LSTM that trains for a while."""
    folder = tmp_path_factory.mktemp("resume")
    params = load_params(ROOT / "params.yaml", "quick")
    params.train.models = ["lstm"]
    params.train.max_epochs = 8
    params.train.patience = 8
    params.train.limit_train_batches = 30
    prepared = FORECAST.prepare(params, ROOT, folder / "prepared")
    return params, Path(prepared.path), prepared.md5


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_last_checkpoint(lstm_inputs, tmp_path: Path):
    params, prepared, md5 = lstm_inputs
    resume = resume_dir(tmp_path / "state", FORECAST, "lstm", md5, params)
    (tmp_path / "params.json").write_text(params.model_dump_json())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "params.json"),
            str(prepared),
            str(tmp_path / "killed"),
            str(resume),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (resume / "last.ckpt").exists():
            assert child.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        time.sleep(1.0)  # into the next epoch
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not (tmp_path / "killed" / "lstm").exists()  # nothing half-written as a model

    result = train_model(
        FORECAST, "lstm", prepared, params, tmp_path / "models", threads=1, resume_dir=resume
    )
    assert result.resumed_from_step > 0
    # The epochs before the kill are kept in the history; the run ends where it would have.
    assert [row["epoch"] for row in result.history] == list(range(params.train.max_epochs))
    assert (tmp_path / "models" / "lstm" / "best.ckpt").exists()
    assert not list(resume.iterdir())  # a finished model leaves nothing to resume

    # The kill fell after an epoch's checkpoint: the resumed run restores the random state and
    # batch order of that epoch, so it ends exactly where a run never stopped ends.
    whole = train_model(FORECAST, "lstm", prepared, params, tmp_path / "whole", threads=1)
    assert whole.resumed_from_step == 0
    assert result.best_score == pytest.approx(whole.best_score, rel=1e-5)
    for resumed_epoch, whole_epoch in zip(result.history, whole.history, strict=True):
        assert resumed_epoch["val/loss"] == pytest.approx(whole_epoch["val/loss"], rel=1e-5)
        assert resumed_epoch["train/loss"] == pytest.approx(whole_epoch["train/loss"], rel=1e-5)


def test_an_unreadable_checkpoint_is_set_aside_and_training_starts_over(
    lstm_inputs, tmp_path: Path, caplog
):
    params, prepared, md5 = lstm_inputs
    params = params.model_copy(deep=True)
    params.train.max_epochs = 1
    resume = resume_dir(tmp_path / "state", FORECAST, "lstm", md5, params)
    resume.mkdir(parents=True)
    (resume / "last.ckpt").write_bytes(b"\x80\x04not a checkpoint")
    result = train_model(
        FORECAST, "lstm", prepared, params, tmp_path / "models", threads=1, resume_dir=resume
    )
    assert result.resumed_from_step == 0 and result.epochs >= 1
    assert "cannot be resumed" in caplog.text and "training from scratch" in caplog.text


def test_other_inputs_never_share_a_resume_folder(lstm_inputs, tmp_path: Path):
    params, _, md5 = lstm_inputs
    other = params.model_copy(deep=True)
    other.train.seed = params.train.seed + 1
    state = tmp_path / "state"
    mine = resume_dir(state, FORECAST, "lstm", md5, params)
    assert mine == resume_dir(state, FORECAST, "lstm", md5, params)
    assert mine != resume_dir(state, FORECAST, "lstm", md5, other)
    assert mine != resume_dir(state, FORECAST, "lstm", "another-data-version", params)
    assert mine != resume_dir(state, FORECAST, "tcn", md5, params)
