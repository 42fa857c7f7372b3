"""Tasks: one simulated study, everything a worker needs to run it, and its rows.

A :class:`Task` is a scenario (a base and dotted overrides), a seed (the entropy and
``spawn_key`` of a child of ``np.random.SeedSequence``) and the switches of
:func:`sim.study.run_study`; it pickles, so any executor can ship it to a worker.
:func:`run_task` runs it. :func:`execute` wraps any task function so that what comes back
is always the task's *rows*: the task's identity, parameters, seed, status, error,
traceback, warnings and wall time, then the estimates in long form
(:data:`ESTIMATE_COLUMNS`); an exception becomes one error row instead of a crash.

Besides its rows a task may return named tables (:class:`TaskOutput`): :func:`run_task`
keeps the twins' truth, the new-job curves and, when asked, the matched study dataset;
the result store writes them into the same file as the rows (:mod:`sim.runner.store`).

Nothing here imports the model at import time, so a worker that runs a test's fake task
function starts quickly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.params import Scenario

__all__ = [
    "ESTIMATE_COLUMNS",
    "REQUIRED_ESTIMATE_COLUMNS",
    "Task",
    "TaskFn",
    "TaskOutput",
    "empty_rows",
    "execute",
    "failure_output",
    "run_task",
    "task_rows",
]

#: The long-form estimate columns of a task's rows (after the task columns): the columns of
#: :meth:`sim.study.StudyResult.rows`, repeated here so that this module does not import
#: the model (a test checks that the two agree).
ESTIMATE_COLUMNS = (
    "id",
    "outcome",
    "group",
    "estimator",
    "effect",
    "se",
    "n",
    "control_mean",
    "rel",
    "rel_se",
    "first_stage_f",
    "true_effect",
)
#: The estimate columns every task file has had. A file written before a later column was
#: added (``first_stage_f``) is still a finished task: readers fill the new columns with NaN.
REQUIRED_ESTIMATE_COLUMNS = tuple(c for c in ESTIMATE_COLUMNS if c != "first_stage_f")
_TEXT_ESTIMATES = ("id", "outcome", "group", "estimator")


@dataclass(frozen=True, kw_only=True)
class Task:
    """One simulated study: everything a worker needs, and picklable.

    ``point`` and ``replication`` place the task in its design (a sweep's point and
    replication; a reproduced study's replication; a calibration point's seed) and are
    columns of its rows (``point`` only when set); ``index`` is its position in the
    design. ``twin``, ``keep_dataset`` and ``estimate`` are passed to
    :func:`sim.study.run_study`.
    """

    task_id: str
    overrides: dict[str, Any]  # dotted scenario keys -> values, applied to ``base``
    seed_entropy: int
    spawn_key: tuple[int, ...]
    base: Scenario = dataclasses.field(repr=False, compare=False)
    twin: bool = False
    keep_dataset: bool = False
    estimate: bool = True
    point: int | None = None
    replication: int = 0
    index: int = 0

    @property
    def seed(self) -> np.random.SeedSequence:
        """This task's seed: child ``spawn_key`` of ``SeedSequence(seed_entropy)``."""
        return np.random.SeedSequence(self.seed_entropy, spawn_key=self.spawn_key)

    def scenario(self) -> Scenario:
        """The base scenario with this task's overrides."""
        return self.base.with_overrides(self.overrides, source=self.task_id)

    def definition(self) -> dict[str, Any]:
        """What the task is, as JSON-ready data (recorded with its result; a rerun
        trusts a stored result only for the same definition)."""
        return {
            "task_id": self.task_id,
            "point": self.point,
            "replication": self.replication,
            "index": self.index,
            "overrides": {k: _jsonable(v) for k, v in self.overrides.items()},
            "seed_entropy": self.seed_entropy,
            "spawn_key": list(self.spawn_key),
            "twin": self.twin,
            "keep_dataset": self.keep_dataset,
            "estimate": self.estimate,
        }


