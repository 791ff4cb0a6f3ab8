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
    an anchor: the last observed (scaled) value, or with `anchor_season` s > 1 the value one
    season before each step (seasonal naive, the encoder's last s steps repeated), so an
    untrained network starts from the naive or the seasonal naive forecast.
    """

    def __init__(self, network: nn.Module, learning_rate: float = 3e-3, anchor_season: int = 1):
        super().__init__()
        self.network = network
        self.learning_rate = learning_rate
        self.anchor_season = anchor_season

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Returns {"prediction": [B, H]} in the target's own units."""
        mean, std = encoder_scale(batch["encoder_target"])
        scaled = ((batch["encoder_target"] - mean) / std).unsqueeze(-1)
        inputs = torch.cat([scaled, batch["encoder_covariates"]], dim=-1)
        offset = self.network(inputs, batch["decoder_known"])
        prediction = (self.anchor(scaled[..., 0], offset.shape[1]) + offset) * std + mean
        return {"prediction": prediction, "std": std}

    def anchor(self, scaled: torch.Tensor, horizon: int) -> torch.Tensor:
        """Returns the anchor of each step ([B, H] or [B, 1]) from the scaled encoder [B, E]."""
        season = self.anchor_season
        if season <= 1:
            return scaled[:, -1:]
        encoder = scaled.shape[1]
        return scaled[:, torch.arange(horizon, device=scaled.device) % season + encoder - season]

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


class EncoderMixture(nn.Module):
    """Forecasts the mean of several WindowForecasters, each reading the last steps of the
    window's encoder its own length asks for (N-BEATS averages networks of several look-back
    lengths the same way). Its "std" is the whole encoder's, as one network's would be."""

    def __init__(self, members: list[WindowForecaster], encoder_lengths: list[int]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.encoder_lengths = list(encoder_lengths)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Returns {"prediction": [B, H], "std": [B, 1]} for a batch of the longest encoder."""
        predictions = []
        for member, length in zip(self.members, self.encoder_lengths, strict=True):
            own = {
                **batch,
                "encoder_target": batch["encoder_target"][:, -length:],
                "encoder_covariates": batch["encoder_covariates"][:, -length:],
            }
            predictions.append(member(own)["prediction"])
        _, std = encoder_scale(batch["encoder_target"])
        return {"prediction": torch.stack(predictions).mean(dim=0), "std": std}
