"""`automl submit` and `automl submissions` with the real kaggle client and the stand-in server."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import bundle
from typer.testing import CliRunner

from automl.cli import app

runner = CliRunner()


@pytest.fixture
def finished_run(tmp_path):
    """A titanic run directory holding a valid submission (baselines only: seconds)."""
    args = ["run", "titanic", "--from", str(bundle("titanic")), "--models", "dummy,linear",
            "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return tmp_path


def _submit(root, *extra):
    return runner.invoke(app, ["submit", "titanic", "-m", "first try", "--runs-dir", str(root / "runs"),
                               "--data-dir", str(root / "data"), *extra])


def test_submit_uploads_the_file_and_records_it(kaggle, finished_run):
    result = _submit(finished_run)
    assert result.exit_code == 0, result.output
    sent = kaggle.submissions["titanic"][-1]
    run_dir = finished_run / "runs" / "titanic" / "default"
    assert sent.content == (run_dir / "submission.csv").read_bytes()
    assert sent.description == "first try"
    assert [c.path.rsplit("/", 1)[-1] for c in kaggle.requests if c.method == "POST"][-2:] == \
        ["StartSubmissionUpload", "CreateSubmission"]
    record = json.loads((run_dir / "submissions.json").read_text())[-1]
    assert record["message"] == "first try" and record["model"] == "linear" and len(record["sha256"]) == 64
    assert "0123456789abcdef-secret" not in result.output

    listed = runner.invoke(app, ["submissions", "titanic"])
    assert listed.exit_code == 0, listed.output
    assert "first try" in listed.output and kaggle.public_score in listed.output


def test_an_invalid_submission_is_refused_before_upload(kaggle, finished_run):
    path = finished_run / "runs" / "titanic" / "default" / "submission.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-5]) + "\n")  # five test ids missing
    result = _submit(finished_run)
    assert result.exit_code == 1
    assert "would be rejected: has 413 rows; the sample submission has 418" in result.output
    assert not kaggle.calls("StartSubmissionUpload")


def test_rules_not_accepted_prints_the_rules_page(kaggle, finished_run):
    kaggle.status_for["titanic"] = 403
    result = _submit(finished_run)
    assert result.exit_code == 1
    assert "https://www.kaggle.com/competitions/titanic/rules" in result.output
    assert result.output.count("\n") <= 2  # one line, no traceback


def test_submit_without_a_run_says_how_to_make_one(kaggle, tmp_path):
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
    result = runner.invoke(app, ["submit", "titanic", "-m", "x", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert "submission.csv does not exist; run `automl run titanic --name default` first" in result.output
