"""Predictions -> submission.csv in the sample's shape, and the checker that catches bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import bundle
from typer.testing import CliRunner

from automl.cli import app
from automl.competition import Competition, infer
from automl.errors import AutomlError
from automl.fetch import fetch
from automl.submission import make_submission, validate, write_submission

BINARY = Competition(slug="s", id="PassengerId", target="Survived", task="binary", metric="accuracy", labels="int")
BOOL = Competition(slug="s", id="PassengerId", target="Transported", task="binary", metric="accuracy", labels="bool")
NAMES = Competition(slug="s", id="id", target="type", task="multiclass", metric="accuracy", labels="class")
PROBABILITY = Competition(slug="s", id="id", target="target", task="binary", metric="auc", labels="float")
REGRESSION = Competition(slug="s", id="Id", target="SalePrice", task="regression", metric="rmse", labels="float")
PROBA = Competition(slug="s", id="id", target="Status", task="multiclass", metric="logloss", labels="proba",
                    submission_columns=("Status_C", "Status_CL", "Status_D"), classes=("C", "CL", "D"))
LABELS = Competition(slug="s", id="id", target="toxic", targets=("toxic", "insult"), task="multilabel", metric="auc",
                     labels="float", submission_columns=("Toxic", "Insult"))


def sample_of(comp: Competition, ids, fill="0") -> pd.DataFrame:
    frame = pd.DataFrame({comp.id: [str(i) for i in ids]})
    for column in comp.submission_columns:
        frame[column] = fill
    return frame


def proba(*positive: float) -> np.ndarray:
    p = np.array(positive)
    return np.column_stack([1 - p, p])


def roundtrip(frame: pd.DataFrame, tmp_path) -> str:
    path = write_submission(frame, tmp_path / "submission.csv")
    return path.read_text()


# ------------------------------------------------------------------------- writing

def test_int_labels(tmp_path):
    sample = sample_of(BINARY, [892, 893, 894])
    out = make_submission(BINARY, sample, pd.Series(["892", "893", "894"]), proba(0.9, 0.2, 0.6),
                          np.array([0, 1]), threshold=0.5)
    assert roundtrip(out, tmp_path) == "PassengerId,Survived\n892,1\n893,0\n894,1\n"


def test_the_threshold_decides_binary_labels():
    sample = sample_of(BINARY, [1, 2, 3])
    out = make_submission(BINARY, sample, None, proba(0.9, 0.2, 0.6), np.array([0, 1]), threshold=0.7)
    assert out["Survived"].tolist() == [1, 0, 0]


def test_bool_labels_are_written_as_true_false(tmp_path):
    sample = sample_of(BOOL, ["0013_01", "0018_01", "0019_01"], fill="False")
    out = make_submission(BOOL, sample, pd.Series(["0013_01", "0018_01", "0019_01"]), proba(0.1, 0.8, 0.7),
                          np.array([False, True]), threshold=0.5)
    assert roundtrip(out, tmp_path) == "PassengerId,Transported\n0013_01,False\n0018_01,True\n0019_01,True\n"
    assert validate(tmp_path / "submission.csv", BOOL, sample) == []


def test_class_names(tmp_path):
    sample = sample_of(NAMES, [3, 1, 2], fill="Ghost")
    pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    out = make_submission(NAMES, sample, pd.Series(["3", "1", "2"]), pred, np.array(["Ghost", "Ghoul", "Goblin"]), None)
    assert roundtrip(out, tmp_path) == "id,type\n3,Ghost\n1,Goblin\n2,Ghoul\n"
    assert validate(tmp_path / "submission.csv", NAMES, sample, ["Ghost", "Ghoul", "Goblin"]) == []


RANKED = Competition(slug="s", id="id", target="prognosis", task="multiclass", metric="map@3", labels="class")


def test_map_at_k_writes_the_top_k_classes(tmp_path):
    # A sample whose column holds space-separated labels, as map@3 competitions ask.
    folder = tmp_path / "bundle"
    folder.mkdir()
    classes = ["Dengue", "Lyme_disease", "Malaria", "Tungiasis"]
    pd.DataFrame({"id": range(40), "x": range(40), "prognosis": classes * 10}).to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"id": [40, 41, 42], "x": [1, 2, 3]}).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": [40, 41, 42], "prognosis": ["Dengue Malaria Tungiasis"] * 3}).to_csv(
        folder / "sample_submission.csv", index=False)
    comp = infer("ranked", folder)
    assert (comp.task, comp.labels, comp.metric) == ("multiclass", "class", "map@3")
    assert "metric" in comp.inferred
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    pred = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.1, 0.3, 0.1], [0.25, 0.25, 0.4, 0.1]])
    out = make_submission(comp, sample, pd.Series(["40", "41", "42"]), pred, np.array(classes), None)
    assert out["prognosis"].tolist() == ["Tungiasis Malaria Lyme_disease", "Dengue Malaria Lyme_disease",
                                         "Malaria Dengue Lyme_disease"]  # ties: the class first in order first
    write_submission(out, tmp_path / "submission.csv")
    assert validate(tmp_path / "submission.csv", comp, sample, classes) == []


def test_map_at_k_integer_classes(tmp_path):
    comp = Competition(slug="s", id="id", target="y", task="multiclass", metric="map@2", labels="int")
    sample = sample_of(comp, [1, 2], fill="1 2")
    out = make_submission(comp, sample, None, np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]), np.array([1.0, 2.0, 3.0]),
                          None)
    assert out["y"].tolist() == ["2 3", "1 2"]
    write_submission(out, tmp_path / "submission.csv")
    assert validate(tmp_path / "submission.csv", comp, sample, ["1.0", "2.0", "3.0"]) == []


@pytest.mark.parametrize(("value", "problem"), [
    ("Dengue Malaria Tungiasis Lyme_disease", "column 'prognosis': 1 values hold more than 3 labels, "
                                              "e.g. 'Dengue Malaria Tungiasis Lyme_disease'"),
    ("Dengue Flu", "column 'prognosis': 1 values hold labels that are not known classes "
                   "(Dengue, Lyme_disease, Malaria, Tungiasis), e.g. 'Dengue Flu'"),
])
def test_map_at_k_submissions_are_checked(tmp_path, value, problem):
    sample = sample_of(RANKED, [1, 2], fill="Dengue")
    path = tmp_path / "submission.csv"
    path.write_text(f"id,prognosis\n1,Dengue\n2,{value}\n")
    assert validate(path, RANKED, sample, ["Dengue", "Lyme_disease", "Malaria", "Tungiasis"]) == [problem]


def test_float_probability_of_the_positive_class():
    sample = sample_of(PROBABILITY, [1, 2])
    out = make_submission(PROBABILITY, sample, None, proba(0.25, 0.75), np.array([0, 1]), None)
    assert out["target"].tolist() == [0.25, 0.75]


def test_regression_values():
    sample = sample_of(REGRESSION, [1461, 1462])
    out = make_submission(REGRESSION, sample, pd.Series(["1461", "1462"]), np.array([125000.5, 98000.25]), None, None)
    assert out["SalePrice"].tolist() == [125000.5, 98000.25]


def test_several_targets_write_a_column_each_in_the_samples_order(tmp_path):
    sample = sample_of(LABELS, [7, 5], fill="0.5")
    pred = np.array([[0.1, 0.9], [0.8, 0.3]])  # test rows 5 then 7: (n, t), one column per target
    out = make_submission(LABELS, sample, pd.Series(["5", "7"]), pred, None, None)
    assert roundtrip(out, tmp_path) == "id,Toxic,Insult\n7,0.8,0.3\n5,0.1,0.9\n"
    assert validate(tmp_path / "submission.csv", LABELS, sample) == []


def test_proba_columns_sum_to_one_and_follow_the_sample_names(tmp_path):
    sample = sample_of(PROBA, [10, 11], fill="0.333")
    pred = np.array([[0.2, 0.2, 0.4], [1.0, 0.0, 1.0]])  # not normalized: averaged over folds, say
    out = make_submission(PROBA, sample, pd.Series(["10", "11"]), pred, np.array(["C", "CL", "D"]), None)
    assert list(out.columns) == ["id", "Status_C", "Status_CL", "Status_D"]
    np.testing.assert_allclose(out[["Status_C", "Status_CL", "Status_D"]].sum(axis=1), 1.0)
    np.testing.assert_allclose(out.iloc[0, 1:].astype(float), [0.25, 0.25, 0.5])
    write_submission(out, tmp_path / "submission.csv")
    assert validate(tmp_path / "submission.csv", PROBA, sample, ["C", "CL", "D"]) == []


def test_proba_columns_map_classes_by_name():
    comp = Competition(slug="s", id="id", target="Status", task="multiclass", metric="logloss", labels="proba",
                       submission_columns=("Status_D", "Status_C", "Status_CL"), classes=("D", "C", "CL"))
    sample = sample_of(comp, [1])
    out = make_submission(comp, sample, None, np.array([[0.1, 0.3, 0.6]]), np.array(["C", "CL", "D"]), None)
    assert out.iloc[0, 1:].astype(float).tolist() == pytest.approx([0.6, 0.1, 0.3])


def test_ids_follow_the_sample_when_test_rows_are_shuffled():
    sample = sample_of(BINARY, [892, 893, 894, 895])
    test_ids = pd.Series(["894", "892", "895", "893"])  # test.csv in another order
    pred = proba(0.9, 0.1, 0.2, 0.8)  # one row per test row: 894 -> 1, 892 -> 0, 895 -> 0, 893 -> 1
    out = make_submission(BINARY, sample, test_ids, pred, np.array([0, 1]), 0.5)
    assert out["PassengerId"].tolist() == ["892", "893", "894", "895"]
    assert out["Survived"].tolist() == [0, 1, 1, 0]


def test_ids_keep_their_text():
    sample = sample_of(BINARY, ["007", "1e3", "12"])
    out = make_submission(BINARY, sample, pd.Series(["12", "007", "1e3"]), proba(0.1, 0.9, 0.9), np.array([0, 1]), 0.5)
    assert out["PassengerId"].tolist() == ["007", "1e3", "12"]
    assert out["Survived"].tolist() == [1, 1, 0]


def test_test_without_an_id_column_is_positional():
    comp = Competition(slug="digits", id="ImageId", target="label", task="multiclass", metric="accuracy",
                       labels="int", submission_columns=("Label",))
    sample = sample_of(comp, [1, 2, 3])
    pred = np.eye(10)[[7, 2, 9]]
    out = make_submission(comp, sample, None, pred, np.arange(10), None)
    assert out.columns.tolist() == ["ImageId", "Label"]
    assert out["ImageId"].tolist() == ["1", "2", "3"] and out["Label"].tolist() == [7, 2, 9]


def test_row_count_mismatch_and_unknown_ids():
    sample = sample_of(BINARY, [1, 2, 3])
    with pytest.raises(AutomlError, match=r"^sample_submission\.csv has 3 rows but test\.csv has 2$"):
        make_submission(BINARY, sample, None, proba(0.1, 0.2), np.array([0, 1]), None)
    with pytest.raises(AutomlError, match=r"^sample_submission\.csv: id '3' is not in test\.csv$"):
        make_submission(BINARY, sample, pd.Series(["1", "2", "4"]), proba(0.1, 0.2, 0.3), np.array([0, 1]), None)


# ------------------------------------------------------------------------ validating

SAMPLE = sample_of(BINARY, [892, 893, 894, 895])
GOOD = "PassengerId,Survived\n892,0\n893,1\n894,1\n895,0\n"


def check(tmp_path, text: str, comp: Competition = BINARY, sample: pd.DataFrame = SAMPLE,
          classes: list[str] | None = ("0", "1")) -> list[str]:
    path = tmp_path / "submission.csv"
    path.write_text(text)
    return validate(path, comp, sample, None if classes is None else list(classes))


def test_a_good_file_passes(tmp_path):
    assert check(tmp_path, GOOD) == []
    assert check(tmp_path, GOOD.replace("\n", "\r\n")) == []  # Windows line endings are fine


@pytest.mark.parametrize(("text", "problems"), [
    ("PassengerId,Survived\n892,0\n893,1\n894,1\n",
     ["has 3 rows; the sample submission has 4", "1 ids of the sample are missing, e.g. '895'"]),
    (GOOD + "896,1\n", ["has 5 rows; the sample submission has 4", "1 ids are not in the sample, e.g. '896'"]),
    ("PassengerId,Survived\n892,0\n892,1\n894,1\n895,0\n",
     ["1 duplicated ids, e.g. '892'", "1 ids of the sample are missing, e.g. '893'"]),
    ("PassengerId,Survived\n893,1\n892,0\n894,1\n895,0\n", ["ids are not in the sample submission's order"]),
    ("PassengerId,Prediction\n892,0\n893,1\n894,1\n895,0\n",
     ["columns should be PassengerId, Survived (missing Survived; unexpected Prediction)"]),
    ("PassengerId\n892\n893\n894\n895\n", ["columns should be PassengerId, Survived (missing Survived)"]),
    ("PassengerId,Survived,Name\n892,0,a\n893,1,b\n894,1,c\n895,0,d\n",
     ["columns should be PassengerId, Survived (unexpected Name)"]),
    ("Survived,PassengerId\n0,892\n1,893\n1,894\n0,895\n",
     ["columns should be PassengerId, Survived (same names in another order)"]),
    ("Id,Survived\n892,0\n893,1\n894,1\n895,0\n", ["columns should be PassengerId, Survived (missing PassengerId; "
                                                   "unexpected Id)"]),
    ("PassengerId,Survived\n892,0\n893,\n894,NaN\n895,0\n",
     ["column 'Survived': 2 empty or NaN values (first at row 3)"]),
    ("PassengerId,Survived\n892,0\n893,yes\n894,1\n895,0\n",
     ["column 'Survived': 1 values are not numbers, e.g. 'yes'"]),
    ("PassengerId,Survived\n892,0\n893,0.5\n894,1\n895,0\n",
     ["column 'Survived': holds fractional values where class labels are expected"]),
    ("PassengerId,Survived\n892,0\n893,2\n894,1\n895,0\n",
     ["column 'Survived': 1 values are not known classes (0, 1), e.g. '2'"]),
    ("PassengerId,Survived\n892,0\n893,inf\n894,1\n895,0\n", ["column 'Survived': holds infinite values"]),
])
def test_validate_catches(tmp_path, text, problems):
    assert check(tmp_path, text) == problems


def test_validate_bool_values(tmp_path):
    sample = sample_of(BOOL, [1, 2, 3], fill="False")
    assert check(tmp_path, "PassengerId,Transported\n1,True\n2,False\n3,True\n", BOOL, sample, None) == []
    assert check(tmp_path, "PassengerId,Transported\n1,True\n2,1\n3,true\n", BOOL, sample, None) == [
        "column 'Transported': 2 values are not True/False, e.g. '1'"]


def test_validate_unknown_class_name(tmp_path):
    sample = sample_of(NAMES, [1, 2], fill="Ghost")
    classes = ["Ghost", "Ghoul", "Goblin"]
    assert check(tmp_path, "id,type\n1,Ghost\n2,Goblin\n", NAMES, sample, classes) == []
    assert check(tmp_path, "id,type\n1,Ghost\n2,Zombie\n", NAMES, sample, classes) == [
        "column 'type': 1 values are not known classes (Ghost, Ghoul, Goblin), e.g. 'Zombie'"]


def test_validate_probabilities(tmp_path):
    sample = sample_of(PROBA, [1, 2])
    header = "id,Status_C,Status_CL,Status_D\n"
    assert check(tmp_path, header + "1,0.2,0.3,0.5\n2,1,0,0\n", PROBA, sample) == []
    assert check(tmp_path, header + "1,0.2,0.3,0.6\n2,0.5,0.1,0.1\n", PROBA, sample) == [
        "class probabilities should sum to 1 per row (found 0.700 to 1.100)"]
    assert check(tmp_path, header + "1,1.5,-0.5,0\n2,1,0,0\n", PROBA, sample) == [
        "column 'Status_C': holds probabilities outside [0, 1]",
        "column 'Status_CL': holds probabilities outside [0, 1]"]


def test_validate_an_unreadable_file(tmp_path):
    problems = validate(tmp_path / "missing.csv", BINARY, SAMPLE)
    assert len(problems) == 1 and problems[0].startswith("cannot be read as CSV: ")
    assert check(tmp_path, "")[0].startswith("cannot be read as CSV: ")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    assert validate(tmp_path / "binary.csv", BINARY, SAMPLE)[0].startswith("cannot be read as CSV: ")


# ---------------------------------------------------------------- automl validate

def test_cli_validate_exit_codes(tmp_path):
    bundle("titanic")
    runner = CliRunner()
    data = tmp_path / "data"
    # Kaggle's own sample is a valid submission.
    sample = fetch("titanic", data) / "gender_submission.csv"
    ok = runner.invoke(app, ["validate", str(sample), "titanic", "--data-dir", str(data)])
    assert ok.exit_code == 0, ok.output
    assert "is a valid submission for titanic" in ok.output

    rows = sample.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows[:-1] + [rows[-1].split(",")[0] + ",2"]) + "\n")
    failed = runner.invoke(app, ["validate", str(bad), "titanic", "--data-dir", str(data)])
    assert failed.exit_code == 1
    assert f"{bad}: column 'Survived': 1 values are not known classes (0, 1), e.g. '2'" in failed.output
    assert "Traceback" not in failed.output

    short = tmp_path / "short.csv"
    short.write_text("\n".join(rows[:-2]) + "\n")
    failed = runner.invoke(app, ["validate", str(short), "titanic", "--data-dir", str(data)])
    assert failed.exit_code == 1
    assert "has 416 rows; the sample submission has 418" in failed.output
    assert "1 ids of the sample are missing" not in failed.output and "2 ids of the sample are missing" in failed.output


def test_cli_validate_with_a_missing_source(tmp_path):
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "x.csv"), "titanic", "--from",
                                      str(tmp_path / "nowhere"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"error: --from {tmp_path / 'nowhere'}: no such file or folder" in result.output
