"""Every network family trains a step for every task; ensembles, objectives, numeric
embeddings; the data path and optimizer groups."""

from __future__ import annotations

import time

import numpy as np
import optuna
import pytest
import torch
from net_helpers import small_problem

from automl import train
from automl.data import TensorBatches
from automl.models import TabularModule
from automl.models.tabular import TABULAR, attention_rows, quantile_bins
from automl.parallel import Together, batchable, fit_folds
from automl.pipeline import load_pipeline, suggest
from automl.train import Target, batch_size_for, build_module, fit_fold, tensors

FAMILY_PARAMS = {
    "mlp": {"depth": 2, "width": 32, "norm": "batch", "activation": "gelu", "dropout": 0.1},
    "resnet": {"blocks": 2, "width": 32, "hidden_factor": 2.0, "norm": "layer", "dropout": 0.1},
    "ft_transformer": {"layers": 1, "d_token": 16, "heads": 2, "attention_dropout": 0.1, "ffn_dropout": 0.1},
    "tabm": {"k": 4, "n_blocks": 2, "d_block": 32, "dropout": 0.1},
}
# every family as it is, then each numeric embedding on the families that take one
CASES = [(family, "none") for family in TABULAR] + [
    (family, kind) for family in ("mlp", "resnet", "tabm") for kind in ("periodic", "piecewise")]


@pytest.mark.parametrize(("family", "num_embeddings"), CASES)
def test_each_family_trains_a_step_for_each_task(family, num_embeddings, task):
    problem, folds = small_problem(task)
    fold = folds[0]
    params = {"family": family, "optimizer": "adamw", "lr": 1e-2, "batch_size": 32, **FAMILY_PARAMS[family]}
    params |= {"num_embeddings": num_embeddings} if num_embeddings != "none" else {}
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


