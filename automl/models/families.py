"""Every network family by the name the pipelines use."""

from automl.models.image import CNN
from automl.models.tabular import TABULAR
from automl.models.text import RNN, Bag, TextTransformer

FAMILIES = {**TABULAR, "cnn": CNN, "bag": Bag, "rnn": RNN, "transformer": TextTransformer}
