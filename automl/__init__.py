"""automl: from a Kaggle competition's name to a cross-validated leaderboard and a submission.

The same steps as the `automl` command, as functions for notebooks:

    import automl
    folder = automl.fetch("titanic")
    print(automl.inspect("titanic").columns)
    result = automl.run("titanic")
    result.leaderboard
"""

# OMP_WAIT_POLICY is left to the user: PASSIVE keeps small torch fits fast when other processes
# load the cores (0.24 s against up to 21 s measured), but makes scikit-learn's histogram
# boosting 7.5x slower on an idle machine (bike-sharing: 71 s against 9.5 s).

from automl.api import inspect, validate
from automl.errors import AutomlError
from automl.fetch import fetch
from automl.runner import run

__all__ = ["AutomlError", "fetch", "inspect", "run", "validate"]
__version__ = "0.1.0"
