"""What every experiment's analysis shares: sweep results, intervals, tables, figures.

:func:`load_results` reads a result folder of ``credsim sweep`` into a
:class:`SweepResults`; :func:`point_table` turns its long table into one row per point
and estimate with means over replications and 95% intervals; :func:`calibrated_point`
finds the calibrated nudge strength and credibility; an experiment's analysis is an
:class:`Analysis` (figures, the printed table, a conclusion), written out by
:func:`save_figures` and :meth:`Analysis.report`.

Conventions. Effects are in percentage points (pp); a *relative* effect is the mean
effect divided by the mean control mean (both over replications), as a fraction in the
tables and in % on the figures. A 95% interval of a mean over ``n`` replications is
``mean +- t sd / sqrt(n)`` with ``sd`` across replications and ``t`` Student's 97.5%
quantile with ``n - 1`` degrees of freedom (:func:`t95`: 12.7 for 2 replications, 3.18
for 4), not the normal 1.96, which is far too narrow for so few. With a single
replication it falls back to the study's own SE, ``effect +- 1.96 se`` (a large-sample
interval from thousands of learners). A relative interval divides by the control mean
as if it were known.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from sim import scenarios
from sim.params import Scenario
from sim.paths import PROJECT_ROOT

__all__ = [
    "CREDIBILITY",
    "NUDGE",
    "PRECISION",
    "PROJECT_ROOT",
    "SCENARIOS_DIR",
    "SIGNAL",
    "SWEEPS_DIR",
    "TREATED_SHARE",
    "VISIBILITY",
    "Z95",
    "Analysis",
    "SweepResults",
    "calibrated_point",
    "ci",
    "load_experiment",
    "load_results",
    "mean_interval",
    "nearest",
    "pct",
    "point_row",
    "point_table",
    "pp",
    "ratio_interval",
    "replication_values",
    "save_figures",
    "short_table",
    "t95",
]

SWEEPS_DIR = PROJECT_ROOT / "experiments" / "sweeps"
SCENARIOS_DIR = scenarios.PACKAGED  # where `credsim calibrate` writes paper.toml

NUDGE = "sharing.nudge_strength"
CREDIBILITY = "signal.credibility"
PRECISION = "signal.max_signal_precision"
TREATED_SHARE = "study.treated_share"
VISIBILITY = "visibility.enabled"
SIGNAL = "signal.enabled"

# ---- loading -------------------------------------------------------------------------


@dataclass
class SweepResults:
    """One sweep's results as the analysis needs them."""

    name: str  # the experiment (e.g. "nudge_credibility"), whatever the folder is called
    results: pd.DataFrame  # results.parquet: long form, one row per task and estimate
    keys: tuple[str, ...]  # the swept scenario keys (one column each)
    base: Scenario  # the sweep's base scenario (base.toml: overrides applied)
    folder: Path | None = None
    n_tasks: int | None = None  # tasks in the sweep (from the manifest), if known
    label: str = ""  # where these results come from, for readers

    @property
    def ok(self) -> pd.DataFrame:
        """The rows of finished tasks."""
        return self.results[(self.results["status"] == "ok") & self.results["id"].notna()]

    @property
    def n_ok(self) -> int:
        """Tasks that finished without an error."""
        return int(self.ok["task_id"].nunique())

    @property
    def replications(self) -> int:
        """Most replications at any point (finished tasks)."""
        ok = self.ok
        return int(ok.groupby("point")["task_id"].nunique().max()) if len(ok) else 0

    @property
    def n_learners(self) -> int:
        """Learners per simulated study."""
        return int(self.base.population.n_learners)

    @property
    def n_matched(self) -> float:
        """Mean matched learners per study (the sample of the job outcomes)."""
        nj = self.ok[self.ok["id"] == "new_job"]["n"]
        return float(nj.mean()) if len(nj) else math.nan

    def describe(self) -> str:
        """One line: where the results come from and their size."""
        done = f"{self.n_ok} of {self.n_tasks} tasks" if self.n_tasks else f"{self.n_ok} tasks"
        where = f" in {self.folder}" if self.folder else ""
        return (
            f"{self.name}: {self.label or 'sweep results'}{where}; {done} finished, "
            f"{self.results['point'].nunique()} points, up to {self.replications} "
            f"replication(s) per point, {self.n_learners:,} learners per study "
            f"(~{self.n_matched:,.0f} matched)"
        )


