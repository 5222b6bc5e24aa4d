"""`automl kernel SLUG`: a Kaggle notebook that runs `automl run` inside Kaggle with the internet off.

Code competitions, and any notebook with internet off, can install nothing from PyPI, so
everything travels as inputs attached to the notebook. The folder written holds:

    kernel-metadata.json  the notebook's settings: the competition and the wheelhouse attached,
                          internet off, a GPU when asked for
    automl-SLUG.ipynb     installs automl from the wheelhouse (pip --no-index), runs `automl run`
                          on the mounted competition, writes /kaggle/working/submission.csv and
                          validates it, as Kaggle will
    wheelhouse/           automl's wheel and every pure-Python package of its dependency tree
                          (their own wheels, from the registry); the compiled ones (torch, numpy,
                          pandas, scikit-learn, LightGBM, XGBoost, CatBoost...) are in Kaggle's
                          image. Its dataset-metadata.json makes it the dataset USER/automl-wheelhouse.

`--push` (push_dataset, push_kernel) uploads the wheelhouse as that private dataset
(a new version when it exists), waits until Kaggle has processed it, then pushes and runs the
notebook with the kaggle client's kernels push.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

from automl import competition
from automl.errors import AutomlError
from automl.metrics import unambiguous_metric

log = logging.getLogger("automl")
WHEELHOUSE = "automl-wheelhouse"  # the dataset's slug, and the folder's name on Kaggle
DATA_DIR = "/tmp/automl-data"  # writable scratch on Kaggle; the competition itself is used in place
USER_PLACEHOLDER = "YOUR-KAGGLE-USERNAME"


@dataclass(frozen=True)
class Kernel:
    """A written notebook folder: where, its Kaggle id, and what the wheelhouse holds."""

    folder: Path
    ref: str
    wheels: tuple[str, ...]
    from_image: tuple[str, ...]  # compiled dependencies the notebook takes from Kaggle's image


def write(slug: str, folder: Path, *, user: str | None, timeout: float, models: str = "all", gpu: bool = False,
          metric: str | None = None, record: dict | None = None) -> Kernel:
    """Write the notebook folder for `slug` (its wheelhouse built or brought up to date)."""
    folder.mkdir(parents=True, exist_ok=True)
    owner = user or USER_PLACEHOLDER
    wheels, from_image = build_wheelhouse(folder / "wheelhouse", owner)
    ref = f"{owner}/{kernel_slug(slug)}"
    run_args = ["--timeout", f"{timeout:g}", "--models", models, "--device", "cuda" if gpu else "cpu"]
    metric = metric or _metric_from_record(slug, record)
    if metric:
        run_args += ["--metric", metric]
    spec = competition.spec_path(slug)
    shipped = {competition.SOURCE_TREE.resolve(), competition.PACKAGED.resolve()}  # in automl's wheel already
    own_spec = spec.read_text() if spec is not None and spec.resolve().parent not in shipped else None
    notebook = _notebook(slug, run_args, own_spec, f"{owner}/{WHEELHOUSE}")
    (folder / f"{kernel_slug(slug)}.ipynb").write_text(json.dumps(notebook, indent=1) + "\n")
    settings = {"id": ref, "title": kernel_slug(slug), "code_file": f"{kernel_slug(slug)}.ipynb", "language": "python",
                "kernel_type": "notebook", "is_private": True, "enable_gpu": gpu, "enable_internet": False,
                "dataset_sources": [f"{owner}/{WHEELHOUSE}"], "competition_sources": [slug],
                "kernel_sources": [], "model_sources": []}
    (folder / "kernel-metadata.json").write_text(json.dumps(settings, indent=1) + "\n")
    return Kernel(folder, ref, tuple(wheels), tuple(from_image))


def make(slug: str, folder: Path, *, user: str | None, timeout: float, models: str = "all", gpu: bool = False,
         metric: str | None = None, push: bool = False) -> tuple[Kernel, list[str]]:
    """Write the folder and, with `push`, upload the wheelhouse and push the notebook; returns the
    folder and one line per thing pushed."""
    from automl.fetch import competition_record, has_credentials, kaggle_username, push_dataset, push_kernel
    from automl.runner import model_names

    model_names(models)  # an unknown name fails here, not an hour later on Kaggle

    if user is None and (push or has_credentials()):
        user = kaggle_username()
    elif user is None:
        log.warning("no Kaggle credentials: the notebook's id says %s; pass --user NAME (or push with credentials)",
                    USER_PLACEHOLDER)
    record = None
    if metric is None and competition.spec_path(slug) is None and has_credentials():
        record = competition_record(slug)
    kernel = write(slug, folder, user=user, timeout=timeout, models=models, gpu=gpu, metric=metric, record=record)
    if not push:
        return kernel, []
    notes = f"automl {metadata.version('automl')} for {kernel.ref}"
    return kernel, [push_dataset(folder / "wheelhouse", notes), "notebook " + push_kernel(folder)]


def kernel_slug(slug: str) -> str:
    """The notebook's slug (and title, which Kaggle turns into the same slug): at most 50 characters."""
    return f"automl-{slug}"[:50].rstrip("-")


