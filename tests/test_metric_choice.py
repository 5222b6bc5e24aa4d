"""Which metric a competition is scored with: --metric, then competitions/SLUG.yaml, then
Kaggle's record of the competition (fetched beside the data), then a guess from the data.

Kaggle's record comes from the real kaggle client talking to the stand-in server, which
answers GetCompetition with the metric display names kaggle.com shows.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
from conftest import bundle, synthetic_frame, synthetic_multi
from typer.testing import CliRunner

import automl
from automl.cli import app
from automl.errors import AutomlError
from automl.fetch import RECORD, read_record
from automl.metrics import KAGGLE_NAMES, get_metric
from automl.rundir import claim, prepare

PLACEHOLDER = {"binary": 0, "multiclass": "low", "regression": 0.5, "ranked": "low mid high", "multitarget": None,
               "multilabel": None}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def words(output: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(output.split())


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "automl" and r.levelno == logging.WARNING]


def make_bundle(folder: Path, slug: str, kind: str) -> Path:
    """SLUG.zip with train, test and sample submission of a synthetic `kind` competition."""
    if kind in ("multitarget", "multilabel"):  # several target columns: a, b and c
        frame = synthetic_multi(kind, n=120)
        train, test = frame.iloc[:90], frame.iloc[90:].drop(columns=["a", "b", "c"])
        sample = pd.DataFrame({"id": test["id"], "a": 0.5, "b": 0.5, "c": 0.5})
    else:
        frame = synthetic_frame("multiclass" if kind == "ranked" else kind, n=120)
        train, test = frame.iloc[:90], frame.iloc[90:].drop(columns="target")
        sample = pd.DataFrame({"id": test["id"], "target": PLACEHOLDER[kind]})
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{slug}.zip", "w") as archive:
        for name, table in (("train.csv", train), ("test.csv", test), ("sample_submission.csv", sample)):
            archive.writestr(name, table.to_csv(index=False))
    return folder / f"{slug}.zip"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundles")
    for kind in PLACEHOLDER:
        make_bundle(folder, f"mine-{kind}", kind)
    return folder


@pytest.fixture
def stub(kaggle, no_mirror, bundles, monkeypatch):
    """The stand-in Kaggle server serving the synthetic bundles (and no competitions/mine-*.yaml)."""
    monkeypatch.setattr(kaggle, "bundles_dir", bundles)
    return kaggle


# ------------------------------------------------------------- Kaggle's record decides

def _cases():
    for display, target in KAGGLE_NAMES.items():
        pairs = target.items() if isinstance(target, dict) else [(get_metric(target).tasks[-1], target)]
        for task, name in pairs:
            yield pytest.param(display, task, name, id=f"{display}-{task}")


@pytest.mark.parametrize(("display", "task", "name"), list(_cases()))
def test_inspect_takes_the_metric_from_kaggles_record(stub, monkeypatch, tmp_path, caplog, display, task, name):
    slug = f"mine-{task}"
    monkeypatch.setitem(stub.metric_for, slug, display)
    result = automl.inspect(slug, data_dir=tmp_path)
    comp = result.competition
    assert (comp.task, comp.metric) == (task, name)
    assert "metric" not in comp.inferred
    assert result.metric_source == f"Kaggle: {display}"
    assert len(stub.calls("GetCompetition")) == 1
    assert read_record(tmp_path / slug) == {"slug": slug, "title": slug.replace("-", " ").title(),
                                            "evaluation_metric": display, "max_daily_submissions": 5}
    assert comp.title == slug.replace("-", " ").title()
    assert warnings_of(caplog) == []


@pytest.mark.parametrize(("display", "expected"), [("MAP@{K}", "map@3"), ("MAP{K}", "map@3"), ("MAP@5", "map@5")])
def test_map_at_k_takes_k_from_the_sample(stub, monkeypatch, tmp_path, display, expected):
    monkeypatch.setitem(stub.metric_for, "mine-ranked", display)
    result = automl.inspect("mine-ranked", data_dir=tmp_path)
    assert (result.competition.task, result.competition.labels, result.competition.metric) == (
        "multiclass", "class", expected)


def test_inspect_prints_where_the_metric_came_from(stub, monkeypatch, tmp_path):
    monkeypatch.setitem(stub.metric_for, "mine-binary", "Area Under Receiver Operating Characteristic Curve")
    result = invoke("inspect", "mine-binary", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    text = words(result.output)
    assert "metric auc (from Kaggle: Area Under Receiver Operating Characteristic Curve)" in text
    assert "Kaggle takes 5 submissions a day." in text
    assert "warning" not in text


# ----------------------------------------------------------------------- the guess

def test_an_unknown_kaggle_name_falls_back_to_the_guess(stub, monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(stub.metric_for, "mine-binary", "Levenshtein Mean")
    result = automl.inspect("mine-binary", data_dir=tmp_path)
    assert result.competition.metric == "accuracy" and "metric" in result.competition.inferred
    assert result.metric_source == "guess"
    assert warnings_of(caplog) == [
        "mine-binary: metric 'accuracy' is a guess from the data (no competitions/mine-binary.yaml; Kaggle's metric "
        "'Levenshtein Mean' is not one automl knows); pass --metric NAME to set it"]


def test_an_unknown_kaggle_name_on_the_command_line(stub, monkeypatch, tmp_path):
    monkeypatch.setitem(stub.metric_for, "mine-regression", "Levenshtein Mean")
    result = invoke("inspect", "mine-regression", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: mine-regression: metric 'rmse' is a guess from the data (no "
                        "competitions/mine-regression.yaml; Kaggle's metric 'Levenshtein Mean' is not one automl "
                        "knows); pass --metric NAME to set it"]
    assert "metric rmse (a guess: pass --metric NAME)" in words(result.output)


def test_without_credentials_the_metric_is_a_guess(kaggle, bundles, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    result = invoke("inspect", "mine-multiclass", "--from", bundles / "mine-multiclass.zip", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert kaggle.requests == []
    assert not (tmp_path / "mine-multiclass" / RECORD).exists()
    assert ("warning: mine-multiclass: metric 'accuracy' is a guess from the data (no "
            "competitions/mine-multiclass.yaml; no metric from Kaggle); pass --metric NAME to set it") in result.output
    assert "metric accuracy (a guess: pass --metric NAME)" in words(result.output)
    assert "check task, metric, labels" in words(result.output)


def test_kaggle_without_a_metric_name_is_a_guess(stub, monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(stub.metric_for, "mine-multiclass", "")
    assert automl.inspect("mine-multiclass", data_dir=tmp_path).metric_source == "guess"
    assert warnings_of(caplog)[0].endswith("(no competitions/mine-multiclass.yaml; no metric from Kaggle); "
                                           "pass --metric NAME to set it")


def test_a_kaggle_metric_unsuited_to_the_target_is_not_used(stub, monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(stub.metric_for, "mine-regression", "Categorization Accuracy")  # on continuous values
    assert automl.inspect("mine-regression", data_dir=tmp_path).competition.metric == "rmse"
    assert "Kaggle's metric 'Categorization Accuracy' (accuracy) does not apply to a regression task" in warnings_of(caplog)[0]


# ------------------------------------------------------------- the metric decides the task

def count_bundle(folder: Path, slug: str = "mine-count") -> Path:
    """A count from 1 to 29 (29 distinct integers in 900 rows: the values alone say multiclass)."""
    frame = synthetic_frame("regression", n=1200)
    frame["target"] = (frame["target"].rank(pct=True) * 28.999).astype(int) + 1
    train, test = frame.iloc[:900], frame.iloc[900:].drop(columns="target")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{slug}.zip", "w") as archive:
        for name, table in (("train.csv", train), ("test.csv", test),
                            ("sample_submission.csv", pd.DataFrame({"id": test["id"], "target": 1}))):
            archive.writestr(name, table.to_csv(index=False))
    return folder / f"{slug}.zip"


def test_a_regression_metric_makes_an_integer_target_a_regression(tmp_path):
    source = count_bundle(tmp_path / "bundles")
    assert automl.inspect("mine-count", data_dir=tmp_path / "data", source=source).competition.task == "multiclass"
    result = invoke("inspect", "mine-count", "--metric", "rmsle", "--from", source, "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    text = words(result.output)
    assert "task regression, metric rmsle (from --metric), labels float" in text
    assert "Task: regression, chosen by --metric rmsle, which scores values (the target holds 29 integers" in text
    guessed = words(invoke("inspect", "mine-count", "--from", source, "--data-dir", tmp_path / "data").output)
    assert "Task: multiclass, chosen by a guess from the values (the target holds 29 integers (30 or fewer)); " \
           "pass --metric NAME to let the competition's metric decide." in guessed
    run = automl.run("mine-count", source=source, models="linear,lightgbm", folds=3, metric="rmsle",
                     runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    values = pd.read_csv(run.submission)["target"]
    assert (values > 0).all() and (values != values.round()).any()  # numbers, not classes
    assert automl.validate(run.submission, "mine-count", data_dir=tmp_path / "data", metric="rmsle") == []
    check = invoke("validate", run.submission, "mine-count", "--metric", "rmsle", "--data-dir", tmp_path / "data")
    assert check.exit_code == 0, check.output


def test_a_classification_metric_keeps_an_integer_target_classes_and_auc_is_refused(tmp_path):
    source = count_bundle(tmp_path / "bundles")
    kept = automl.inspect("mine-count", data_dir=tmp_path / "data", source=source, metric="accuracy").competition
    assert (kept.task, kept.labels) == ("multiclass", "int")
    result = invoke("run", "mine-count", "--metric", "auc", "--from", source, "--data-dir", tmp_path / "data",
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert words(result.output).endswith(
        "--metric auc scores a probability per class, but the submission has one column for a target of 29 numbers; "
        "pass the competition's metric, such as --metric rmse for a count or --metric accuracy for classes")
    assert len(result.output.strip().splitlines()) <= 3 and not (tmp_path / "runs").exists()  # one line, before any work
    ranked = automl.inspect("mine-count", data_dir=tmp_path / "data", source=source, metric="map@3").competition
    assert (ranked.task, ranked.metric) == ("multiclass", "map@3")  # a column of ranked labels is map@k's format


def test_kaggles_record_decides_the_task_like_the_metric_option(stub, monkeypatch, tmp_path):
    count_bundle(stub.bundles_dir)
    monkeypatch.setitem(stub.metric_for, "mine-count", "Root Mean Squared Logarithmic Error")
    comp = automl.inspect("mine-count", data_dir=tmp_path).competition
    assert (comp.task, comp.metric, comp.labels) == ("regression", "rmsle", "float")
    assert comp.task_rule.startswith("Kaggle's metric rmsle, which scores values")


def test_a_failed_record_request_never_fails_the_fetch(stub, monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(stub.rpc_status, "GetCompetition", 500)
    result = invoke("fetch", "mine-binary", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "warning: Kaggle's record of 'mine-binary' could not be read (HTTPError: Error); its metric is not known" \
        in result.output
    assert (tmp_path / "mine-binary" / "train.csv").is_file()
    assert not (tmp_path / "mine-binary" / RECORD).exists()


# ------------------------------------------------------------------ the YAML decides

def test_the_yaml_wins_and_a_disagreeing_kaggle_is_named(kaggle, no_mirror, monkeypatch, tmp_path, caplog):
    bundle("titanic")
    monkeypatch.setitem(kaggle.metric_for, "titanic", "Area Under Receiver Operating Characteristic Curve")
    result = automl.inspect("titanic", data_dir=tmp_path)
    assert result.competition.metric == "accuracy"
    assert result.metric_source.endswith("competitions/titanic.yaml")
    [warning] = warnings_of(caplog)
    assert warning.endswith("competitions/titanic.yaml: metric 'accuracy' differs from Kaggle's record ('Area Under "
                            "Receiver Operating Characteristic Curve', here auc); using the YAML's (--metric auc uses "
                            "Kaggle's)")


def test_a_yaml_that_agrees_with_kaggle_says_nothing(kaggle, no_mirror, tmp_path, caplog):
    bundle("titanic")
    assert automl.inspect("titanic", data_dir=tmp_path).competition.metric == "accuracy"
    assert read_record(tmp_path / "titanic")["evaluation_metric"] == "Categorization Accuracy"
    assert warnings_of(caplog) == []


# ------------------------------------------------------------------------- --metric

def test_metric_option_overrides_the_yaml(tmp_path, caplog):
    result = automl.inspect("titanic", data_dir=tmp_path, source=bundle("titanic"), metric="f1")
    assert (result.competition.metric, result.metric_source) == ("f1", "--metric")
    assert warnings_of(caplog) == []


def test_metric_option_overrides_kaggle_and_the_guess(stub, monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(stub.metric_for, "mine-binary", "Levenshtein Mean")
    result = invoke("inspect", "mine-binary", "--metric", "mcc", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "metric mcc (from --metric)" in words(result.output)
    assert "warning" not in result.output


def test_inspect_save_writes_the_metric(bundles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = bundles / "mine-binary.zip"
    result = invoke("inspect", "mine-binary", "--from", source, "--metric", "f1", "--save", "--data-dir", "data")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "competitions" / "mine-binary.yaml").read_text()
    assert "metric: f1\n" in text
    assert "# Inferred from the data, check these: task, labels.\n" in text
    again = automl.inspect("mine-binary", data_dir="data", source=source)
    assert (again.competition.metric, again.metric_source) == ("f1", str(tmp_path / "competitions" / "mine-binary.yaml"))


@pytest.mark.parametrize("command", ["inspect", "run", "search", "worker"])
def test_an_unknown_metric_option_is_a_usage_error(command, tmp_path):
    result = invoke(command, "titanic", "--metric", "acc", "--data-dir", tmp_path)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --metric: unknown metric 'acc'; expected one of accuracy, ")
    assert words(result.output).strip().endswith("smape, r2, mcrmse, map@K")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "titanic").exists()  # refused before anything was fetched


def test_a_metric_option_unsuited_to_the_task(tmp_path):
    result = invoke("inspect", "titanic", "--metric", "rmse", "--from", bundle("titanic"), "--data-dir", tmp_path)
    assert result.exit_code == 1, result.output
    assert result.output == ("error: --metric: metric 'rmse' does not apply to a binary task; expected one of accuracy, "
                             "balanced_accuracy, auc, gini, logloss, balanced_logloss, f1, f1_macro, f1_micro, qwk, "
                             "mcc, map@K\n")


def test_metric_option_accepts_any_map_at_k(bundles, tmp_path):
    result = automl.inspect("mine-ranked", data_dir=tmp_path, source=bundles / "mine-ranked.zip", metric="map@2")
    assert result.competition.metric == "map@2"


def test_a_run_directory_made_with_another_metric_is_refused(tmp_path):
    source = bundle("titanic")
    run_dir = tmp_path / "runs" / "titanic" / "default"

    def config(metric):
        comp, problem, _, _ = prepare("titanic", tmp_path / "data", source, metric)
        return {"slug": "titanic", "competition": asdict(comp), "folds": 5, "seed": 0, "rows": len(problem.y)}

    claim(run_dir, config(None), "default")
    claim(run_dir, config("accuracy"), "default")  # the YAML's own metric, named: the same spec
    assert json.loads((run_dir / "config.json").read_text())["competition"]["metric"] == "accuracy"
    with pytest.raises(AutomlError, match=r"was made with a different competition \(spec\); use the same options, "
                                          r"or --name with a new run name instead of 'default'$"):
        claim(run_dir, config("f1"), "default")
