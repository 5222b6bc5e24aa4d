"""`--pseudo-label`: a second pass of the best baselines with confident test rows added to every
fold's training rows, kept only when its held-out score is better.

Leak-free by construction: fold k's pseudo-labels come from fold k's own first-pass models (each
baseline keeps its fold models' test predictions, `CVResult.test_folds`), blended with the first
blend's weights over those baselines. Those models never saw fold k's validation rows, so the
second pass's score on fold k is as held out as the first's. (Pseudo-labels from the final blend,
whose every model saw every other fold's labels, would carry fold k's labels into its training
rows and flatter the score that decides whether to keep the pass.)

Classification only (a class probability says how sure the teacher is; a regression's value does
not), and never for forecasting folds (the test lies after every training row). The confidence
threshold is chosen per task on the blend's out-of-fold predictions: the lowest, from
MIN_CONFIDENCE, above which they were right at least PRECISION of the time; at most CAP of the
test rows, the most confident first, and never more than the fold's own training rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from automl.baselines import CVResult, cross_validate, finish
from automl.folds import Fold, predicted_rows, take
from automl.preprocess import Features
from automl.problem import Problem

log = logging.getLogger("automl")
MIN_CONFIDENCE = 0.8  # a pseudo-label's class probability, at least
PRECISION = 0.97  # the share of out-of-fold predictions right above the threshold
CAP = 0.25  # of the test rows, at most, per fold (and no more than the fold's own training rows)
STUDENTS = 2  # the best baselines given a second pass


def applies(problem: Problem) -> str:
    """Why pseudo-labels cannot help this problem ("" when they can)."""
    if problem.comp.folds == "time":
        return "not for forecasting folds (the test lies after every training row)"
    if not problem.n_classes:
        return f"for classification only ({problem.comp.task} predictions carry no confidence)"
    return ""


def threshold(problem: Problem, folds: list[Fold], oof: np.ndarray) -> float | None:
    """The lowest confidence, MIN_CONFIDENCE at least, above which the out-of-fold predictions were
    right PRECISION of the time; None when none is."""
    rows = predicted_rows(folds)
    confidence, right = oof[rows].max(axis=1), oof[rows].argmax(axis=1) == problem.y[rows]
    order = np.argsort(-confidence)
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)  # of the k most confident
    ok = np.flatnonzero((precision >= PRECISION) & (confidence[order] >= MIN_CONFIDENCE))
    if not len(ok):
        return None
    return float(max(MIN_CONFIDENCE, confidence[order][ok[-1]]))


def teachers(blend: CVResult | None, members: list[CVResult],
             sign: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Per fold, the first pass's blend of the baselines' own fold models on the test rows,
    (folds, n_test, classes); the same blend's out-of-fold predictions (fold k's rows from fold k's
    models: how sure and how right the teacher of fold k was); and the baselines in it. None when no
    baseline kept its fold models."""
    kept = {m.name: m for m in members if m.test_folds is not None}
    if not kept:
        return None
    info = blend.info if blend is not None else {}
    weights = {name: w for name, w in (info.get("greedy_weights") or info.get("weights") or {}).items() if name in kept}
    if not weights:  # the blend used no baseline: the best of them teaches
        best = max(kept.values(), key=lambda m: sign * m.mean)
        weights = {best.name: 1.0}
    total = sum(weights.values())
    return (sum(kept[n].test_folds * (w / total) for n, w in weights.items()),
            sum(kept[n].oof * (w / total) for n, w in weights.items()), list(weights))


