"""Images and free text: detection, a training step per family, a tokenizer fitted on training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from automl.competition import Competition
from automl.folds import fold_features, make_folds
from automl.models import TabularModule
from automl.models.image import shift_and_rotate
from automl.pipeline import choose, load_pipeline
from automl.preprocess import Preprocessor
from automl.problem import make_problem
from automl.train import Target, build_module, fit_fold, tensors

WORDS = ["fire", "flood", "storm", "sunny", "happy", "party", "music", "burning", "help", "evacuate", "lovely", "day"]


def image_frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """8x8 'digits': class 1 has a bright vertical bar, class 0 a horizontal one, plus noise."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    images = rng.integers(0, 40, (n, 8, 8))
    for i, y in enumerate(label):
        position = rng.integers(2, 6)
        if y:
            images[i, :, position] = 255
        else:
            images[i, position, :] = 255
    frame = pd.DataFrame(images.reshape(n, 64), columns=[f"pixel{i}" for i in range(64)])
    frame.insert(0, "label", label)
    frame.insert(0, "id", np.arange(n))
    return frame


def text_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, n)
    disaster, calm = WORDS[:4] + WORDS[7:10], WORDS[4:7] + WORDS[10:]
    texts = [" ".join(rng.choice(disaster if y else calm, 8)) + f" tweet{i}" for i, y in enumerate(target)]
    return pd.DataFrame({"id": np.arange(n), "place": rng.choice(["a", "b"], n), "text": texts, "target": target})


def problem_of(frame: pd.DataFrame, target: str, **spec):
    comp = Competition(slug="synthetic", id="id", target=target, task="binary", metric="accuracy", labels="int", **spec)
    train, test = frame.iloc[:-40], frame.iloc[-40:].drop(columns=target)
    return make_problem(comp, train, test)


def test_detection_picks_the_family_from_the_columns():
    assert choose(problem_of(image_frame(), "label")) == "image"
    assert choose(problem_of(text_frame(), "target")) == "text"
    table = text_frame().drop(columns="text")
    assert choose(problem_of(table, "target")) == "tabular"
    for name in ("image", "text", "tabular", "quick"):
        load_pipeline(name)  # every shipped recipe loads and its defaults fit its space


@pytest.mark.parametrize("family,params", [
    ("cnn", {"conv_blocks": 2, "channels": 8, "augment": True}),
    ("cnn", {"conv_blocks": 1, "convs_per_block": 2, "channels": 8, "augment": False, "pooling": "avg"}),
])
def test_the_cnn_trains_a_step_and_learns(family, params):
    problem = problem_of(image_frame(), "label")
    folds = fold_features(problem, make_folds(problem, 3, 0))
    assert folds[0].train.images.shape[1:] == (1, 8, 8) and folds[0].train.images.max() <= 1.0
    params = {"family": family, "optimizer": "adamw", "lr": 3e-3, "batch_size": 32, **params}
    _one_step(problem, folds[0], params)
    fit = fit_fold(problem, folds[0], params, max_epochs=12, patience=12)
    assert (fit.valid.argmax(1) == problem.y[folds[0].valid_rows]).mean() > 0.8


@pytest.mark.parametrize("family,params", [
    ("bag", {"embedding_dim": 16}),
    ("rnn", {"embedding_dim": 16, "hidden": 8, "cell": "gru"}),
    ("rnn", {"embedding_dim": 16, "hidden": 8, "cell": "lstm"}),
    ("transformer", {"embedding_dim": 16, "heads": 2, "layers": 1}),
])
def test_each_text_family_trains_a_step_and_learns(family, params):
    problem = problem_of(text_frame(), "target")
    folds = fold_features(problem, make_folds(problem, 3, 0), tokenize=True)
    params = {"family": family, "optimizer": "adamw", "lr": 5e-3, "batch_size": 32, **params}
    _one_step(problem, folds[0], params)
    fit = fit_fold(problem, folds[0], params, max_epochs=15, patience=15)
    assert (fit.valid.argmax(1) == problem.y[folds[0].valid_rows]).mean() > 0.8


def _one_step(problem, fold, params):
    module = build_module(problem, fold, params, total_steps=10)
    inputs = tensors(fold.train, "cpu")
    y = torch.as_tensor(Target(problem, fold.train_rows).encode(fold.train_rows))
    before = [p.detach().clone() for p in module.parameters()]
    loss = module.loss(module(*(t[:32] for t in inputs)), y[:32])
    loss.backward()
    torch.optim.SGD(module.parameters(), lr=0.1).step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_the_tokenizer_never_sees_validation_or_test_text():
    problem = problem_of(text_frame(), "target")
    folds = fold_features(problem, make_folds(problem, 3, 0), tokenize=True)
    fold = folds[0]
    pre = Preprocessor(tokenize=True).fit(problem.train.iloc[fold.train_rows])
    seen = {w for text in problem.train["text"].iloc[fold.train_rows] for w in text.split()}
    assert set(pre.words_) <= seen  # nothing from validation or test rows
    # Each row's own id word (tweet17) occurs once, so none is in any vocabulary; the
    # validation and test rows' words that training never saw map to 1 (unknown).
    assert not any(w.startswith("tweet") for w in pre.words_)
    assert (fold.valid.tokens == 1).any(axis=1).all() and (fold.test.tokens == 1).any(axis=1).all()
    # Word pairs and character n-grams come from the training rows too, and get ids after the words.
    grams = [gram for vectorizer, _ in pre.grams_ for gram in vectorizer.vocabulary_]
    train_text = " ".join(problem.train["text"].iloc[fold.train_rows])
    assert grams and all(gram.strip() in train_text for gram in grams)
    assert fold.train.vocab_size == len(pre.words_) + 2 + len(grams)
    sequence = fold.valid.tokens[:, : fold.valid.sequence_length]
    assert sequence.max() < len(pre.words_) + 2 <= fold.valid.tokens[:, fold.valid.sequence_length:].max()


def test_augmentation_moves_pixels_in_training_only():
    images = torch.zeros(4, 1, 8, 8)
    images[:, :, 2:6, 3] = 1.0
    moved = shift_and_rotate(images)
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    module = TabularModule(0, (), 2, "binary", image_shape=(1, 8, 8), family="cnn", conv_blocks=1, channels=4)
    module.eval()
    empty = torch.zeros(4, 0)
    first = module(empty, torch.zeros(4, 0, dtype=torch.long), images, torch.zeros(4, 0, dtype=torch.long))
    again = module(empty, torch.zeros(4, 0, dtype=torch.long), images, torch.zeros(4, 0, dtype=torch.long))
    assert torch.equal(first, again)


def test_a_family_without_its_input_is_an_invalid_combination():
    problem = problem_of(text_frame().drop(columns="text"), "target")
    folds = fold_features(problem, make_folds(problem, 3, 0))
    with pytest.raises(ValueError, match="needs pixel columns"):
        build_module(problem, folds[0], {"family": "cnn"}, total_steps=1)
    with pytest.raises(ValueError, match="needs a free-text column"):
        build_module(problem, folds[0], {"family": "rnn"}, total_steps=1)
