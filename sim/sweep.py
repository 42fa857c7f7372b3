"""Sweeps: many scenarios times replications, run on any executor, stored so nothing is lost.

The model is a function from a scenario and a seed to estimates
(:func:`sim.reproduce.run_replication`); a sweep is the experiment around it, kept apart
from the model as in the EMA Workbench: a design of points in parameter space, R
replications at each point, an executor that runs them, and a store that keeps them.

Sweep file
----------
A TOML file with three tables::

    [sweep]
    name = "small_demo"        # folder name of the results: results/sweeps/<name>
    description = "..."        # optional
    base = "small"             # a scenario name (see sim.scenarios) or a path
    replications = 2           # simulated studies per point, >= 1
    seed = 20260301            # master seed, >= 0
    twin = false               # optional: also run each study's twin for the true effects

    [sweep.overrides]          # optional: fixed changes to the base, dotted keys
    "population.n_learners" = 3000

    [parameters]               # the swept scenario keys, dotted
    "signal.credibility" = { values = [0.3, 0.6, 0.9] }   # a list (any type: true/false too)
    "sharing.nudge_strength" = { grid = [0.0, 4.0, 5], relative = true }  # linspace(lo, hi, n)
    "market.hiring_bar" = { range = [0.8, 1.6] }          # sampled: needs [sample]

    [sample]                   # optional: a space-filling design over the `range` keys
    method = "sobol"           # or "lhs"; scrambled, seeded from the master seed
    n = 64                     # Sobol' needs a power of 2

``relative = true`` reads the numbers as multiples of the base scenario's value (after
``[sweep.overrides]``), so a file can say "0 to 4 times the calibrated nudge" before the
calibration is done; the stored columns hold the resulting absolute values. Keys may be
quoted (``"signal.credibility"``) or bare dotted TOML keys (``signal.credibility``).

Design and seeds
----------------
The ``values`` and ``grid`` keys form a full factorial (in file order, the last key
varying fastest); crossed with the ``[sample]`` points when there are ``range`` keys.
Point ``p`` and replication ``r`` make task ``p{p:04d}-r{r:02d}`` at position
``i = p * replications + r``; its seed is child ``i`` of
``np.random.SeedSequence(seed).spawn(n_points * replications)``, recorded as (entropy,
spawn_key). The sample's scrambling uses the child with spawn_key ``(2**32 - 1,)``,
which no task uses. Everything is checked when the file is loaded (:func:`load_sweep`):
unknown tables or keys (with the nearest valid name), wrong types, unknown scenario keys,
and every point's scenario against the schema, so a bad value fails before any work with
the file, the key and the allowed range in the message.

Result store
------------
::

    <out>/sweep.toml          the sweep file, as given
    <out>/base.toml           the resolved base scenario (overrides applied), every key
    <out>/manifest.json       provenance (sim.store.manifest), the master seed, sessions
    <out>/tasks/<id>.parquet  one file per finished task, written atomically
    <out>/results.parquet     every task's rows, in task order (rewritten at the end)
    <out>/summary.parquet     per point and estimate id: mean, sd, mean SE, true effect

A task file holds one row per estimate (long form): task_id, point, replication, one
column per swept key, seed_entropy, spawn_key (e.g. ``"[5]"``), status (``ok`` or
``error``), error, traceback, warnings, wall_seconds, then id, outcome, group,
estimator, effect, se, n, control_mean, rel, rel_se and true_effect (pp; NaN without a
twin). A failed task is one row with its parameters, the error and the traceback.

Rerunning on the same folder resumes: a task whose file is readable, matches the task
and has status ``ok`` is skipped; missing, unreadable and failed tasks run again. A
folder recorded for another sweep (different file content or base scenario) is refused.
One process at a time may work on a folder (an advisory lock, released if it dies).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import json
import math
import os
import re
import time
import tomllib
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim import scenarios
from sim.params import Scenario, ScenarioError
from sim.store import jsonable

__all__ = [
    "ESTIMATE_COLUMNS",
    "Parameter",
    "SweepError",
    "SweepOutcome",
    "SweepSpec",
    "Task",
    "consolidate",
    "expand",
    "load_sweep",
    "parse_sweep",
    "read_task_file",
    "run_sweep",
    "run_task",
    "summarize",
    "task_rows",
]

#: The long-form estimate columns of a task's rows (after the task columns).
ESTIMATE_COLUMNS = ("id", "outcome", "group", "estimator", "effect", "se", "n",
                    "control_mean", "rel", "rel_se", "true_effect")
_TEXT_ESTIMATES = ("id", "outcome", "group", "estimator")

#: spawn_key of the stream that scrambles a [sample] design (beyond any task's index).
_DESIGN_STREAM = 2**32 - 1

_TABLES = {"sweep": ("name", "description", "base", "replications", "seed", "twin",
                     "overrides"),
           "parameters": (),
           "sample": ("method", "n")}
_SPEC_KEYS = ("values", "grid", "range", "relative")
_SAMPLERS = ("sobol", "lhs")

#: A task function: one task in, its estimates (columns of ESTIMATE_COLUMNS) out.
TaskFn = Callable[["Task"], pd.DataFrame]


class SweepError(ScenarioError):
    """A sweep file, or a result folder, that cannot be used; nothing was run."""


# ---- the sweep file --------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One swept scenario key.

    ``kind`` is ``"values"`` or ``"grid"`` (``values`` holds the resolved values) or
    ``"range"`` (``low``/``high`` bound the sampled values). With ``relative`` the
    numbers in the file were multiples of ``base_value``; these fields are resolved.
    """

    key: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    relative: bool = False
    base_value: Any = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file: the base scenario, the design and the seeds' root."""

    name: str
    description: str
    source: str  # the sweep file (for messages)
    text: str  # the file as read (copied into the result folder)
    data: dict[str, Any] = dataclasses.field(repr=False)  # the parsed TOML
    base_ref: str  # `base` as written
    base_path: Path
    base: Scenario = dataclasses.field(repr=False)  # base file + [sweep.overrides]
    overrides: dict[str, Any]  # [sweep.overrides], dotted keys
    replications: int
    seed: int
    twin: bool
    parameters: tuple[Parameter, ...]
    sample_method: str | None
    sample_n: int | None
    points: tuple[dict[str, Any], ...] = dataclasses.field(repr=False)

    @property
    def keys(self) -> tuple[str, ...]:
        """The swept keys, in file order (one result column each)."""
        return tuple(p.key for p in self.parameters)

    @property
    def n_points(self) -> int:
        """Points of the design."""
        return len(self.points)

    @property
    def n_tasks(self) -> int:
        """Points times replications."""
        return self.n_points * self.replications


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (see the module docstring).

    ``base`` is found by :func:`sim.scenarios.find`: a path from the sweep file's
    folder; a bare name next to the sweep file, in ``./scenarios/``, or packaged.

    Raises
    ------
    SweepError
        Anything wrong in the file, its base scenario or any point's scenario; the
        message names the file, the key and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    return parse_sweep(path.read_text(encoding="utf-8"), source=str(path), folder=path.parent)


