"""--extra-train: more labelled rows beside train.csv train every fold and are never scored."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame, write_bundle
from typer.testing import CliRunner

from automl.cli import app
from automl.competition import Competition
from automl.errors import UsageError
from automl.extra import EXTRA_COLUMN, EXTRA_FOLD, conform, with_extra
from automl.folds import fold_features, make_folds, splits, weights_for_test
from automl.problem import make_problem


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def competition(task: str = "binary", **kw) -> Competition:
    return Competition(slug="extra-test", id="id", target="target", task=task,
                       metric={"binary": "auc", "regression": "rmse", "multiclass": "accuracy"}[task],
                       labels={"binary": "proba", "regression": "value", "multiclass": "class"}[task], **kw)


def problem_with_extra(task: str = "binary", own: int = 200, extra: int = 120, **kw):
    frame = synthetic_frame(task, own + extra + 50)
    train, more, test = frame.iloc[:own], frame.iloc[own:own + extra], frame.iloc[own + extra:].drop(columns="target")
    comp = competition(task, **kw)
    merged, test = with_extra(train, test, conform(more, "more.csv", comp, train, test))
    return make_problem(comp, merged, test)


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_extra_rows_train_in_every_fold_and_are_never_validated(task):
    problem = problem_with_extra(task)
    assert (problem.extra, problem.own_rows) == (120, 200)
    assert EXTRA_COLUMN in problem.train.columns  # the indicator is a feature: 0 on own rows, 1 on extra
    assert problem.train[EXTRA_COLUMN].tolist() == [0] * 200 + [1] * 120 and (problem.test[EXTRA_COLUMN] == 0).all()
    folds = make_folds(problem, 5, seed=0)
    assert (folds[200:] == EXTRA_FOLD).all() and set(folds[:200]) == set(range(5))
    extra = np.arange(200, 320)
    for split in splits(folds):
        assert np.isin(extra, split.train_rows).all()  # in every fold's training rows
        assert not np.isin(split.valid_rows, extra).any()  # in no fold's validation rows
    assert np.allclose(weights_for_test(splits(folds)), 0.2)  # k-fold: not mistaken for an expanding window
    # the competition's own rows are folded as they would be without the extra rows
    alone = make_problem(problem.comp, problem.labelled.iloc[:200].drop(columns=EXTRA_COLUMN), problem.test)
    assert (make_folds(alone, 5, seed=0) == folds[:200]).all()


def test_extra_rows_on_time_folds_train_only_the_windows_that_reach_their_time():
    problem = problem_with_extra("regression", folds="time", time_column="when")
    problem.labelled.loc[problem.labelled.index[-1], "when"] = None  # an extra row without a time
    folds = make_folds(problem, 3)
    assert folds.shape == (320, 2) and (folds[200:, 0] == EXTRA_FOLD).all() and (folds[:200, 0] == -1).any()
    when = pd.to_datetime(problem.labelled["when"]).to_numpy()
    extra = np.arange(200, 320)
    for split in splits(folds):
        assert (split.valid_rows < 200).all()  # extra rows are never validated
        end = when[split.train_rows[split.train_rows < 200]].max()  # the fold's own rows' latest time
        trained = np.isin(extra, split.train_rows)
        # an extra row dated after what the fold trains on would show it the future it validates
        assert (when[extra][trained][:-1] <= end).all() and trained[when[extra] <= end].all() and trained[-1]
        assert (when[extra] > end).any()  # some are left out here: the rule is tested, not vacuous
    assert weights_for_test(splits(folds)).tolist() == [0, 0, 1]  # still a forecast: the last window's model
    refit = fold_features(problem, folds)[-1].refit  # what forecasts the test: every row, each extra row included
    assert refit is not None and np.isin(extra, refit.train_rows).all()
    # the own rows' folds are those of the run without extra rows (1-D there: each row trains the folds after its own)
    alone = make_folds(problem.own(), 3)
    assert (alone == folds[:200, 0]).all() and (alone + 1 == folds[:200, 1]).all()


def test_an_extra_file_is_matched_to_train_columns_and_labels():
    frame = synthetic_frame("binary", 100)
    train, test = frame.iloc[:60], frame.iloc[60:].drop(columns="target")
    other = frame.iloc[60:].rename(columns={"x1": "X1", "colour": "Colour", "id": "ID", "target": "TARGET"})
    other["TARGET"] = other["TARGET"].map({0: "No", 1: "Yes"})
    out = conform(other, "original.csv", competition(), train, test)
    assert list(out.columns) == [c for c in train.columns if c != "id"]  # features then target, the id dropped
    assert out["target"].tolist() == frame.iloc[60:]["target"].tolist()  # No/Yes -> 0/1
    three = synthetic_frame("multiclass", 100)
    upper = three.assign(target=three["target"].str.upper())  # HIGH/LOW/MID: the same classes, written in capitals
    assert conform(upper, "f.csv", competition("multiclass"), three, three.drop(columns="target"))["target"].tolist() \
        == three["target"].tolist()


@pytest.mark.parametrize("change, words", [
    (lambda f: f.drop(columns="target"), ["original.csv", "target column 'target'", "missing"]),
    (lambda f: f.drop(columns="x2"), ["original.csv", "feature column 'x2'", "missing"]),
    (lambda f: f.assign(weight=1.0), ["original.csv", "column 'weight'", "drop it"]),
    (lambda f: f.assign(target=np.arange(len(f)) % 5), ["original.csv", "'target'", "5 labels", "2 classes"]),
    (lambda f: f.assign(x1="high"), ["original.csv", "column 'x1' holds 'high'", "numbers"]),
])
def test_an_extra_file_that_does_not_fit_is_one_line_naming_the_file_and_column(change, words):
    frame = synthetic_frame("binary", 100)
    train, test = frame.iloc[:60], frame.iloc[60:].drop(columns="target")
    with pytest.raises(UsageError) as caught:
        conform(change(frame.iloc[60:]), "original.csv", competition(), train, test)
    message = str(caught.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_an_original_is_read_as_published_separator_bom_header_whitespace_and_its_row_key(tmp_path, caplog):
    """Originals come as their authors wrote them: ';' between fields, a UTF-8 byte-order mark, a TAB after a
    header name, their own row number. Each is read as a Kaggler would, with a warning for what was dropped."""
    import logging

    from automl.extra import read_extra

    caplog.set_level(logging.WARNING, logger="automl")
    frame = synthetic_frame("binary", 100)
    train, test = frame.iloc[:60], frame.iloc[60:].drop(columns="target")
    original = frame.iloc[60:].drop(columns="id").rename(columns={"x2": "x2\t"}).assign(**{"Row#": np.arange(40) + 7})
    text = original.to_csv(index=False, sep=";")
    (tmp_path / "original.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    extra, [record] = read_extra([tmp_path / "original.csv"], competition(), train, test)
    assert record["rows"] == 40 and list(extra.columns) == [c for c in train.columns if c != "id"]
    np.testing.assert_allclose(extra["x2"].to_numpy(float), frame.iloc[60:]["x2"].to_numpy(float), equal_nan=True)
    assert "read with ';' as the separator" in caplog.text
    assert "column 'Row#' is unique on every row and not in train.csv: taken for the file's row key and dropped" in caplog.text
    # a tab-separated one in latin-1
    original.drop(columns="Row#").rename(columns=str.strip).to_csv(tmp_path / "tabs.tsv", sep="\t", index=False,
                                                                 encoding="latin-1")
    assert len(read_extra([tmp_path / "tabs.tsv"], competition(), train, test)[0]) == 40


def test_a_renamed_column_in_an_original_is_one_line_naming_its_likely_partner():
    frame = synthetic_frame("binary", 100)
    train, test = frame.iloc[:60], frame.iloc[60:].drop(columns="target")
    renamed = frame.iloc[60:].rename(columns={"x2": "Shucked weight"})
    with pytest.raises(UsageError) as caught:
        conform(renamed, "original.csv", competition(), train, test)
    message = str(caught.value)
    assert "\n" not in message and "feature column 'x2' of train.csv is missing (the file has 'Shucked weight', " \
        "which train.csv has not: if it is the same, rename it 'x2')" in message, message


def test_an_extra_file_for_another_task_is_refused():
    frame = synthetic_frame("regression", 100)
    train, test = frame.iloc[:60], frame.iloc[60:].drop(columns="target")
    words = frame.iloc[60:].assign(target="high")
    with pytest.raises(UsageError, match=r"original.csv: target column 'target' holds 'high'.*another task"):
        conform(words, "original.csv", competition("regression"), train, test)


def _bundle(folder, n=300, seed=0):
    return write_bundle(folder, synthetic_frame("binary", n + 100, seed), n, fill=0.5)


@pytest.mark.e2e
def test_run_with_extra_train_end_to_end(tmp_path):
    """The CLI: extra rows in every fold's training rows and in none of the scores; pinned in the run."""
    data = _bundle(tmp_path / "bundle")
    original = synthetic_frame("binary", 500, seed=7).rename(columns={"target": "Target"})
    original["Target"] = original["Target"].map({0: "N", 1: "Y"})
    original.to_csv(tmp_path / "original.csv", index=False)
    args = ["run", "extra-e2e", "--from", data, "--models", "dummy,linear,hist_gb", "--metric", "auc",
            "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data", "--extra-train-always"]
    result = invoke(*args, "--extra-train", tmp_path / "original.csv")
    assert result.exit_code == 0, result.output
    assert "extra training rows: 500 from original.csv (500), beside 300 of train.csv" in result.output
    assert "trained with 500 extra rows" in result.output
    run_dir = tmp_path / "runs" / "extra-e2e" / "default"
    folds = pd.read_csv(run_dir / "folds.csv")["fold"].to_numpy()
    assert len(folds) == 800 and (folds[300:] == EXTRA_FOLD).all() and (folds[:300] >= 0).all()
    config = json.loads((run_dir / "config.json").read_text())
    [pinned] = config["extra_train"]
    assert pinned["rows"] == 500 and len(pinned["sha256"]) == 64
    oof = np.load(run_dir / "models" / "linear" / "oof.npy")
    assert (oof[300:] == 0).all() and oof[:300].std() > 0  # scored on own rows only
    assert "Extra training rows: 500" in (run_dir / "report.html").read_text()
    submission = pd.read_csv(run_dir / "submission.csv")
    assert len(submission) == 100 and submission["target"].between(0, 1).all()
    # the same run name with another extra file is refused, not mixed
    original.iloc[:400].to_csv(tmp_path / "fewer.csv", index=False)
    again = invoke(*args, "--extra-train", tmp_path / "fewer.csv")
    assert again.exit_code == 1 and "different extra_train (set of --extra-train files)" in again.output
    # the same file by another path resumes the run: its content is what is pinned
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "copy.csv").write_bytes((tmp_path / "original.csv").read_bytes())
    resumed = invoke(*args, "--extra-train", tmp_path / "elsewhere" / "copy.csv")
    assert resumed.exit_code == 0 and "finished earlier, reused" in resumed.output
    # inspect counts them too
    shown = invoke("inspect", "extra-e2e", "--data-dir", tmp_path / "data", "--extra-train", tmp_path / "original.csv")
    assert shown.exit_code == 0 and "Extra training rows: 500" in shown.output


