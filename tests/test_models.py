"""Every network family trains a step for every task; the data path and optimizer groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from net_helpers import small_problem

from automl.data import TensorBatches
from automl.models import TabularModule
from automl.models.tabular import TABULAR
from automl.train import Target, build_module, fit_fold, tensors

FAMILY_PARAMS = {
    "mlp": {"depth": 2, "width": 32, "norm": "batch", "activation": "gelu", "dropout": 0.1},
    "resnet": {"blocks": 2, "width": 32, "hidden_factor": 2.0, "norm": "layer", "dropout": 0.1},
    "ft_transformer": {"layers": 1, "d_token": 16, "heads": 2, "attention_dropout": 0.1, "ffn_dropout": 0.1},
}


@pytest.mark.parametrize("family", list(TABULAR))
def test_each_family_trains_a_step_for_each_task(family, task):
    problem, folds = small_problem(task)
    fold = folds[0]
    params = {"family": family, "optimizer": "adamw", "lr": 1e-2, "batch_size": 32, **FAMILY_PARAMS[family]}
    module = build_module(problem, fold, params, total_steps=10)
    target = Target(problem, fold.train_rows)
    y = torch.as_tensor(target.encode(fold.train_rows))
    inputs = tensors(fold.train, "cpu")
    before = [p.detach().clone() for p in module.parameters()]
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    loss = module.loss(module(*(t[:32] for t in inputs)), y[:32])
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    pred = module.predict_arrays(*tensors(fold.valid, "cpu"))
    if problem.n_classes:
        assert pred.shape == (len(fold.valid_rows), problem.n_classes)
        np.testing.assert_allclose(pred.sum(axis=1), 1, rtol=1e-5)
    else:
        assert pred.shape == (len(fold.valid_rows),)


@pytest.mark.parametrize("family", list(TABULAR))
def test_fit_fold_learns_better_than_chance(family):
    problem, folds = small_problem("binary", n=400)
    params = {"family": family, "optimizer": "adam", "lr": 3e-3, "batch_size": 32, **FAMILY_PARAMS[family]}
    fit = fit_fold(problem, folds[0], params, max_epochs=15, patience=15)
    accuracy = (fit.valid.argmax(1) == problem.y[folds[0].valid_rows]).mean()
    assert accuracy > 0.7
    assert fit.test.shape == (len(problem.test), 2)


def test_invalid_combination_is_a_value_error():
    problem, folds = small_problem("binary")
    with pytest.raises(ValueError, match="not divisible"):
        build_module(problem, folds[0], {"family": "ft_transformer", "d_token": 30, "heads": 4}, total_steps=1)


def test_weight_decay_skips_biases_and_norms():
    module = TabularModule(4, (5,), 2, "binary", family="mlp", norm="batch", weight_decay=0.1, depth=1, width=8)
    optimizer = module.configure_optimizers()
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    names = {id(p): n for n, p in module.named_parameters()}
    assert {names[id(p)] for p in plain["params"]} >= {"net.head.bias", "net.body.1.weight", "net.body.1.bias"}


def test_tensor_batches_cover_every_row_once_and_reshuffle():
    x = torch.arange(100).float().unsqueeze(1)
    batches = TensorBatches(x, batch_size=8, group=2, seed=1)
    epochs = [torch.cat([b[0] for b in batches]).squeeze(1) for _ in range(2)]
    for seen in epochs:
        assert sorted(seen.tolist()) == list(range(100))
    assert not torch.equal(epochs[0], epochs[1])
    assert len(batches) == 7 and batches.steps == 13  # 16-row groups, 8-row optimizer steps