def parse_sweep(text: str, source: str = "<sweep>", folder: str | Path = ".") -> SweepSpec:
    """Validate sweep-file text; relative ``base`` paths are taken from ``folder``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{source}: not valid TOML ({err})") from None
    _known(data, tuple(_TABLES), source, "table")
    for table, keys in _TABLES.items():
        if table in data and not isinstance(data[table], dict):
            raise SweepError(f"{source}: [{table}] must be a table")
        if keys and table in data:
            _known(data[table], keys, source, f"key in [{table}]")
    if "sweep" not in data:
        raise SweepError(f"{source}: missing the [sweep] table (name, base, replications, seed)")
    sw = data["sweep"]
    for key in ("name", "base", "replications", "seed"):
        if key not in sw:
            raise SweepError(f"{source}: [sweep] {key}: missing (required)")
    name = _typed(sw, "name", str, source)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.strip(".") == "":
        raise SweepError(f"{source}: [sweep] name: expected letters, digits, '_', '-' or '.' "
                         f"(it names the result folder), got {name!r}")
    description = _typed(sw, "description", str, source, default="")
    base_ref = _typed(sw, "base", str, source)
    replications = _typed(sw, "replications", int, source)
    if replications < 1:
        raise SweepError(f"{source}: [sweep] replications: expected an integer >= 1, "
                         f"got {replications}")
    seed = _typed(sw, "seed", int, source)
    if seed < 0:
        raise SweepError(f"{source}: [sweep] seed: expected an integer >= 0, got {seed}")
    twin = _typed(sw, "twin", bool, source, default=False)
    fixed = _dotted(_typed(sw, "overrides", dict, source, default={}), source,
                    "[sweep.overrides]")

    base_path = _resolve_base(base_ref, Path(folder), source)
    try:
        base = Scenario.from_toml(base_path)
    except ScenarioError as err:
        raise SweepError(f"{source}: [sweep] base = {base_ref!r}: {err}") from None
    fixed = {k: _coerce(k, v) for k, v in fixed.items()}
    try:
        base = base.with_overrides(fixed, source=f"{source}: [sweep.overrides]")
    except ScenarioError as err:
        raise SweepError(str(err)) from None

    params_raw = _dotted(data.get("parameters", {}), source, "[parameters]")
    parameters = tuple(_parameter(k, v, base, source) for k, v in params_raw.items())
    for p in parameters:
        if p.key in fixed:
            raise SweepError(f"{source}: '{p.key}' is both in [sweep.overrides] and in "
                             "[parameters]; keep one")
    ranged = [p for p in parameters if p.kind == "range"]
    sample_method = sample_n = None
    if "sample" in data:
        smp = data["sample"]
        for key in ("method", "n"):
            if key not in smp:
                raise SweepError(f"{source}: [sample] {key}: missing (required)")
        sample_method = _typed(smp, "method", str, source, table="sample")
        if sample_method not in _SAMPLERS:
            raise SweepError(f"{source}: [sample] method: expected one of {list(_SAMPLERS)}, "
                             f"got {sample_method!r}{_nearest(sample_method, _SAMPLERS)}")
        sample_n = _typed(smp, "n", int, source, table="sample")
        if sample_n < 1:
            raise SweepError(f"{source}: [sample] n: expected an integer >= 1, got {sample_n}")
        if sample_method == "sobol" and sample_n & (sample_n - 1):
            lo = 1 << (sample_n.bit_length() - 1)
            raise SweepError(f"{source}: [sample] n: Sobol' points need a power of 2 "
                             f"(e.g. {lo} or {2 * lo}), got {sample_n}")
        if not ranged:
            raise SweepError(f"{source}: [sample] needs at least one parameter given as "
                             "{ range = [lo, hi] }")
    elif ranged:
        raise SweepError(f"{source}: [parameters] '{ranged[0].key}': a range is sampled: add "
                         "a [sample] table (method = \"sobol\" or \"lhs\", n = ...)")

    points = _design(parameters, sample_method, sample_n, seed)
    for i, point in enumerate(points):  # every task's scenario, before any work
        try:
            scenario = base.with_overrides(point, source=f"{source}: [parameters] point {i} "
                                           f"{point}")
        except ScenarioError as err:
            raise SweepError(str(err)) from None
        share = scenario.study.treated_share
        if not twin and share in (0.0, 1.0):
            raise SweepError(f"{source}: study.treated_share = {share} leaves one arm empty, "
                             "so there is nothing to estimate; set twin = true in [sweep] to "
                             "record the true effects")
    return SweepSpec(
        name=name, description=description, source=source, text=text, data=data,
        base_ref=base_ref, base_path=base_path, base=base, overrides=fixed,
        replications=replications, seed=seed, twin=twin, parameters=parameters,
        sample_method=sample_method, sample_n=sample_n, points=tuple(points),
    )


def _schema() -> dict[str, Any]:
    """Dotted scenario key -> its pydantic field."""
    out = {}
    for section, f in Scenario.model_fields.items():
        for name, ff in f.default_factory.model_fields.items():
            out[f"{section}.{name}"] = ff
    return out


_SCHEMA = _schema()


def _nearest(word: str, valid: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _known(table: Mapping[str, Any], valid: Sequence[str], source: str, what: str) -> None:
    for key in table:
        if key not in valid:
            raise SweepError(f"{source}: unknown {what} '{key}'{_nearest(key, valid)}; "
                             f"expected one of {list(valid)}")


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a table"}


def _typed(mapping: Mapping[str, Any], key: str, kind: type, source: str,
           default: Any = ..., table: str = "sweep") -> Any:
    """``mapping[key]`` of ``[table]``, checked to be of ``kind`` (a bool is no int)."""
    if key not in mapping and default is not ...:
        return default
    value = mapping[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise SweepError(f"{source}: [{table}] {key}: expected {_TYPE_NAMES[kind]}, got "
                         f"{value!r} ({type(value).__name__})")
    return value


def _dotted(table: Mapping[str, Any], source: str, where: str) -> dict[str, Any]:
    """Flatten ``{"signal": {"credibility": x}}`` and ``{"signal.credibility": x}``."""
    out: dict[str, Any] = {}
    sections = set(Scenario.model_fields)
    for key, value in table.items():
        if "." not in key and key in sections and isinstance(value, dict):
            items = [(f"{key}.{name}", v) for name, v in value.items()]
        else:
            items = [(key, value)]
        for dotted, v in items:
            if dotted not in _SCHEMA:
                raise SweepError(f"{source}: {where}: unknown scenario key '{dotted}'"
                                 f"{_nearest(dotted, list(_SCHEMA))}")
            if dotted in out:
                raise SweepError(f"{source}: {where}: '{dotted}' is given twice")
            out[dotted] = v
    return out


def _resolve_base(ref: str, folder: Path, source: str) -> Path:
    """The base scenario file (:func:`sim.scenarios.find`, paths from the sweep's folder)."""
    try:
        return scenarios.find(ref, folder=folder)
    except ScenarioError as err:
        raise SweepError(f"{source}: [sweep] base = {ref!r}: {err}") from None


def _annotation(key: str) -> Any:
    return _SCHEMA[key].annotation


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _clean(x: float) -> float:
    """A float without linspace noise (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}")


def _coerce(key: str, value: Any) -> Any:
    """Plain Python values of the field's type (strict validation takes no numpy)."""
    if isinstance(value, np.generic):
        value = value.item()
    if _annotation(key) is float and _is_number(value):
        return float(value)
    return value


def _cast(key: str, x: float) -> Any:
    """A computed number (grid, sample, relative) as the field's type."""
    return round(float(x)) if _annotation(key) is int else _clean(float(x))


def _parameter(key: str, spec: Any, base: Scenario, source: str) -> Parameter:
    where = f"{source}: [parameters] '{key}'"
    if not isinstance(spec, dict):
        raise SweepError(f"{where}: expected a table like {{ values = [...] }}, "
                         f"{{ grid = [lo, hi, n] }} or {{ range = [lo, hi] }}, got {spec!r}")
    _known(spec, _SPEC_KEYS, f"{source}: [parameters] '{key}'", "key")
    kinds = [k for k in ("values", "grid", "range") if k in spec]
    if len(kinds) != 1:
        raise SweepError(f"{where}: give exactly one of values, grid or range "
                         f"(got {kinds or 'none'})")
    kind = kinds[0]
    relative = spec.get("relative", False)
    if not isinstance(relative, bool):
        raise SweepError(f"{where}: relative: expected true or false, got {relative!r}")
    numeric = _annotation(key) in (int, float)
    section, _, name = key.partition(".")
    base_value = getattr(getattr(base, section), name)
    scale = 1.0
    if relative:
        if not numeric:
            raise SweepError(f"{where}: relative = true needs a numeric key")
        if base_value == 0:
            raise SweepError(f"{where}: relative = true, but the base value is 0")
        scale = float(base_value)
    raw = spec[kind]
    if kind == "values":
        if not isinstance(raw, list) or not raw:
            raise SweepError(f"{where}: values: expected a non-empty list, got {raw!r}")
        if relative and not all(_is_number(v) for v in raw):
            raise SweepError(f"{where}: values: relative values must be numbers, got {raw!r}")
        values = [_cast(key, v * scale) for v in raw] if relative else [
            _coerce(key, v) for v in raw]
    elif kind == "grid":
        ok = (isinstance(raw, list) and len(raw) == 3 and all(_is_number(v) for v in raw[:2])
              and isinstance(raw[2], int) and not isinstance(raw[2], bool) and raw[2] >= 1)
        if not ok or not numeric:
            raise SweepError(f"{where}: grid: expected [lo, hi, n] (numbers, n an integer "
                             f">= 1) on a numeric key, got {raw!r}")
        values = [_cast(key, x * scale) for x in np.linspace(raw[0], raw[1], raw[2])]
    else:
        ok = (isinstance(raw, list) and len(raw) == 2 and all(_is_number(v) for v in raw)
              and raw[0] < raw[1])
        if not ok or not numeric:
            raise SweepError(f"{where}: range: expected [lo, hi] with lo < hi on a numeric "
                             f"key, got {raw!r}")
        return Parameter(key, kind, (), float(raw[0]) * scale, float(raw[1]) * scale,
                         relative, base_value)
    if len(set(map(repr, values))) != len(values):
        raise SweepError(f"{where}: the values {values} repeat (add replications instead)")
    return Parameter(key, kind, tuple(values), relative=relative, base_value=base_value)


def _design(parameters: Sequence[Parameter], method: str | None, n: int | None,
            seed: int) -> list[dict[str, Any]]:
    """The design's points: the factorial of values/grid keys, crossed with the sample."""
    fact = [p for p in parameters if p.kind != "range"]
    ranged = [p for p in parameters if p.kind == "range"]
    sampled: list[dict[str, Any]] = [{}]
    if ranged:
        from scipy.stats import qmc

        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DESIGN_STREAM,)))
        if method == "sobol":
            unit = qmc.Sobol(len(ranged), scramble=True, rng=rng).random_base2(
                int(n).bit_length() - 1)
        else:
            unit = qmc.LatinHypercube(len(ranged), rng=rng).random(n)
        sampled = [{p.key: _cast(p.key, p.low + u * (p.high - p.low))
                    for p, u in zip(ranged, row, strict=True)} for row in unit]
    points = []
    for combo in itertools.product(*(p.values for p in fact)):
        fixed = dict(zip((p.key for p in fact), combo, strict=True))
        for s in sampled:
            merged = {**fixed, **s}
            points.append({p.key: merged[p.key] for p in parameters})  # file order
    return points


