"""`automl run` end to end: the run directory, shared folds, resuming, and submissions in every label format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import bundle, synthetic_frame, synthetic_multi
from typer.testing import CliRunner

import automl
from automl import baselines
from automl.cli import app
from automl.metrics import METRICS, score

BASELINES = ["dummy", "linear", "random_forest", "extra_trees", "hist_gb", "lightgbm", "xgboost", "catboost"]  # no free text
MODELS = BASELINES + ["ensemble"]  # the blend of the baselines' out-of-fold predictions


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def titanic_run(tmp_path_factory):
    """One full baseline run on the real Titanic bundle, shared by the tests below."""
    bundle("titanic")
    root = tmp_path_factory.mktemp("titanic-run")
    args = ["run", "titanic", "--models", "baselines", "--runs-dir", root / "runs", "--data-dir", root / "data"]
    result = invoke(*args)
    return root, args, result


@pytest.mark.e2e
def test_titanic_end_to_end(titanic_run):
    root, _, result = titanic_run
    assert result.exit_code == 0, result.output
    run_dir = root / "runs" / "titanic" / "default"
    for name in ("config.json", "folds.csv", "leaderboard.csv", "submission.csv", "run.log"):
        assert (run_dir / name).is_file(), name
    assert sorted(p.parent.name for p in run_dir.glob("models/*/result.json")) == sorted(MODELS)
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["slug"], config["folds"], config["seed"], config["rows"]) == ("titanic", 5, 0, 891)
    assert config["competition"]["metric"] == "accuracy"

    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert board["rank"].tolist() == list(range(1, len(MODELS) + 1))
    assert sorted(board["model"]) == sorted(MODELS)
    assert board["accuracy"].is_monotonic_decreasing
    assert board["accuracy"].iloc[0] >= 0.82
    assert board.set_index("model").loc["dummy", "accuracy"] < 0.65
    assert [c for c in board.columns if c.startswith("fold_")] == [f"fold_{i}" for i in range(5)]
    assert f"(from {board['model'].iloc[0]})" in result.output

    submission = pd.read_csv(run_dir / "submission.csv", dtype=str)
    sample = pd.read_csv(root / "data" / "titanic" / "gender_submission.csv", dtype=str)
    assert submission.columns.tolist() == ["PassengerId", "Survived"]
    assert submission["PassengerId"].tolist() == sample["PassengerId"].tolist()
    assert set(submission["Survived"]) == {"0", "1"}

    check = invoke("validate", run_dir / "submission.csv", "titanic", "--data-dir", root / "data")
    assert check.exit_code == 0, check.output
    assert "is a valid submission for titanic" in check.output


@pytest.mark.e2e
def test_every_model_uses_the_run_folds(titanic_run):
    root, _, _ = titanic_run
    run_dir = root / "runs" / "titanic" / "default"
    folds = pd.read_csv(run_dir / "folds.csv")
    assert folds["row"].tolist() == list(range(891))
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    y = pd.read_csv(root / "data" / "titanic" / "train.csv")["Survived"].to_numpy()
    for model in MODELS:
        meta = json.loads((run_dir / "models" / model / "result.json").read_text())
        oof = np.load(run_dir / "models" / model / "oof.npy")
        assert oof.shape == (891, 2)
        assert np.load(run_dir / "models" / model / "test.npy").shape == (418, 2)
        # Each fold's score is the metric on exactly the rows folds.csv puts in that fold.
        recomputed = [score(METRICS["accuracy"], y[folds["fold"] == f], oof[folds["fold"] == f], meta["threshold"])
                      for f in range(5)]
        assert meta["fold_scores"] == pytest.approx(recomputed)
    dummy = np.load(run_dir / "models" / "dummy" / "oof.npy")
    for fold in range(5):
        in_fold = dummy[folds["fold"] == fold]
        assert np.allclose(in_fold, in_fold[0])  # the class prior of the other folds' rows
        assert in_fold[0, 1] == pytest.approx(y[folds["fold"] != fold].mean())


@pytest.mark.e2e
def test_a_rerun_reuses_finished_models(titanic_run):
    root, args, _ = titanic_run
    run_dir = root / "runs" / "titanic" / "default"
    stamps = {p: p.stat().st_mtime_ns for model in BASELINES for p in (run_dir / "models" / model).iterdir()}
    folds_before = (run_dir / "folds.csv").read_text()
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    for model in BASELINES:
        assert f"{model}: finished earlier, reused" in again.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (run_dir / "folds.csv").read_text() == folds_before


@pytest.mark.e2e
def test_a_rerun_with_other_folds_is_refused(titanic_run):
    root, args, _ = titanic_run
    result = invoke(*args, "--folds", "3")
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert "was made with a different folds (5); use the same options, or --name with a new run name instead " \
           "of 'default'" in result.output
    assert json.loads((root / "runs" / "titanic" / "default" / "config.json").read_text())["folds"] == 5


@pytest.mark.e2e
def test_the_leaderboard_reads_at_80_columns(titanic_run):
    # A terminal 80 columns wide, as a new user has: the finished run again (every model is reused, so it
    # only blends and prints), one line a model, nothing past column 80, the blend's members on one line.
    root, args, _ = titanic_run
    command = [str(Path(sys.executable).parent / "automl"), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"COLUMNS": "80"}, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    board = pd.read_csv(root / "runs" / "titanic" / "default" / "leaderboard.csv")
    for model in board["model"]:
        rows = [line for line in lines if re.match(rf"^\s*\d+\s+{re.escape(model)}\s", line)]
        assert len(rows) == 1, (model, lines)
    top = lines.index(next(line for line in lines if re.match(r"^\s*1\s", line)))
    assert all(re.match(r"^\s*\d+\s+\S", line) for line in lines[top:top + len(board)])  # no wrapped note lines
    assert sum(line.startswith("ensemble ") for line in lines) == 1


@pytest.mark.e2e
def test_unknown_model_is_refused(titanic_run):
    root, args, _ = titanic_run
    result = invoke("run", "titanic", "--models", "hist_gb,xgb", "--name", "other",
                    "--runs-dir", root / "runs", "--data-dir", root / "data")
    assert result.exit_code == 1
    assert re.match(r"error: --models: unknown model 'xgb'; expected (.*, )?baselines,? .*or any of dummy, linear, "
                    r"random_forest, extra_trees, hist_gb, hist_gb_cuts, lightgbm, xgboost, catboost, tfidf_linear\n$",
                    result.output), result.output


@pytest.mark.e2e
def test_only_inapplicable_models_is_one_clear_error(titanic_run):
    # Titanic has no free-text column, so tfidf_linear does not apply: nothing is left to rank.
    # That is a user mistake and must end in one line and exit 1, not a KeyError traceback.
    root, _, _ = titanic_run
    result = invoke("run", "titanic", "--models", "tfidf_linear", "--name", "text-only",
                    "--runs-dir", root / "runs", "--data-dir", root / "data")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.startswith("error: ") and "tfidf_linear" in result.output


# --------------------------------------------------------------- synthetic folders

def write_folder(folder: Path, task: str, target=None) -> Path:
    """train.csv, test.csv and sample_submission.csv for a competition automl has no YAML for."""
    folder.mkdir(parents=True)
    train = synthetic_frame(task, 240, seed=0)
    if target is not None:
        train["target"] = target(train["target"])
    test = synthetic_frame(task, 80, seed=1).drop(columns="target")
    test["id"] = test["id"] + 10_000
    train.to_csv(folder / "train.csv", index=False)
    test.sample(frac=1, random_state=0).to_csv(folder / "test.csv", index=False)  # not in the sample's order
    fill = "False" if target is not None else {"regression": "0.0", "binary": "0", "multiclass": "low"}[task]
    pd.DataFrame({"id": test["id"], "target": fill}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


def test_a_true_false_competition_writes_true_false(tmp_path):
    source = write_folder(tmp_path / "download", "binary", target=lambda y: y == 1)
    assert set((source / "train.csv").read_text().splitlines()[1].split(",")) & {"True", "False"}
    result = invoke("run", "spaceship", "--from", source, "--models", "dummy,linear",
                    "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    submission = tmp_path / "runs" / "spaceship" / "default" / "submission.csv"
    lines = submission.read_text().splitlines()
    assert lines[0] == "id,target" and len(lines) == 81
    values = [line.split(",")[1] for line in lines[1:]]
    assert set(values) == {"True", "False"}
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == pd.read_csv(source / "sample_submission.csv", dtype=str)["id"].tolist()
    check = invoke("validate", submission, "spaceship", "--data-dir", tmp_path / "data")
    assert check.exit_code == 0, check.output


def test_a_regression_run_writes_floats(tmp_path):
    source = write_folder(tmp_path / "download", "regression")
    result = automl.run("prices", source=source, models="dummy,linear", folds=3,
                        runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    board = result.leaderboard
    assert set(board["model"]) == {"linear", "dummy"}  # no blend: dummy is constant in each fold, one member is left
    assert board["model"].iloc[-1] == "dummy" and board["rmse"].is_monotonic_increasing  # lower is better
    assert result.leaderboard.columns[3] == "rmse"
    submission = pd.read_csv(result.submission, dtype=str)
    assert submission.columns.tolist() == ["id", "target"]
    values = submission["target"].astype(float)
    assert values.nunique() > 40 and (values != values.round()).any()
    assert 20 < values.mean() < 80  # the synthetic target is about 50 + 10 * signal
    assert automl.validate(result.submission, "prices", data_dir=tmp_path / "data") == []


def test_an_interrupted_run_keeps_finished_models(tmp_path, monkeypatch):
    source = write_folder(tmp_path / "download", "multiclass")
    args = ["run", "grades", "--from", source, "--models", "dummy,linear", "--folds", "3",
            "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data"]
    real = baselines.cross_validate

    def interrupt_linear(name, *rest, **kwargs):
        if name == "linear":
            raise KeyboardInterrupt
        return real(name, *rest, **kwargs)

    monkeypatch.setattr(baselines, "cross_validate", interrupt_linear)
    stopped = invoke(*args)
    assert stopped.exit_code == 130
    assert "error: interrupted; finished models" in stopped.output
    assert str(tmp_path / "runs" / "grades" / "default") in stopped.output.replace("\n", "")
    models = tmp_path / "runs" / "grades" / "default" / "models"
    assert (models / "dummy" / "result.json").is_file() and not (models / "linear").exists()

    monkeypatch.undo()
    resumed = invoke(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "dummy: finished earlier, reused" in resumed.output
    assert (models / "linear" / "result.json").is_file()
    submission = pd.read_csv(tmp_path / "runs" / "grades" / "default" / "submission.csv", dtype=str)
    assert set(submission["target"]) <= {"low", "mid", "high"}


# ------------------------------------------------------------ several target columns

def write_multi_folder(folder: Path, task: str) -> Path:
    """A bundle whose sample submission names three train columns a, b, c: values or 0/1 labels."""
    folder.mkdir(parents=True)
    synthetic_multi(task, 240, seed=0).to_csv(folder / "train.csv", index=False)
    test = synthetic_multi(task, 60, seed=1).drop(columns=["a", "b", "c"])
    test["id"] = test["id"] + 10_000
    test.sample(frac=1, random_state=0).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "a": 0.0, "b": 0.0, "c": 0.0}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


def tiny_recipe(path: Path) -> Path:
    """pipelines/quick.yaml with 2-epoch, narrow MLPs."""
    recipe = yaml.safe_load((Path(automl.__file__).parents[1] / "pipelines" / "quick.yaml").read_text())
    recipe |= {"max_epochs": 2, "patience": 2, "defaults": []}
    recipe["when"]["mlp"]["width"] = {"int": [8, 16]}
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_multitarget_run_writes_every_target_column(tmp_path):
    source = write_multi_folder(tmp_path / "download", "multitarget")
    # every scikit-learn baseline and a network end to end; the GBDTs' several columns: test_gbdt.py
    result = invoke("run", "several", "--from", source, "--models", "dummy,linear,hist_gb,random_forest,extra_trees,networks",
                    "--timeout", 60, "--folds", 3,
                    "--trials", 2, "--pipeline", tiny_recipe(tmp_path / "tiny.yaml"),
                    "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "several" / "default"
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert board.columns[3] == "mcrmse" and board["mcrmse"].is_monotonic_increasing  # lower is better
    assert {"dummy", "linear", "hist_gb", "ensemble"} <= set(board["model"]) and "network" in set(board["kind"])
    assert board.set_index("model").loc["linear", "mcrmse"] < 0.7 * board.set_index("model").loc["dummy", "mcrmse"]
    assert np.load(run_dir / "models" / "hist_gb" / "oof.npy").shape == (240, 3)
    submission = pd.read_csv(run_dir / "submission.csv")
    sample = pd.read_csv(source / "sample_submission.csv")
    assert submission.columns.tolist() == ["id", "a", "b", "c"] and submission["id"].tolist() == sample["id"].tolist()
    for i, column in enumerate("abc"):  # each column near its own target's scale: 50, 100, 150
        assert abs(submission[column].mean() - 50 * (i + 1)) < 25 and submission[column].nunique() > 30
    assert automl.validate(run_dir / "submission.csv", "several", data_dir=tmp_path / "data") == []


def test_a_multilabel_run_writes_each_labels_probability(tmp_path):
    source = write_multi_folder(tmp_path / "download", "multilabel")
    result = invoke("run", "labels", "--from", source, "--models", "dummy,linear,hist_gb,random_forest,extra_trees", "--folds", 3,
                    "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "labels" / "default"
    config = json.loads((run_dir / "config.json").read_text())["competition"]
    assert (config["task"], config["targets"], config["metric"]) == ("multilabel", ["a", "b", "c"], "auc")
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    assert board.loc["dummy", "auc"] == 0.5 and board["auc"].max() > 0.85
    submission = pd.read_csv(run_dir / "submission.csv")
    assert submission.columns.tolist() == ["id", "a", "b", "c"] and len(submission) == 60
    values = submission[["a", "b", "c"]].to_numpy()
    assert ((values >= 0) & (values <= 1)).all() and len(np.unique(values)) > 30
    assert automl.validate(run_dir / "submission.csv", "labels", data_dir=tmp_path / "data") == []
    bad = submission.assign(a=submission["a"] + 1)
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert automl.validate(tmp_path / "bad.csv", "labels", data_dir=tmp_path / "data") == [
        "column 'a': holds probabilities outside [0, 1]"]


def test_the_terminal_shows_the_best_three_networks_and_counts_the_rest():
    from rich.console import Console

    from automl.cli import leaderboard_table

    models = ["ensemble", "mlp #4", "lightgbm", "tabm #1", "resnet #7", "mlp #9", "linear", "tabm #12"]
    board = pd.DataFrame({"rank": range(1, 9), "model": models,
                          "kind": ["ensemble", "network", "baseline", "network", "network", "network", "baseline", "network"],
                          "auc": np.linspace(0.9, 0.8, 8), "std": 0.01, "seconds": 1.0, "note": "", "summary": ""})
    console = Console(width=100, record=True)
    console.print(leaderboard_table(board))
    text = console.export_text()
    shown = [m for m in models if re.search(rf"\s{re.escape(m)}\s", text)]
    assert shown == ["ensemble", "mlp #4", "lightgbm", "tabm #1", "resnet #7", "linear"]
    assert "+2 more networks in leaderboard.csv" in text


def test_boosted_trees_the_clock_stopped_get_more_time_and_keep_it_only_when_better(tmp_path):
    from net_helpers import small_problem
    from rich.console import Console

    from automl.budget import Budget
    from automl.rundir import load_result
    from automl.runner import _more_time, _short_of_time

    problem, folds = small_problem("regression", n=600)
    cut = baselines.cross_validate("lightgbm", problem, folds, seconds=0.02)  # the clock stops it after a round or so
    full = baselines.cross_validate("linear", problem, folds, seconds=5.0)
    assert cut.info["short_of_time"] and "boosting stopped by its time share" in cut.info["note"]
    assert _short_of_time([cut, full]) == [cut]
    results, members = [full, cut], [full, cut]
    _more_time(results, members, 20.0, problem=problem, fold_data=folds, run_dir=tmp_path, seed=0,
               console=Console(file=open(os.devnull, "w")), device="cpu", keep_test_folds=False, trend=False,
               budget=Budget.start(None))
    again = results[1]
    assert again is not cut and members[1] is again and again.mean < cut.mean  # rmse: lower
    assert again.info["note"].startswith("refitted with 20s more (stopped by the clock at first)")
    assert load_result(tmp_path / "models" / "lightgbm").mean == pytest.approx(again.mean)


def test_a_multitarget_run_scores_a_columnwise_metric_as_kaggle_does(tmp_path):
    """Kaggle averages RMSLE (and RMSE, MAE, ...) over several target columns: each column is trained for it
    (log1p for RMSLE) and scored on its own, and the leaderboard shows the mean of the columns' scores."""
    from automl.competition import infer
    from automl.folds import splits
    from automl.metrics import get_metric

    source = write_multi_folder(tmp_path / "download", "multitarget")
    named = infer("several", source, {"evaluation_metric": "Mean Columnwise Root Mean Squared Logarithmic Error"})
    assert (named.task, named.metric) == ("multitarget", "rmsle")  # the record's name, as --metric rmsle
    result = invoke("run", "several", "--from", source, "--models", "dummy,linear,hist_gb", "--folds", 3,
                    "--metric", "rmsle", "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "rmsle over the folds, each the mean of its 3 target columns' rmsle" in " ".join(result.output.split())
    run_dir = tmp_path / "runs" / "several" / "default"
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    assert board.loc["hist_gb", "rmsle"] < 0.7 * board.loc["dummy", "rmsle"]
    y = pd.read_csv(source / "train.csv")[["a", "b", "c"]].to_numpy()
    oof = np.load(run_dir / "models" / "linear" / "oof.npy")
    folds = splits(pd.read_csv(run_dir / "folds.csv")["fold"].to_numpy())
    rmsle = get_metric("rmsle").fn
    for i, fold in enumerate(folds):  # each fold's score: the mean of the three columns' RMSLE
        columns = [rmsle(y[fold.valid_rows, j], oof[fold.valid_rows, j]) for j in range(3)]
        assert board.loc["linear", f"fold_{i}"] == pytest.approx(np.mean(columns))
    assert automl.validate(run_dir / "submission.csv", "several", data_dir=tmp_path / "data", metric="rmsle") == []
