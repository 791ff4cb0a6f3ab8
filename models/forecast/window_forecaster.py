"""WindowForecaster: the LightningModule shared by forecasters trained on window batches.

It owns target scaling and the train/val/test step; a subclass supplies only the network.
Scaling: each window is standardised by its own encoder mean and std (as pytorch-forecasting's
EncoderNormalizer does for the TFT), so series of any level or scale share one network.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

SCALE_FLOOR = 1e-3  # std below this (flat encoders) is clamped, avoiding division blow-ups


def encoder_scale(encoder_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns per-window (mean, std) of the encoder target, each shaped [batch, 1]."""
    mean = encoder_target.mean(dim=1, keepdim=True)
    std = encoder_target.std(dim=1, keepdim=True).clamp_min(SCALE_FLOOR)
    return mean, std


def scaled_mse(prediction: torch.Tensor, target: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Returns the mean squared error measured in units of each window's encoder std."""
    return (((prediction - target) / std) ** 2).mean()


class WindowForecaster(L.LightningModule):
    """Forecasts `horizon` steps from a window batch with a network on scaled inputs.

    The network gets (scaled encoder target [B, E, 1] ++ encoder covariates [B, E, C],
    known future covariates [B, H, K]) and returns [B, H] in scaled units, as an offset from
    the last observed (scaled) value.
    """

    def __init__(self, network: nn.Module, learning_rate: float = 3e-3):
        super().__init__()
        self.network = network
        self.learning_rate = learning_rate

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Returns {"prediction": [B, H]} in the target's own units."""
        mean, std = encoder_scale(batch["encoder_target"])
        scaled = ((batch["encoder_target"] - mean) / std).unsqueeze(-1)
        inputs = torch.cat([scaled, batch["encoder_covariates"]], dim=-1)
        offset = self.network(inputs, batch["decoder_known"])
        prediction = (scaled[:, -1] + offset) * std + mean
        return {"prediction": prediction, "std": std}

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, prediction) for one batch."""
        output = self(batch)
        loss = scaled_mse(output["prediction"], batch["target"], output["std"])
        return loss, output["prediction"]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self.model_step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, prediction = self.model_step(batch)
        size = len(prediction)
        self.log("val/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log(
            "val/mae", (prediction - batch["target"]).abs().mean(), batch_size=size, sync_dist=True
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)