# ---- tasks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One replication at one point: everything a worker needs, and picklable."""

    task_id: str
    point: int
    replication: int
    index: int  # position in the sweep: point * replications + replication
    overrides: dict[str, Any]  # the swept keys' values at this point
    seed_entropy: int
    spawn_key: tuple[int, ...]
    twin: bool
    base: Scenario = dataclasses.field(repr=False, compare=False)

    @property
    def seed(self) -> np.random.SeedSequence:
        """This task's seed: child ``spawn_key`` of ``SeedSequence(seed_entropy)``."""
        return np.random.SeedSequence(self.seed_entropy, spawn_key=self.spawn_key)

    def scenario(self) -> Scenario:
        """The base scenario with this point's values."""
        return self.base.with_overrides(self.overrides, source=self.task_id)


def expand(spec: SweepSpec) -> list[Task]:
    """The sweep's tasks, point by point, replications within; the same on any machine."""
    reps = spec.replications
    seeds = np.random.SeedSequence(spec.seed).spawn(spec.n_points * reps)
    pw = max(4, len(str(spec.n_points - 1)))
    rw = max(2, len(str(reps - 1)))
    tasks = []
    for p, point in enumerate(spec.points):
        for r in range(reps):
            i = p * reps + r
            tasks.append(Task(
                task_id=f"p{p:0{pw}d}-r{r:0{rw}d}", point=p, replication=r, index=i,
                overrides=dict(point), seed_entropy=int(seeds[i].entropy),
                spawn_key=tuple(int(k) for k in seeds[i].spawn_key), twin=spec.twin,
                base=spec.base,
            ))
    return tasks


