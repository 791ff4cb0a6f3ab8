"""DVC: the stages in dvc.yaml run the task code, and a second `dvc repro` does nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

STAGES = tuple(
    f"{step}_{family}"
    for family in ("forecast", "rl", "text")
    for step in ("prepare", "train", "evaluate")
)


def _run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_dvc_repro_twice_skips_every_stage(tmp_path: Path):
    for folder in ("tasks", "models", "trainyard"):
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=skip)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.pop("profiles")
    forecast = params["forecast"]
    forecast["train"].update(
        models=["lstm", "autotheta"], max_epochs=2, min_steps=0, limit_train_batches=4
    )
    forecast["evaluate"]["stride"] = 8
    rl = params["rl"]
    rl["scenarios"]["episodes"] = 16
    rl["train"].update(max_epochs=1, steps_per_epoch=20, validation_episodes=4, num_envs=4)
    rl["train"]["dqn"].update(learning_starts=64, batch_size=16)
    text = params["text"]
    text["train"].update(max_epochs=1, limit_train_batches=3)
    text["train"]["lstm"].update(embedding_size=32, hidden_size=32)
    text["evaluate"].update(max_ngram_order=3, sample_length=20)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], tmp_path)
    _run(["dvc", "init", "-q"], tmp_path)
    _run(["dvc", "config", "core.analytics", "false"], tmp_path)

    # Every family's stages.
    repro = ["dvc", "repro"]
    first = _run(repro, tmp_path)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first
    rl_metrics = json.loads((tmp_path / "data/rl/reports/metrics.json").read_text())
    assert set(rl_metrics) == {"dqn", "a2c", "random", "greedy"}
    text_metrics = json.loads((tmp_path / "data/text/reports/metrics.json").read_text())
    assert set(text_metrics) == {"lstm", "ngram", "unigram"}
    assert (tmp_path / "data/text/reports/samples.txt").stat().st_size > 0
    data = tmp_path / "data" / "forecast"
    metrics = json.loads((data / "reports/metrics.json").read_text())
    assert set(metrics) == {"lstm", "autotheta", "ensemble", "naive", "seasonal_naive"}
    assert (data / "models/lstm/best.ckpt").exists()
    assert (data / "models/autotheta/statistical.json").exists()
    assert (data / "prepared/series.parquet").exists()

    second = _run(repro, tmp_path)
    assert "Running stage" not in second
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in second

    shown = _run(["dvc", "metrics", "show", "--json"], tmp_path)
    assert "seasonal_naive" in shown
    _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots_html")], tmp_path)
    assert (tmp_path / "plots_html" / "index.html").exists()

    # A params change reruns only the stages that depend on it.
    forecast["evaluate"]["stride"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    third = _run(repro, tmp_path)
    assert "Running stage 'evaluate_forecast'" in third
    assert "Running stage 'train_forecast'" not in third
    assert "Running stage 'prepare_forecast'" not in third
    assert not any(
        f"Running stage '{step}_rl'" in third for step in ("prepare", "train", "evaluate")
    )
