"""Text models: character language models (LightningModules)."""