def run_task(task: Task) -> pd.DataFrame:
    """Run one simulated study (:func:`sim.study.run_study`); its rows in long form with
    the true effects (see :meth:`sim.study.StudyResult.rows` for the one-arm rule)."""
    from sim.study import run_study

    return run_study(task.scenario(), task.seed, twin=task.twin).rows()


def task_rows(task: Task, task_fn: TaskFn = run_task) -> pd.DataFrame:
    """Run ``task_fn(task)`` and return the task's rows; an exception becomes a row.

    Top level, so an executor can pickle it. The rows carry the task's identity, its
    parameters and seed, status, error and traceback, the warnings the task raised (one
    per line; recorded rather than printed over the progress bar) and the wall time in
    seconds (on a fresh worker process it includes importing the model).
    """
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # kept, not printed over the bar
        warnings.simplefilter("always")
        try:
            est = _conform(task_fn(task))
            status, error, tb = "ok", None, None
        except Exception as exc:
            est, status = _conform(None), "error"
            error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    seen = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    return _frame(task, est, status, error, tb, time.perf_counter() - t0,
                  "\n".join(seen) or None)


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


def _frame(task: Task, est: pd.DataFrame, status: str, error: str | None, tb: str | None,
           wall: float, warned: str | None = None) -> pd.DataFrame:
    n = len(est)
    head: dict[str, Any] = {"task_id": [task.task_id] * n, "point": [task.point] * n,
                            "replication": [task.replication] * n}
    for key, v in task.overrides.items():
        head[key] = [_column_value(v)] * n
    head.update(seed_entropy=[task.seed_entropy] * n,
                spawn_key=[json.dumps(list(task.spawn_key))] * n,
                status=[status] * n, error=[error] * n, traceback=[tb] * n,
                warnings=[warned] * n, wall_seconds=[float(wall)] * n)
    df = pd.DataFrame(head)
    for c in ("task_id", "spawn_key", "status", "error", "traceback", "warnings"):
        df[c] = df[c].astype("string")
    df["point"] = df["point"].astype("int64")
    df["replication"] = df["replication"].astype("int64")
    df["seed_entropy"] = df["seed_entropy"].astype("int64")
    return pd.concat([df, est.reset_index(drop=True)], axis=1)


