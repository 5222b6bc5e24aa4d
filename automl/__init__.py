"""automl: from a Kaggle competition's name to a cross-validated leaderboard and a submission.

The same steps as the `automl` command, as functions for notebooks:

    import automl
    folder = automl.fetch("titanic")
    print(automl.inspect("titanic").columns)
    result = automl.run("titanic")
    result.leaderboard
"""

import os

# OpenMP threads (torch, scikit-learn's histogram boosting) that spin while they wait
# make every fit many times slower the moment another process wants the cores (a
# worker, a test run, a browser): 0.3 s became 3-20 s for a small network here. Waiting
# passively costs nothing measurable when the machine is idle. Set before torch or
# scikit-learn load their OpenMP runtime; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from automl.api import inspect, validate  # noqa: E402
from automl.errors import AutomlError  # noqa: E402
from automl.fetch import fetch  # noqa: E402
from automl.runner import run  # noqa: E402

__all__ = ["AutomlError", "fetch", "inspect", "run", "validate"]
__version__ = "0.1.0"
