"""Many workers on one study: PostgreSQL, SIGKILL of a worker, local --workers, the run lock, resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from conftest import bundle
from optuna.trial import TrialState
from postgres import postgres_url
from typer.testing import CliRunner

from automl.cli import app
from automl.rundir import locked
from automl.workers import MAX_PROCESSES, processes_for

# Polling a study while its worker is still creating it: no study yet (KeyError), or the
# storage's tables half made (the poller's own schema setup collides with the worker's).
STARTING = (KeyError, sqlalchemy.exc.SQLAlchemyError)

runner = CliRunner()
RECIPE = """numeric: quantile
trials: 6
max_epochs: 3
patience: 2
pruner: none
keep_best: 2
trial_share: 1.0
space:
  family: {choice: [mlp]}
  optimizer: {choice: [adamw]}
  lr: {float: [0.001, 0.01], log: true}
  batch_size: {choice: [64, 128]}
when:
  mlp:
    depth: {int: [1, 2]}
    width: {int: [8, 64], log: true}
"""


@pytest.fixture(scope="module")
def postgres():
    with postgres_url() as (url, why):
        if url is None:
            pytest.skip(why)
        yield url


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE)
    return path


def _worker(tmp_path, recipe, storage, name, trials):
    command = [sys.executable, "-m", "automl.cli", "worker", "titanic", "--from", str(bundle("titanic")),
               "--name", name, "--trials", str(trials), "--pipeline", str(recipe), "--device", "cpu",
               "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    if storage:
        command += ["--storage", storage]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finished(study) -> list:
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_two_workers_share_one_postgres_study(tmp_path, recipe, postgres):
    # enough trials that a worker whose imports end a few seconds after the other's still finds some left
    workers = [_worker(tmp_path, recipe, postgres, "shared", 30) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = optuna.load_study(study_name="titanic/shared", storage=postgres)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len(_finished(study)) == 30
    assert len({t.user_attrs["worker"] for t in _finished(study)}) == 2
    assert all("worker" in t.user_attrs for t in study.trials)  # both did work; surplus trials say who started them
    bests = {re.search(r"best (#\d+ [\d.]+)", out).group(1) for out in outputs}
    assert bests == {f"#{study.best_trial.number} {study.best_trial.value:.6f}"}


def test_a_killed_worker_leaves_no_running_trial_and_the_study_completes(tmp_path, recipe, postgres):
    # One-fold trials take a fraction of a second: enough of them that the victim is still in one when killed.
    victim = _worker(tmp_path, recipe, postgres, "killed", 24)
    survivor = _worker(tmp_path, recipe, postgres, "killed", 24)
    storage = optuna.storages.RDBStorage(postgres)

    def victims_running() -> list:
        study = optuna.load_study(study_name="titanic/killed", storage=storage)
        return [t for t in study.get_trials(states=(TrialState.RUNNING,))
                if t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the victim is inside a trial
        try:
            running = victims_running()
        except STARTING:
            time.sleep(0.2)
            continue
        if running:
            victim.send_signal(signal.SIGSTOP)  # frozen: the trial cannot end between this look and the kill
            if victims_running():
                break
            victim.send_signal(signal.SIGCONT)  # it finished that trial as it was stopped: wait for the next
        time.sleep(0.1)
    else:
        pytest.fail("the first worker never started a trial")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    output = survivor.communicate(timeout=300)[0]
    assert survivor.returncode == 0, output
    study = optuna.load_study(study_name="titanic/killed", storage=storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert len(_finished(study)) == 24
    killed = study.get_trials(states=(TrialState.FAIL,))
    # the victim's trial (killed inside it), failed and queued again with the same parameters
    assert killed and all(t.user_attrs.get("worker", f":{victim.pid}").endswith(f":{victim.pid}") for t in killed)


def test_run_with_two_local_workers(tmp_path, recipe):
    args = ["run", "titanic", "--from", str(bundle("titanic")), "--models", "linear,networks", "--workers", "2",
            "--trials", "80", "--pipeline", str(recipe), "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
            "--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "with 2 workers" in result.output
    run_dir = tmp_path / "runs" / "titanic" / "default"
    study = optuna.load_study(study_name="titanic/default", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert len(_finished(study)) == 80  # one-fold trials are short: enough of them that the worker joins in time
    assert len({t.user_attrs["worker"] for t in _finished(study)}) == 2
    assert all("worker" in t.user_attrs for t in study.trials)  # surplus trials too say who started them
    searched, completed = list(run_dir.glob("worker-*-search.log")), list(run_dir.glob("worker-*-complete.log"))
    assert len(searched) == 1 and "has 80 complete" in searched[0].read_text()
    assert len(completed) == 1 and "completed" in completed[0].read_text()


def test_search_processes_follow_the_cores_on_a_cpu_and_stay_one_on_a_gpu(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert processes_for("cpu") == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert processes_for("cpu") == MAX_PROCESSES
    assert processes_for("cuda") == 1  # CUDA does not survive a fork


def test_a_second_run_on_a_held_run_directory_is_refused(tmp_path):
    run_dir = tmp_path / "runs" / "titanic" / "default"
    with locked(run_dir):
        result = runner.invoke(app, ["run", "titanic", "--from", str(bundle("titanic")), "--models", "dummy",
                                     "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert f"is in use by automl run (pid {os.getpid()}); wait for it to finish, or pass --name" in result.output


def test_a_resumed_run_after_sigkill_loses_no_finished_trial(tmp_path, recipe):
    command = [sys.executable, "-m", "automl.cli", "run", "titanic", "--from", str(bundle("titanic")),
               "--models", "networks", "--trials", "6", "--pipeline", str(recipe), "--device", "cpu", "--workers", "2",
               "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    db = tmp_path / "runs" / "titanic" / "default" / "study.db"
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, before = time.monotonic() + 120, []
    while time.monotonic() < deadline and len(before) < 2:
        time.sleep(0.3)
        if db.is_file():
            try:
                before = _finished(optuna.load_study(study_name="titanic/default", storage=f"sqlite:///{db}"))
            except STARTING:
                before = []
    first.send_signal(signal.SIGKILL)
    first.wait()
    study = optuna.load_study(study_name="titanic/default", storage=f"sqlite:///{db}")
    kept = {t.number: t.value for t in _finished(study)}
    assert len(kept) >= 2
    # the run's forked search process dies with it (it would hold the run's lock and go on training)
    forks = {int(t.user_attrs["worker"].split(":")[1]) for t in study.trials if "worker" in t.user_attrs} - {first.pid}
    time.sleep(1)
    assert forks and not any(_alive(pid) for pid in forks)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="titanic/default", storage=f"sqlite:///{db}")
    after = {t.number: t.value for t in _finished(study)}
    assert all(after[n] == v for n, v in kept.items())  # nothing finished was lost or redone
    assert len(after) == 6
    assert (tmp_path / "runs" / "titanic" / "default" / "submission.csv").is_file()


def _alive(pid: int) -> bool:
    """Running, not a zombie that no one has reaped yet (in a container, PID 1 may never)."""
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_run_on_another_machine_finishes_a_shared_study(tmp_path, recipe, postgres):
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    machine_a.mkdir()
    worker = _worker(machine_a, recipe, postgres, "split", 4)
    output = worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, output
    args = ["run", "titanic", "--from", str(bundle("titanic")), "--models", "linear,networks", "--storage", postgres,
            "--name", "split", "--trials", "4", "--pipeline", str(recipe), "--device", "cpu",
            "--runs-dir", str(machine_b / "runs"), "--data-dir", str(machine_b / "data")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="titanic/split", storage=postgres)
    assert len(_finished(study)) == 4  # nothing new was needed
    run_b = machine_b / "runs" / "titanic" / "split"
    # the best, searched on machine A, was rebuilt here from its parameters and trained on every fold
    assert (run_b / "trials" / str(study.best_trial.number) / "oof.npy").is_file()
    board = (run_b / "leaderboard.csv").read_text()
    assert any(f"#{t.number}," in board for t in _finished(study))  # the best cross-validated network


def test_a_worker_with_other_folds_is_refused(tmp_path, recipe, postgres):
    first = _worker(tmp_path, recipe, postgres, "folds", 1)
    assert first.wait(timeout=300) == 0
    other = [sys.executable, "-m", "automl.cli", "worker", "titanic", "--from", str(bundle("titanic")), "--name", "folds",
             "--trials", "2", "--folds", "3", "--pipeline", str(recipe), "--storage", postgres,
             "--runs-dir", str(tmp_path / "elsewhere"), "--data-dir", str(tmp_path / "data")]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert "was made from different data, folds or preprocessing" in refused.stderr
    assert "secret" not in refused.stderr


def test_an_unreachable_storage_is_one_line_without_the_password(tmp_path, recipe):
    result = runner.invoke(app, ["worker", "titanic", "--from", str(bundle("titanic")), "--trials", "1",
                                 "--pipeline", str(recipe), "--storage", "postgresql+psycopg2://me:hunter2@127.0.0.1:1/x",
                                 "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "--storage postgresql+psycopg2://me:***@127.0.0.1:1/x: cannot open it as an Optuna storage" in result.output
    assert "hunter2" not in result.output