@pytest.mark.parametrize("task", ["multitarget", "multilabel"])
@pytest.mark.parametrize("family", list(TABULAR))
def test_each_family_learns_several_targets(family, task):
    # One output per target: mse on each column standardized on its own, or binary cross-entropy per label.
    problem, folds = small_problem(task)
    fold = folds[0]
    params = {"family": family, "optimizer": "adamw", "lr": 1e-2, "batch_size": 32, **FAMILY_PARAMS[family]}
    module = build_module(problem, fold, params, total_steps=10)
    target = Target(problem, fold.train_rows)
    y = torch.as_tensor(target.encode(fold.train_rows))
    assert y.shape == (len(fold.train_rows), 3) and y.dtype == torch.float32
    if task == "multitarget":  # standardized per column: the raw columns sit near 50, 100 and 150
        np.testing.assert_allclose(y.mean(0).numpy(), 0, atol=1e-5)
        np.testing.assert_allclose(target.decode(y.numpy().astype(np.float64)), problem.y[fold.train_rows], rtol=1e-5)
    output = module(*(t[:32] for t in tensors(fold.train, "cpu")))
    loss = module.loss(output, y[:32])
    mean = output.mean(1) if output.ndim == 3 else output  # a tabm ensemble: the mean of its members' losses
    if task == "multilabel" and output.ndim == 2:
        assert loss.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(mean, y[:32]).item())
    elif output.ndim == 2:
        assert loss.item() == pytest.approx(((mean - y[:32]) ** 2).mean().item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(loss)
    pred = module.predict_arrays(*tensors(fold.valid, "cpu"))
    assert pred.shape == (len(fold.valid_rows), 3)
    if task == "multilabel":
        assert ((pred > 0) & (pred < 1)).all()


@pytest.mark.parametrize("task", ["multitarget", "multilabel"])
def test_fit_fold_and_batched_folds_predict_several_targets(task):
    problem, folds = small_problem(task)
    params = {"family": "mlp", "optimizer": "adam", "lr": 3e-3, "batch_size": 32, **FAMILY_PARAMS["mlp"]}
    fit = fit_fold(problem, folds[0], params, max_epochs=2, patience=2)
    assert fit.valid.shape == (len(folds[0].valid_rows), 3) and fit.test.shape == (len(problem.test), 3)
    together = fit_folds(problem, folds[:2], params, max_epochs=2, patience=2, together=True)
    assert [f.valid.shape for f in together] == [(len(f.valid_rows), 3) for f in folds[:2]]
    if task == "multilabel":
        assert ((together[0].test > 0) & (together[0].test < 1)).all()
    else:  # decoded back to each column's scale
        assert np.abs(together[0].test.mean(0) - problem.y.mean(0)).max() < 25


@pytest.mark.parametrize("family", list(TABULAR))
def test_fit_fold_learns_better_than_chance(family):
    problem, folds = small_problem("binary", n=400)
    params = {"family": family, "optimizer": "adam", "lr": 3e-3, "batch_size": 32, **FAMILY_PARAMS[family]}
    fit = fit_fold(problem, folds[0], params, max_epochs=15, patience=15)
    accuracy = (fit.valid.argmax(1) == problem.y[folds[0].valid_rows]).mean()
    assert accuracy > 0.7
    assert fit.test.shape == (len(problem.test), 2)


def test_an_ensemble_trains_on_the_mean_member_loss_and_predicts_the_mean_probability():
    module = TabularModule(3, (), 3, "multiclass", family="tabm", k=4, d_block=16)
    x = torch.randn(5, 3)
    output = module(x, torch.zeros(5, 0, dtype=torch.int64), torch.zeros(5, 0), torch.zeros(5, 0))
    assert output.shape == (5, 4, 3)  # (rows, members, classes)
    y = torch.randint(0, 3, (5,))
    members = torch.stack([torch.nn.functional.cross_entropy(output[:, i], y) for i in range(4)])
    torch.testing.assert_close(module.loss(output, y), members.mean())
    module.eval()
    expected = module(x, *(torch.zeros(5, 0) for _ in range(3))).softmax(-1).mean(1)
    np.testing.assert_allclose(module.predict_arrays(x, *(torch.zeros(5, 0) for _ in range(3))), expected.detach(),
                               rtol=1e-6)


def test_absolute_objective_is_the_l1_loss_also_for_an_ensemble():
    module = TabularModule(3, (), 1, "regression", family="mlp", objective="absolute", depth=1, width=8)
    y = torch.tensor([0.0, 1.0])
    assert module.loss(torch.tensor([[1.0], [-1.0]]), y).item() == pytest.approx(1.5)  # (|1 - 0| + |-1 - 1|) / 2
    members = torch.tensor([[[1.0], [3.0]], [[1.0], [1.0]]])  # (rows, members, 1): errors 1, 3 and 0, 0
    assert module.loss(members, y).item() == pytest.approx(1.0)
    squared = TabularModule(3, (), 1, "regression", family="mlp", depth=1, width=8)  # auto: squared to regress
    assert squared.loss(torch.tensor([[1.0], [-1.0]]), y).item() == pytest.approx(2.5)


def test_objective_is_validated():
    with pytest.raises(ValueError, match="objective 'huber': expected one of auto, squared, absolute, cross_entropy"):
        TabularModule(3, (), 1, "regression", objective="huber")
    with pytest.raises(ValueError, match="objective 'absolute' does not fit task 'binary'"):
        TabularModule(3, (), 2, "binary", objective="absolute")


def test_a_tabm_trial_rebuilds_its_model_from_params():
    recipe = load_pipeline("tabular")
    tabm_default = next(d for d in recipe.defaults if d["family"] == "tabm")
    chosen = {**tabm_default, "k": 4, "n_blocks": 1, "d_block": 64, "num_embeddings": "periodic", "arch_type": "tabm-mini"}
    params = suggest(optuna.trial.FixedTrial(chosen), recipe)
    assert params == chosen
    module = TabularModule(4, (3,), 2, "binary", **params)
    rebuilt = TabularModule(**module.hparams)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in module.state_dict().items()}
    assert module.net.tabm.k == 4 and module.hparams.arch_type == "tabm-mini"


