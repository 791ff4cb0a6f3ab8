"""The text family on the skeleton: train, evaluate against the n-gram, re-score, and the
whole pipeline on a user's own folder of text files from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from trainyard.errors import DataError
from trainyard.tasks.family import CHECKPOINT
from trainyard.tasks.text.config import Params
from trainyard.tasks.text.family import TEXT
from trainyard.tasks.training import train_model

SUBJECTS = ["the cat", "a dog", "my friend", "the team", "our teacher", "a bird", "she", "he"]
VERBS = ["sat on", "looked at", "ran to", "found", "wrote about", "read", "saw", "liked"]
OBJECTS = ["the mat", "a red ball", "the park", "the door", "a book", "the river", "it", "us"]
ENDINGS = ["today.", "again.", "at nine.", "in the morning.", "with care.", "slowly.", "!", "."]


def _write_corpus(folder: Path, documents: int = 14, seed: int = 0) -> Path:
    """Writes documents of simple English sentences from a small grammar; returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(documents):
        lines = [
            " ".join(part[rng.integers(len(part))] for part in (SUBJECTS, VERBS, OBJECTS, ENDINGS))
            for _ in range(40)
        ]
        (folder / f"note{index:02d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _params(folder: Path, **train) -> Params:
    return Params.from_dict(
        {
            "corpus": {"name": str(folder)},
            "train": {
                "max_epochs": 4,
                "patience": 4,
                "batch_size": 8,
                "bptt": 32,
                "lstm": {"embedding_size": 48, "hidden_size": 48, "num_layers": 1},
                **train,
            },
            "evaluate": {"max_ngram_order": 4, "sample_length": 30, "prompts": ["the ", "a "]},
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """Returns (params, prepared, model_dir, result) of an LSTM trained on a small corpus."""
    root = tmp_path_factory.mktemp("text")
    params = _params(_write_corpus(root / "corpus"))
    prepared = TEXT.prepare(params, root, root / "prepared")
    result = train_model(TEXT, "lstm", Path(prepared.path), params, root / "models", threads=2)
    return params, prepared, Path(result.model_dir), result, root


def test_training_lowers_validation_bpc_and_keeps_the_best_checkpoint(trained):
    _, _, model_dir, result, _ = trained
    history = [row["val/bpc"] for row in result.history]
    assert len(history) >= 2 and min(history[1:]) < history[0]
    assert result.monitor == "val/bpc" and (model_dir / CHECKPOINT).exists()
    assert result.best_score == pytest.approx(min(history), rel=1e-6)


@pytest.fixture(scope="module")
def evaluated(trained):
    """Returns the evaluation of the trained LSTM (reports in <root>/reports)."""
    params, prepared, model_dir, _, root = trained
    return TEXT.evaluate(prepared, {"lstm": model_dir}, params, root / "reports", {})


def test_evaluation_scores_the_model_and_the_ngram_on_the_test_split(trained, evaluated):
    _, prepared, _, _, root = trained
    report, evaluation = root / "reports", evaluated
    assert set(evaluation.metrics) == {"lstm", "ngram", "unigram"}
    assert evaluation.baselines == ["ngram", "unigram"]
    for name, scores in evaluation.metrics.items():
        assert scores["perplexity"] == pytest.approx(2 ** scores["bpc"]), name
    # Both are far better than a uniform guess over the vocabulary.
    uniform = np.log2(prepared.vocab_size)
    assert evaluation.metrics["lstm"]["bpc"] < 0.6 * uniform
    assert evaluation.metrics["ngram"]["bpc"] < evaluation.metrics["unigram"]["bpc"]
    assert evaluation.metrics["lstm"]["bpc"] < evaluation.metrics["unigram"]["bpc"] - 0.5
    assert json.loads((report / "metrics.json").read_text()) == evaluation.metrics
    samples = json.loads((report / "samples.json").read_text())
    assert set(samples) == {"the ", "a "} and len(samples["the "]["lstm"]) == 30
    assert (report / "plots" / "bpc.png").stat().st_size > 0
    orders = pd.read_csv(report / "ngram_orders.csv")
    assert list(orders["order"]) == [1, 2, 3, 4]


def test_rescoring_a_registered_model_matches_evaluation_and_refuses_other_vocabularies(
    trained, evaluated
):
    params, prepared, model_dir, _, _ = trained
    spec = TEXT.pyfunc("lstm", model_dir, prepared, params)
    artifacts = {"model_dir": model_dir}
    score = TEXT.rescore(spec.model_config, artifacts, prepared, params)
    assert score == pytest.approx(evaluated.metrics["lstm"]["bpc"], rel=1e-9)
    other = {**spec.model_config, "vocabulary": {"unknown_id": 0, "symbols": ["\ufffd", "a"]}}
    assert TEXT.rescore(other, artifacts, prepared, params) is None


def test_a_truncated_checkpoint_is_named_in_the_error(trained, tmp_path: Path):
    params, prepared, model_dir, _, _ = trained
    broken = tmp_path / "lstm"
    broken.mkdir()
    (broken / CHECKPOINT).write_bytes((model_dir / CHECKPOINT).read_bytes()[:200])
    with pytest.raises(DataError, match=r"best\.ckpt: the lstm checkpoint cannot be loaded"):
        TEXT.evaluate(prepared, {"lstm": broken}, params, tmp_path / "reports", {})


def test_a_corpus_prepared_with_other_params_is_refused(trained):
    params, prepared, model_dir, _, _ = trained
    other = params.model_copy(update={"corpus": params.corpus.model_copy(update={"seed": 9})})
    with pytest.raises(Exception, match="prepared with other parameters"):
        TEXT.setup("lstm", Path(prepared.path), other)


def _trainyard(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "trainyard"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_the_pipeline_runs_on_a_users_folder_given_on_the_command_line(tmp_path: Path):
    folder = _write_corpus(tmp_path / "my notes")
    (tmp_path / "params.yaml").write_text(
        "text:\n  train:\n    max_epochs: 2\n    batch_size: 8\n    bptt: 32\n"
        "    lstm: {embedding_size: 32, hidden_size: 32, num_layers: 1}\n"
        "  evaluate: {max_ngram_order: 3, sample_length: 20}\n"
    )
    state = tmp_path / ".state"
    env = {
        **os.environ,
        "TRAINYARD_STATE_DIR": str(state),
        "PREFECT_HOME": str(state / "prefect"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
    }
    done = _trainyard(["run", "--dataset", str(folder), "--no-orchestrator"], tmp_path, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    # Only the text family reads a folder of text: forecasting and RL did not run.
    assert not (tmp_path / "data" / "forecast").exists()
    assert not (tmp_path / "data" / "rl").exists()
    metrics = json.loads((tmp_path / "data/text/reports/metrics.json").read_text())
    assert set(metrics) >= {"lstm", "ngram"}
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    versions = MlflowClient().search_model_versions("name='my-notes-lm'")
    assert [v.tags["model"] for v in versions] == ["lstm"]
    assert versions[0].tags["family"] == "text"

    # A folder for a family that reads tables is refused with advice, before any work.
    refused = _trainyard(
        ["run", "--dataset", str(folder), "--family", "forecast", "--no-orchestrator"],
        tmp_path,
        env,
    )
    assert refused.returncode == 2
    assert "the forecast family does not read it; use --family text" in " ".join(
        refused.stdout.split()
    )
