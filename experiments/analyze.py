"""Figures, tables and conclusions of the policy experiments (the sweeps of experiments/sweeps).

    uv run python experiments/analyze.py [--results results/sweeps] [--out results/figures]
                                         [--only NAME ...]

For each experiment whose sweep results exist (``<results>/<name>/results.parquet``, as
written by ``credsim sweep experiments/sweeps/<name>.toml``) this draws the figures
(PNG, into ``--out``), prints a short table and a one-paragraph conclusion; missing
experiments are skipped with a message. The experiments:

- ``nudge_credibility``: maps over nudge strength x credibility of the relative new-job
  effect (mean estimate and true effect), the low-tertile effect and the sharing effect,
  with the paper's 6% and 11% as contour lines and the calibrated point marked;
- ``credibility_boost``, ``signal_precision``, ``stronger_nudge``: effects against the
  swept parameter, overall and by employability tertile (who gains), with 95% intervals;
- ``everyone_nudged``: what the 50/50 study predicts at scale versus the total effect of
  nudging everyone (from the twins), and the implied crowding out;
  ``everyone_nudged_pause`` the same in a market where a hired learner stops searching
  for 26 weeks;
- ``channels``: the new-job effect with visibility and signal each on or off.

Everything here is importable (notebooks 03 and 04 use it): :func:`load_results` reads a
result folder, :func:`analyze_experiment` returns figures, a table and the conclusion,
and :func:`run_small` runs a reduced-scale version of a sweep for readers without the
full-scale results. The figures themselves are drawn by :mod:`sim.plots`.

Conventions. Effects are in percentage points (pp); a *relative* effect is the mean
effect divided by the mean control mean (both over replications), as a fraction in the
tables and in % on the figures. A 95% interval of a mean over replications is
``mean +- 1.96 sd / sqrt(n)`` (``sd`` across replications); with a single replication it
falls back to the study's own SE, ``effect +- 1.96 se``. With only 2 to 4 replications
these normal intervals are too narrow (a t interval would be wider), so read them as a
guide. A relative interval divides by the control mean as if it were known.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim import plots, scenarios
from sim.params import Scenario
from sim.targets import TARGETS

__all__ = [
    "EXPERIMENTS",
    "VARIANT_OF",
    "Analysis",
    "Surface",
    "SweepResults",
    "analyze_all",
    "analyze_experiment",
    "calibrated_point",
    "channels_table",
    "conclude_channels",
    "conclude_curve",
    "conclude_everyone_nudged",
    "conclude_nudge_credibility",
    "credibility_needed",
    "crowding_out",
    "crowding_out_table",
    "curve_table",
    "fit_surface",
    "load_experiment",
    "load_or_run_small",
    "load_results",
    "main",
    "nudge_credibility_figures",
    "nudge_credibility_grid",
    "nudge_credibility_surfaces",
    "point_table",
    "run_small",
    "small_sweep",
    "surface_thresholds",
    "thresholds_table",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SWEEPS_DIR = PROJECT_ROOT / "experiments" / "sweeps"
SCENARIOS_DIR = scenarios.PACKAGED  # where `credsim calibrate` writes paper.toml
#: Where :func:`run_small` keeps its reduced-scale runs (git-ignored, like results/).
SMALL_DIR = PROJECT_ROOT / "results" / "notebook_sweeps"

#: The experiments, in the order they are analysed.
EXPERIMENTS = ("nudge_credibility", "credibility_boost", "signal_precision", "stronger_nudge",
               "everyone_nudged", "everyone_nudged_pause", "channels")
#: Experiments analysed as another one (the same design in a changed market).
VARIANT_OF = {"everyone_nudged_pause": "everyone_nudged"}

NUDGE = "sharing.nudge_strength"
CREDIBILITY = "signal.credibility"
PRECISION = "signal.max_signal_precision"
TREATED_SHARE = "study.treated_share"
VISIBILITY = "visibility.enabled"
SIGNAL = "signal.enabled"

#: The paper's relative new-job effects (fractions) and its sharing effect (pp).
PAPER_REL_OVERALL = TARGETS["new_job"].rel  # 0.058: "about 6%"
PAPER_REL_LOW = TARGETS["new_job_low"].rel  # 0.109: "about 11%"
PAPER_SHARED_PP = TARGETS["shared"].itt_pp  # 2.8 pp
#: Contour levels of the relative maps (%): the paper's 6% overall and 11% low tertile.
LEVELS_PCT = (6.0, 11.0)
#: What "matches the paper" means on the map (the acceptance bands of sim.reproduce).
MATCH_OVERALL = (0.05, 0.07)
MATCH_LOW = (0.095, 0.125)
MATCH_SHARED_PP = TARGETS["shared"].ci95()

#: Estimate id -> group label of the tertile figures.
GROUP_IDS = {"all": "new_job", "low": "new_job_low", "medium": "new_job_medium",
             "high": "new_job_high", "shared": "shared"}
#: (visibility.enabled, signal.enabled) -> label.
CHANNEL_LABELS = {(True, True): "both", (True, False): "visibility only",
                  (False, True): "signal only", (False, False): "neither"}

Log = Callable[[str], None]


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
        done = (f"{self.n_ok} of {self.n_tasks} tasks" if self.n_tasks
                else f"{self.n_ok} tasks")
        where = f" in {self.folder}" if self.folder else ""
        return (f"{self.name}: {self.label or 'sweep results'}{where}; {done} finished, "
                f"{self.results['point'].nunique()} points, up to {self.replications} "
                f"replication(s) per point, {self.n_learners:,} learners per study "
                f"(~{self.n_matched:,.0f} matched)")


def _keys_from(results: pd.DataFrame, manifest: Mapping[str, Any]) -> tuple[str, ...]:
    params = manifest.get("sweep", {}).get("parameters")
    if isinstance(params, Mapping) and params:
        return tuple(params)
    cols = list(results.columns)  # the store puts the swept keys between these two
    if "replication" in cols and "seed_entropy" in cols:
        return tuple(cols[cols.index("replication") + 1:cols.index("seed_entropy")])
    return ()


def load_results(folder: str | Path, name: str | None = None,
                 label: str = "") -> SweepResults | None:
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
    base = (Scenario.from_toml(folder / "base.toml") if (folder / "base.toml").is_file()
            else Scenario())
    return SweepResults(
        name=name or sweep_info.get("name") or folder.name, results=results,
        keys=_keys_from(results, manifest), base=base, folder=folder,
        n_tasks=sweep_info.get("n_tasks"), label=label)


def load_experiment(name: str, results_dir: str | Path = "results/sweeps") -> SweepResults | None:
    """The full-scale results of experiment ``name`` (``<results_dir>/<name>``), if any."""
    return load_results(Path(results_dir) / name, name=name,
                        label="results of `credsim sweep` (the scale of the sweep file)")


def calibrated_point(res: SweepResults,
                     scenarios_dir: str | Path = SCENARIOS_DIR) -> dict[str, Any]:
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
    return {NUDGE: float(scn.sharing.nudge_strength),
            CREDIBILITY: float(scn.signal.credibility), "source": source}


# ---- per-point statistics --------------------------------------------------------------


def _half_width(sd: pd.Series, n: pd.Series, se: pd.Series | None = None) -> pd.Series:
    """95% half-width of a mean over replications (one replication: 1.96 x its SE)."""
    n = n.astype(float)
    hw = 1.96 * sd.astype(float) / np.sqrt(n.where(n > 0))
    hw = hw.where(n >= 2)
    if se is not None:
        hw = hw.where(n != 1, 1.96 * se.astype(float))
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
    t = g.agg(estimator=("estimator", "first"), n=("effect", "count"),
              effect=("effect", "mean"), effect_sd=("effect", "std"), se=("se", "mean"),
              n_true=("true_effect", "count"), true=("true_effect", "mean"),
              true_sd=("true_effect", "std"),
              control_mean=("control_mean", "mean")).reset_index()
    hw = _half_width(t["effect_sd"], t["n"], t["se"])
    t["effect_lo"], t["effect_hi"] = t["effect"] - hw, t["effect"] + hw
    thw = _half_width(t["true_sd"], t["n_true"])
    t["true_lo"], t["true_hi"] = t["true"] - thw, t["true"] + thw
    cm = t["control_mean"].where(t["control_mean"] != 0)
    for col, src in (("rel", "effect"), ("rel_lo", "effect_lo"), ("rel_hi", "effect_hi"),
                     ("true_rel", "true")):
        t[col] = t[src] / cm
    if keys:
        params = ok.groupby("point", sort=True)[keys].first().reset_index()
        t = t.merge(params, on="point", how="left")
    cols = ["point", *keys, "id", "estimator", "n", "effect", "effect_sd", "effect_lo",
            "effect_hi", "se", "n_true", "true", "true_lo", "true_hi", "control_mean",
            "rel", "rel_lo", "rel_hi", "true_rel"]
    return t[cols].sort_values(["point", "id"], kind="stable").reset_index(drop=True)


def _row(pt: pd.DataFrame, rid: str, **where: Any) -> pd.Series | None:
    sel = pt["id"] == rid
    for k, v in where.items():
        sel &= pt[k] == v
    rows = pt[sel]
    return rows.iloc[0] if len(rows) else None


def _nearest(values: Iterable[float], target: float) -> float:
    vals = np.asarray(sorted(set(values)), float)
    return float(vals[np.argmin(np.abs(vals - target))])


# ---- nudge strength x credibility --------------------------------------------------------


def nudge_credibility_grid(res: SweepResults) -> pd.DataFrame:
    """One row per grid point: the effects of the map (relative ones in %).

    Columns: ``point``, ``sharing.nudge_strength`` (absolute), ``nudge_x`` (multiple of
    the sweep's base nudge), ``signal.credibility``, ``n`` (replications),
    ``rel_new_job``, ``true_rel_new_job``, ``rel_new_job_low``, ``true_rel_new_job_low``
    (relative effects, %), ``shared_pp`` and ``true_shared_pp`` (effect on sharing, pp).
    """
    pt = point_table(res.results, res.keys)
    base_nudge = float(res.base.sharing.nudge_strength)
    out = pt.loc[pt["id"] == "new_job", ["point", NUDGE, CREDIBILITY, "n"]].copy()
    out["nudge_x"] = out[NUDGE] / base_nudge if base_nudge else out[NUDGE]
    for rid, cols in (("new_job", {"rel": "rel_new_job", "true_rel": "true_rel_new_job"}),
                      ("new_job_low", {"rel": "rel_new_job_low",
                                       "true_rel": "true_rel_new_job_low"}),
                      ("shared", {"effect": "shared_pp", "true": "true_shared_pp"})):
        part = pt.loc[pt["id"] == rid, ["point", *cols]].rename(columns=cols)
        out = out.merge(part, on="point", how="left")
    for c in ("rel_new_job", "true_rel_new_job", "rel_new_job_low", "true_rel_new_job_low"):
        out[c] = 100 * out[c]
    return out[["point", NUDGE, "nudge_x", CREDIBILITY, "n", "rel_new_job",
                "true_rel_new_job", "rel_new_job_low", "true_rel_new_job_low", "shared_pp",
                "true_shared_pp"]].reset_index(drop=True)


def credibility_needed(grid: pd.DataFrame, value: str, level: float,
                       x: str = "nudge_x", y: str = CREDIBILITY) -> pd.DataFrame:
    """Per value of ``x``: the lowest ``y`` at which ``value`` reaches ``level``.

    Linear interpolation between the grid's ``y`` values at the first crossing from
    below; ``y`` itself when the lowest ``y`` already reaches it (``at_edge``), NaN when
    no ``y`` on the grid does. Columns: ``x``, ``needed``, ``at_edge``.
    """
    rows = []
    for xv, g in grid.sort_values(y).groupby(x, sort=True):
        ys, vs = g[y].to_numpy(float), g[value].to_numpy(float)
        keep = np.isfinite(vs)
        ys, vs = ys[keep], vs[keep]
        needed, edge = math.nan, False
        if len(vs) and vs[0] >= level:
            needed, edge = float(ys[0]), True
        else:
            for i in range(1, len(vs)):
                if vs[i - 1] < level <= vs[i]:
                    f = (level - vs[i - 1]) / (vs[i] - vs[i - 1])
                    needed = float(ys[i - 1] + f * (ys[i] - ys[i - 1]))
                    break
        rows.append({x: float(xv), "needed": needed, "at_edge": edge})
    return pd.DataFrame(rows, columns=[x, "needed", "at_edge"])


def thresholds_table(grid: pd.DataFrame, use_true: bool | None = None) -> pd.DataFrame:
    """Per nudge strength: the credibility at which the overall effect reaches 6% and the
    low-tertile effect 11% (:func:`credibility_needed`), written out (``~0.42``;
    ``<=0.05`` when the lowest credibility already does; ``none`` when no grid point
    does). True effects by default when there are any."""
    if use_true is None:
        use_true = bool(grid["true_rel_new_job"].notna().any())
    pre = "true_" if use_true else ""

    def text(r: pd.Series) -> str:
        if not np.isfinite(r["needed"]):
            return "none on the grid"
        return f"{'<=' if r['at_edge'] else '~'}{r['needed']:.2f}"

    out = {}
    for col, level, label in ((f"{pre}rel_new_job", LEVELS_PCT[0], "overall"),
                              (f"{pre}rel_new_job_low", LEVELS_PCT[1], "low tertile")):
        need = credibility_needed(grid, col, level).set_index("nudge_x")
        out[f"credibility for {level:g}% ({label})"] = need.apply(text, axis=1)
    table = pd.DataFrame(out)
    table.index.name = "nudge (x calibrated)"
    return table


@dataclass(frozen=True)
class Surface:
    """A smooth response surface over (nudge multiple ``x``, credibility ``y``).

    ``value = x * (a0 + a1 y + a2 y^2) + x^2 * (b0 + b1 y + b2 y^2)``: zero without a
    nudge (exactly so for the twins' true effects, and in expectation for the
    estimates), quadratic in credibility and in the nudge. Fitted by least squares to the
    grid's cells weighted by their replications, it averages out the cell-to-cell noise
    of a few replications, so that contours and thresholds are read off a smooth surface
    rather than off noise. ``r2`` and ``resid_sd`` (of a cell mean, in the value's unit)
    say how well it fits.
    """

    coef: np.ndarray
    r2: float
    resid_sd: float
    n_cells: int

    @staticmethod
    def basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return np.stack([x, x * y, x * y**2, x**2, x**2 * y, x**2 * y**2], axis=-1)

    def __call__(self, x: Any, y: Any) -> np.ndarray:
        return self.basis(x, y) @ self.coef


def fit_surface(grid: pd.DataFrame, value: str, x: str = "nudge_x",
                y: str = CREDIBILITY) -> Surface | None:
    """:class:`Surface` fitted to ``grid[value]`` (None with fewer cells than terms)."""
    g = grid[np.isfinite(grid[value].to_numpy(float))]
    if len(g) < 6:
        return None
    w = np.sqrt(g["n"].to_numpy(float)) if "n" in g else np.ones(len(g))
    v = g[value].to_numpy(float)
    b = Surface.basis(g[x].to_numpy(float), g[y].to_numpy(float))
    coef, *_ = np.linalg.lstsq(b * w[:, None], v * w, rcond=None)
    resid = v - b @ coef
    tss = float(np.sum((v - v.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / tss if tss > 0 else math.nan
    dof = max(len(g) - len(coef), 1)
    return Surface(coef, r2, float(np.sqrt(np.sum(resid**2) / dof)), len(g))


def _lowest_reaching(surface: Surface, x: float, level: float,
                     ys: np.ndarray) -> float:
    """The lowest ``y`` of ``ys`` (ascending) from which ``surface(x, y) >= level`` for
    every larger ``y`` on the mesh, interpolated; NaN when ``surface(x, ys[-1])`` falls
    short, ``ys[0]`` when the whole range reaches it."""
    v = surface(np.full(len(ys), x), ys)
    if v[-1] < level:
        return math.nan
    below = np.nonzero(v < level)[0]
    if not len(below):
        return float(ys[0])
    i = int(below[-1])
    return float(ys[i] + (level - v[i]) / (v[i + 1] - v[i]) * (ys[i + 1] - ys[i]))


def surface_thresholds(surfaces: Mapping[str, Surface | None],
                       nudges: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
                       y_range: tuple[float, float] = (0.05, 1.0)) -> pd.DataFrame:
    """Per nudge multiple: the credibility from which the fitted overall effect reaches
    6% and the low-tertile one 11% (``surfaces``: value column -> :class:`Surface`, keys
    ``"overall"`` and ``"low"``), written out as :func:`thresholds_table` does."""
    ys = np.linspace(*y_range, 951)
    out: dict[str, list[str]] = {}
    for key, level, label in (("overall", LEVELS_PCT[0], "overall"),
                              ("low", LEVELS_PCT[1], "low tertile")):
        sf = surfaces.get(key)
        col = []
        for x in nudges:
            c = _lowest_reaching(sf, x, level, ys) if sf is not None else math.nan
            col.append("none in range" if not np.isfinite(c)
                       else f"<={c:.2f}" if c <= ys[0] else f"~{c:.2f}")
        out[f"credibility for {level:g}% ({label})"] = col
    table = pd.DataFrame(out, index=pd.Index(list(nudges), name="nudge (x calibrated)"))
    return table


def nudge_credibility_surfaces(grid: pd.DataFrame) -> dict[str, Surface | None]:
    """Fitted surfaces of every map column (true effects where there are any)."""
    cols = ("rel_new_job", "true_rel_new_job", "rel_new_job_low", "true_rel_new_job_low",
            "shared_pp", "true_shared_pp")
    return {c: fit_surface(grid, c) for c in cols if c in grid}


def nudge_credibility_figures(res: SweepResults,
                              calibrated: Mapping[str, Any] | None = None,
                              smooth: bool = True) -> dict[str, Figure]:
    """The maps: relative new-job effect (estimate, true), low tertile (estimate, true),
    sharing (estimate); contours at 6% and 11% (2.8 pp for sharing), calibrated point.
    With ``smooth`` the contours are those of each map's fitted :class:`Surface`."""
    grid = nudge_credibility_grid(res)
    cal = calibrated if calibrated is not None else calibrated_point(res)
    base_nudge = float(res.base.sharing.nudge_strength) or 1.0
    marker = (cal[NUDGE] / base_nudge, cal[CREDIBILITY])
    reps = res.replications
    common = dict(
        marker=marker, marker_label=f"calibrated point ({cal['source']})",
        xlabel="nudge strength (multiple of the calibrated nudge, x)",
        ylabel="credential credibility to employers (share, 0-1)")
    what = (f"mean of {reps} simulated studies' estimates" if reps > 1
            else "one simulated study's estimate")
    specs = {
        "rel_new_job": ("rel_new_job", f"New job, all matched learners: {what}"),
        "rel_new_job_true": ("true_rel_new_job", "New job, all matched learners: true effect "
                             "(twins)"),
        "rel_new_job_low": ("rel_new_job_low", f"New job, low-employability tertile: {what}"),
        "rel_new_job_low_true": ("true_rel_new_job_low", "New job, low-employability "
                                 "tertile: true effect (twins)"),
    }
    surfaces = nudge_credibility_surfaces(grid) if smooth else {}
    figs = {}
    for key, (col, title) in specs.items():
        if grid[col].notna().any():
            figs[key] = plots.effect_heatmap(
                grid, "nudge_x", CREDIBILITY, col, levels=LEVELS_PCT,
                colorbar_label="effect of the nudge / control mean (%)", title=title,
                surface=surfaces.get(col), **common)
    if grid["shared_pp"].notna().any():
        figs["shared_pp"] = plots.effect_heatmap(
            grid, "nudge_x", CREDIBILITY, "shared_pp", levels=(PAPER_SHARED_PP,),
            level_fmt="{:g} pp", colorbar_label="effect of the nudge on sharing (pp)",
            title=f"Credential shared: {what} (paper: 2.8 pp)",
            surface=surfaces.get("shared_pp"), **common)
    return figs


def _pct(v: float, nd: int = 1) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}f}%"