def test_a_bad_extra_file_exits_2_with_one_line_before_any_work(tmp_path):
    data = _bundle(tmp_path / "bundle")
    synthetic_frame("binary", 50).drop(columns="target").to_csv(tmp_path / "no-target.csv", index=False)
    result = invoke("run", "extra-bad", "--from", data, "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data",
                    "--metric", "auc", "--extra-train", tmp_path / "no-target.csv")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "no-target.csv: target column 'target' of train.csv is missing" in result.output
    assert not (tmp_path / "runs").exists()  # before any work
    missing = invoke("run", "extra-bad", "--from", data, "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data",
                     "--extra-train", tmp_path / "nowhere.csv")
    assert missing.exit_code == 2 and "nowhere.csv: no such file or folder" in missing.output


def _with_extra(extra_labels, own=300, extra=1500):
    """A binary problem of `own` rows and `extra` more from the same generator, their labels `extra_labels`(y)."""
    frame = synthetic_frame("binary", own + extra + 100, seed=3)
    train, more, test = frame.iloc[:own], frame.iloc[own:own + extra].copy(), frame.iloc[own + extra:].drop(columns="target")
    more["target"] = extra_labels(more["target"].to_numpy())
    comp = competition()
    merged, test = with_extra(train, test, conform(more, "more.csv", comp, train, test))
    problem = make_problem(comp, merged, test)
    return problem, fold_features(problem, make_folds(problem, 5))


