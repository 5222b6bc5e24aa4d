"""automl: from a Kaggle competition's name to a cross-validated leaderboard and a submission.

The same steps as the `automl` command, as functions for notebooks:

    import automl
    folder = automl.fetch("titanic")
    print(automl.inspect("titanic").columns)
    result = automl.run("titanic")
    result.leaderboard
"""

from automl.api import inspect, validate
from automl.errors import AutomlError
from automl.fetch import fetch
from automl.runner import run

__all__ = ["AutomlError", "fetch", "inspect", "run", "validate"]
__version__ = "0.1.0"
