"""Networks per modality (tables, images, text) and the LightningModule that trains them."""

from automl.models.families import FAMILIES
from automl.models.module import OPTIMIZERS, SCHEDULES, TabularModule
from automl.models.tabular import InputSpec

__all__ = ["FAMILIES", "OPTIMIZERS", "SCHEDULES", "InputSpec", "TabularModule"]
