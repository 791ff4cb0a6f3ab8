"""Agents: one LightningModule per file."""
