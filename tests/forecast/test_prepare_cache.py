"""What the prepare step's cache key depends on, and the stale-prepared-data guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainyard.tasks.forecast.config import load_params
from trainyard.tasks.forecast.prepare import prepare, prepare_input_key, read_prepared_for


def test_cache_key_follows_data_params_not_training_params(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    key = prepare_input_key(params, ROOT)
    params.train.max_epochs += 1
    params.evaluate.stride += 1
    assert prepare_input_key(params, ROOT) == key
    params.windows.holdout_length += 1
    assert prepare_input_key(params, ROOT) != key


def test_cache_key_follows_the_file_content(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    params.dataset.name = "table.csv"
    (tmp_path / "table.csv").write_text("date,co2\n2001-01-06,1\n")
    key = prepare_input_key(params, tmp_path)
    (tmp_path / "table.csv").write_text("date,co2\n2001-01-06,2\n")
    assert prepare_input_key(params, tmp_path) != key


def test_training_on_data_prepared_with_other_windows_is_refused(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml")
    summary = prepare(params, ROOT, tmp_path)
    params.windows.holdout_length = 52
    with pytest.raises(ValueError, match=r"windows.holdout_length differ.*trainyard prepare"):
        read_prepared_for(Path(summary.path), params)
