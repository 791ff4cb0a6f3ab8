"""LSTM forecaster: an LSTM encoder over the window, an MLP head for all horizon steps."""

from __future__ import annotations

import torch
from torch import nn

from trainyard.models.forecast.window_forecaster import WindowForecaster


class LSTMNetwork(nn.Module):
    """Returns [B, H] offsets from encoder inputs [B, E, F] and known future inputs [B, H, K]."""

    def __init__(
        self,
        input_size: int,
        n_known: int,
        horizon: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
    ):
        super().__init__()
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(
            nn.Linear(hidden_size + horizon * n_known, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, horizon),
        )

    def forward(self, encoder: torch.Tensor, decoder_known: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(encoder)
        features = torch.cat([hidden[-1], decoder_known.flatten(1)], dim=1)
        return self.head(features)


class LSTMForecaster(WindowForecaster):
    """LSTM forecaster over encoder-scaled windows."""

    def __init__(
        self,
        input_size: int,
        n_known: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        learning_rate: float = 3e-3,
        anchor_season: int = 1,
    ):
        network = LSTMNetwork(input_size, n_known, horizon, hidden_size, num_layers, dropout)
        super().__init__(network, learning_rate, anchor_season)
        self.save_hyperparameters()