def test_piecewise_bins_follow_the_training_quantiles():
    numeric = np.c_[np.linspace(10, 20, 201), np.ones(201), np.r_[np.zeros(100), np.ones(101)]].astype(np.float32)
    bins = quantile_bins(numeric, n_bins=4)
    torch.testing.assert_close(bins[0], torch.tensor([10.0, 12.5, 15.0, 17.5, 20.0]))
    assert bins[1].tolist() == [0.0, 2.0] and bins[2].tolist() == [0.0, 1.0]  # constant: one bin around it
    module = TabularModule(3, (), 1, "regression", family="mlp", num_embeddings="piecewise", depth=1, width=8)
    module.fit_bins(numeric)
    assert module.net.embed.numeric.impl.weight[0, 0].item() == pytest.approx(48 / 10, rel=1e-3)  # 48 bins over [10, 20]


def test_invalid_combination_is_a_value_error():
    problem, folds = small_problem("binary")
    with pytest.raises(ValueError, match="not divisible"):
        build_module(problem, folds[0], {"family": "ft_transformer", "d_token": 30, "heads": 4}, total_steps=1)
    with pytest.raises(ValueError, match="num_embeddings 'linear': expected one of none, periodic, piecewise"):
        build_module(problem, folds[0], {"family": "tabm", "num_embeddings": "linear"}, total_steps=1)


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


def test_attention_batches_shrink_with_the_column_tokens_and_the_network(monkeypatch):
    # A transformer's activations grow with tokens x (width + heads x tokens) per row: 512 rows of
    # 39 tokens through 3 layers of 64 held 741 MiB, so the batch is lowered to keep them near 128 MiB.
    big = {"family": "ft_transformer", "batch_size": 512, "layers": 3, "d_token": 64, "heads": 8}
    assert batch_size_for(big, 10_000, tokens=39) <= 128
    assert batch_size_for(big | {"layers": 1, "d_token": 32, "heads": 1}, 10_000, tokens=39) > batch_size_for(big, 10_000, 39)
    assert batch_size_for(big, 10_000, tokens=200) < batch_size_for(big, 10_000, tokens=39)
    assert batch_size_for({"family": "mlp", "batch_size": 512}, 10_000, tokens=39) == 512  # no attention: as searched
    assert batch_size_for(big, 10_000, tokens=39, device="cuda") > batch_size_for(big, 10_000, tokens=39)  # a GPU's memory
    alone = batch_size_for(big, 10_000, tokens=39)
    monkeypatch.setattr(train, "SHARING_PROCESSES", 2)  # two search processes share the memory: half each
    assert batch_size_for(big, 10_000, tokens=39) == alone // 2
    problem, folds = small_problem("binary")
    module = build_module(problem, folds[0], big, total_steps=1)
    tokens = folds[0].train.numeric.shape[1] + folds[0].train.categorical.shape[1] + 1
    assert module.chunk == min(1024, attention_rows(tokens, layers=3, d_token=64, heads=8))  # prediction chunks too


def test_a_fit_past_its_give_up_time_predicts_nothing():
    problem, folds = small_problem("binary")
    params = {"family": "mlp", "optimizer": "adamw", "lr": 1e-2, "batch_size": 32, **FAMILY_PARAMS["mlp"]}
    fit = fit_fold(problem, folds[0], params, max_epochs=2, give_up=time.monotonic())
    assert fit.curve == [] and len(fit.valid) == 0 and len(fit.test) == 0
    kept = fit_fold(problem, folds[0], params, max_epochs=2, give_up=time.monotonic() + 600)
    assert len(kept.curve) == 2 and len(kept.valid) == len(folds[0].valid_rows) and len(kept.test) == len(problem.test)


def test_pbld_embeds_each_numeric_column_as_its_value_and_three_periodic_features():
    module = TabularModule(5, (3,), 2, "binary", family="mlp", num_embeddings="pbld", depth=1, width=8)
    embed = module.net.embed.numeric
    x = torch.randn(7, 5)
    out = embed(x)
    assert out.shape == (7, 5, 4)
    torch.testing.assert_close(out[..., 0], x)  # DenseNet-style: the value itself is kept beside its features
    assert module.net.body[0].in_features == 5 * 4 + 3  # 4 per numeric column, a 3-wide embedding for 3 levels
    # TabM takes it too (the package accepts rtdl's embedding classes only): 4 per column there as well
    tabm = TabularModule(5, (), 1, "regression", family="tabm", num_embeddings="pbld", k=2, n_blocks=1, d_block=8)
    assert tabm(x, torch.zeros(7, 0, dtype=torch.int32), torch.zeros(7, 0), torch.zeros(7, 0)).shape == (7, 2, 1)


