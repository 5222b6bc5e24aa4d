"""Pipeline recipes (pipelines/*.yaml): the search space and budget, as plain data.

`load_pipeline` validates a recipe when it is read (an unknown key or a malformed range
is an error naming the file); `suggest` turns its space into one trial's parameters,
with the same names the networks take as constructor arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml

from automl.errors import AutomlError
from automl.preprocess import NUMERIC_SCALINGS

PRUNERS = ("median", "hyperband", "none")
SOURCE_TREE = Path(__file__).resolve().parent.parent / "pipelines"
PACKAGED = Path(__file__).resolve().parent / "_data" / "pipelines"


@dataclass(frozen=True)
class Pipeline:
    path: str
    numeric: str = "quantile"
    trials: int = 100
    timeout: float = 600
    max_epochs: int = 40
    patience: int = 6
    pruner: str = "median"
    keep_best: int = 5
    trial_share: float = 0.1
    network_share: float = 0.5
    complete_best: int = 3
    complete_share: float = 0.3
    text_model: str | None = None  # a local Hugging Face model folder, as --text-model (which overrides it)
    defaults: list = field(default_factory=list)
    space: dict = field(default_factory=dict)
    when: dict = field(default_factory=dict)


KEYS = ("numeric", "trials", "timeout", "max_epochs", "patience", "pruner", "keep_best", "trial_share", "network_share",
        "complete_best", "complete_share", "text_model", "defaults", "space", "when")
KINDS = ("choice", "int", "float")


def pipeline_path(name: str) -> Path:
    """A pipeline by file path, or by name from ./pipelines or the shipped ones."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise AutomlError(f"--pipeline {name}: no such file")
        return candidate
    for folder in (Path.cwd() / "pipelines", SOURCE_TREE, PACKAGED):
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    shipped = sorted(p.stem for p in SOURCE_TREE.glob("*.yaml")) or sorted(p.stem for p in PACKAGED.glob("*.yaml"))
    raise AutomlError(f"--pipeline {name!r}: not found; expected a .yaml path or one of {', '.join(shipped)}")


def choose(problem) -> str:
    """The recipe for what the data holds: image for pixel grids, text for free text, else tabular."""
    from automl.preprocess import Preprocessor

    comp = problem.comp
    sample = problem.train.head(2000)
    roles = Preprocessor(text_columns=comp.text_columns, date_columns=comp.date_columns,
                         image_shape=comp.image_shape).fit(sample).roles_.values()
    return "image" if "image" in roles else "text" if "text" in roles else "tabular"


def load_pipeline(name: str = "tabular") -> Pipeline:
    path = pipeline_path(name)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise AutomlError(f"{path}: unknown key {unknown[0]!r}; expected one of {', '.join(KEYS)}")
    if raw.get("numeric", "quantile") not in NUMERIC_SCALINGS:
        raise AutomlError(f"{path}: numeric {raw['numeric']!r}; expected one of {', '.join(NUMERIC_SCALINGS)}")
    if raw.get("pruner", "median") not in PRUNERS:
        raise AutomlError(f"{path}: pruner {raw['pruner']!r}; expected one of {', '.join(PRUNERS)}")
    for key in ("trial_share", "network_share", "complete_share"):
        if key in raw and not (isinstance(raw[key], int | float) and 0 <= raw[key] <= 1):
            raise AutomlError(f"{path}: {key} {raw[key]!r}; expected a share from 0 to 1")
    if "family" not in raw.get("space", {}):
        raise AutomlError(f"{path}: space needs a 'family' choice (mlp, resnet, ft_transformer)")
    seen: dict[str, dict] = {}
    sections = [("space", raw.get("space", {}))] + [(f"when.{k}", v) for k, v in raw.get("when", {}).items()]
    for section, params in sections:
        for name, spec in params.items():
            _check_spec(path, f"{section}.{name}", spec)
            if name in seen and seen[name] != spec:
                raise AutomlError(f"{path}: {section}.{name} differs from another section's {name!r}; "
                                  "a name must have one range everywhere")
            seen[name] = spec
    for i, default in enumerate(raw.get("defaults", [])):
        if not isinstance(default, dict) or set(default) - set(seen):
            extra = sorted(set(default) - set(seen)) if isinstance(default, dict) else default
            raise AutomlError(f"{path}: defaults[{i}] names {extra!r}, which the space does not search")
        for name, value in default.items():
            if not _within(seen[name], value):
                raise AutomlError(f"{path}: defaults[{i}].{name} = {value!r} is outside its range {seen[name]}")
    return Pipeline(str(path), **raw)


def _check_spec(path: Path, where: str, spec) -> None:
    if not isinstance(spec, dict) or len(set(spec) & set(KINDS)) != 1 or set(spec) - {*KINDS, "log"}:
        raise AutomlError(f"{path}: {where} must be {{choice: [...]}}, {{int: [low, high]}} or "
                          f"{{float: [low, high]}} (with optional log: true), got {spec!r}")
    kind = next(k for k in KINDS if k in spec)
    values = spec[kind]
    if not isinstance(values, list) or not values or (kind != "choice" and (len(values) != 2 or values[0] > values[1])):
        raise AutomlError(f"{path}: {where}.{kind} must be a list ({'choices' if kind == 'choice' else '[low, high]'})")


def _within(spec: dict, value) -> bool:
    if "choice" in spec:
        return value in spec["choice"]
    low, high = spec.get("int") or spec.get("float")
    return isinstance(value, int | float) and low <= value <= high


def suggest(trial: optuna.trial.BaseTrial, pipeline: Pipeline) -> dict:
    """One trial's parameters: the common space, then each chosen value's section."""
    params = {name: _suggest_one(trial, name, spec) for name, spec in pipeline.space.items()}
    for value in list(params.values()):
        if isinstance(value, str) and value in pipeline.when:
            for name, spec in pipeline.when[value].items():
                params[name] = _suggest_one(trial, name, spec)
    return params


def _suggest_one(trial, name: str, spec: dict):
    if "choice" in spec:
        return trial.suggest_categorical(name, spec["choice"])
    low, high = spec.get("int") or spec.get("float")
    if "int" in spec:
        return trial.suggest_int(name, int(low), int(high), log=bool(spec.get("log")))
    return trial.suggest_float(name, float(low), float(high), log=bool(spec.get("log")))
