"""An MLflow pyfunc that continues prompts with a trained character language model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from trainyard.errors import DataError

PROMPT_COLUMN = "prompt"
# Inference params and their defaults (the signature's params schema takes these).
DEFAULT_PARAMS = {"temperature": 0.8, "length": 200, "seed": 0}
MAX_LENGTH = 100_000  # characters one call may ask for


def prompts_from_input(model_input: Any) -> list[str]:
    """Returns the prompts of a table with a `prompt` column (or a list/Series of strings)."""
    if isinstance(model_input, pd.DataFrame):
        if PROMPT_COLUMN not in model_input.columns:
            raise DataError(
                f"model input: no {PROMPT_COLUMN!r} column (columns: "
                f"{', '.join(map(str, model_input.columns))}); give one prompt per row"
            )
        values = list(model_input[PROMPT_COLUMN])
    elif isinstance(model_input, pd.Series | list | tuple):
        values = list(model_input)
    else:
        raise DataError(f"model input: expected a table with a {PROMPT_COLUMN!r} column")
    for row, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise DataError(
                f"model input row {row}: prompt is {value!r}; every prompt must be a non-empty "
                "string"
            )
    return values


def generation_params(params: dict[str, Any] | None) -> tuple[float, int, int]:
    """Returns temperature, length and seed from the call's params (defaults filled in)."""
    merged = {**DEFAULT_PARAMS, **(params or {})}
    try:
        temperature, length = float(merged["temperature"]), int(merged["length"])
        seed = int(merged["seed"])
    except (TypeError, ValueError) as error:
        raise DataError(f"params: temperature, length and seed must be numbers ({error})") from None
    if temperature < 0 or not 1 <= length <= MAX_LENGTH:
        raise DataError(
            f"params: temperature must be 0 (greedy) or more and length 1..{MAX_LENGTH}; got "
            f"temperature={temperature}, length={length}"
        )
    return temperature, length, seed


class TextGenerator(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of a trained language model.

    Input: one row per prompt, column `prompt`. Params: temperature (0 = greedy), length
    (characters to write) and seed. Output: columns prompt and continuation.
    """

    def load_context(self, context: Any) -> None:
        from trainyard.tasks.text.corpus import Vocabulary
        from trainyard.tasks.text.evaluate import check_vocabulary, load_language_model

        self.vocabulary = Vocabulary.from_dict(context.model_config["vocabulary"])
        model_dir = Path(context.artifacts["model_dir"])
        self.model = load_language_model(context.model_config["kind"], model_dir)
        check_vocabulary(self.model, self.vocabulary, str(model_dir))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from trainyard.tasks.text.evaluate import continue_prompt

        prompts = prompts_from_input(model_input)
        temperature, length, seed = generation_params(params)
        continuations = [
            continue_prompt(self.model, self.vocabulary, prompt, length, temperature, seed + i)
            for i, prompt in enumerate(prompts)
        ]
        return pd.DataFrame({PROMPT_COLUMN: prompts, "continuation": continuations})