def build_wheelhouse(folder: Path, owner: str) -> tuple[list[str], list[str]]:
    """automl's wheel, built from its source, and the pure-Python dependencies' wheels, each at the
    version installed here (a wheel already in the folder is kept); returns the wheels and the
    compiled packages left to Kaggle's image."""
    folder.mkdir(parents=True, exist_ok=True)
    pure, compiled = dependencies()
    wanted = {_wheel_prefix(name, version) for name, version in pure}
    for stale in folder.glob("*.whl"):  # other versions, and automl's own wheel, which is always rebuilt
        if stale.name.split("-")[0].lower() == "automl" or "-".join(stale.name.split("-")[:2]).lower() not in wanted:
            stale.unlink()
    have = {"-".join(p.name.split("-")[:2]).lower() for p in folder.glob("*.whl")}
    missing = [f"{name}=={version}" for name, version in pure if _wheel_prefix(name, version) not in have]
    if missing:
        _pip(["wheel", "--no-deps", "--wheel-dir", str(folder), *missing], "download the dependencies' wheels")
    _pip(["wheel", "--no-deps", "--wheel-dir", str(folder), str(_source_tree())], "build automl's wheel")
    title = "automl wheelhouse"
    (folder / "dataset-metadata.json").write_text(json.dumps(
        {"id": f"{owner}/{WHEELHOUSE}", "title": title, "licenses": [{"name": "other"}],
         "description": "automl and the pure-Python packages it needs beyond Kaggle's image, for notebooks with "
                        "the internet off: pip install --no-index --find-links /kaggle/input/automl-wheelhouse automl"},
        indent=1) + "\n")
    return sorted(p.name for p in folder.glob("*.whl")), compiled


def dependencies() -> tuple[list[tuple[str, str]], list[str]]:
    """automl's installed dependency tree: (name, version) of each pure-Python package, walked through
    pure packages only (a compiled package's own dependencies come with it in Kaggle's image), and the
    names of the compiled packages."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pure: dict[str, str] = {}
    compiled: set[str] = set()
    todo = [Requirement(r) for r in metadata.distribution("automl").requires or []]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an optional extra (dev, postgres) or another platform's
        if name in pure or name in compiled:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: not needed on this Python
        if not _is_pure(dist):
            compiled.add(name)
            continue
        pure[name] = dist.version
        todo += [Requirement(r) for r in dist.requires or []]
    return sorted(pure.items()), sorted(compiled)


def _is_pure(dist: metadata.Distribution) -> bool:
    wheel = dist.read_text("WHEEL") or ""
    return "Root-Is-Purelib: true" in wheel and re.search(r"^Tag: py[23]?\S*-none-any$", wheel, re.M) is not None


def _wheel_prefix(name: str, version: str) -> str:
    """How a wheel's file name starts (distribution and version, normalised as in wheel names)."""
    return f"{re.sub(r'[-_.]+', '_', name)}-{version}".lower()


def _source_tree() -> Path:
    """automl's source checkout (an editable install, as `make install` makes)."""
    found = json.loads(metadata.distribution("automl").read_text("direct_url.json") or "{}")
    url = found.get("url", "")
    root = Path(url.removeprefix("file://")) if url.startswith("file://") else Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise AutomlError("automl kernel builds automl's wheel from its source: install automl from a checkout "
                          "(make install, or pip install -e PATH)")
    return root


