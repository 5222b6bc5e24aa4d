"""What a competition is: its files, id, target(s), task, metric and label format.

A `Competition` is a small frozen dataclass read from `competitions/SLUG.yaml` when one
exists, or inferred from the data: the sample submission names the id (its first
column) and the submission columns (the rest); train.csv tells the task from the
target's dtype and cardinality; the sample's values tell how labels must be written.
When the submission columns are several train columns, the task is multitarget (values)
or multilabel (every column 0/1), and `targets` names them.
When every test.csv value of a date column is later than train.csv's, the test is a
forecast: the folds become an expanding window in time on that column.

The metric is, first to last: `--metric`, the YAML's, the one Kaggle's record of the
competition names (saved by fetch beside the data), and last a guess from the data,
which is kept in `inferred` and announced with one warning line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import pandas as pd
import yaml

from automl.errors import AutomlError, UsageError
from automl.metrics import CLASSIFICATION, MULTI, default_metric, for_task, get_metric, kaggle_metric

TASKS = ("binary", "multiclass", "regression", "multilabel", "multitarget")
# How the submission writes predictions: class values as integers, True/False,
# class names, floats (regression values or the positive class's probability), or one
# probability column per class.
LABELS = ("int", "bool", "class", "float", "proba")
FOLDS = ("auto", "stratified", "kfold", "group", "time")
PACKAGED = Path(__file__).resolve().parent / "_data" / "competitions"
SOURCE_TREE = Path(__file__).resolve().parent.parent / "competitions"
ENCODINGS = (None, "cp1252", "latin-1")  # pandas' UTF-8 first; latin-1 decodes any byte
log = logging.getLogger("automl")


@dataclass(frozen=True)
class Competition:
    slug: str
    id: str  # id column of the submission (and of test.csv when test has it)
    target: str  # the train.csv column the models learn (the first of `targets` when there are several)
    task: str
    metric: str
    labels: str
    submission_columns: tuple[str, ...] = ()  # defaults to (target,), or to targets
    targets: tuple[str, ...] = ()  # multitarget/multilabel: the train columns, one per submission column
    classes: tuple[str, ...] = ()  # for labels=proba: class per submission column
    train: str = "train.csv"
    test: str = "test.csv"
    sample_submission: str = "sample_submission.csv"
    text_columns: tuple[str, ...] = ()
    date_columns: tuple[str, ...] = ()
    image_shape: tuple[int, ...] = ()  # (channels, height, width) of a pixel grid
    folds: str = "auto"
    group_column: str = ""
    time_column: str = ""
    title: str = ""
    inferred: tuple[str, ...] = field(default=(), compare=False)  # keys guessed from data
    task_rule: str = field(default="", compare=False)  # how an inferred task was chosen (automl inspect says)

    def __post_init__(self) -> None:
        if not self.submission_columns:
            object.__setattr__(self, "submission_columns", self.targets or (self.target,))

    @property
    def is_classification(self) -> bool:
        return self.task in ("binary", "multiclass")

    @property
    def target_columns(self) -> tuple[str, ...]:
        """Every train column the models learn: `targets`, or the one `target`."""
        return self.targets or (self.target,)


KEYS = [f.name for f in fields(Competition) if f.name not in ("inferred", "task_rule")]


def from_yaml(path: str | Path) -> Competition:
    """Read and validate a competition file; every error names the file and key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AutomlError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix its syntax") from exc
    if not isinstance(raw, dict):
        raise AutomlError(f"{path}: expected a mapping of keys to values")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise AutomlError(f"{path}: unknown key {unknown[0]!r}; expected one of {', '.join(KEYS)}")
    if "targets" in raw and not (isinstance(raw["targets"], list) and all(isinstance(t, str) for t in raw["targets"])):
        raise AutomlError(f"{path}: key 'targets' must be a list of train columns, got {raw['targets']!r}")
    if "target" not in raw and raw.get("targets"):
        raw["target"] = raw["targets"][0]  # several targets: `target` is the first
    missing = [k for k in ("slug", "id", "target", "task", "metric", "labels") if k not in raw]
    if missing:
        raise AutomlError(f"{path}: missing key {missing[0]!r}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    for key in ("slug", "id", "target", "train", "test", "sample_submission"):
        if key in values and not isinstance(values[key], str):
            raise AutomlError(f"{path}: key {key!r} must be a string, got {values[key]!r}")
    return validate(Competition(**values), str(path))


def validate(comp: Competition, where: str) -> Competition:
    """Check the spec's own values (columns are checked against the data later)."""
    for key, allowed in (("task", TASKS), ("labels", LABELS), ("folds", FOLDS)):
        value = getattr(comp, key)
        if value not in allowed:
            raise AutomlError(f"{where}: unknown {key} {value!r}; expected one of {', '.join(allowed)}")
    metric = get_metric(comp.metric, where)
    if comp.task not in metric.tasks:
        raise AutomlError(
            f"{where}: metric {comp.metric!r} does not apply to a {comp.task} task; "
            f"expected one of {', '.join(for_task(comp.task))}"
        )
    if comp.labels == "proba" and len(comp.classes) != len(comp.submission_columns):
        raise AutomlError(
            f"{where}: labels 'proba' needs one entry in 'classes' per submission column "
            f"({len(comp.submission_columns)}), got {len(comp.classes)}"
        )
    _check_targets(comp, where)
    if comp.folds == "group" and not comp.group_column:
        raise AutomlError(f"{where}: folds 'group' needs 'group_column'")
    if comp.folds == "time" and not comp.time_column:
        raise AutomlError(f"{where}: folds 'time' needs 'time_column'")
    if comp.image_shape and len(comp.image_shape) != 3:
        raise AutomlError(f"{where}: image_shape must be [channels, height, width], got {list(comp.image_shape)}")
    return comp


def _check_targets(comp: Competition, where: str) -> None:
    """Several targets go with a multitarget or multilabel task, one submission column (a float) each."""
    multi = comp.task in MULTI
    if multi and len(comp.targets) < 2:
        raise AutomlError(f"{where}: task {comp.task!r} needs 'targets', two or more train columns; "
                          f"got {list(comp.targets)}")
    if comp.targets and not multi:
        raise AutomlError(f"{where}: 'targets' names several train columns, which needs task multitarget or "
                          f"multilabel, not {comp.task!r}")
    if multi and comp.target != comp.targets[0]:
        raise AutomlError(f"{where}: 'target' must be the first of 'targets' ({comp.targets[0]!r}), got {comp.target!r}")
    if multi and len(comp.submission_columns) != len(comp.targets):
        raise AutomlError(f"{where}: {len(comp.targets)} targets need {len(comp.targets)} 'submission_columns', "
                          f"one per target in order; got {len(comp.submission_columns)}")
    if multi and comp.labels != "float":
        raise AutomlError(f"{where}: task {comp.task!r} writes a value or probability per column: labels must be "
                          f"'float', got {comp.labels!r}")


def spec_path(slug: str) -> Path | None:
    """The YAML for `slug`: the user's ./competitions first, then the shipped ones."""
    for folder in (Path.cwd() / "competitions", SOURCE_TREE, PACKAGED):
        candidate = folder / f"{slug}.yaml"
        if candidate.is_file():
            return candidate
    return None


def to_yaml(comp: Competition) -> str:
    """The spec as an editable recipe; inferred keys are marked so the user checks them."""
    lines = [f"# {comp.title or comp.slug}: competition facts for automl."]
    if comp.inferred:
        lines.append(f"# Inferred from the data, check these: {', '.join(comp.inferred)}.")
    if comp.task_rule:
        lines.append(f"# The task was chosen by {comp.task_rule}.")
    defaults = Competition(slug="", id="", target="", task="", metric="", labels="")
    for key, value in asdict(comp).items():
        if key in ("inferred", "task_rule"):
            continue
        if key != "submission_columns" and value == getattr(defaults, key) and key not in (
            "train", "test", "sample_submission"
        ):
            continue
        if key == "submission_columns" and tuple(value) == comp.target_columns:
            continue
        value = list(value) if isinstance(value, tuple) else value
        lines.append(yaml.safe_dump({key: value}, sort_keys=False, width=1000).strip())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- files

def find_files(folder: Path, slug: str) -> dict[str, str]:
    """Name the train, test and sample submission tables in an unpacked bundle."""
    csvs = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".csv")

    def pick(pattern: str, what: str) -> str:
        hits = [n for n in csvs if re.search(pattern, n, re.IGNORECASE)]
        if not hits:
            raise AutomlError(
                f"{folder}: no {what} found among {', '.join(csvs) or 'no CSV files'}; "
                f"name the file in competitions/{slug}.yaml"
            )
        return min(hits, key=len)  # train.csv before train_extra.csv

    sample = pick(r"sample|submission", "sample submission (a CSV named like sample_submission.csv)")
    others = [n for n in csvs if n != sample]
    if len(others) == 1 and not re.search(r"^(train|test)", others[0], re.IGNORECASE):
        # one table beside the sample (Kaggle's data.csv): the rows the sample names are the test rows
        return {"train": others[0], "test": others[0], "sample_submission": sample}
    return {
        "train": pick(r"^train", "train.csv"),
        "test": pick(r"^test", "test.csv"),
        "sample_submission": sample,
    }


