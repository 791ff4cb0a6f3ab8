"""Forecasting and agent models: one LightningModule (with its nn.Module parts) per file."""
