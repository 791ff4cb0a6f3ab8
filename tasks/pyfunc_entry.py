"""The one script every trainyard pyfunc is logged as (MLflow models-from-code).

Nothing of a model is pickled into the registry: MLflow runs this file when the model is
loaded, and the model's config names the class that serves it, e.g.
"trainyard.tasks.forecast.serving:ForecasterModel", imported from the trainyard code shipped
with the model. Before that class reads anything, every artifact file is checked against the
sha256 recorded when the model was logged.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc
import pandas as pd

SERVING_PACKAGE = "trainyard."  # the only modules a config may name a serving class in


def serving_class(path: Any) -> type[mlflow.pyfunc.PythonModel]:
    """Returns the PythonModel class named "module:Class" (a module under trainyard.)."""
    from trainyard.errors import DataError

    module_name, _, name = str(path).partition(":")
    if not module_name.startswith(SERVING_PACKAGE) or not name.isidentifier():
        raise DataError(
            f"model config python_model {path!r}: not a trainyard serving class "
            f'("{SERVING_PACKAGE}<module>:<Class>"); the model is not loaded'
        )
    served = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(served, type) and issubclass(served, mlflow.pyfunc.PythonModel)):
        raise DataError(f"model config python_model {path!r}: not a PythonModel class")
    return served


class TrainyardModel(mlflow.pyfunc.PythonModel):
    """Serves a logged model with the trainyard class its config names, once its artifact
    files are verified."""

    def load_context(self, context: Any) -> None:
        from trainyard.tasks.registry import ARTIFACT_DIGESTS, PYFUNC_CLASS, verify_artifacts

        config = context.model_config or {}
        artifacts = {name: Path(path) for name, path in (context.artifacts or {}).items()}
        verify_artifacts(artifacts, config.get(ARTIFACT_DIGESTS), "model")
        self.model = serving_class(config.get(PYFUNC_CLASS))()
        self.model.load_context(context)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> Any:
        return self.model.predict(context, model_input, params=params)


mlflow.models.set_model(TrainyardModel())