def split_combined(frame: pd.DataFrame, id_column: str, sample_ids: pd.Series, targets, file: str,
                   sample_file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One table holding train and test rows (Kaggle's data.csv): the rows whose id the sample submission
    names are the test rows (their target is empty), the rest are train's. Ids are compared as strings."""
    if id_column not in frame.columns:
        raise AutomlError(f"{file}: id column {id_column!r} (the first column of {sample_file}) is not in it; "
                          "one table holding train and test rows needs it to tell them apart")
    is_test = frame[id_column].astype(str).isin(set(sample_ids.astype(str)))
    if not is_test.any():
        raise AutomlError(f"{file}: no row's {id_column!r} is among {sample_file}'s ids, so no row is a test row; "
                          "check that they belong together")
    test = frame[is_test].drop(columns=[c for c in targets if c in frame.columns]).reset_index(drop=True)
    return frame[~is_test].reset_index(drop=True), test


def read_tables(comp: Competition, folder: Path, where: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read train, test and sample submission and check the spec against their columns.

    Ids are read as strings so the submission repeats them exactly as Kaggle wrote them.
    """
    tables = []
    for key in ("train", "test", "sample_submission"):
        path = folder / getattr(comp, key)
        if not path.is_file():
            raise AutomlError(f"{where}: {key} file {path} does not exist; check the key {key!r}")
        if key != "test" or comp.test != comp.train:
            tables.append(read_csv(path, dtype={comp.id: str}))
    if comp.test == comp.train:  # one table of train and test rows: the sample names the test rows
        tables[0:1] = split_combined(tables[0], comp.id, tables[1][comp.id], comp.target_columns, comp.train,
                                     comp.sample_submission)
    train, test, sample = tables
    check_columns(comp, train, test, sample, where)
    return train, test, sample


_NOT_UTF8: set[str] = set()  # files already announced as read in another encoding


def read_csv(path: Path, **options) -> pd.DataFrame:
    """pandas.read_csv, with an unreadable file reported as one line naming it.

    A file that is not UTF-8 (older Kaggle bundles were written on Windows) is read as
    cp1252, else latin-1, and one warning line names the encoding used.
    """
    for encoding in ENCODINGS:
        try:
            frame = pd.read_csv(path, low_memory=False, encoding=encoding, **options)
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise AutomlError(f"{path}: cannot be read as CSV ({str(exc).splitlines()[0]})") from exc
        if encoding is not None and str(path) not in _NOT_UTF8:
            _NOT_UTF8.add(str(path))
            log.warning("%s: not UTF-8; read as %s", path, encoding)
        return frame
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def check_columns(comp: Competition, train: pd.DataFrame, test: pd.DataFrame,
                  sample: pd.DataFrame, where: str) -> None:
    def need(column: str, frame: pd.DataFrame, file: str, key: str) -> None:
        if column and column not in frame.columns:
            close = [c for c in frame.columns if c.lower() == column.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AutomlError(f"{where}: {key} column {column!r} is not in {file}{hint}")

    need(comp.id, sample, comp.sample_submission, "id")
    for column in comp.target_columns:
        need(column, train, comp.train, "target")
    for column in comp.submission_columns:
        need(column, sample, comp.sample_submission, "submission")
    for key in ("text_columns", "date_columns"):
        for column in getattr(comp, key):
            need(column, train, comp.train, key.removesuffix("_columns"))
    need(comp.group_column, train, comp.train, "group")
    need(comp.time_column, train, comp.train, "time")


# ------------------------------------------------------------------------ inference

def infer(slug: str, folder: Path, record: dict | None = None, metric: str | None = None) -> Competition:
    """Infer a spec from the sample submission and train.csv of an unpacked bundle.

    The metric is `metric` (--metric) when given, else the one Kaggle's `record` names,
    else a guess from the data, announced with one warning line.
    """
    files = find_files(folder, slug)
    sample = read_csv(folder / files["sample_submission"], nrows=1000, dtype=str, keep_default_na=False)
    train, test = read_csv(folder / files["train"]), None
    if files["test"] == files["train"]:  # one table: the rows the sample names are the test rows
        ids = read_csv(folder / files["sample_submission"], usecols=[0], dtype=str).iloc[:, 0]
        columns = [c for c in sample.columns[1:] if c in train.columns]
        train, test = split_combined(train, sample.columns[0], ids, columns, files["train"], files["sample_submission"])
    test_columns = test.columns if test is not None else read_csv(folder / files["test"], nrows=0).columns
    where = f"{folder / files['sample_submission']}"
    if sample.shape[1] < 2:
        raise AutomlError(f"{where}: a sample submission needs an id column and at least one prediction column")
    id_column, *columns = list(sample.columns)
    targets, classes = _match_target(columns, train, test_columns, where, slug)
    y = train[targets[0]].dropna()
    if len(targets) > 1:  # several train columns: values, or 0/1 labels, a column each
        task, labels = _multi_task(train[list(targets)], where), "float"
    elif classes:
        task, labels = ("binary" if len(classes) == 2 else "multiclass"), "proba"
    else:
        task, rule = _task_of(y)
        k = _labels_per_row(sample[columns[0]]) if task in CLASSIFICATION else 1
        known = _known_metric(metric, (record or {}).get("evaluation_metric"), task, k)
        try:
            task, rule = _task_for_metric(task, rule, y, known, where, metric)
        except UsageError:
            if metric is not None:
                raise
            task, rule = _task_for_metric(task, rule, y, None, where, None)  # Kaggle's record may be wrong: the warning below says so
        labels = _labels_of(sample[columns[0]], task)
        if labels == "int" and not pd.api.types.is_numeric_dtype(y):
            labels = "class"  # the sample's 0s were placeholders: the classes are names
    if len(targets) > 1 or classes:
        rule = f"{len(targets)} target columns" if len(targets) > 1 else f"a submission column per class of {targets[0]!r}"
    k = _labels_per_row(sample[columns[0]]) if task in CLASSIFICATION and not classes else 1
    probabilities = labels in ("proba", "float") and task != "regression"
    guess = f"map@{k}" if k > 1 else "auc" if task == "binary" and labels == "float" else None
    time_column = _forecast_column(train, folder / files["test"] if test is None else test, test_columns)
    comp = validate(Competition(
        slug=slug, id=id_column, target=targets[0], task=task,
        metric=guess or default_metric(task, probabilities), labels=labels,
        submission_columns=tuple(columns), targets=targets if len(targets) > 1 else (), classes=tuple(classes), **files,
        folds="time" if time_column else "auto", time_column=time_column,
        title=(record or {}).get("title") or "", inferred=("task", "metric", "labels") + (("folds",) if time_column else ()),
        task_rule=rule,
    ), where)
    if metric is not None:
        return with_metric(comp, metric)
    return _metric_from_kaggle(comp, (record or {}).get("evaluation_metric"), k)


def first_present(values: pd.Series, n: int) -> pd.Series:
    """values.dropna().head(n) without scanning the whole column when its head has enough."""
    head = values.iloc[: 4 * n].dropna()
    return head.head(n) if len(head) >= n or len(values) <= 4 * n else values.dropna().head(n)


def looks_like_date(values: pd.Series) -> bool:
    """Strings shaped like dates (2020-01-31, 31/01/2020 12:00) that parse as dates, judged on a sample."""
    sample = first_present(values, 500).astype(str)
    shaped = sample.str.fullmatch(r"\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*")
    if shaped.mean() < 0.95:
        return False
    return pd.to_datetime(sample, errors="coerce", format="mixed").notna().mean() >= 0.95


def _time_range(values: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The earliest and latest time in a date column (each distinct value parsed once: dates repeat)."""
    distinct = pd.Series(values.dropna().unique())
    stamps = pd.to_datetime(distinct, errors="coerce", format="mixed").dropna()
    return (stamps.min(), stamps.max()) if len(stamps) else (pd.NaT, pd.NaT)


def _forecast_column(train: pd.DataFrame, test_path: Path | pd.DataFrame, test_columns) -> str:
    """The date column whose every test value is later than every train value ('' when none):
    then the test is a forecast, and only folds that validate on later rows than they train on
    score a model as the leaderboard will."""
    dates = [c for c in train.columns if c in test_columns and pd.api.types.is_string_dtype(train[c]) and looks_like_date(train[c])]
    if not dates:
        return ""
    test = test_path[dates].astype(str) if isinstance(test_path, pd.DataFrame) else read_csv(test_path, usecols=dates, dtype=str)
    for column in dates:
        latest_train, earliest_test = _time_range(train[column])[1], _time_range(test[column])[0]
        if pd.notna(latest_train) and pd.notna(earliest_test) and earliest_test > latest_train:
            return column
    return ""


def _labels_per_row(values: pd.Series) -> int:
    """How many space-separated labels each sample row holds (map@k asks for k), else 1."""
    counts = values.str.split().str.len()
    return int(counts.iloc[0]) if len(counts) and counts.min() == counts.max() > 1 else 1


def _metric_from_kaggle(comp: Competition, display: str | None, k: int) -> Competition:
    """The metric Kaggle's record names; else keep the guess, with one warning line."""
    reason = "no metric from Kaggle"
    if display:
        try:
            metric = kaggle_metric(display, comp.task, k if k > 1 else None)
            return replace(comp, metric=metric, inferred=tuple(i for i in comp.inferred if i != "metric"))
        except AutomlError as exc:
            reason = str(exc)
    log.warning("%s: metric %r is a guess from the data (no competitions/%s.yaml; %s); pass --metric NAME "
                "to set it", comp.slug, comp.metric, comp.slug, reason)
    return comp


def with_metric(comp: Competition, metric: str) -> Competition:
    """The spec with the metric --metric names; it must suit the task."""
    get_metric(metric, "--metric")
    chosen = replace(comp, metric=metric, inferred=tuple(i for i in comp.inferred if i != "metric"))
    return validate(chosen, "--metric")


def _compare_with_kaggle(comp: Competition, display: str | None, path: Path) -> None:
    """One warning line when the YAML's metric is not the one Kaggle's record names."""
    if not display:
        return
    k = int(comp.metric[4:]) if comp.metric.startswith("map@") else None
    try:
        theirs = kaggle_metric(display, comp.task, k)
    except AutomlError:
        return  # a name automl does not know says nothing against the YAML
    if theirs != comp.metric:
        log.warning("%s: metric %r differs from Kaggle's record (%r, here %s); using the YAML's "
                    "(--metric %s uses Kaggle's)", path, comp.metric, display, theirs, theirs)


def _match_target(columns: list[str], train: pd.DataFrame, test_columns, where: str,
                  slug: str) -> tuple[tuple[str, ...], list[str]]:
    """Find the train column(s) behind the submission columns (and the classes of one, if any)."""
    lower = {c.lower(): c for c in train.columns}
    if len(columns) == 1 and columns[0].lower() in lower:
        return (lower[columns[0].lower()],), []
    # One probability column per class of a single train column: Status -> Status_C, ...
    for candidate in train.columns:
        if candidate in test_columns:
            continue
        values = train[candidate].dropna().astype(str).unique()
        if len(values) != len(columns) or len(values) > 1000:
            continue
        by_name = {f"{candidate}_{v}".lower(): v for v in values} | {str(v).lower(): v for v in values}
        if all(c.lower() in by_name for c in columns):
            return (candidate,), [str(by_name[c.lower()]) for c in columns]
    if all(c.lower() in lower and lower[c.lower()] not in test_columns for c in columns):
        return tuple(lower[c.lower()] for c in columns), []  # several targets, a submission column each
    raise AutomlError(
        f"{where}: cannot tell which train column the submission column(s) "
        f"{', '.join(columns)} predict; run `automl inspect {slug} --save` and set 'target'"
    )


def _multi_task(frame: pd.DataFrame, where: str) -> str:
    """multilabel when every target column holds only 0 and 1 (or True/False), else multitarget (numbers)."""
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise AutomlError(f"{where}: target column {column!r} holds text; several target columns must hold "
                              "numbers (multitarget) or 0/1 labels (multilabel)")
    values = frame.astype(float).stack()  # without the missing values
    return "multilabel" if values.isin([0.0, 1.0]).all() else "multitarget"


def _task_of(y: pd.Series) -> tuple[str, str]:
    """The task the target's values suggest, and the rule that said so (for automl inspect)."""
    distinct = y.nunique()
    if distinct == 2:
        return "binary", "the target holds 2 values"
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "multiclass", f"the target holds {distinct} names"
    integral = pd.api.types.is_integer_dtype(y) or bool((y == y.round()).all())
    if integral and distinct <= 30 and distinct <= 0.05 * len(y):
        return "multiclass", f"the target holds {distinct} integers (30 or fewer)"
    return "regression", f"the target holds {distinct:,} numbers"


def _known_metric(metric: str | None, display: str | None, task: str, k: int) -> str | None:
    """The metric's name when one is known (--metric, else Kaggle's record), whatever task it suits; else None."""
    if metric is not None:
        get_metric(metric, "--metric")
        return metric
    for candidate in dict.fromkeys((task, "regression", "binary", "multiclass")):
        try:
            return kaggle_metric(display, candidate, k if k > 1 else None) if display else None
        except AutomlError:
            continue
    return None


def _task_for_metric(task: str, rule: str, y: pd.Series, metric: str | None, where: str,
                     option: str | None) -> tuple[str, str]:
    """The metric decides the task whenever it is known: a metric that only scores values makes a numeric
    target a regression, a classification metric keeps (or makes) it classes. Only without a metric do
    the values decide. A metric that cannot apply to this target is one line, naming the fix."""
    guessed = f"a guess from the values ({rule}); pass --metric NAME to let the competition's metric decide"
    if metric is None:
        return task, guessed
    tasks = get_metric(metric).tasks
    source = "--metric" if option is not None else "Kaggle's metric"
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if "regression" in tasks and task != "regression" and numeric:
        return "regression", f"{source} {metric}, which scores values ({rule})"
    if task == "regression" and "regression" not in tasks:
        integral = bool((y == y.round()).all())
        if not integral or y.nunique() > 1000:
            raise UsageError(f"{where}: {source} {metric} scores classes, but the target holds {y.nunique():,} "
                             f"distinct numbers; pass a regression metric such as --metric rmse")
        task = "binary" if y.nunique() == 2 else "multiclass"
        return task, f"{source} {metric}, which scores classes ({rule})"
    ranked = get_metric(metric).decision == "rank"  # map@k: a column of space-separated labels is its format
    if task == "multiclass" and get_metric(metric).needs == "proba" and "multiclass" in tasks and numeric and not ranked:
        raise UsageError(f"{where}: {source} {metric} scores a probability per class, but the submission has one "
                         f"column for a target of {y.nunique()} numbers; pass the competition's metric, such as "
                         f"--metric rmse for a count or --metric accuracy for classes")
    if task not in tasks:  # validate() names it in one line (--metric); Kaggle's record is set aside with a warning
        return task, guessed
    return task, f"{source} {metric}, which applies to a {task} task ({rule})"


def _labels_of(values: pd.Series, task: str) -> str:
    """How the sample submission writes a prediction column."""
    if task == "regression":
        return "float"
    text = values.str.strip()
    if text.str.lower().isin(["true", "false"]).all():
        return "bool"
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return "int" if bool((numbers == numbers.round()).all()) else "float"
    return "class"


def load(slug: str, folder: Path | None = None, metric: str | None = None,
         record: dict | None = None) -> Competition:
    """The spec for `slug`: its YAML if there is one, else inferred from `folder`.

    `metric` (--metric) overrides the YAML's and the guess; `record` is what Kaggle says
    of the competition (fetch.read_record): its metric is used when there is no YAML.
    """
    path = spec_path(slug)
    if path is not None:
        comp = from_yaml(path)
        if metric is not None:
            return with_metric(comp, metric)
        _compare_with_kaggle(comp, (record or {}).get("evaluation_metric"), path)
        return comp
    if folder is None:
        raise AutomlError(f"no competitions/{slug}.yaml and no data to infer it from; run `automl fetch {slug}` first")
    return infer(slug, folder, record, metric)
