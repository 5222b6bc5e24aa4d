"""report.html: self-contained, with every figure, regenerated from the run directory."""

from __future__ import annotations

import json
import re

import pandas as pd
from conftest import bundle
from typer.testing import CliRunner

from automl.cli import app

runner = CliRunner()


def test_a_run_writes_a_self_contained_report_and_report_regenerates_it(tmp_path):
    args = ["run", "titanic", "--from", str(bundle("titanic")), "--models", "linear,hist_gb,networks",
            "--pipeline", "quick", "--trials", "3", "--runs-dir", str(tmp_path / "runs"),
            "--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "titanic" / "default"
    # every network completed on every fold is a row, so each one the blend or stack weighs is on the leaderboard
    board = pd.read_csv(run_dir / "leaderboard.csv")
    completed = {p.parent.name for p in (run_dir / "trials").glob("*/oof.npy")}
    assert len(completed) >= 2 and completed == {m.split("#")[1] for m in board["model"] if "#" in m}
    info = json.loads((run_dir / "models" / "ensemble" / "result.json").read_text())["info"]
    weighed = {m for m in {**info["weights"], **info.get("greedy_weights", {})} if "#" in m}
    assert weighed and weighed <= set(board["model"])
    page = (run_dir / "report.html").read_text()
    # Nothing external: no scripts, stylesheets, fonts or images fetched from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    images = re.findall(r"src='data:image/png;base64,", page)
    names = {p.name for p in (run_dir / "figures").glob("*.png")}
    assert {"leaderboard_chart.png", "optimization_history.png", "best_trial_learning_curve.png",
            "ensemble_weights.png"} <= names
    assert len(images) == len(names)
    (run_dir / "report.html").unlink()
    again = runner.invoke(app, ["report", str(run_dir)])
    assert again.exit_code == 0 and (run_dir / "report.html").is_file()


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "no leaderboard.csv; is this a run directory" in result.output
