"""Every network family by the name the pipelines use."""

from automl.models.image import CNN
from automl.models.tabular import TABULAR
from automl.models.text import RNN, Bag, TextTransformer

FAMILIES = {**TABULAR, "cnn": CNN, "bag": Bag, "rnn": RNN, "transformer": TextTransformer}
TEXT_FAMILIES = ("bag", "rnn", "transformer")  # the families that read token ids