def test_extra_rows_that_help_on_the_folds_are_kept_and_those_that_hurt_are_left_out():
    from automl.baselines import choose_extra

    helping = choose_extra(*_with_extra(lambda y: y))  # more rows of the same table
    assert helping["kept"] and helping["with"] > helping["without"] and helping["folds"] == [0, 1, 2]
    assert helping["note"].startswith("the 1,500 extra rows are kept: auc ")
    hurting = choose_extra(*_with_extra(lambda y: 1 - y))  # another generator: the labels the other way round
    assert not hurting["kept"] and hurting["with"] < hurting["without"]
    assert "the 1,500 extra rows are left out: auc" in hurting["note"] and "--extra-train-always keeps them" in hurting["note"]


@pytest.mark.e2e
def test_a_run_leaves_out_extra_rows_that_hurt_and_says_so(tmp_path):
    data = _bundle(tmp_path / "bundle")
    original = synthetic_frame("binary", 600, seed=7)
    original["target"] = 1 - original["target"]
    original.to_csv(tmp_path / "original.csv", index=False)
    result = invoke("run", "extra-hurts", "--from", data, "--models", "dummy,linear,hist_gb", "--metric", "auc",
                    "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data", "--extra-train", tmp_path / "original.csv")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "extra rows: the 600 extra rows are left out: auc" in output
    assert "not trained with the 600 extra rows (--extra-train): they did not help on the folds" in output
    run_dir = tmp_path / "runs" / "extra-hurts" / "default"
    assert np.load(run_dir / "models" / "hist_gb" / "oof.npy").shape[0] == 300  # the own rows alone trained
    assert not json.loads((run_dir / "extra.json").read_text())["kept"]
    assert "left out. Whether they help: the 600 extra rows are left out" in (run_dir / "report.html").read_text()
