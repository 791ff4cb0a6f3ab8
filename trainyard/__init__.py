"""trainyard: prepare, train, evaluate, register and promote forecasting models."""

__version__ = "0.1.0"
