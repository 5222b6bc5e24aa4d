"""`automl kernel`: the notebook folder, its push through the real kaggle client to the stand-in
server, and the notebook itself run as Kaggle runs it: the competition and the wheelhouse mounted
read-only under /kaggle/input, no network, and a Python whose packages are Kaggle-like (every
compiled package there, none of the wheelhouse's)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from conftest import bundle
from typer.testing import CliRunner

from automl import api, kernel
from automl.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def notebook_folder(tmp_path_factory):
    """`automl kernel titanic` once for the module (building the wheelhouse takes seconds)."""
    folder = tmp_path_factory.mktemp("kernel") / "titanic"
    result = runner.invoke(app, ["kernel", "titanic", "--out", str(folder), "--user", "competitor",
                                 "--timeout", "10", "--models", "dummy,lightgbm,networks"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "push it: automl kernel titanic --push" in result.output
    return folder


def test_the_folder_is_a_kaggle_notebook_with_internet_off(notebook_folder):
    settings = json.loads((notebook_folder / "kernel-metadata.json").read_text())
    assert settings["id"] == "competitor/automl-titanic" and settings["code_file"] == "automl-titanic.ipynb"
    assert settings["enable_internet"] is False and settings["competition_sources"] == ["titanic"]
    assert settings["dataset_sources"] == ["competitor/automl-wheelhouse"]
    notebook = json.loads((notebook_folder / "automl-titanic.ipynb").read_text())
    assert notebook["nbformat"] == 4 and notebook["cells"][0]["cell_type"] == "markdown"
    code = kernel.code_of(notebook_folder / "automl-titanic.ipynb")
    compile(code, "notebook", "exec")  # plain Python, no shell magics
    assert '"--no-index"' in code and '"--timeout", "10"' in code
    dataset = json.loads((notebook_folder / "wheelhouse" / "dataset-metadata.json").read_text())
    assert dataset["id"] == "competitor/automl-wheelhouse" and len(dataset["licenses"]) == 1


def test_the_wheelhouse_holds_automl_and_its_pure_python_dependencies(notebook_folder):
    wheels = sorted(p.name for p in (notebook_folder / "wheelhouse").glob("*.whl"))
    names = {w.split("-")[0].lower() for w in wheels}
    assert {"automl", "lightning", "optuna", "optuna_integration", "tabm", "rtdl_num_embeddings", "typer"} <= names
    assert all(w.endswith("-none-any.whl") for w in wheels)  # nothing compiled: Kaggle's image has those
    assert not {"torch", "numpy", "pandas", "lightgbm", "xgboost", "catboost", "scikit_learn"} & names
    with zipfile.ZipFile(next((notebook_folder / "wheelhouse").glob("automl-*.whl"))) as wheel:
        assert "automl/kernel.py" in wheel.namelist()
        assert "automl/_data/competitions/titanic.yaml" in wheel.namelist()


def test_dependencies_walk_through_pure_packages_only():
    pure, compiled = kernel.dependencies()
    pure_names = dict(pure)
    assert pure_names["lightning"] == metadata.version("lightning")
    assert "torch" in compiled and "torch" not in pure_names
    assert "pytest" not in pure_names and "psycopg2-binary" not in compiled  # extras are not shipped
    assert "filelock" not in pure_names  # torch's own dependency: it comes with torch in Kaggle's image


def test_push_uploads_the_wheelhouse_then_the_notebook(kaggle, notebook_folder, monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.import_module("automl.fetch"), "POLL_SECONDS", 0.01)
    monkeypatch.setattr(kaggle, "dataset_pending", 2)  # Kaggle processes each upload a while: the push waits for it
    notebook_folder = shutil.copytree(notebook_folder, tmp_path / "titanic")  # the module's folder stays as it was made
    for attempt in (1, 2):
        result = runner.invoke(app, ["kernel", "titanic", "--out", str(notebook_folder), "--timeout", "20",
                                     "--models", "dummy,linear,lightgbm,networks", "--push"])
        assert result.exit_code == 0, result.output
        assert ("created" if attempt == 1 else "new version of") in result.output
        assert f"https://www.kaggle.com/code/competitor/automl-titanic (version {attempt})" in result.output
    versions = kaggle.datasets["competitor/automl-wheelhouse"]
    assert len(versions) == 2
    wheelhouse = notebook_folder / "wheelhouse"
    assert versions[-1] == {p.name: p.read_bytes() for p in wheelhouse.glob("*.whl")}
    saved = kaggle.kernels["competitor/automl-titanic"][-1]
    assert saved["enableInternet"] is False and saved["competitionDataSources"] == ["titanic"]
    assert saved["datasetDataSources"] == ["competitor/automl-wheelhouse"] and saved["kernelType"] == "notebook"
    assert "--no-index" in saved["text"]
    posts = [r.path.rsplit("/", 1)[-1] for r in kaggle.requests if r.method == "POST"]
    statuses = [p for p in posts[posts.index("CreateDatasetVersion"):] if p == "GetDatasetStatus"]
    assert len(statuses) >= 3  # asked until the new version was processed
    first = posts.index("SaveKernel")  # each push: the wheelhouse first (the notebook mounts it), then the notebook
    assert "CreateDataset" in posts[:first] and "CreateDatasetVersion" in posts[first + 1:] and posts[-1] == "SaveKernel"


def test_push_without_credentials_says_where_they_go(kaggle, notebook_folder, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    result = runner.invoke(app, ["kernel", "titanic", "--out", str(notebook_folder), "--push"])
    assert result.exit_code == 1
    assert "no Kaggle credentials found" in result.output and result.output.count("\n") <= 2


def test_an_unknown_metric_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["kernel", "titanic", "--out", str(tmp_path / "k"), "--metric", "acc"])
    assert result.exit_code == 2 and "--metric" in result.output
    assert not (tmp_path / "k").exists()


def _kaggle_like_python(root: Path, shipped: set[str]) -> Path:
    """A Python whose packages are this environment's minus automl and the wheelhouse's (as in
    Kaggle's image, which has the compiled ones): a venv that sees the rest through a .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "python")], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    left_out = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name == "automl" or name in shipped:
            left_out |= {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    image = root / "image"
    image.mkdir()
    for entry in ours.iterdir():
        if entry.name not in left_out and not entry.name.startswith("__editable__"):
            (image / entry.name).symlink_to(entry)
    site = next((root / "python" / "lib").glob("python3*/site-packages"))
    (site / "kaggle-image.pth").write_text(f"{image}\n")
    return root / "python" / "bin" / "python"


def test_the_notebook_runs_offline_on_the_mounted_competition(notebook_folder, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("running the notebook as Kaggle does (mounted /kaggle, no network) needs root and unshare")
    made_mount_point = not Path("/kaggle").exists()
    try:
        Path("/kaggle").mkdir(exist_ok=True)
    except OSError as exc:
        pytest.skip(f"cannot make the /kaggle mount point ({exc})")
    kaggle_dir = tmp_path / "kaggle"
    with zipfile.ZipFile(bundle("titanic")) as source:
        source.extractall(kaggle_dir / "input" / "titanic")  # Kaggle mounts the competition unpacked
    shutil.copytree(notebook_folder / "wheelhouse", kaggle_dir / "input" / "automl-wheelhouse")
    (kaggle_dir / "working").mkdir()
    shipped = {w.name.split("-")[0].lower().replace("_", "-") for w in (notebook_folder / "wheelhouse").glob("*.whl")}
    python = _kaggle_like_python(tmp_path, shipped)
    (tmp_path / "notebook.py").write_text(kernel.code_of(notebook_folder / "automl-titanic.ipynb"))
    script = ('mount --bind "$1" /kaggle && mount --bind "$1/input" /kaggle/input && '
              'mount -o remount,bind,ro /kaggle/input && exec "$2" "$3"')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}  # no mirror, no credentials
    try:
        done = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script, "sh",
                               str(kaggle_dir), str(python), str(tmp_path / "notebook.py")],
                              capture_output=True, text=True, env=env, timeout=300)
    finally:
        if made_mount_point:
            Path("/kaggle").rmdir()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "is a valid submission for titanic" in done.stdout
    submission = kaggle_dir / "working" / "submission.csv"
    assert api.validate(submission, "titanic", data_dir=tmp_path / "data", source=bundle("titanic")) == []
    assert (kaggle_dir / "working" / "automl" / "titanic" / "default" / "leaderboard.csv").is_file()
    installed = subprocess.run([str(python), "-c", "import automl, sys; print(automl.__file__)"],
                               capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(tmp_path / "python") in installed.stdout  # automl came from the wheel, not this checkout