def test_label_smoothing_softens_the_classification_loss_only():
    logits, y = torch.tensor([[6.0, -6.0], [-6.0, 6.0]]), torch.tensor([0, 1])
    sharp = TabularModule(2, (), 2, "binary", label_smoothing=0.0).loss(logits, y)
    smooth = TabularModule(2, (), 2, "binary", label_smoothing=0.1).loss(logits, y)
    assert smooth > sharp + 0.3  # confident and right costs something once the targets are 0.95 / 0.05
    multilabel = TabularModule(2, (), 2, "multilabel", label_smoothing=0.1).loss(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert multilabel > 0.3
    values = torch.tensor([[0.5], [1.0]]), torch.tensor([0.0, 1.0])
    assert TabularModule(2, (), 1, "regression", label_smoothing=0.1).loss(*values) == \
        TabularModule(2, (), 1, "regression").loss(*values)
    with pytest.raises(ValueError, match="label_smoothing 1.5"):
        TabularModule(2, (), 2, "binary", label_smoothing=1.5)


def test_flat_cosine_keeps_the_rate_for_half_the_steps_then_decays_it_to_zero():
    module = TabularModule(2, (), 1, "regression", schedule="flat_cosine", lr=0.01, total_steps=10)
    module.net.head.weight.grad = None
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:6] == [0.01] * 6 and rates[6] < 0.01 and rates[-1] < 0.001
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))


def test_dropout_schedule_follows_flat_cosine_in_fit_fold_and_in_batched_folds():
    module = TabularModule(2, (), 1, "regression", dropout=0.4, dropout_schedule="flat_cosine", total_steps=10)
    rates = []
    for _ in range(10):
        module.after_step()
        rates.append(module.dropouts.layers[0][0].p)
    assert rates[:5] == [0.4] * 5 and rates[5] < 0.4 and rates[-1] == 0.0
    assert TabularModule(2, (), 1, "regression", dropout=0.4).dropouts is None
    with pytest.raises(ValueError, match="dropout_schedule 'linear'"):
        TabularModule(2, (), 1, "regression", dropout_schedule="linear")
    problem, folds = small_problem("binary")
    params = {"family": "mlp", "optimizer": "adam", "lr": 3e-3, "batch_size": 32, **FAMILY_PARAMS["mlp"],
              "dropout": 0.3, "dropout_schedule": "flat_cosine"}
    together = Together(problem, folds[:2], params, "cpu", max_epochs=2, seed=0)
    together.fit(patience=2, precision="32-true", deadline=None)  # 2 of 2 epochs: past the flat half
    assert 0 <= max(layer.p for layer, _ in together.dropouts.layers) < 0.3


def test_ema_validates_and_keeps_the_moving_average_and_trains_on_from_the_raw_weights():
    module = TabularModule(2, (), 1, "regression", weight_averaging="ema")
    first = [p.detach().clone() for p in module.parameters()]
    module.after_step()  # the average starts at the weights after the first step
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    module.after_step()  # decay (1 + 2) / (10 + 2) = 0.25: the average moves 0.75 of the way
    for average, start in zip(module.ema, first, strict=True):
        torch.testing.assert_close(average, start + 0.75)
    module.on_validation_start()
    for p, start in zip(module.parameters(), first, strict=True):
        torch.testing.assert_close(p.detach(), start + 0.75)
    module.on_validation_end()
    for p, start in zip(module.parameters(), first, strict=True):
        torch.testing.assert_close(p.detach(), start + 1.0)
    problem, folds = small_problem("binary", n=400)
    params = {"family": "mlp", "optimizer": "adam", "lr": 3e-3, "batch_size": 32, **FAMILY_PARAMS["mlp"],
              "weight_averaging": "ema"}
    fit = fit_fold(problem, folds[0], params, max_epochs=15, patience=15)
    assert (fit.valid.argmax(1) == problem.y[folds[0].valid_rows]).mean() > 0.7
    assert batchable(folds[:2], params)  # batched folds average too (tests/test_parallel.py)