def _failure_rows(task: Task, exc: BaseException) -> pd.DataFrame:
    """Rows for a task whose execution itself failed (a worker died, a lost future)."""
    tb = "".join(traceback.format_exception(exc))
    return _frame(task, _conform(None), "error", f"{type(exc).__name__}: {exc}", tb, math.nan)


# ---- the result store ------------------------------------------------------------------


def _task_path(out: Path, task_id: str) -> Path:
    return out / "tasks" / f"{task_id}.parquet"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    _write_atomic(path, lambda fh: df.to_parquet(fh, index=False))


def _write_text(text: str, path: Path) -> None:
    _write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def _json(data: Any) -> str:
    return json.dumps(jsonable(data), indent=2, allow_nan=False, default=str) + "\n"


def read_task_file(path: str | Path, task: Task | None = None) -> pd.DataFrame | None:
    """A task file's rows, or ``None`` if it is missing, unreadable or not ``task``'s."""
    try:
        df = pd.read_parquet(path)
    except Exception:  # truncated, empty, not Parquet: treated as missing
        return None
    need = {"task_id", "point", "replication", "seed_entropy", "spawn_key", "status",
            *ESTIMATE_COLUMNS}
    if df.empty or not need <= set(df.columns) or df["task_id"].nunique() != 1:
        return None
    if task is not None:
        row = df.iloc[0]
        same = (row["task_id"] == task.task_id and int(row["point"]) == task.point
                and int(row["replication"]) == task.replication
                and int(row["seed_entropy"]) == task.seed_entropy
                and row["spawn_key"] == json.dumps(list(task.spawn_key))
                and all(k in df.columns for k in task.overrides))
        if not same:
            return None
    return df