def _keys_from(results: pd.DataFrame, manifest: Mapping[str, Any]) -> tuple[str, ...]:
    params = manifest.get("sweep", {}).get("parameters")
    if isinstance(params, Mapping) and params:
        return tuple(params)
    cols = list(results.columns)  # the store puts the swept keys between these two
    if "replication" in cols and "seed_entropy" in cols:
        return tuple(cols[cols.index("replication") + 1 : cols.index("seed_entropy")])
    return ()


def load_results(
    folder: str | Path, name: str | None = None, label: str = ""
) -> SweepResults | None:
    """A sweep result folder (``credsim sweep``), or ``None`` without ``results.parquet``.

    ``name`` is the experiment (default: the sweep's recorded name, else the folder's).
    """
    folder = Path(folder)
    path = folder / "results.parquet"
    if not path.is_file():
        return None
    results = pd.read_parquet(path)
    manifest: dict[str, Any] = {}
    if (folder / "manifest.json").is_file():
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            manifest = {}
    sweep_info = manifest.get("sweep", {})
    base = (
        Scenario.from_toml(folder / "base.toml") if (folder / "base.toml").is_file() else Scenario()
    )
    return SweepResults(
        name=name or sweep_info.get("name") or folder.name,
        results=results,
        keys=_keys_from(results, manifest),
        base=base,
        folder=folder,
        n_tasks=sweep_info.get("n_tasks"),
        label=label,
    )


def load_experiment(name: str, results_dir: str | Path = "results/sweeps") -> SweepResults | None:
    """The full-scale results of experiment ``name`` (``<results_dir>/<name>``), if any."""
    return load_results(
        Path(results_dir) / name,
        name=name,
        label="results of `credsim sweep` (the scale of the sweep file)",
    )


def calibrated_point(
    res: SweepResults, scenarios_dir: str | Path = SCENARIOS_DIR
) -> dict[str, Any]:
    """The calibrated nudge strength and credibility, and where they were read.

    From ``sim/scenarios/paper.toml`` when it exists (``credsim calibrate`` writes it), else
    from the base scenario recorded with the sweep (``base.toml``).
    """
    paper = Path(scenarios_dir) / "paper.toml"
    scn, source = res.base, "the sweep's base scenario"
    if paper.is_file():
        try:
            scn, source = Scenario.from_toml(paper), "sim/scenarios/paper.toml"
        except Exception:  # being written, or invalid: the base is the next best
            pass
    return {
        NUDGE: float(scn.sharing.nudge_strength),
        CREDIBILITY: float(scn.signal.credibility),
        "source": source,
    }


# ---- per-point statistics --------------------------------------------------------------


#: The normal 97.5% quantile, for one study's own (large-sample) SE.
Z95 = 1.96


def t95(n: Any) -> Any:
    """Student's 97.5% quantile for a mean over ``n`` replications (``n - 1`` degrees of
    freedom); NaN below 2. ``n`` a number, an array or a Series (returned alike)."""
    if isinstance(n, pd.Series):
        return pd.Series(t95(n.to_numpy(float)), index=n.index)
    n = np.asarray(n, dtype=float)
    dof = np.where(n >= 2, n - 1, np.nan)
    q = stats.t.ppf(0.975, dof)
    return float(q) if q.ndim == 0 else q


def _half_width(sd: pd.Series, n: pd.Series, se: pd.Series | None = None) -> pd.Series:
    """95% half-width of a mean over replications, ``t95(n) sd / sqrt(n)`` (one
    replication: ``Z95`` x its study's SE)."""
    n = n.astype(float)
    hw = t95(n) * sd.astype(float) / np.sqrt(n.where(n > 0))
    hw = hw.where(n >= 2)
    if se is not None:
        hw = hw.where(n != 1, Z95 * se.astype(float))
    return hw