def _pip(args: list[str], what: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    if done.returncode:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise AutomlError(f"pip could not {what}: {lines[-1] if lines else 'exit ' + str(done.returncode)}")


def _metric_from_record(slug: str, record: dict | None) -> str | None:
    """The metric to pass in the notebook when there is no YAML for `slug` (Kaggle's record names it
    here, where the API can be reached); None leaves it to the YAML or the guess."""
    if competition.spec_path(slug) is not None:
        return None
    display = (record or {}).get("evaluation_metric")
    known = unambiguous_metric(display) if display else None
    if known is None:
        log.warning("%s: no competitions/%s.yaml and Kaggle's metric %s; the notebook guesses the metric from the "
                    "columns: pass --metric NAME", slug, slug,
                    f"{display!r} is not one automl knows" if display else "could not be read")
    return known


def _notebook(slug: str, run_args: list[str], spec: str | None, wheelhouse: str) -> dict:
    """The notebook: a markdown cell saying what it does, then code cells that are plain Python
    (no shell magics), so the same code runs outside Jupyter."""
    cells = [_markdown(f"# automl on {slug}\n\nGenerated on {date.today():%Y-%m-%d} by `automl kernel {slug}`. "
                       "It runs with the internet off: automl comes from the attached dataset "
                       f"`{wheelhouse}`, the data from the competition's own input. The run's leaderboard, report and "
                       "models are in `/kaggle/working/automl`; `submission.csv` beside them is the one to submit.")]
    cells.append(_code(SETUP.format(slug=json.dumps(slug), args=json.dumps(run_args), wheelhouse=wheelhouse)))
    if spec is not None:  # a spec the user wrote: it is not in the wheel, so the notebook carries it
        cells.append(_code(f"(WORKING / 'competitions').mkdir(parents=True, exist_ok=True)\n"
                           f"(WORKING / 'competitions' / f'{{SLUG}}.yaml').write_text({spec!r})"))
    cells += [_code(INSTALL), _code(RUN), _code(SUBMIT)]
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _markdown(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)}


def _code(text: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": text.strip("\n").splitlines(keepends=True)}


def code_of(notebook: Path) -> str:
    """The notebook's code cells as one Python script (how the tests run it)."""
    cells = json.loads(notebook.read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code") + "\n"


SETUP = '''
import os
import shutil
import subprocess
import sys
from pathlib import Path

SLUG = {slug}
RUN = {args}
METRIC = RUN[RUN.index("--metric"):][:2] if "--metric" in RUN else []
INPUT, WORKING = Path("/kaggle/input"), Path("/kaggle/working")
os.chdir(WORKING)
os.environ.setdefault("COLUMNS", "110")  # automl's lines as wide as a notebook's output, not a terminal's 80


def find(match, depth=4):
    """The first folder under /kaggle/input, breadth first, that `match` accepts."""
    level = [INPUT]
    for _ in range(depth):
        level = sorted(p for folder in level for p in folder.iterdir() if p.is_dir())
        for folder in level:
            if match(folder):
                return folder
    return None


def run(*args):
    """Run a command, its output shown in the notebook as it comes; stop the notebook if it fails."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            print(line, end="")
    if process.returncode:
        raise SystemExit(f"{{args[2:4]}} failed (exit {{process.returncode}}); its output is above")


wheels = find(lambda folder: any(folder.glob("automl-*.whl")))
if wheels is None:
    raise SystemExit("no automl wheel under /kaggle/input: attach the dataset {wheelhouse} (Add Input)")
data = find(lambda folder: folder.name == SLUG and folder != wheels)
if data is None:
    raise SystemExit(f"the competition's data is not under /kaggle/input: add the competition {{SLUG}} as an input")
print(f"automl from {{wheels}}, data from {{data}}")
'''

INSTALL = '''
# Offline: every package comes from the wheelhouse or is already in Kaggle's image.
run(sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "--quiet",
    "--disable-pip-version-check", "automl")
'''

RUN = '''
os.environ["AUTOML_KAGGLE_INPUT"] = str(data.parent)  # the mounted competition, used in place (read-only)
run(sys.executable, "-m", "automl.cli", "run", SLUG, *RUN, "--runs-dir", str(WORKING / "automl"),
    "--data-dir", "''' + DATA_DIR + '''")
'''

SUBMIT = '''
shutil.copy(WORKING / "automl" / SLUG / "default" / "submission.csv", WORKING / "submission.csv")
run(sys.executable, "-m", "automl.cli", "validate", str(WORKING / "submission.csv"), SLUG, *METRIC,
    "--data-dir", "''' + DATA_DIR + '''")
'''
