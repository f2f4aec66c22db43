"""forgetflow: workflow-orchestrated machine unlearning for PyTorch image classifiers.

The package is the decision layer (data store, models, training, tracking, CLI); the Prefect
`flows` and `tasks` packages beside it only wire these functions together.
Heavy dependencies (torch, mlflow, dvc, great_expectations, prefect) are imported lazily.
"""

__version__ = "0.1.0"
