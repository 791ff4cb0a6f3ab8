"""Plain-Python pipeline steps: prepare, train, evaluate, register. No Prefect here."""
