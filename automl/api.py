"""Notebook-facing functions behind `automl inspect` and `automl validate`.

Each returns plain values; the CLI only prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from automl.competition import Competition, to_yaml
from automl.io import write_text
from automl.preprocess import Preprocessor
from automl.runner import prepare
from automl.submission import validate as validate_frame


@dataclass(frozen=True)
class Inspection:
    competition: Competition
    columns: pd.DataFrame  # column, role, dtype, missing share, distinct values
    yaml: str
    saved: Path | None


def inspect(slug: str, *, data_dir="data", source=None, save: bool = False) -> Inspection:
    """What automl makes of a competition: its spec and each train column's role."""
    comp, problem, _, _ = prepare(slug, data_dir, source)
    pre = Preprocessor(text_columns=comp.text_columns, date_columns=comp.date_columns,
                       image_shape=comp.image_shape).fit(problem.train)
    roles = pre.describe()
    raw = problem.labelled
    rows = []
    for column in raw.columns:
        if column == comp.target:
            role = f"target ({comp.task}, {len(problem.classes)} classes)" if problem.classes is not None else "target (regression)"
        elif column in roles:
            role = roles[column] + (" (also the id)" if column == comp.id else "")
        elif column == comp.id:
            role = "id (not a feature)"
        else:
            role = f"dropped: not in {comp.test}"
        values = raw[column]
        rows.append({"column": column, "role": role, "dtype": str(values.dtype),
                     "missing": float(values.isna().mean()), "distinct": int(values.nunique())})
    text = to_yaml(comp)
    saved = write_text(Path("competitions") / f"{slug}.yaml", text) if save else None
    return Inspection(comp, pd.DataFrame(rows), text, saved)


def validate(file: str | Path, slug: str, *, data_dir="data", source=None) -> list[str]:
    """Every reason Kaggle would reject `file` for `slug`; an empty list when it is valid."""
    comp, problem, sample, _ = prepare(slug, data_dir, source)
    classes = None if problem.classes is None else [str(c) for c in problem.classes]
    return validate_frame(file, comp, sample, classes)
