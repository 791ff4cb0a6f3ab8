"""Temporal Fusion Transformer (pytorch-forecasting), built from its TimeSeriesDataSet."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_forecasting import TemporalFusionTransformer, TimeSeriesDataSet
from pytorch_forecasting.metrics import QuantileLoss


def split_metric_name(name: str) -> str:
    """Returns pytorch-forecasting's "val_loss"/"train_SMAPE" as "val/loss"/"train/smape"."""
    stage, sep, metric = name.partition("_")
    if sep and stage in ("train", "val", "test", "predict"):
        return f"{stage}/{metric.lower()}"
    return name


class TFTForecaster(TemporalFusionTransformer):
    """The TFT with quantile loss, logging under the project's split/metric names."""

    # How whoever built it put the target on the scale it trains on, and takes forecasts
    # back to target units (trainyard.tasks.forecast.forecasters.TFTTarget).
    target_scaling: Any = None

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        super().log(split_metric_name(name), value, *args, **kwargs)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Plain Adam at a constant rate, as for LSTM and TCN: the comparison is of models.
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Keep tensors and plain training state only, so the file loads with weights_only.
        # pytorch-forecasting would add its hyperparameters (loss and normalizer objects) and
        # the fitted dataset encoders, which only an unpickler that runs code can read; the
        # model is rebuilt from its dataset and hyperparameters instead (`for_dataset`).
        for key in (
            self.CHECKPOINT_HYPER_PARAMS_KEY,
            self.CHECKPOINT_HYPER_PARAMS_NAME,
            self.CHECKPOINT_HYPER_PARAMS_TYPE,
            self.CHECKPOINT_HYPER_PARAMS_SPECIAL_KEY,
            "dataset_parameters",
        ):
            checkpoint.pop(key, None)

    @classmethod
    def for_dataset(
        cls,
        dataset: TimeSeriesDataSet,
        quantiles: list[float],
        hidden_size: int,
        attention_head_size: int,
        hidden_continuous_size: int,
        dropout: float,
        learning_rate: float,
    ) -> TFTForecaster:
        """Returns a TFT whose input sizes are derived from `dataset`."""
        return cls.from_dataset(
            dataset,
            hidden_size=hidden_size,
            attention_head_size=attention_head_size,
            hidden_continuous_size=hidden_continuous_size,
            dropout=dropout,
            learning_rate=learning_rate,
            loss=QuantileLoss(quantiles=quantiles),
            log_interval=-1,
        )