@dataclass
class TaskOutput:
    """What a task gives back: its rows and named tables (e.g. ``truth``, ``curves``).

    A task function returns the estimates (columns of :data:`ESTIMATE_COLUMNS`) as
    ``rows``; :func:`execute` returns the full rows (task columns first).
    """

    rows: pd.DataFrame
    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The task finished without error."""
        return bool((self.rows["status"] == "ok").all())


#: A task function: one task in, its estimates out (a DataFrame of ESTIMATE_COLUMNS, or a
#: TaskOutput with tables). Top level, so that it pickles by reference.
TaskFn = Callable[[Task], "pd.DataFrame | TaskOutput"]


def run_task(task: Task) -> TaskOutput:
    """Run one simulated study (:func:`sim.study.run_study`).

    Rows: :meth:`sim.study.StudyResult.rows` (the estimates with the true effects; the
    twins' rows when one arm is empty or ``estimate`` is off). Tables: ``truth`` (the
    twins' control means and true effects; empty without a twin), ``curves`` (the share
    of each arm with a new job by month) and, with ``keep_dataset``, ``dataset`` (the
    matched study dataset with its tertiles).
    """
    from sim.study import run_study

    res = run_study(
        task.scenario(),
        task.seed,
        twin=task.twin,
        keep_dataset=task.keep_dataset,
        estimate=task.estimate,
    )
    tables = {"truth": res.truth, "curves": res.curves}
    if res.dataset is not None:
        tables["dataset"] = res.dataset
    return TaskOutput(res.rows(), tables)


def execute(task: Task, task_fn: TaskFn = run_task) -> TaskOutput:
    """Run ``task_fn(task)``; its full rows and tables. An exception becomes a row.

    Top level, so an executor can pickle it. The rows carry the task's identity, its
    parameters and seed, status, error and traceback, the warnings the task raised (one
    per line; recorded rather than printed over a progress bar) and the wall time in
    seconds (on a fresh worker process it includes importing the model).
    """
    t0 = time.perf_counter()
    tables: dict[str, pd.DataFrame] = {}
    with warnings.catch_warnings(record=True) as caught:  # kept, not printed over the bar
        warnings.simplefilter("always")
        try:
            got = task_fn(task)
            if isinstance(got, TaskOutput):
                got, tables = got.rows, dict(got.tables)
            est = _conform(got)
            status, error, tb = "ok", None, None
        except Exception as exc:
            est, status, tables = _conform(None), "error", {}
            error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    seen = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    rows = _frame(task, est, status, error, tb, time.perf_counter() - t0, "\n".join(seen) or None)
    return TaskOutput(rows, tables)


def task_rows(task: Task, task_fn: TaskFn = run_task) -> pd.DataFrame:
    """The rows of :func:`execute` (without the tables)."""
    return execute(task, task_fn).rows


def failure_output(task: Task, exc: BaseException) -> TaskOutput:
    """The row of a task whose execution itself failed (a worker died, a lost future)."""
    tb = "".join(traceback.format_exception(exc))
    return TaskOutput(
        _frame(task, _conform(None), "error", f"{type(exc).__name__}: {exc}", tb, math.nan)
    )


def empty_rows(task: Task) -> pd.DataFrame:
    """No rows, with the columns and dtypes of ``task``'s rows."""
    return _frame(task, _conform(None), "error", None, None, math.nan).iloc[:0]


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _conform(est: pd.DataFrame | None) -> pd.DataFrame:
    """The estimate columns in order and with fixed dtypes (one empty row for None)."""
    if est is None:
        est = pd.DataFrame({c: [None] for c in ESTIMATE_COLUMNS})
    elif not isinstance(est, pd.DataFrame) or est.empty:
        raise ValueError(f"the task function returned no estimates: {est!r}")
    out = pd.DataFrame(index=range(len(est)))
    for c in ESTIMATE_COLUMNS:
        col = est[c].to_numpy() if c in est else [None] * len(est)
        if c in _TEXT_ESTIMATES:
            out[c] = pd.Series(col, dtype="string")
        elif c == "n":
            out[c] = pd.to_numeric(pd.Series(col), errors="coerce").round().astype("Int64")
        else:
            out[c] = pd.to_numeric(pd.Series(col), errors="coerce").astype("float64")
    return out


def _column_value(v: Any) -> Any:
    return json.dumps(v, default=str) if isinstance(v, dict | list) else v


def _frame(
    task: Task,
    est: pd.DataFrame,
    status: str,
    error: str | None,
    tb: str | None,
    wall: float,
    warned: str | None = None,
) -> pd.DataFrame:
    n = len(est)
    head: dict[str, Any] = {"task_id": [task.task_id] * n}
    if task.point is not None:
        head["point"] = [task.point] * n
    head["replication"] = [task.replication] * n
    for key, v in task.overrides.items():
        head[key] = [_column_value(v)] * n
    head.update(
        seed_entropy=[task.seed_entropy] * n,
        spawn_key=[json.dumps(list(task.spawn_key))] * n,
        status=[status] * n,
        error=[error] * n,
        traceback=[tb] * n,
        warnings=[warned] * n,
        wall_seconds=[float(wall)] * n,
    )
    df = pd.DataFrame(head)
    for c in ("task_id", "spawn_key", "status", "error", "traceback", "warnings"):
        df[c] = df[c].astype("string")
    for c in ("point", "replication", "seed_entropy"):
        if c in df:
            df[c] = df[c].astype("int64")
    return pd.concat([df, est.reset_index(drop=True)], axis=1)