def with_pseudo(problem: Problem, folds: list[Fold], teacher: np.ndarray, cut: float) -> tuple[Problem, list[Fold], list[int]]:
    """The problem with every fold's pseudo-labelled test rows appended after its own rows (fold k's
    from teacher[k], so fold k's labels never reach them), and folds training on them too."""
    ys, augmented, counts, offset = [problem.y], [], [], len(problem.y)
    for fold, probabilities in zip(folds, teacher, strict=True):
        # never more pseudo rows than real ones: the fold's own labels keep the upper hand
        cap = int(min(CAP * len(problem.test), len(fold.train_rows)))
        confidence = probabilities.max(axis=1)
        pick = np.argsort(-confidence, kind="stable")[:cap]
        pick = np.sort(pick[confidence[pick] >= cut])
        ys.append(probabilities[pick].argmax(axis=1).astype(problem.y.dtype))
        rows = offset + np.arange(len(pick))
        offset += len(pick)
        counts.append(len(pick))
        augmented.append(Fold(np.concatenate([fold.train_rows, rows]), fold.valid_rows,
                              _join(fold.train, take(fold.test, pick)), fold.valid, fold.test))
    return replace(problem, y=np.concatenate(ys)), augmented, counts


def _join(a: Features, b: Features) -> Features:
    return replace(a, numeric=np.concatenate([a.numeric, b.numeric]), categorical=np.concatenate([a.categorical, b.categorical]),
                   text={k: np.concatenate([v, b.text[k]]) for k, v in a.text.items()},
                   images=None if a.images is None else np.concatenate([a.images, b.images]),
                   tokens=None if a.tokens is None else np.concatenate([a.tokens, b.tokens]))


def second_pass(problem: Problem, folds: list[Fold], blend: CVResult | None, members: list[CVResult], *,
                seed: int = 0, seconds: float | None = None, device: str = "cpu") -> tuple[list[CVResult], list[str]]:
    """The students that improved with pseudo-labels (named NAME+pseudo), and a line for each student
    saying what happened. `seconds`: the whole pass's time, split equally between the students."""
    why = applies(problem)
    if why:
        return [], [f"pseudo-labels: {why}; skipped"]
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    taught = teachers(blend, members, sign)
    if taught is None:
        return [], ["pseudo-labels: no baseline kept its fold models' test predictions to teach (baselines reused from "
                    "a run without --pseudo-label keep none: use a new --name); skipped"]
    teacher, taught_oof, names = taught
    cut = threshold(problem, folds, taught_oof)
    if cut is None:
        return [], [f"pseudo-labels: the out-of-fold predictions are never right {PRECISION:.0%} of the time above "
                    f"{MIN_CONFIDENCE:.0%} confidence; skipped"]
    augmented_problem, augmented, counts = with_pseudo(problem, folds, teacher, cut)
    if not min(counts):
        return [], [f"pseudo-labels: no test row is predicted with {cut:.3f} confidence; skipped"]
    students = sorted([m for m in members if m.test_folds is not None], key=lambda m: -sign * m.mean)[:STUDENTS]
    kept, lines, start = [], [], time.monotonic()
    for i, student in enumerate(students):
        share = None if seconds is None else (seconds - (time.monotonic() - start)) / (len(students) - i)
        if share is not None and share <= 1.0:
            lines.append(f"pseudo-labels: no time left for {student.name}")
            break
        try:
            result = cross_validate(student.name, augmented_problem, augmented, seed, seconds=share, device=device)
        except Exception as error:  # noqa: BLE001 - a second pass that fails leaves the first as it was
            log.info("pseudo-labels: %s failed", student.name, exc_info=error)
            lines.append(f"pseudo-labels: {student.name} failed ({str(error).splitlines()[0][:120]}); first pass kept")
            continue
        n = len(problem.y)
        span = f"{min(counts):,}" + (f"-{max(counts):,}" if max(counts) != min(counts) else "")
        note = (f"+ {span} pseudo-labelled test rows per fold (confidence >= {cut:.3f}, "
                f"from each fold's own first-pass {'+'.join(names)}); " + result.info.get("note", ""))
        second = finish(f"{student.name}+pseudo", problem, folds, result.oof[:n], result.test, result.seconds,
                        info=result.info | {"note": note.rstrip("; "), "pseudo": {"rows": counts, "confidence": cut}})
        better = sign * second.mean > sign * student.mean
        lines.append(f"pseudo-labels: {student.name} {student.mean:.5f} -> {second.mean:.5f} with {span} test rows "
                     f"per fold at confidence >= {cut:.3f}: "
                     + ("kept as " + second.name if better else "dropped (no better held out)"))
        if better:
            kept.append(second)
    return kept, lines