def _done(out: Path, task: Task) -> bool:
    df = read_task_file(_task_path(out, task.task_id), task)
    return df is not None and bool((df["status"] == "ok").all())


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an advisory lock on ``out`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"{out}: another sweep is running on this folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def _prepare(spec: SweepSpec, out: Path, manifest: Mapping[str, Any]) -> None:
    """Start a result folder, or check that it belongs to this sweep (a resume)."""
    recorded = out / "sweep.toml"
    if recorded.exists():
        try:
            old = tomllib.loads(recorded.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise SweepError(f"{out}: its sweep.toml is unreadable ({err}); use another "
                             "--out") from None
        if old != spec.data:
            diff = ", ".join(_differences(old, spec.data)[:6])
            raise SweepError(f"{out}: holds results of a different sweep ({spec.source} "
                             f"differs from {recorded} in: {diff}); use another --out, or "
                             "delete the folder to start over")
        base_file = out / "base.toml"
        if base_file.exists():
            old_base = Scenario.from_toml_text(base_file.read_text(encoding="utf-8"),
                                               source=str(base_file))
            if old_base != spec.base:
                diff = ", ".join(_differences(old_base.to_dict(), spec.base.to_dict())[:6])
                raise SweepError(f"{out}: the base scenario changed since this sweep "
                                 f"started ({spec.base_path} differs from {base_file} in: "
                                 f"{diff}); use another --out")
    if not recorded.exists():  # first: its presence marks the folder as this sweep's
        _write_text(spec.text, recorded)
    if not (out / "base.toml").exists():  # (no task has run before these exist)
        _write_text(spec.base.to_toml(), out / "base.toml")
    if not (out / "manifest.json").exists():
        _write_text(_json(manifest), out / "manifest.json")
    (out / "tasks").mkdir(exist_ok=True)
    for leftover in (out / "tasks").glob(".*.tmp-*"):  # writes cut short by a kill
        leftover.unlink(missing_ok=True)


def _sweep_manifest(spec: SweepSpec, timestamp: str | None,
                    command: Sequence[str] | None) -> dict[str, Any]:
    from sim import store

    info = {
        "name": spec.name, "description": spec.description, "file": spec.source,
        "base": spec.base_ref, "base_file": str(spec.base_path), "master_seed": spec.seed,
        "replications": spec.replications, "twin": spec.twin, "n_points": spec.n_points,
        "n_tasks": spec.n_tasks, "overrides": spec.overrides,
        "parameters": {p.key: {k: v for k, v in dataclasses.asdict(p).items() if k != "key"}
                       for p in spec.parameters},
        "sample": ({"method": spec.sample_method, "n": spec.sample_n,
                    "scramble_spawn_key": [_DESIGN_STREAM]} if spec.sample_method else None),
    }
    meta = store.manifest(spec.base, spec.seed, {"sweep": info, "sessions": []},
                          timestamp=timestamp, command=command)
    return meta


@dataclass
class SweepOutcome:
    """What one call of :func:`run_sweep` did."""

    out: Path
    n_tasks: int
    already_done: int  # tasks found finished in the folder
    ran: int  # tasks run this time
    failed: list[str]  # task ids whose status is "error" in the final table
    wall_seconds: float

    @property
    def ok(self) -> bool:
        """Every task of the sweep finished without error."""
        return not self.failed


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    executor: Executor,
    task_fn: TaskFn = run_task,
    *,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    timestamp: str | None = None,
    command: Sequence[str] | None = None,
    executor_info: str | None = None,
) -> SweepOutcome:
    """Run the tasks of ``spec`` missing from ``out`` on ``executor``; consolidate.

    Parameters
    ----------
    spec:
        A validated sweep (:func:`load_sweep`).
    out:
        The result folder (created, or resumed; see the module docstring).
    executor:
        Any :class:`concurrent.futures.Executor`: a ``ProcessPoolExecutor``, or a Dask
        cluster's ``Client.get_executor()``. Used with ``submit`` and ``as_completed``.
    task_fn:
        ``task -> estimates`` (a top-level function, so it pickles); default
        :func:`run_task`.
    progress:
        Called as ``progress(done, total)`` over the tasks run this time (first with 0).
    log:
        Called with one-line messages (what is resumed, what failed).
    timestamp, command, executor_info:
        Recorded in the manifest (the caller owns the clock and argv).

    Each finished task is written at once (atomically); an interrupted call leaves only
    complete task files, and the next call runs the rest.

    Raises
    ------
    SweepError
        ``out`` belongs to another sweep, is not a sweep folder, or is in use.
    """
    out = Path(out)
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    tasks = expand(spec)
    if out.exists() and not (out / "sweep.toml").exists():
        if not out.is_dir() or any(p.name != ".lock" for p in out.iterdir()):
            raise SweepError(f"{out}: exists and is not a sweep folder (no sweep.toml); "
                             "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _prepare(spec, out, _sweep_manifest(spec, timestamp, command))
        todo = [t for t in tasks if not _done(out, t)]
        done_before = len(tasks) - len(todo)
        if done_before:
            say(f"{out}: {done_before} of {len(tasks)} tasks already done; running the "
                f"other {len(todo)}")
        if progress:
            progress(0, len(todo))
        futures: dict[Future, Task] = {}
        try:
            for t in todo:
                futures[executor.submit(task_rows, t, task_fn)] = t
            for n_done, fut in enumerate(as_completed(futures), start=1):
                task = futures[fut]
                try:
                    rows = fut.result()
                except Exception as exc:  # the executor lost the task (a dead worker...)
                    rows = _failure_rows(task, exc)
                _write_parquet(rows, _task_path(out, task.task_id))
                if rows["status"].iloc[0] != "ok":
                    say(f"task {task.task_id} {task.overrides} failed: {rows['error'].iloc[0]}")
                if progress:
                    progress(n_done, len(todo))
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        results, _summary = consolidate(spec, out, tasks)
        failed = sorted(set(results.loc[results["status"] != "ok", "task_id"]))
        wall = time.perf_counter() - t0
        _record_session(out, {"timestamp": timestamp, "command": list(command or []),
                              "executor": executor_info, "ran": len(todo),
                              "already_done": done_before, "failed": len(failed),
                              "wall_seconds": round(wall, 3)})
    return SweepOutcome(out, len(tasks), done_before, len(todo), failed, wall)


def _record_session(out: Path, session: dict[str, Any]) -> None:
    from sim.store import git_info

    path = out / "manifest.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        meta = {}
    meta.setdefault("sessions", []).append({**session, "git": git_info()})
    _write_text(_json(meta), path)


def consolidate(spec: SweepSpec, out: str | Path,
                tasks: Sequence[Task] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gather the task files into ``results.parquet`` and ``summary.parquet``.

    One row set per task, in task order; a task without a valid file is left out (and
    run again by the next :func:`run_sweep`). Returns (results, summary).
    """
    out = Path(out)
    tasks = expand(spec) if tasks is None else tasks
    frames = [df for t in tasks
              if (df := read_task_file(_task_path(out, t.task_id), t)) is not None]
    if frames:
        results = pd.concat(frames, ignore_index=True)
    else:
        results = _frame(tasks[0], _conform(None), "error", None, None, math.nan).iloc[:0]
    summary = summarize(results, spec.keys)
    _write_parquet(results, out / "results.parquet")
    _write_parquet(summary, out / "summary.parquet")
    return results, summary


def summarize(results: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per point and estimate id, over the replications that finished.

    Columns: point, the swept ``keys``, id, estimator, n_replications (finished tasks
    with this id), n_estimated (non-NaN effects), effect_mean, effect_sd (across
    replications, ddof 1: NaN with one), se_mean, rel_mean, control_mean,
    true_effect_mean (NaN without twins). Effects are in percentage points.
    """
    keys = list(keys)
    ok = results[(results["status"] == "ok") & results["id"].notna()]
    cols = ["point", *keys, "id", "estimator", "n_replications", "n_estimated",
            "effect_mean", "effect_sd", "se_mean", "rel_mean", "control_mean",
            "true_effect_mean"]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    g = ok.groupby(["point", "id"], sort=False)
    table = g.agg(
        estimator=("estimator", "first"), n_replications=("task_id", "nunique"),
        n_estimated=("effect", "count"), effect_mean=("effect", "mean"),
        effect_sd=("effect", "std"), se_mean=("se", "mean"), rel_mean=("rel", "mean"),
        control_mean=("control_mean", "mean"), true_effect_mean=("true_effect", "mean"),
    ).reset_index()
    params = ok.groupby("point", sort=False)[keys].first().reset_index() if keys else None
    if params is not None:
        table = table.merge(params, on="point", how="left")
    return table.sort_values("point", kind="stable")[cols].reset_index(drop=True)
