"""`automl demo`: a whole offline competition from scikit-learn's bundled data."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from automl.cli import app


def test_demo_runs_end_to_end_offline_to_a_valid_submission(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--timeout", "12"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "demo-breast-cancer" / "default"
    submission = pd.read_csv(run_dir / "submission.csv")
    test = pd.read_csv(tmp_path / "data" / "demo-breast-cancer" / "test.csv")
    assert list(submission.columns) == ["id", "diagnosis"]
    assert submission["id"].tolist() == test["id"].tolist()
    assert set(submission["diagnosis"]) <= {"benign", "malignant"}
    assert (run_dir / "report.html").is_file()
    holdout = float(result.output.rsplit(":", 1)[1])
    assert holdout > 0.85  # a real model, scored on labels it never saw
    valid = CliRunner().invoke(app, ["validate", str(run_dir / "submission.csv"), "demo-breast-cancer"])
    assert valid.exit_code == 0, valid.output
