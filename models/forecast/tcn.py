"""TCN forecaster: causal dilated residual convolutions over the window, a linear head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainyard.errors import ConfigError
from trainyard.models.forecast.window_forecaster import WindowForecaster


class CausalConv1d(nn.Conv1d):
    """A 1-d convolution whose output at t sees only inputs at t and before."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ResidualBlock(nn.Module):
    """Two causal convolutions with one dilation, plus a (1x1-projected) skip connection."""

    def __init__(
        self, in_channels: int, channels: int, kernel_size: int, dilation: int, dropout: float
    ):
        super().__init__()
        self.conv1 = CausalConv1d(in_channels, channels, kernel_size, dilation)
        self.conv2 = CausalConv1d(channels, channels, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.skip = (
            nn.Conv1d(in_channels, channels, 1) if in_channels != channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(F.relu(self.conv1(x)))
        out = self.dropout(F.relu(self.conv2(out)))
        return F.relu(out + self.skip(x))


def receptive_field(kernel_size: int, dilations: list[int]) -> int:
    """Returns how many past steps the last output of a stack of residual blocks can see."""
    return 1 + 2 * (kernel_size - 1) * sum(dilations)


class TCNNetwork(nn.Module):
    """Returns [B, H] offsets from encoder inputs [B, E, F] and known future inputs [B, H, K]."""

    def __init__(
        self,
        input_size: int,
        n_known: int,
        horizon: int,
        channels: int,
        kernel_size: int,
        dilations: list[int],
        dropout: float,
    ):
        super().__init__()
        blocks = []
        for i, dilation in enumerate(dilations):
            blocks.append(
                ResidualBlock(
                    input_size if i == 0 else channels, channels, kernel_size, dilation, dropout
                )
            )
        self.blocks = nn.Sequential(*blocks)
        self.receptive_field = receptive_field(kernel_size, dilations)
        self.head = nn.Linear(channels + horizon * n_known, horizon)

    def forward(self, encoder: torch.Tensor, decoder_known: torch.Tensor) -> torch.Tensor:
        features = self.blocks(encoder.transpose(1, 2))[:, :, -1]
        return self.head(torch.cat([features, decoder_known.flatten(1)], dim=1))


class TCNForecaster(WindowForecaster):
    """TCN forecaster over encoder-scaled windows; its receptive field must cover the encoder."""

    def __init__(
        self,
        input_size: int,
        n_known: int,
        horizon: int,
        encoder_length: int,
        channels: int = 32,
        kernel_size: int = 3,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16),
        dropout: float = 0.0,
        learning_rate: float = 3e-3,
        anchor_season: int = 1,
    ):
        field = receptive_field(kernel_size, list(dilations))
        if field < encoder_length:
            raise ConfigError(
                f"TCN receptive field {field} is shorter than encoder_length {encoder_length}: "
                "add dilations or raise train.tcn.kernel_size in params.yaml"
            )
        network = TCNNetwork(
            input_size, n_known, horizon, channels, kernel_size, list(dilations), dropout
        )
        super().__init__(network, learning_rate, anchor_season)
        self.save_hyperparameters()
