"""The sweep file: its format, and its validation before any work.

A TOML file with three tables::

    [sweep]
    name = "small_demo"        # folder name of the results: results/sweeps/<name>
    description = "..."        # optional
    base = "small"             # a scenario name (see sim.scenarios) or a path
    replications = 2           # simulated studies per point, >= 1
    seed = 20260301            # master seed, >= 0
    twin = false               # optional: also run each study's twin for the true effects
    common_seeds = false       # optional: replication r of every point uses the same seed

    [sweep.overrides]          # optional: fixed changes to the base, dotted keys
    "population.n_learners" = 3000

    [parameters]               # the swept scenario keys, dotted
    "signal.credibility" = { values = [0.3, 0.6, 0.9] }   # a list (any type: true/false too)
    "sharing.nudge_strength" = { grid = [0.0, 4.0, 5], relative = true }  # linspace(lo, hi, n)
    "market.hiring_bar" = { range = [0.8, 1.6] }          # sampled: needs [sample]

    [sample]                   # optional: a space-filling design over the `range` keys
    method = "sobol"           # or "lhs"; scrambled, seeded from the master seed
    n = 64                     # Sobol' needs a power of 2

``common_seeds = true`` gives replication ``r`` of every point the same seed (common
random numbers across points: the same population, graph and weekly draws wherever the
parameters leave them alone), so that differences between points are the parameters'
and not the worlds'; compare points replication by replication then. By default every
task has a seed of its own.

``relative = true`` reads the numbers as multiples of the base scenario's value (after
``[sweep.overrides]``), so a file can say "0 to 4 times the calibrated nudge" before the
calibration is done; the stored columns hold the resulting absolute values. Keys may be
quoted (``"signal.credibility"``) or bare dotted TOML keys (``signal.credibility``).

Everything is checked when the file is loaded (:func:`load_sweep`): unknown tables or
keys (with the nearest valid name), wrong types, unknown scenario keys, and every
point's scenario (:mod:`sim.sweep.design`) against the schema, so a bad value fails
before any work with the file, the key and the allowed range in the message.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim import scenarios
from sim.params import Scenario, ScenarioError
from sim.sweep.design import design_points

__all__ = ["Parameter", "SweepError", "SweepSpec", "load_sweep", "parse_sweep"]

_TABLES = {
    "sweep": (
        "name",
        "description",
        "base",
        "replications",
        "seed",
        "twin",
        "common_seeds",
        "overrides",
    ),
    "parameters": (),
    "sample": ("method", "n"),
}
_SPEC_KEYS = ("values", "grid", "range", "relative")
_SAMPLERS = ("sobol", "lhs")


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
    common_seeds: bool = False  # replication r of every point shares a seed

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

    ``base`` is looked up next to the sweep file when it is a path, and as
    found by :func:`sim.scenarios.find` when a bare name (next to the sweep file, in
    ``./scenarios/``, or packaged).

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
        raise SweepError(
            f"{source}: [sweep] name: expected letters, digits, '_', '-' or '.' "
            f"(it names the result folder), got {name!r}"
        )
    description = _typed(sw, "description", str, source, default="")
    base_ref = _typed(sw, "base", str, source)
    replications = _typed(sw, "replications", int, source)
    if replications < 1:
        raise SweepError(
            f"{source}: [sweep] replications: expected an integer >= 1, got {replications}"
        )
    seed = _typed(sw, "seed", int, source)
    if seed < 0:
        raise SweepError(f"{source}: [sweep] seed: expected an integer >= 0, got {seed}")
    twin = _typed(sw, "twin", bool, source, default=False)
    common_seeds = _typed(sw, "common_seeds", bool, source, default=False)
    fixed = _dotted(_typed(sw, "overrides", dict, source, default={}), source, "[sweep.overrides]")

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
            raise SweepError(
                f"{source}: '{p.key}' is both in [sweep.overrides] and in [parameters]; keep one"
            )
    ranged = [p for p in parameters if p.kind == "range"]
    sample_method = sample_n = None
    if "sample" in data:
        smp = data["sample"]
        for key in ("method", "n"):
            if key not in smp:
                raise SweepError(f"{source}: [sample] {key}: missing (required)")
        sample_method = _typed(smp, "method", str, source, table="sample")
        if sample_method not in _SAMPLERS:
            raise SweepError(
                f"{source}: [sample] method: expected one of {list(_SAMPLERS)}, "
                f"got {sample_method!r}{_nearest(sample_method, _SAMPLERS)}"
            )
        sample_n = _typed(smp, "n", int, source, table="sample")
        if sample_n < 1:
            raise SweepError(f"{source}: [sample] n: expected an integer >= 1, got {sample_n}")
        if sample_method == "sobol" and sample_n & (sample_n - 1):
            lo = 1 << (sample_n.bit_length() - 1)
            raise SweepError(
                f"{source}: [sample] n: Sobol' points need a power of 2 "
                f"(e.g. {lo} or {2 * lo}), got {sample_n}"
            )
        if not ranged:
            raise SweepError(
                f"{source}: [sample] needs at least one parameter given as {{ range = [lo, hi] }}"
            )
    elif ranged:
        raise SweepError(
            f"{source}: [parameters] '{ranged[0].key}': a range is sampled: add "
            'a [sample] table (method = "sobol" or "lhs", n = ...)'
        )

    points = design_points(parameters, sample_method, sample_n, seed, _cast)
    for i, point in enumerate(points):  # every task's scenario, before any work
        try:
            scenario = base.with_overrides(
                point, source=f"{source}: [parameters] point {i} {point}"
            )
        except ScenarioError as err:
            raise SweepError(str(err)) from None
        share = scenario.study.treated_share
        if not twin and share in (0.0, 1.0):
            raise SweepError(
                f"{source}: study.treated_share = {share} leaves one arm empty, "
                "so there is nothing to estimate; set twin = true in [sweep] to "
                "record the true effects"
            )
        if not twin and scenario.study.mirror == "no_nudge":
            raise SweepError(
                f'{source}: study.mirror = "no_nudge" measures a policy by its twin '
                "world where no one is nudged; set twin = true in [sweep]"
            )
    return SweepSpec(
        name=name,
        description=description,
        source=source,
        text=text,
        data=data,
        base_ref=base_ref,
        base_path=base_path,
        base=base,
        overrides=fixed,
        replications=replications,
        seed=seed,
        twin=twin,
        common_seeds=common_seeds,
        parameters=parameters,
        sample_method=sample_method,
        sample_n=sample_n,
        points=tuple(points),
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
            raise SweepError(
                f"{source}: unknown {what} '{key}'{_nearest(key, valid)}; "
                f"expected one of {list(valid)}"
            )


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "a table"}


def _typed(
    mapping: Mapping[str, Any],
    key: str,
    kind: type,
    source: str,
    default: Any = ...,
    table: str = "sweep",
) -> Any:
    """``mapping[key]`` of ``[table]``, checked to be of ``kind`` (a bool is no int)."""
    if key not in mapping and default is not ...:
        return default
    value = mapping[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise SweepError(
            f"{source}: [{table}] {key}: expected {_TYPE_NAMES[kind]}, got "
            f"{value!r} ({type(value).__name__})"
        )
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
                raise SweepError(
                    f"{source}: {where}: unknown scenario key '{dotted}'"
                    f"{_nearest(dotted, list(_SCHEMA))}"
                )
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
        raise SweepError(
            f"{where}: expected a table like {{ values = [...] }}, "
            f"{{ grid = [lo, hi, n] }} or {{ range = [lo, hi] }}, got {spec!r}"
        )
    _known(spec, _SPEC_KEYS, f"{source}: [parameters] '{key}'", "key")
    kinds = [k for k in ("values", "grid", "range") if k in spec]
    if len(kinds) != 1:
        raise SweepError(
            f"{where}: give exactly one of values, grid or range (got {kinds or 'none'})"
        )
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
        values = (
            [_cast(key, v * scale) for v in raw] if relative else [_coerce(key, v) for v in raw]
        )
    elif kind == "grid":
        ok = (
            isinstance(raw, list)
            and len(raw) == 3
            and all(_is_number(v) for v in raw[:2])
            and isinstance(raw[2], int)
            and not isinstance(raw[2], bool)
            and raw[2] >= 1
        )
        if not ok or not numeric:
            raise SweepError(
                f"{where}: grid: expected [lo, hi, n] (numbers, n an integer "
                f">= 1) on a numeric key, got {raw!r}"
            )
        values = [_cast(key, x * scale) for x in np.linspace(raw[0], raw[1], raw[2])]
    else:
        ok = (
            isinstance(raw, list)
            and len(raw) == 2
            and all(_is_number(v) for v in raw)
            and raw[0] < raw[1]
        )
        if not ok or not numeric:
            raise SweepError(
                f"{where}: range: expected [lo, hi] with lo < hi on a numeric key, got {raw!r}"
            )
        return Parameter(
            key, kind, (), float(raw[0]) * scale, float(raw[1]) * scale, relative, base_value
        )
    if len(set(map(repr, values))) != len(values):
        raise SweepError(f"{where}: the values {values} repeat (add replications instead)")
    return Parameter(key, kind, tuple(values), relative=relative, base_value=base_value)
