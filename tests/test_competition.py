"""Competition specs: strict YAML, inference from the data, and the real bundles."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import MIRROR, ROOT, bundle
from typer.testing import CliRunner

import automl
from automl import competition
from automl.cli import app
from automl.competition import KEYS, LABELS, TASKS, Competition, from_yaml, infer, read_tables, spec_path
from automl.errors import AutomlError
from automl.fetch import fetch
from automl.metrics import METRICS
from automl.problem import make_problem

YAMLS = sorted((ROOT / "competitions").glob("*.yaml"))

TITANIC_YAML = """\
slug: titanic
id: PassengerId
target: Survived
task: binary
metric: accuracy
labels: int
"""
MULTI_YAML = """\
slug: several
id: id
targets: [a, b, c]
task: multitarget
metric: mcrmse
labels: float
"""


# ------------------------------------------------------------------------------ YAML

def test_the_shipped_yamls_are_found():
    assert len(YAMLS) >= 9


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_every_competition_yaml_loads(path):
    comp = from_yaml(path)
    assert comp.slug == path.stem
    assert comp.task in TASKS and comp.labels in LABELS and comp.metric in METRICS
    assert comp.task in METRICS[comp.metric].tasks
    assert comp.submission_columns  # defaults to (target,)
    assert spec_path(comp.slug) == path
    assert comp.inferred == ()


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"label": "int"},
     r"unknown key 'label'; expected one of slug, id, target, task, metric, labels, submission_columns, "),
    ({"metric": "acc"},
     r"unknown metric 'acc'; expected one of accuracy, balanced_accuracy, auc, gini, logloss, .*, rmse, rmsle, .*, "
     r"smape, r2, mcrmse, map@K$"),
    ({"task": "classification"},
     r"unknown task 'classification'; expected one of binary, multiclass, regression, multilabel, multitarget$"),
    ({"metric": "rmse"},
     r"metric 'rmse' does not apply to a binary task; expected one of accuracy, balanced_accuracy, auc, gini, "
     r"logloss, balanced_logloss, f1, f1_macro, f1_micro, qwk, mcc, map@K$"),
    ({"labels": "ints"}, r"unknown labels 'ints'; expected one of int, bool, class, float, proba$"),
    ({"folds": "random"}, r"unknown folds 'random'; expected one of auto, stratified, kfold, group, time$"),
])
def test_bad_yaml_fails_with_one_line_naming_file_key_and_allowed_values(tmp_path, change, message):
    path = _yaml(tmp_path, yaml.safe_dump({**yaml.safe_load(TITANIC_YAML), **change}))
    with pytest.raises(AutomlError, match="^" + re.escape(str(path)) + ": " + message) as error:
        from_yaml(path)
    assert "\n" not in str(error.value)


def test_metric_unsuited_to_regression(tmp_path):
    path = _yaml(tmp_path, TITANIC_YAML.replace("binary", "regression"))
    with pytest.raises(AutomlError, match=re.escape(f"{path}: metric 'accuracy' does not apply to a regression task; "
                                                    "expected one of rmse, rmsle, msle, mae, medae, mape, smape, r2")):
        from_yaml(path)


@pytest.mark.parametrize(("text", "message"), [
    ("slug: titanic\nid: PassengerId\ntarget: Survived\ntask: binary\nlabels: int\n", r"missing key 'metric'$"),
    (TITANIC_YAML.replace("id: PassengerId", "id: [PassengerId]"),
     r"key 'id' must be a string, got \('PassengerId',\)"),
    (TITANIC_YAML + "  bad: [indent\n", r"not valid YAML \(\w+\); fix its syntax$"),
    ("- slug\n- id\n", r"expected a mapping of keys to values$"),
    (TITANIC_YAML.replace("labels: int", "labels: proba") + "submission_columns: [a, b]\nclasses: [x]\n",
     r"labels 'proba' needs one entry in 'classes' per submission column \(2\), got 1$"),
    (TITANIC_YAML + "folds: group\n", r"folds 'group' needs 'group_column'$"),
    (TITANIC_YAML + "folds: time\n", r"folds 'time' needs 'time_column'$"),
    (TITANIC_YAML + "image_shape: [28, 28]\n", r"image_shape must be \[channels, height, width\], got \[28, 28\]$"),
    (MULTI_YAML.replace("targets: [a, b, c]", "target: a"), r"task 'multitarget' needs 'targets', two or more train columns; got \[\]$"),
    (TITANIC_YAML + "targets: [a, b]\n",
     r"'targets' names several train columns, which needs task multitarget or multilabel, not 'binary'$"),
    (MULTI_YAML.replace("[a, b, c]", "a"), r"key 'targets' must be a list of train columns, got 'a'$"),
    (MULTI_YAML + "target: b\n", r"'target' must be the first of 'targets' \('a'\), got 'b'$"),
    (MULTI_YAML + "submission_columns: [a, b]\n",
     r"3 targets need 3 'submission_columns', one per target in order; got 2$"),
    (MULTI_YAML.replace("multitarget", "multilabel").replace("mcrmse", "auc").replace("float", "int"),
     r"task 'multilabel' writes a value or probability per column: labels must be 'float', got 'int'$"),
    (MULTI_YAML.replace("mcrmse", "auc"), r"metric 'auc' does not apply to a multitarget task; expected one of rmse, "
                                          r"rmsle, msle, mae, medae, mape, smape, r2, mcrmse$"),
])
def test_other_yaml_mistakes(tmp_path, text, message):
    path = _yaml(tmp_path, text)
    with pytest.raises(AutomlError, match="^" + re.escape(str(path)) + ": " + message) as error:
        from_yaml(path)
    assert "\n" not in str(error.value)


def test_a_yaml_may_name_several_targets(tmp_path):
    comp = from_yaml(_yaml(tmp_path, MULTI_YAML))
    assert (comp.target, comp.targets, comp.target_columns, comp.submission_columns) == (
        "a", ("a", "b", "c"), ("a", "b", "c"), ("a", "b", "c"))
    assert from_yaml(_yaml(tmp_path, competition.to_yaml(comp))) == comp
    assert from_yaml(_yaml(tmp_path, TITANIC_YAML)).target_columns == ("Survived",)


def test_yaml_lists_become_tuples(tmp_path):
    path = _yaml(tmp_path, TITANIC_YAML + "text_columns: [Name]\nimage_shape: [1, 8, 8]\n")
    comp = from_yaml(path)
    assert comp.text_columns == ("Name",)
    assert comp.image_shape == (1, 8, 8)
    assert comp.submission_columns == ("Survived",)
    assert KEYS[:6] == ["slug", "id", "target", "task", "metric", "labels"]


def test_to_yaml_round_trips(tmp_path):
    for path in YAMLS:
        comp = from_yaml(path)
        assert from_yaml(_yaml(tmp_path, competition.to_yaml(comp))) == comp


def test_a_user_yaml_in_the_working_directory_wins(tmp_path, monkeypatch):
    (tmp_path / "competitions").mkdir()
    mine = tmp_path / "competitions" / "titanic.yaml"
    mine.write_text(TITANIC_YAML.replace("accuracy", "auc"))
    monkeypatch.chdir(tmp_path)
    assert spec_path("titanic") == mine
    assert competition.load("titanic").metric == "auc"
    assert spec_path("no-such-competition") is None
    with pytest.raises(AutomlError, match=r"^no competitions/nothing-here\.yaml and no data to infer it from; "
                                          r"run `automl fetch nothing-here` first$"):
        competition.load("nothing-here")


# ------------------------------------------------------------------------- inference

def _write(folder: Path, train: dict, test: dict, sample: dict, sample_name: str = "sample_submission.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(train).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(test).to_csv(folder / "test.csv", index=False)
    pd.DataFrame(sample).to_csv(folder / sample_name, index=False)
    return folder


N = 60
IDS, TEST_IDS = list(range(1, N + 1)), list(range(N + 1, N + 21))
FEATURE, TEST_FEATURE = [i * 0.5 for i in range(N)], [i * 0.25 for i in range(20)]


def test_infer_binary_zero_one(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "target": [i % 2 for i in range(N)]},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "target": [0] * 20})
    comp = infer("mine", folder)
    assert (comp.id, comp.target, comp.task, comp.labels, comp.metric) == ("id", "target", "binary", "int", "accuracy")
    assert comp.submission_columns == ("target",)
    assert (comp.train, comp.test, comp.sample_submission) == ("train.csv", "test.csv", "sample_submission.csv")
    assert set(comp.inferred) == {"task", "metric", "labels"}


def test_infer_true_false_labels(tmp_path):
    folder = _write(tmp_path, {"PassengerId": IDS, "x": FEATURE, "Transported": [i % 3 == 0 for i in range(N)]},
                    {"PassengerId": TEST_IDS, "x": TEST_FEATURE},
                    {"PassengerId": TEST_IDS, "Transported": [False] * 20})
    comp = infer("spaceship", folder)
    assert (comp.id, comp.target, comp.task, comp.labels) == ("PassengerId", "Transported", "binary", "bool")


def test_infer_class_names(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "type": ["Ghoul", "Goblin", "Ghost"] * (N // 3)},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "type": ["Ghost"] * 20})
    comp = infer("monsters", folder)
    assert (comp.target, comp.task, comp.labels, comp.metric) == ("type", "multiclass", "class", "accuracy")


def test_infer_class_names_behind_a_numeric_placeholder(tmp_path):
    # Some samples hold a placeholder such as 0 for every row. When train's classes are names,
    # the submission must still write names: 'int' labels would end in a ValueError traceback
    # when the run writes submission.csv.
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "type": ["Ghoul", "Goblin", "Ghost"] * (N // 3)},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "type": [0] * 20})
    assert infer("monsters", folder).labels == "class"


def test_infer_regression(tmp_path):
    folder = _write(tmp_path, {"Id": IDS, "x": FEATURE, "price": [1000.5 + 37.1 * i for i in range(N)]},
                    {"Id": TEST_IDS, "x": TEST_FEATURE}, {"Id": TEST_IDS, "price": [1500.0] * 20})
    comp = infer("prices", folder)
    assert (comp.id, comp.target, comp.task, comp.labels, comp.metric) == ("Id", "price", "regression", "float", "rmse")


def test_infer_integer_grades_are_multiclass(tmp_path):
    n = 400
    folder = _write(tmp_path, {"Id": range(n), "x": range(n), "quality": [3 + i % 6 for i in range(n)]},
                    {"Id": TEST_IDS, "x": TEST_FEATURE}, {"Id": TEST_IDS, "quality": [5] * 20})
    comp = infer("wine", folder)
    assert (comp.task, comp.labels) == ("multiclass", "int")


def test_infer_one_probability_column_per_class(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "Status": ["A", "B", "C"] * (N // 3)},
                    {"id": TEST_IDS, "x": TEST_FEATURE},
                    {"id": TEST_IDS, "Status_A": [0.3] * 20, "Status_B": [0.3] * 20, "Status_C": [0.4] * 20})
    comp = infer("cirrhosis", folder)
    assert (comp.target, comp.task, comp.labels, comp.metric) == ("Status", "multiclass", "proba", "logloss")
    assert comp.submission_columns == ("Status_A", "Status_B", "Status_C")
    assert comp.classes == ("A", "B", "C")


def test_infer_binary_probability_column_means_auc(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "target": [i % 2 for i in range(N)]},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "target": [0.5] * 20})
    comp = infer("mine", folder)
    assert (comp.task, comp.labels, comp.metric) == ("binary", "float", "auc")


def test_infer_matches_the_target_case_insensitively(tmp_path):
    folder = _write(tmp_path, {"label": [i % 10 for i in range(N * 10)], "pixel": range(N * 10)},
                    {"pixel": range(20)}, {"ImageId": range(1, 21), "Label": [0] * 20})
    comp = infer("digits", folder)
    assert (comp.id, comp.target, comp.task, comp.labels) == ("ImageId", "label", "multiclass", "int")
    assert comp.submission_columns == ("Label",)


def test_infer_finds_differently_named_files(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "y": FEATURE},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "y": [0.0] * 20}, "sampleSubmission.csv")
    (folder / "train_extra.csv").write_text("id,x,y\n1,2,3\n")
    comp = infer("mine", folder)
    assert (comp.train, comp.test, comp.sample_submission) == ("train.csv", "test.csv", "sampleSubmission.csv")


def test_infer_cannot_tell_the_target(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "target": FEATURE},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "answer": [0.0] * 20})
    with pytest.raises(AutomlError, match=r"sample_submission\.csv: cannot tell which train column the submission "
                                          r"column\(s\) answer predict; run `automl inspect mine --save` "
                                          r"and set 'target'$"):
        infer("mine", folder)


def test_infer_several_value_columns_is_multitarget(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "A": FEATURE, "b": [2.5 * i for i in range(N)], "x": FEATURE},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "a": [0.0] * 20, "b": [0.0] * 20})
    comp = infer("mine", folder)
    assert (comp.target, comp.targets, comp.task, comp.labels, comp.metric) == ("A", ("A", "b"), "multitarget", "float",
                                                                              "mcrmse")
    assert comp.submission_columns == ("a", "b")  # as the sample spells them
    named = infer("mine", folder, {"evaluation_metric": "Mean Columnwise Root Mean Squared Error"})
    assert named.metric == "mcrmse" and "metric" not in named.inferred


def test_infer_several_zero_one_columns_is_multilabel(tmp_path):
    # Each label a column of 0/1 (or True/False); the sample's placeholders say nothing about the task.
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "toxic": [i % 2 for i in range(N)],
                               "insult": [i % 3 == 0 for i in range(N)], "threat": [int(i % 5 == 0) for i in range(N)]},
                    {"id": TEST_IDS, "x": TEST_FEATURE},
                    {"id": TEST_IDS, "toxic": [0.5] * 20, "insult": [0.5] * 20, "threat": [0.5] * 20})
    comp = infer("toxic", folder)
    assert (comp.target, comp.targets, comp.task, comp.labels, comp.metric) == (
        "toxic", ("toxic", "insult", "threat"), "multilabel", "float", "auc")
    problem = make_problem(comp, *read_tables(comp, folder, "here")[:2])
    assert problem.y.shape == (N, 3) and problem.y.dtype == "int64" and problem.y[:6, 1].tolist() == [1, 0, 0, 1, 0, 0]
    assert list(problem.train.columns) == ["x"]
    assert infer("toxic", folder, {"evaluation_metric": "Mean Column-wise ROC AUC"}).metric == "auc"


def test_infer_several_columns_refuses_text_targets(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "a": FEATURE, "b": ["x", "y"] * (N // 2), "x": FEATURE},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "a": [0.0] * 20, "b": [0.0] * 20})
    with pytest.raises(AutomlError, match=r"sample_submission\.csv: target column 'b' holds text; several target "
                                          r"columns must hold numbers \(multitarget\) or 0/1 labels \(multilabel\)$"):
        infer("mine", folder)


def test_inspect_shows_several_targets(tmp_path):
    folder = _write(tmp_path / "download", {"id": IDS, "a": FEATURE, "b": [2.5 * i for i in range(N)], "x": FEATURE},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "a": [0.0] * 20, "b": [0.0] * 20})
    result = CliRunner().invoke(app, ["inspect", "mine", "--from", str(folder), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "targets a, b, task multitarget, metric mcrmse" in " ".join(result.output.split())
    assert "target 1 of 2 (multitarget)" in result.output and "target 2 of 2 (multitarget)" in result.output


def test_infer_without_a_sample_submission(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "y": FEATURE}, {"id": TEST_IDS}, {"id": TEST_IDS, "y": [0.0] * 20})
    (folder / "sample_submission.csv").unlink()
    with pytest.raises(AutomlError, match=r"no sample submission \(a CSV named like sample_submission\.csv\) found "
                                          r"among test\.csv, train\.csv; name the file in competitions/mine\.yaml$"):
        infer("mine", folder)


def test_infer_on_an_unreadable_csv_is_one_clear_error(tmp_path):
    # A slug without a YAML is inferred before read_tables checks anything: an empty test.csv
    # must end in the same one-line error read_tables gives, not a pandas traceback.
    folder = _write(tmp_path, {"id": IDS, "y": FEATURE}, {"id": TEST_IDS}, {"id": TEST_IDS, "y": [0.0] * 20})
    (folder / "test.csv").write_bytes(b"")
    with pytest.raises(AutomlError, match=re.escape(str(folder / "test.csv")) + r": cannot be read as CSV"):
        infer("mine", folder)


# ----------------------------------------------------------------------- read_tables

def _titanic_folder(tmp_path: Path) -> Path:
    return fetch("titanic", tmp_path / "data", bundle("titanic"))


def test_read_tables_reads_ids_as_text(tmp_path):
    comp = from_yaml(ROOT / "competitions" / "titanic.yaml")
    train, test, sample = read_tables(comp, _titanic_folder(tmp_path), "competitions/titanic.yaml")
    assert (len(train), len(test), len(sample)) == (891, 418, 418)
    assert sample["PassengerId"].iloc[0] == "892" and isinstance(test["PassengerId"].iloc[0], str)


@pytest.mark.parametrize(("changes", "message"), [
    ({"target": "Survivd"}, r"target column 'Survivd' is not in train\.csv$"),
    ({"target": "survived"}, r"target column 'survived' is not in train\.csv \(did you mean 'Survived'\?\)$"),
    ({"id": "Passenger"}, r"id column 'Passenger' is not in gender_submission\.csv$"),
    ({"submission_columns": ("Survived", "Alive")}, r"submission column 'Alive' is not in gender_submission\.csv$"),
    ({"text_columns": ("Title",)}, r"text column 'Title' is not in train\.csv$"),
    ({"date_columns": ("Date",)}, r"date column 'Date' is not in train\.csv$"),
    ({"folds": "group", "group_column": "Family"}, r"group column 'Family' is not in train\.csv$"),
])
def test_read_tables_names_a_missing_column(tmp_path, changes, message):
    spec = dict(slug="titanic", id="PassengerId", target="Survived", task="binary", metric="accuracy",
                labels="int", sample_submission="gender_submission.csv")
    comp = Competition(**(spec | changes))
    with pytest.raises(AutomlError, match=r"^competitions/titanic\.yaml: " + message):
        read_tables(comp, _titanic_folder(tmp_path), "competitions/titanic.yaml")


def test_read_tables_names_a_missing_file(tmp_path):
    comp = Competition(slug="titanic", id="PassengerId", target="Survived", task="binary", metric="accuracy",
                       labels="int")  # the sample is gender_submission.csv, not sample_submission.csv
    folder = _titanic_folder(tmp_path)
    missing = re.escape(str(folder / "sample_submission.csv"))
    with pytest.raises(AutomlError, match=f"^here: sample_submission file {missing} does not exist; "
                                          r"check the key 'sample_submission'$"):
        read_tables(comp, folder, "here")


def test_read_tables_unreadable_csv(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "y": FEATURE}, {"id": TEST_IDS}, {"id": TEST_IDS, "y": [0.0] * 20})
    comp = infer("mine", folder)
    (folder / "test.csv").write_bytes(b"")
    with pytest.raises(AutomlError, match="^" + re.escape(str(folder / "test.csv")) + r": cannot be read as CSV \("):
        read_tables(comp, folder, "here")


def test_a_csv_that_is_not_utf8_is_read_as_cp1252_with_one_warning(tmp_path, caplog):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "y": FEATURE}, {"id": TEST_IDS, "x": TEST_FEATURE},
                    {"id": TEST_IDS, "y": [0.0] * 20})
    names = ["Café €5" if i % 2 else "Zoë" for i in range(N)]
    pd.DataFrame({"id": IDS, "name": names, "x": FEATURE, "y": FEATURE}).to_csv(
        folder / "train.csv", index=False, encoding="cp1252")
    comp = infer("mine", folder)
    train, _, _ = read_tables(comp, folder, "here")
    assert train["name"].tolist() == names
    warnings = [r.getMessage() for r in caplog.records if r.name == "automl" and "UTF-8" in r.getMessage()]
    assert warnings == [f"{folder / 'train.csv'}: not UTF-8; read as cp1252"]  # once, though read three times


def test_a_csv_with_bytes_cp1252_lacks_is_read_as_latin1(tmp_path, caplog):
    path = tmp_path / "train.csv"
    path.write_bytes(b"id,name\n1,\x81\xe9\n")  # 0x81 is no character in cp1252
    frame = competition.read_csv(path)
    assert frame["name"].tolist() == ["\x81é"]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: not UTF-8; read as latin-1"]


def test_a_non_utf8_bundle_on_the_command_line(tmp_path):
    folder = _write(tmp_path / "src", {"id": IDS, "x": FEATURE, "y": FEATURE}, {"id": TEST_IDS, "x": TEST_FEATURE},
                    {"id": TEST_IDS, "y": [0.0] * 20})
    pd.DataFrame({"id": TEST_IDS, "x": TEST_FEATURE, "town": ["Münster"] * 20}).to_csv(
        folder / "test.csv", index=False, encoding="cp1252")
    result = CliRunner().invoke(app, ["inspect", "mine", "--from", str(folder), "--metric", "rmse",
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"warning: {tmp_path / 'data' / 'mine' / 'test.csv'}: not UTF-8; read as cp1252\n")
    assert result.output.count("warning:") == 1


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_target_with_a_single_class_is_one_clear_line(tmp_path, monkeypatch, task):
    monkeypatch.chdir(tmp_path)
    folder = _write(tmp_path / "src", {"id": IDS, "x": FEATURE, "label": [1] * N},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "label": [0] * 20})
    (tmp_path / "competitions").mkdir()
    (tmp_path / "competitions" / "mine.yaml").write_text(
        f"slug: mine\nid: id\ntarget: label\ntask: {task}\nmetric: accuracy\nlabels: int\n")
    result = CliRunner().invoke(app, ["inspect", "mine", "--from", str(folder), "--data-dir", "data"])
    assert result.exit_code == 1, result.output
    assert result.output == (f"error: train.csv: target column 'label' holds one class, 1, in all {N} labelled rows; a "
                             "classifier needs two or more: check 'target' in competitions/mine.yaml, or that "
                             "train.csv is the whole training file\n")


def test_a_single_class_inferred_target_is_refused_too(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "label": ["yes"] * N},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "label": ["yes"] * 20})
    comp = infer("mine", folder)
    train, test, _ = read_tables(comp, folder, "here")
    with pytest.raises(AutomlError, match=r"^train\.csv: target column 'label' holds one class, yes, in all 60 "):
        make_problem(comp, train, test)


def test_smape_with_negative_targets_trains_without_log1p(tmp_path):
    folder = _write(tmp_path, {"id": IDS, "x": FEATURE, "y": [v - 10 for v in FEATURE]},
                    {"id": TEST_IDS, "x": TEST_FEATURE}, {"id": TEST_IDS, "y": [0.0] * 20})
    train, test, _ = read_tables(infer("mine", folder), folder, "here")
    problem = make_problem(infer("mine", folder, metric="smape"), train, test)
    assert (problem.metric.name, problem.metric.target_transform, problem.metric.objective) == ("smape", None, "squared")
    positive = make_problem(infer("mine", folder, metric="smape"), train.assign(y=train["y"] + 10), test)
    assert (positive.metric.target_transform, positive.metric.objective) == ("log1p", "log1p_squared")
    with pytest.raises(AutomlError, match=r"^mine: metric rmsle needs a target >= 0, but 'y' has negative values$"):
        make_problem(infer("mine", folder, metric="rmsle"), train, test)


def test_a_yaml_may_name_map_at_any_k(tmp_path):
    comp = from_yaml(_yaml(tmp_path, TITANIC_YAML.replace("binary", "multiclass").replace("accuracy", "map@5")))
    assert comp.metric == "map@5"


# --------------------------------------------------------------------- real bundles

EXPECTED = {
    # slug: (id, target, task, metric, labels, submission columns)
    "titanic": ("PassengerId", "Survived", "binary", "accuracy", "int", ("Survived",)),
    "house-prices-advanced-regression-techniques": ("Id", "SalePrice", "regression", "rmsle", "float", ("SalePrice",)),
    "digit-recognizer": ("ImageId", "label", "multiclass", "accuracy", "int", ("Label",)),
    "nlp-getting-started": ("id", "target", "binary", "f1", "int", ("target",)),
    "playground-series-s3e26": ("id", "Status", "multiclass", "logloss", "proba",
                                ("Status_C", "Status_CL", "Status_D")),
    "playground-series-s3e5": ("Id", "quality", "multiclass", "qwk", "int", ("quality",)),
    "bike-sharing-demand": ("datetime", "count", "regression", "rmsle", "float", ("count",)),
    "ghouls-goblins-and-ghosts-boo": ("id", "type", "multiclass", "accuracy", "class", ("type",)),
    "mercedes-benz-greener-manufacturing": ("ID", "y", "regression", "r2", "float", ("y",)),
    "playground-series-s3e1": ("id", "MedHouseVal", "regression", "rmse", "float", ("MedHouseVal",)),
    "playground-series-s3e3": ("id", "Attrition", "binary", "auc", "float", ("Attrition",)),
    "playground-series-s3e12": ("id", "target", "binary", "auc", "float", ("target",)),
    "playground-series-s3e15": ("id", "x_e_out [-]", "regression", "rmse", "float", ("x_e_out [-]",)),
    "playground-series-s5e3": ("id", "rainfall", "binary", "auc", "float", ("rainfall",)),
    "tabular-playground-series-aug-2022": ("id", "failure", "binary", "auc", "float", ("failure",)),
}
# Where inference alone reads the labels otherwise: samples of 0 (or 0.0) placeholders look like 0/1 labels;
# the YAML (and Kaggle's record, AUC) say probabilities.
INFERRED_LABELS = {"playground-series-s5e3": "int", "tabular-playground-series-aug-2022": "int"}


@pytest.fixture(scope="module")
def bundles_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bundles")


def _fetched(slug: str, data_dir: Path) -> Path:
    bundle(slug)  # skips when the bundle is missing
    return fetch(slug, data_dir)  # through AUTOML_MIRROR


def test_every_bundle_has_a_yaml_and_an_expectation():
    bundles = {p.stem for p in MIRROR.glob("*.zip")}
    assert bundles <= {p.stem for p in YAMLS}
    assert bundles == set(EXPECTED)


@pytest.mark.parametrize("slug", EXPECTED)
def test_inspect_real_bundle(slug, bundles_dir):
    assert _fetched(slug, bundles_dir) == bundles_dir / slug
    result = automl.inspect(slug, data_dir=bundles_dir)
    comp = result.competition
    assert (comp.id, comp.target, comp.task, comp.metric, comp.labels, comp.submission_columns) == EXPECTED[slug]
    roles = dict(zip(result.columns["column"], result.columns["role"], strict=True))
    assert roles[comp.target].startswith(f"target ({comp.task}" if comp.is_classification else "target (regression)")
    # digit-recognizer's train has no id; bike-sharing's datetime id is also a feature.
    not_features = {"digit-recognizer": [], "bike-sharing-demand": []}.get(slug, [comp.id])
    assert [c for c, role in roles.items() if role == "id (not a feature)"] == not_features
    if slug == "titanic":
        assert roles["Sex"] == "categorical (2 levels)"
        assert roles["Name"].startswith("tokens: mr, miss, mrs")
    if slug == "digit-recognizer":
        assert comp.image_shape == (1, 28, 28)
        pixels = [c for c in roles if c.startswith("pixel")]
        assert len(pixels) == 784 and {roles[c] for c in pixels} == {"image 1x28x28"}
        assert roles["label"] == "target (multiclass, 10 classes)"
    if slug == "nlp-getting-started":
        assert roles["text"] == "text"
        assert comp.text_columns == ("text",)
    if slug == "playground-series-s3e26":
        assert comp.classes == ("C", "CL", "D")
        assert roles["Status"] == "target (multiclass, 3 classes)"
    if slug == "bike-sharing-demand":
        assert roles["datetime"] == "date (elapsed, day, weekday, hour, year_sin, year_cos) (also the id)"
        assert roles["casual"] == roles["registered"] == "dropped: not in test.csv"
    if slug == "mercedes-benz-greener-manufacturing":
        assert roles["X11"] == "dropped: constant"
    if slug == "playground-series-s3e15":  # one data.csv: the 10,415 rows the sample names are the test
        assert roles["x_e_out [-]"] == "target (regression)"
        train, test, sample = read_tables(comp, bundles_dir / slug, slug)
        assert (len(train), len(test), len(sample)) == (21229, 10415, 10415)
        assert list(test["id"]) == list(sample["id"]) and "x_e_out [-]" not in test.columns


@pytest.mark.parametrize("slug", EXPECTED)
def test_inference_alone_on_real_bundle(slug, bundles_dir):
    comp = infer(slug, _fetched(slug, bundles_dir))
    id_, target, task, _metric, labels, columns = EXPECTED[slug]
    labels = INFERRED_LABELS.get(slug, labels)
    assert (comp.id, comp.target, comp.task) == (id_, target, task)
    assert (comp.labels, comp.submission_columns) == (labels, columns)
    if labels == "proba":
        assert comp.classes == ("C", "CL", "D")
    assert "metric" in comp.inferred
