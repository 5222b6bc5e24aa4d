"""Networks per modality and the LightningModule that trains them."""

from automl.models.module import OPTIMIZERS, SCHEDULES, TabularModule
from automl.models.tabular import FAMILIES

__all__ = ["FAMILIES", "OPTIMIZERS", "SCHEDULES", "TabularModule"]