def _pp(v: float, nd: int = 2) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:+.{nd}f} pp"


def conclude_nudge_credibility(grid: pd.DataFrame, calibrated: Mapping[str, Any],
                               base_nudge: float, replications: int = 0,
                               surfaces: Mapping[str, Surface | None] | None = None) -> str:
    """One paragraph on the map and the paper's 6% and 11% (``grid``: as from
    :func:`nudge_credibility_grid`; statements use the true effects where there are
    any, else the mean estimates). With ``surfaces`` (:func:`nudge_credibility_surfaces`)
    it ends with what the fitted surfaces say at the calibrated point itself."""
    use_true = grid["true_rel_new_job"].notna().any()
    overall = "true_rel_new_job" if use_true else "rel_new_job"
    low = "true_rel_new_job_low" if use_true else "rel_new_job_low"
    shared = "true_shared_pp" if use_true else "shared_pp"
    kind = "true" if use_true else "mean estimated"
    nxs = sorted(grid["nudge_x"].unique())
    cys = sorted(grid[CREDIBILITY].unique())
    cal_x = _nearest(nxs, calibrated[NUDGE] / (base_nudge or 1.0))
    cal_y = _nearest(cys, calibrated[CREDIBILITY])
    at = grid[(grid["nudge_x"] == cal_x) & (grid[CREDIBILITY] == cal_y)].iloc[0]
    col_x = grid[grid["nudge_x"] == cal_x].sort_values(CREDIBILITY)
    row_y = grid[grid[CREDIBILITY] == cal_y].sort_values("nudge_x")
    reps = f", {replications} replication(s) per point" if replications else ""
    parts = [
        f"The map covers {len(nxs)} nudge strengths (x{nxs[0]:.2g} to x{nxs[-1]:.2g} the "
        f"calibrated nudge) and {len(cys)} credibility values ({cys[0]:.2f} to "
        f"{cys[-1]:.2f}){reps}. At the grid point nearest the calibrated one (nudge "
        f"x{cal_x:.2f}, credibility {cal_y:.2f}) the mean estimate of the relative new-job "
        f"effect is {_pct(at['rel_new_job'])} (true {_pct(at['true_rel_new_job'])}) overall "
        f"and {_pct(at['rel_new_job_low'])} (true {_pct(at['true_rel_new_job_low'])}) in "
        f"the low-employability tertile; the paper reports {100 * PAPER_REL_OVERALL:.1f}% "
        f"and {100 * PAPER_REL_LOW:.1f}%.",
        f"At that nudge, raising credibility from {cys[0]:.2f} to {cys[-1]:.2f} moves the "
        f"{kind} overall effect from {_pct(col_x[overall].iloc[0])} to "
        f"{_pct(col_x[overall].iloc[-1])} and the low-tertile effect from "
        f"{_pct(col_x[low].iloc[0])} to {_pct(col_x[low].iloc[-1])}; at that credibility, "
        f"raising the nudge from x{nxs[0]:.2g} to x{nxs[-1]:.2g} moves the overall effect "
        f"from {_pct(row_y[overall].iloc[0])} to {_pct(row_y[overall].iloc[-1])} and the "
        f"effect on sharing from {_pp(row_y[shared].iloc[0])} to "
        f"{_pp(row_y[shared].iloc[-1])}.",
    ]
    for col, level, who in ((overall, LEVELS_PCT[0], "overall"),
                            (low, LEVELS_PCT[1], "low-tertile")):
        need = credibility_needed(grid, col, level).set_index("nudge_x")
        picks = [cal_x] + [x for x in (nxs[len(nxs) // 2], nxs[-1]) if x != cal_x]
        reached, never = [], []
        for x in dict.fromkeys(picks):
            r = need.loc[x]
            if np.isfinite(r["needed"]):
                op = "<=" if r["at_edge"] else "~"
                reached.append(f"credibility {op} {r['needed']:.2f} at nudge x{x:.2g}")
            else:
                never.append(f"x{x:.2g}")
        sentence = f"A {kind} {who} effect of {level:g}% is reached from "
        sentence += ", ".join(reached) if reached else "no grid point"
        if never:
            sentence += (f"{';' if reached else ''} at nudge {' and '.join(never)} no "
                         "credibility on the grid reaches it")
        parts.append(sentence + ".")
    match = grid[grid[overall].between(100 * MATCH_OVERALL[0], 100 * MATCH_OVERALL[1])
                 & grid[low].between(100 * MATCH_LOW[0], 100 * MATCH_LOW[1])]
    both = match[match[shared].between(*MATCH_SHARED_PP)]
    if len(match):
        pts = ", ".join(f"(x{r.nudge_x:.2g}, {r[CREDIBILITY]:.2f})"
                        for _, r in match.iterrows())
        parts.append(
            f"{len(match)} of {len(grid)} grid points give both published numbers "
            f"({100 * MATCH_OVERALL[0]:g}-{100 * MATCH_OVERALL[1]:g}% overall and "
            f"{100 * MATCH_LOW[0]:g}-{100 * MATCH_LOW[1]:g}% in the low tertile, {kind} "
            f"effects): {pts}; {len(both)} of them also give the paper's sharing effect "
            f"({MATCH_SHARED_PP[0]:.1f}-{MATCH_SHARED_PP[1]:.1f} pp). The two relative "
            "effects alone do not pin down nudge and credibility separately when these "
            "points spread along a contour; the sharing effect, which the nudge sets and "
            "credibility does not, is what separates them.")
    else:
        parts.append(
            f"No grid point gives both published numbers at once "
            f"({100 * MATCH_OVERALL[0]:g}-{100 * MATCH_OVERALL[1]:g}% overall and "
            f"{100 * MATCH_LOW[0]:g}-{100 * MATCH_LOW[1]:g}% in the low tertile, {kind} "
            "effects); with this few replications or learners, noise alone can cause that.")
    if surfaces:
        parts.append(_surface_sentences(surfaces, overall, low, kind, calibrated, base_nudge))
    return " ".join(parts)


def _surface_sentences(surfaces: Mapping[str, Surface | None], overall: str, low: str,
                       kind: str, calibrated: Mapping[str, Any], base_nudge: float) -> str:
    so, sl = surfaces.get(overall), surfaces.get(low)
    if so is None or sl is None:
        return ""
    cx, cy = calibrated[NUDGE] / (base_nudge or 1.0), calibrated[CREDIBILITY]
    ys = np.linspace(0.05, 1.0, 951)
    need_o = _lowest_reaching(so, cx, LEVELS_PCT[0], ys)
    need_l = _lowest_reaching(sl, cx, LEVELS_PCT[1], ys)

    def need(c: float, level: float) -> str:
        return (f"no credibility up to 1 reaches {level:g}%" if not np.isfinite(c)
                else f"{level:g}% needs credibility of at least ~{c:.2f}")

    return (f"Smoothed by a fitted surface (nudge times a quadratic in credibility, plus "
            f"nudge squared times another; R^2 {so.r2:.2f} overall and {sl.r2:.2f} in the "
            f"low tertile, residual SD of a cell {so.resid_sd:.1f} and {sl.resid_sd:.1f} "
            f"points), the {kind} effect at the calibrated point itself (nudge "
            f"x{cx:.2f}, credibility {cy:.2f}) is {_pct(float(so(cx, cy)))} overall and "
            f"{_pct(float(sl(cx, cy)))} in the low tertile; at the calibrated nudge "
            f"{need(need_o, LEVELS_PCT[0])} overall, and {need(need_l, LEVELS_PCT[1])} in "
            "the low tertile.")


# ---- effects against one parameter ---------------------------------------------------------


def curve_table(res: SweepResults, param: str, *, relative_to_base: bool = False,
                groups: Mapping[str, str] = GROUP_IDS) -> pd.DataFrame:
    """Effects against the swept ``param``, one row per value and group.

    ``groups`` maps a group label to an estimate id (default: all, the three tertiles
    and ``shared``). With ``relative_to_base`` the parameter is divided by the base
    scenario's value (e.g. the nudge as a multiple of the calibrated one), in column
    ``x``; otherwise ``x`` is the value itself. Columns: ``x``, ``group``, ``id``, ``n``,
    ``effect``, ``effect_lo``, ``effect_hi``, ``true``, ``true_lo``, ``true_hi``,
    ``control_mean``, ``rel``, ``rel_lo``, ``rel_hi``, ``true_rel``.
    """
    pt = point_table(res.results, res.keys)
    section, _, name = param.partition(".")
    scale = float(getattr(getattr(res.base, section), name)) if relative_to_base else 1.0
    back = {rid: g for g, rid in groups.items()}
    t = pt[pt["id"].isin(list(back))].copy()
    t["group"] = t["id"].map(back)
    t["x"] = t[param].astype(float) / (scale or 1.0)
    cols = ["x", "group", "id", "n", "effect", "effect_lo", "effect_hi", "true", "true_lo",
            "true_hi", "control_mean", "rel", "rel_lo", "rel_hi", "true_rel"]
    order = {g: i for i, g in enumerate(groups)}
    t = t.sort_values(["group", "x"], key=lambda c: c.map(order) if c.name == "group" else c)
    return t[cols].reset_index(drop=True)


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    """Do the 95% intervals of two rows overlap (unknown counts as overlapping)?"""
    vals = [a["effect_lo"], a["effect_hi"], b["effect_lo"], b["effect_hi"]]
    if not all(np.isfinite(v) for v in vals):
        return True
    return not (a["effect_hi"] < b["effect_lo"] or b["effect_hi"] < a["effect_lo"])


def conclude_curve(table: pd.DataFrame, what: str, fmt: str = "{:.2f}") -> str:
    """One paragraph on a :func:`curve_table`: from the lowest to the highest ``x``.

    ``what`` names the parameter (e.g. ``"credibility"``) and ``fmt`` formats its values
    (e.g. ``"x{:.0f} the study's"``).
    """
    def ends(group: str) -> tuple[pd.Series, pd.Series] | None:
        t = table[table["group"] == group].sort_values("x")
        return (t.iloc[0], t.iloc[-1]) if len(t) >= 2 else None

    e_all, e_low = ends("all"), ends("low")
    if e_all is None:
        return f"Too few points to say how the effect changes with {what}."
    a0, a1 = e_all
    x0, x1 = fmt.format(a0["x"]), fmt.format(a1["x"])
    parts = [f"Raising {what} from {x0} to {x1} moves the relative new-job effect (mean "
             f"estimate, true effect in brackets) from {_pct(100 * a0['rel'])} to "
             f"{_pct(100 * a1['rel'])} ({_pct(100 * a0['true_rel'])} to "
             f"{_pct(100 * a1['true_rel'])}) overall"]
    if e_low is not None:
        l0, l1 = e_low
        parts[0] += (f", and the low-tertile effect from {_pct(100 * l0['rel'])} to "
                     f"{_pct(100 * l1['rel'])} ({_pct(100 * l0['true_rel'])} to "
                     f"{_pct(100 * l1['true_rel'])})")
    parts[0] += "."
    gains = {}
    for g in ("low", "medium", "high"):
        e = ends(g)
        if e is not None:
            use = "true" if np.isfinite(e[0]["true"]) and np.isfinite(e[1]["true"]) else "effect"
            gains[g] = (float(e[1][use] - e[0][use]), use)
    if gains:
        best = max(gains, key=lambda g: gains[g][0] if np.isfinite(gains[g][0]) else -np.inf)
        kind = "true effect" if gains[best][1] == "true" else "mean estimate"
        said = ", ".join(f"{g} {_pp(v)}" for g, (v, _) in gains.items())
        parts.append(f"In percentage points ({kind}) the change is {said} by employability "
                     f"tertile: largest for the {best} tertile.")
    sharp = "distinguishable" if not _overlap(a0, a1) else "not distinguishable"
    n = int(table["n"].max()) if len(table) else 0
    parts.append(f"The overall estimates at the two ends are {sharp} at 95% across {n} "
                 f"replication(s) ({_pp(a0['effect'])} [{_pp(a0['effect_lo'])}, "
                 f"{_pp(a0['effect_hi'])}] vs {_pp(a1['effect'])} [{_pp(a1['effect_lo'])}, "
                 f"{_pp(a1['effect_hi'])}]).")
    s = ends("shared")
    if s is not None:
        parts.append(f"The effect on sharing goes from {_pp(s[0]['effect'])} to "
                     f"{_pp(s[1]['effect'])}.")
    return " ".join(parts)


# ---- everyone nudged ---------------------------------------------------------------------


def crowding_out(res: SweepResults, outcome: str = "new_job",
                 n_learners: int | None = None) -> dict[str, float]:
    """The 50/50 study's prediction at scale against the total effect of nudging everyone.

    At ``study.treated_share`` 0.5 the study's ITT (mean estimate, pp) times the number
    of learners is what the study predicts nudging everyone would add (``predicted``,
    in learners with a new job); the twins' true ITT at 0.5 gives the same prediction
    without estimation noise (``predicted_true``). At 1.0 the twins' difference is the
    total effect of nudging everyone versus no one (``total``), crowding out included.
    ``crowding`` = 1 - total / predicted, the share of the predicted gain that does not
    materialise (``crowding_true`` against ``predicted_true``); ``*_lo``/``*_hi`` are 95%
    intervals (delta method for the ratios, the parts independent). ``n_learners``
    defaults to the sweep's population; the effects are on the matched sample's
    reported jobs, extrapolated to every learner.
    """
    pt = point_table(res.results, res.keys)
    n = float(n_learners if n_learners is not None else res.n_learners)
    half = _row(pt, outcome, **{TREATED_SHARE: 0.5})
    full = _row(pt, outcome, **{TREATED_SHARE: 1.0})
    nan = math.nan

    def get(r: pd.Series | None, c: str) -> float:
        return float(r[c]) if r is not None and pd.notna(r[c]) else nan

    itt, itt_lo, itt_hi = get(half, "effect"), get(half, "effect_lo"), get(half, "effect_hi")
    tru, tru_lo, tru_hi = get(half, "true"), get(half, "true_lo"), get(half, "true_hi")
    tot, tot_lo, tot_hi = get(full, "true"), get(full, "true_lo"), get(full, "true_hi")
    out = {"n_learners": n, "itt_pp": itt, "true_itt_pp": tru, "total_pp": tot,
           "control_mean": get(half, "control_mean"),
           "untreated_mean": get(full, "control_mean")}
    for key, (m, lo, hi) in {"predicted": (itt, itt_lo, itt_hi),
                             "predicted_true": (tru, tru_lo, tru_hi),
                             "total": (tot, tot_lo, tot_hi)}.items():
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = (n * m / 100, n * lo / 100,
                                                        n * hi / 100)
    for key, (p, plo, phi) in {"crowding": (itt, itt_lo, itt_hi),
                               "crowding_true": (tru, tru_lo, tru_hi)}.items():
        se_p, se_t = (phi - plo) / (2 * 1.96), (tot_hi - tot_lo) / (2 * 1.96)
        c = 1 - tot / p if p else nan
        se_c = math.sqrt((se_t / p) ** 2 + (tot * se_p / p**2) ** 2) if p else nan
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = c, c - 1.96 * se_c, c + 1.96 * se_c
    return out


def crowding_out_table(co: Mapping[str, float]) -> pd.DataFrame:
    """The bars of :func:`plots.crowding_out_bars` from :func:`crowding_out`."""
    rows = [("the 50/50 study's ITT\nx all learners", "predicted", "prediction"),
            ("true 50/50 ITT (twins)\nx all learners", "predicted_true", "prediction"),
            ("everyone nudged vs no one\n(twins: total effect)", "total", "total")]
    return pd.DataFrame([{"label": label, "jobs": co[k], "lo": co[f"{k}_lo"],
                          "hi": co[f"{k}_hi"], "kind": kind} for label, k, kind in rows])


def conclude_everyone_nudged(co: Mapping[str, float]) -> str:
    """One paragraph on :func:`crowding_out`."""
    n = co["n_learners"]

    def with_ci(k: str, fmt: Callable[[float], str]) -> str:
        """``co[k]`` and its 95% interval (``k_lo``, ``k_hi``), each written by ``fmt``."""
        if not np.isfinite(co[k]):
            return "n/a"
        ci = (f" (95% CI {fmt(co[k + '_lo'])} to {fmt(co[k + '_hi'])})"
              if np.isfinite(co[k + "_lo"]) else "")
        return f"{fmt(co[k])}{ci}"

    def jobs(k: str) -> str:
        return with_ci(k, lambda v: f"{v:+,.0f}")

    def share(k: str) -> str:
        return with_ci(k, lambda v: f"{100 * v:.0f}%")

    text = (
        f"The 50/50 study estimates an ITT of {_pp(co['itt_pp'])} on a new job (true "
        f"{_pp(co['true_itt_pp'])}); applied to all {n:,.0f} learners it predicts that "
        f"nudging everyone changes the number of learners with a new job by "
        f"{jobs('predicted')} ({jobs('predicted_true')} from the true ITT). Nudging everyone "
        f"at once changes it by {jobs('total')} (twins: everyone nudged versus no one, "
        f"{_pp(co['total_pp'])}). "
        f"So {share('crowding')} of the "
        f"study's predicted gain does not materialise ({share('crowding_true')} of the "
        "true 50/50 effect): nudged learners compete with each other for the same "
        "vacancies, which a 50/50 experiment, where the nudged compete mostly with "
        "controls, cannot see.")
    for key, what in (("predicted", "The study's own prediction"),
                      ("predicted_true", "The true 50/50 effect")):
        lo = co.get(f"{key}_lo", math.nan)
        if np.isfinite(lo) and lo <= 0:
            text += (f" {what} is not distinguishable from zero here, so the crowding-out "
                     "share against it is not informative.")
    return text


# ---- channels ------------------------------------------------------------------------------


def channels_table(res: SweepResults,
                   groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per channel configuration and group (``all``, ``low``; ``shared``).

    Columns: ``label`` (both / visibility only / signal only / neither), ``visibility``,
    ``signal``, ``group``, ``id``, ``n``, ``effect``, ``effect_lo``, ``effect_hi``,
    ``true``, ``rel``, ``true_rel``.
    """
    groups = groups or {"all": "new_job", "low": "new_job_low", "shared": "shared"}
    pt = point_table(res.results, res.keys)
    back = {rid: g for g, rid in groups.items()}
    t = pt[pt["id"].isin(list(back))].copy()
    t["visibility"] = t[VISIBILITY].astype(bool)
    t["signal"] = t[SIGNAL].astype(bool)
    t["label"] = [CHANNEL_LABELS[(bool(v), bool(s))]
                  for v, s in zip(t["visibility"], t["signal"], strict=True)]
    t["group"] = t["id"].map(back)
    order = {lab: i for i, lab in enumerate(CHANNEL_LABELS.values())}
    gorder = {g: i for i, g in enumerate(groups)}
    t = t.sort_values(["label", "group"], key=lambda s: s.map(order if s.name == "label"
                                                                else gorder))
    cols = ["label", "visibility", "signal", "group", "id", "n", "effect", "effect_lo",
            "effect_hi", "true", "rel", "true_rel"]
    return t[cols].reset_index(drop=True)


def conclude_channels(table: pd.DataFrame) -> str:
    """One paragraph on :func:`channels_table`."""
    def get(label: str, group: str, col: str) -> float:
        r = table[(table["label"] == label) & (table["group"] == group)]
        return float(r[col].iloc[0]) if len(r) else math.nan

    use = "true" if table["true"].notna().any() else "effect"
    kind = "true effects" if use == "true" else "mean estimates"
    both = get("both", "all", use)

    def of_both(v: float) -> str:
        return f"{100 * v / both:.0f}% of the joint effect" if both and np.isfinite(
            v) and np.isfinite(both) and abs(both) > 1e-9 else "n/a of the joint effect"

    vis, sig, nei = (get(lab, "all", use) for lab in ("visibility only", "signal only",
                                                       "neither"))
    text = [
        f"With both channels the nudge adds {_pp(get('both', 'all', 'effect'))} of new "
        f"jobs (mean estimate; true {_pp(get('both', 'all', 'true'))}) and "
        f"{_pp(get('both', 'low', 'effect'))} in the low-employability tertile (true "
        f"{_pp(get('both', 'low', 'true'))}).",
        f"In {kind}: visibility alone gives {_pp(vis)} ({of_both(vis)}), the signal alone "
        f"{_pp(sig)} ({of_both(sig)}); with neither channel {_pp(nei)}, which should be zero "
        "up to noise (the nudge still raises sharing by "
        f"{_pp(get('neither', 'shared', 'effect'))}, but a shared credential then has no "
        "path to a job).",
    ]
    if all(np.isfinite(v) for v in (vis, sig, both)) and abs(both) > 1e-9:
        total = (vis + sig) / both
        how = ("more than" if total > 1.1 else "less than" if total < 0.9 else "about")
        meaning = {"more than": "the channels overlap (each alone does part of the other's "
                                "work)",
                   "less than": "the channels reinforce each other (a credential that is "
                                "both seen and believed is worth more than the sum)",
                   "about": "the channels add up"}[how]
        text.append(f"Taken at face value, the two channels alone sum to {100 * total:.0f}% "
                    f"of the joint effect ({how} 100%): {meaning}; check the intervals "
                    "before reading much into it.")
    low_vis, low_sig = get("visibility only", "low", use), get("signal only", "low", use)
    if np.isfinite(low_vis) and np.isfinite(low_sig):
        text.append(f"For the low tertile, visibility alone gives {_pp(low_vis)} and the "
                    f"signal alone {_pp(low_sig)}.")
    return " ".join(text)


# ---- one experiment ------------------------------------------------------------------------


@dataclass
class Analysis:
    """What one experiment's analysis produced."""

    name: str
    figures: dict[str, Figure]
    table: pd.DataFrame  # the short table that is printed
    conclusion: str
    extra: dict[str, Any] = field(default_factory=dict)


_CURVES = {  # experiment -> (parameter, relative to base, what, format, x label)
    "credibility_boost": (CREDIBILITY, False, "credibility", "{:.2f}",
                          "credential credibility to employers (share, 0-1)"),
    "signal_precision": (PRECISION, False, "the credential's signal precision", "{:.0f}",
                         "precision of the credential signal (1 / skill variance)"),
    "stronger_nudge": (NUDGE, True, "the nudge strength", "x{:.2g} the study's",
                       "nudge strength (multiple of the calibrated nudge, x)"),
}


def _short(df: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    return df[list(cols)].round(3)


def analyze_experiment(name: str, res: SweepResults,
                       calibrated: Mapping[str, Any] | None = None) -> Analysis:
    """Figures, table and conclusion of experiment ``name`` on ``res``."""
    kind = VARIANT_OF.get(name, name)
    if kind == "nudge_credibility":
        cal = calibrated if calibrated is not None else calibrated_point(res)
        grid = nudge_credibility_grid(res)
        surfaces = nudge_credibility_surfaces(grid)
        text = conclude_nudge_credibility(grid, cal, float(res.base.sharing.nudge_strength),
                                          res.replications, surfaces)
        use_true = bool(grid["true_rel_new_job"].notna().any())
        pre = "true_" if use_true else ""
        fitted = surface_thresholds({"overall": surfaces.get(f"{pre}rel_new_job"),
                                     "low": surfaces.get(f"{pre}rel_new_job_low")})
        table = _short(grid, ["nudge_x", CREDIBILITY, "n", "rel_new_job", "true_rel_new_job",
                              "rel_new_job_low", "true_rel_new_job_low", "shared_pp"])
        return Analysis(name, nudge_credibility_figures(res, cal), table, text,
                        {"grid": grid, "calibrated": cal, "surfaces": surfaces,
                         "thresholds": thresholds_table(grid),
                         "surface_thresholds": fitted})
    if kind in _CURVES:
        param, rel, what, fmt, xlabel = _CURVES[kind]
        t = curve_table(res, param, relative_to_base=rel)
        fig = plots.effect_curves(
            t, "x", xlabel=xlabel,
            title=f"Effects of the nudge as {what} varies ({res.replications} replication(s) "
                  f"per point, {res.n_learners:,} learners per study)")
        table = _short(t, ["x", "group", "n", "effect", "effect_lo", "effect_hi", "true",
                           "rel", "true_rel"])
        return Analysis(name, {"effects": fig}, table, conclude_curve(t, what, fmt),
                        {"curves": t})
    if kind == "everyone_nudged":
        co = crowding_out(res)
        bars = crowding_out_table(co)
        fig = plots.crowding_out_bars(
            bars, title=f"Nudging all {co['n_learners']:,.0f} learners: predicted and "
                        "total extra new jobs")
        table = pd.DataFrame([{"quantity": k, "value": v} for k, v in co.items()])
        return Analysis(name, {"crowding_out": fig}, table, conclude_everyone_nudged(co),
                        {"crowding_out": co})
    if kind == "channels":
        t = channels_table(res)
        fig = plots.channel_effects(
            t[t["group"].isin(["all", "low"])],
            title=f"Visibility versus signal ({res.replications} replication(s) per "
                  "configuration)")
        table = _short(t, ["label", "group", "n", "effect", "effect_lo", "effect_hi", "true",
                           "rel", "true_rel"])
        return Analysis(name, {"channels": fig}, table, conclude_channels(t), {"channels": t})
    raise ValueError(f"unknown experiment {name!r}; expected one of {list(EXPERIMENTS)}")


def analyze_all(results_dir: str | Path = "results/sweeps",
                out_dir: str | Path | None = "results/figures",
                names: Sequence[str] = EXPERIMENTS, log: Log = print,
                dpi: int = 120) -> dict[str, Analysis | None]:
    """Analyse every experiment of ``names`` whose results exist under ``results_dir``.

    Saves ``<out_dir>/<name>_<figure>.png`` (unless ``out_dir`` is None) and logs each
    experiment's description, table and conclusion; a missing experiment is logged and
    skipped (``None`` in the returned mapping).
    """
    done: dict[str, Analysis | None] = {}
    for name in names:
        res = load_experiment(name, results_dir)
        if res is None or res.n_ok == 0:
            why = "no results" if res is None else "no finished task"
            log(f"skip {name}: {why} in {Path(results_dir) / name} (run `uv run credsim "
                f"sweep experiments/sweeps/{name}.toml`)")
            done[name] = None
            continue
        a = analyze_experiment(name, res)
        log(f"\n== {res.describe()}")
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            for key, fig in a.figures.items():
                fig.savefig(out / f"{name}_{key}.png", dpi=dpi)
            log(f"figures: {', '.join(f'{out / name}_{k}.png' for k in a.figures)}")
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            log(a.table.to_string(index=False))
            if "thresholds" in a.extra:
                log("credibility needed, grid cells:")
                log(a.extra["thresholds"].to_string())
                log("credibility needed, fitted surface:")
                log(a.extra["surface_thresholds"].to_string())
        log(a.conclusion)
        done[name] = a
    return done


# ---- reduced-scale versions (for the notebooks) ----------------------------------------------


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").isalnum() else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}"
                                for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to a sweep file")


def _dump_sweep(data: Mapping[str, Any]) -> str:
    """Write a sweep file's tables ([sweep] with [sweep.overrides], [parameters], ...)."""
    out = []
    for table, body in data.items():
        subs = {k: v for k, v in body.items() if isinstance(v, Mapping) and table == "sweep"}
        out.append(f"[{table}]")
        out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items() if k not in subs]
        out.append("")
        for k, v in subs.items():
            out.append(f"[{table}.{k}]")
            out += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
            out.append("")
    return "\n".join(out)


def small_sweep(name: str, *, n_learners: int = 30_000, matched_share: float = 0.3,
                replications: int = 2, grid_points: int | None = None,
                sweeps_dir: str | Path = SWEEPS_DIR):
    """A reduced-scale version of ``experiments/sweeps/<name>.toml`` (not run).

    The same design with ``population.n_learners`` and ``population.matched_share`` set
    (more of a smaller population matched, so each study still has thousands of matched
    learners), ``replications`` per point, and every ``grid`` cut to ``grid_points``
    values (same ends) when given. The base ``paper`` falls back to ``baseline`` until
    ``credsim calibrate`` has written it. Returns a validated :class:`sim.sweep.SweepSpec`
    named ``<name>_small``.
    """
    from sim import sweep

    path = Path(sweeps_dir) / f"{name}.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    sw = dict(data["sweep"])
    base = sw["base"]
    if "/" not in base and not base.endswith(".toml") and base not in scenarios.names():
        base = "baseline"
    sw.update(name=f"{name}_small", base=base, replications=replications,
              description=f"Reduced scale ({n_learners:,} learners, matched share "
                          f"{matched_share}) of {path.name}: {sw.get('description', '')}")
    sw["overrides"] = {**sw.get("overrides", {}), "population.n_learners": n_learners,
                       "population.matched_share": matched_share}
    params = {}
    for key, spec in data.get("parameters", {}).items():
        spec = dict(spec)
        if grid_points is not None and "grid" in spec:
            lo, hi, _ = spec["grid"]
            spec["grid"] = [lo, hi, grid_points]
        params[key] = spec
    text = (f"# Written by experiments/analyze.py (small_sweep) from {path.name}.\n"
            + _dump_sweep({"sweep": sw, "parameters": params,
                           **({"sample": data["sample"]} if "sample" in data else {})}))
    return sweep.parse_sweep(text, source=f"{path} (reduced scale)", folder=path.parent)


def run_small(name: str, *, workers: int | None = None, executor: Any = None,
              out_root: str | Path = SMALL_DIR, log: Log | None = print,
              **kwargs: Any) -> SweepResults:
    """Run :func:`small_sweep` (``kwargs`` go to it) and load its results.

    The folder is ``<out_root>/<name>_small-<hash of the sweep and its base>``: a rerun
    with the same settings resumes (finished tasks are not run again), other settings
    get their own folder. The tasks run on ``executor`` when given (left open, so that
    several sweeps can share one pool), else on ``workers`` local processes (default:
    up to 2; with 1 they run in this process).
    """
    import contextlib
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from sim import sweep

    spec = small_sweep(name, **kwargs)
    digest = hashlib.sha256((spec.text + spec.base.to_toml()).encode()).hexdigest()[:10]
    out = Path(out_root) / f"{spec.name}-{digest}"
    say = log or (lambda _m: None)
    say(f"{spec.name}: {spec.n_points} points x {spec.replications} replication(s), "
        f"{spec.base.population.n_learners:,} learners, base {spec.base_ref!r} -> {out}")

    def progress(done: int, total: int) -> None:
        if done and (done == total or done % max(1, total // 4) == 0):
            say(f"  {done}/{total} tasks")

    with contextlib.ExitStack() as stack:
        if executor is None:
            workers = workers or min(2, os.cpu_count() or 1)
            if workers > 1:
                import multiprocessing

                executor = stack.enter_context(ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context("spawn")))
            else:
                executor = stack.enter_context(ThreadPoolExecutor(1))
        outcome = sweep.run_sweep(spec, out, executor, progress=progress, log=log,
                                  executor_info="experiments/analyze.py run_small")
    if outcome.failed:
        say(f"  {len(outcome.failed)} task(s) failed; see {out}/tasks")
    res = load_results(out, name=name, label="a reduced-scale version run here "
                       "(analyze.run_small), NOT the full-scale sweep")
    assert res is not None  # run_sweep always writes results.parquet
    return res


def load_or_run_small(name: str, results_dir: str | Path = PROJECT_ROOT / "results" / "sweeps",
                      *, log: Log | None = print, **small: Any) -> SweepResults:
    """The full-scale results of ``name`` if ``credsim sweep`` has written them, else a
    reduced-scale version run now (:func:`run_small` with ``small``); says which."""
    say = log or (lambda _m: None)
    res = load_experiment(name, results_dir)
    if res is not None and res.n_ok:
        say(f"{name}: using the full-scale sweep results in {res.folder}")
        return res
    say(f"{name}: no sweep results in {Path(results_dir) / name}; running a reduced-scale "
        "version instead")
    return run_small(name, log=log, **small)


# ---- the command -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python experiments/analyze.py``: analyse the sweeps that exist."""
    p = argparse.ArgumentParser(
        description="Figures, tables and conclusions of the policy experiments "
                    "(experiments/sweeps/*.toml); missing sweeps are skipped.")
    p.add_argument("--results", type=Path, default=Path("results/sweeps"),
                   help="folder of the sweep results (default: results/sweeps)")
    p.add_argument("--out", type=Path, default=Path("results/figures"),
                   help="folder for the PNG figures (default: results/figures)")
    p.add_argument("--only", action="append", choices=EXPERIMENTS, metavar="NAME",
                   help=f"analyse only this experiment (repeatable): {', '.join(EXPERIMENTS)}")
    args = p.parse_args(argv)
    done = analyze_all(args.results, args.out, args.only or EXPERIMENTS)
    n = sum(a is not None for a in done.values())
    print(f"\n{n} of {len(done)} experiment(s) analysed" + (f"; figures in {args.out}"
                                                          if n else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
