"""bench: a benchmark harness for parameter-efficient fine-tuning, tracked in MLflow."""

__version__ = "0.1.0"