def point_table(results: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per point and estimate id: the mean estimate and true effect with 95% intervals.

    Columns: ``point``, the swept ``keys``, ``id``, ``estimator``, ``n`` (replications
    with an estimate), ``effect`` (mean, pp), ``effect_sd``, ``effect_lo``,
    ``effect_hi``, ``se`` (mean SE, pp), ``n_true``, ``true`` (mean true effect, pp),
    ``true_lo``, ``true_hi``, ``control_mean`` (%), ``rel`` (``effect / control_mean``,
    a fraction), ``rel_lo``, ``rel_hi``, ``true_rel``. Only finished tasks count.
    """
    keys = list(keys)
    ok = results[(results["status"] == "ok") & results["id"].notna()]
    g = ok.groupby(["point", "id"], sort=True)
    t = g.agg(
        estimator=("estimator", "first"),
        n=("effect", "count"),
        effect=("effect", "mean"),
        effect_sd=("effect", "std"),
        se=("se", "mean"),
        n_true=("true_effect", "count"),
        true=("true_effect", "mean"),
        true_sd=("true_effect", "std"),
        control_mean=("control_mean", "mean"),
    ).reset_index()
    hw = _half_width(t["effect_sd"], t["n"], t["se"])
    t["effect_lo"], t["effect_hi"] = t["effect"] - hw, t["effect"] + hw
    thw = _half_width(t["true_sd"], t["n_true"])
    t["true_lo"], t["true_hi"] = t["true"] - thw, t["true"] + thw
    cm = t["control_mean"].where(t["control_mean"] != 0)
    for col, src in (
        ("rel", "effect"),
        ("rel_lo", "effect_lo"),
        ("rel_hi", "effect_hi"),
        ("true_rel", "true"),
    ):
        t[col] = t[src] / cm
    if keys:
        params = ok.groupby("point", sort=True)[keys].first().reset_index()
        t = t.merge(params, on="point", how="left")
    cols = [
        "point",
        *keys,
        "id",
        "estimator",
        "n",
        "effect",
        "effect_sd",
        "effect_lo",
        "effect_hi",
        "se",
        "n_true",
        "true",
        "true_lo",
        "true_hi",
        "control_mean",
        "rel",
        "rel_lo",
        "rel_hi",
        "true_rel",
    ]
    return t[cols].sort_values(["point", "id"], kind="stable").reset_index(drop=True)


def point_row(pt: pd.DataFrame, rid: str, **where: Any) -> pd.Series | None:
    """The first row of :func:`point_table` ``pt`` with id ``rid`` and the parameter
    values ``where`` (e.g. ``**{"study.treated_share": 0.5}``), or None."""
    sel = pt["id"] == rid
    for k, v in where.items():
        sel &= pt[k] == v
    rows = pt[sel]
    return rows.iloc[0] if len(rows) else None


def nearest(values: Iterable[float], target: float) -> float:
    """The value of ``values`` closest to ``target``."""
    vals = np.asarray(sorted(set(values)), float)
    return float(vals[np.argmin(np.abs(vals - target))])


def pct(v: float, nd: int = 1) -> str:
    """``v`` (already in %) as ``"6.2%"``; ``"n/a"`` when missing."""
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}f}%"


def pp(v: float, nd: int = 2) -> str:
    """``v`` (percentage points) as ``"+1.15 pp"``; ``"n/a"`` when missing."""
    return "n/a" if v is None or not np.isfinite(v) else f"{v:+.{nd}f} pp"


# ---- one experiment's output -------------------------------------------------------------


@dataclass
class Analysis:
    """What one experiment's analysis produced."""

    name: str
    figures: dict[str, Figure]
    table: pd.DataFrame  # the short table that is printed
    conclusion: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: Further tables printed after ``table``, each under its heading.
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: The numbers drawn in each figure (same keys as ``figures``), saved beside it as CSV.
    figure_data: dict[str, pd.DataFrame] = field(default_factory=dict)

    def report(self) -> str:
        """The printed text: the table, the further tables, then the conclusion."""
        parts = []
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            parts.append(self.table.to_string(index=False))
            for heading, table in self.tables.items():
                parts += [f"{heading}:", table.to_string()]
        parts.append(self.conclusion)
        return "\n".join(parts)


def short_table(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """The columns ``cols`` of ``df``, rounded to 3 decimals (the printed tables)."""
    return df[list(cols)].round(3)


def save_figures(
    analysis: Analysis,
    out_dir: str | Path,
    dpi: int = 300,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Save every figure as ``<out_dir>/<name>_<figure>.<format>`` (PNG at ``dpi``, SVG
    as vectors) and the data behind it, when the analysis gives it
    (:attr:`Analysis.figure_data`), as ``<name>_<figure>.csv``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, fig in analysis.figures.items():
        for fmt in formats:
            path = out / f"{analysis.name}_{key}.{fmt}"
            fig.savefig(path, dpi=dpi, format=fmt)
            paths.append(path)
        if key in analysis.figure_data:
            path = out / f"{analysis.name}_{key}.csv"
            analysis.figure_data[key].to_csv(path, index=False)
            paths.append(path)
    return paths


def seeds_are_common(results: pd.DataFrame) -> bool:
    """Whether replication ``r`` of every point ran in the same world (a sweep with
    ``common_seeds``): one seed entropy and one spawn key per replication, so a point's
    effect can be compared with another's replication by replication."""
    ok = results[results["status"] == "ok"] if "status" in results else results
    if ok.empty:
        return False
    keys = pd.Series(
        [
            f"{e}:{np.asarray(k).tolist()}"
            for e, k in zip(ok["seed_entropy"], ok["spawn_key"], strict=True)
        ],
        index=ok.index,
    )
    return bool(keys.groupby(ok["replication"]).nunique().max() == 1)


def ci(name: str) -> list[str]:
    """A column and its 95% bounds: ``[name, name_lo, name_hi]``."""
    return [name, f"{name}_lo", f"{name}_hi"]


def mean_interval(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean of the finite ``values`` (one per replication) and its 95% interval,
    ``mean +- t95(n) sd / sqrt(n)``; NaN bounds with fewer than two values."""
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(t95(len(v))) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


def ratio_interval(num: Iterable[float], den: Iterable[float]) -> tuple[float, float, float]:
    """``mean(num) / mean(den)`` over paired replications and its 95% interval.

    The ratio estimator's linearization: with ``r`` the ratio and ``z_i = num_i - r den_i``,
    ``se(r) = sd(z) / (sqrt(n) |mean(den)|)``, and the interval ``r +- t95(n) se(r)``
    (Student's t, ``n - 1`` degrees of freedom). Pairs with a non-finite member are left
    out; NaN bounds with fewer than two pairs, NaN everything when ``mean(den)`` is 0.
    """
    a, b = np.asarray(list(num), dtype=float), np.asarray(list(den), dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if not len(a) or b.mean() == 0:
        return math.nan, math.nan, math.nan
    r = float(a.mean() / b.mean())
    if len(a) < 2:
        return r, math.nan, math.nan
    se = float((a - r * b).std(ddof=1)) / (math.sqrt(len(a)) * abs(float(b.mean())))
    half = float(t95(len(a))) * se
    return r, r - half, r + half


def replication_values(
    res: SweepResults, rid: str, column: str = "true_effect", **where: Any
) -> pd.Series:
    """One value per replication of estimate ``rid`` at the point with the parameter
    values ``where``: a Series indexed by replication (finished tasks only)."""
    ok = res.ok
    sel = ok["id"] == rid
    for k, v in where.items():
        sel &= ok[k] == v
    rows = ok[sel]
    return rows.groupby("replication")[column].first().astype(float)
