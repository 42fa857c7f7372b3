"""Nudge strength x credibility (``experiments/sweeps/nudge_credibility.toml``).

Maps over the nudge strength (as a multiple of the calibrated nudge) and the
credential's credibility of the relative new-job effect (mean estimate and true effect),
overall and in the low-employability tertile, and of the effect on sharing; the paper's
6% and 11% are contour lines and the calibrated point is marked. Because a few
replications per cell leave about a point of noise, the contours and the thresholds
("credibility needed for 6% at this nudge") are also read off a smooth
:class:`Surface` fitted to the cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim import plots
from sim.analysis.common import (
    CREDIBILITY,
    NUDGE,
    Analysis,
    SweepResults,
    calibrated_point,
    nearest,
    pct,
    point_table,
    pp,
    short_table,
)
from sim.targets import TARGETS

__all__ = [
    "LEVELS_PCT",
    "MATCH_LOW",
    "MATCH_OVERALL",
    "MATCH_SHARED_PP",
    "PAPER_REL_LOW",
    "PAPER_REL_OVERALL",
    "PAPER_SHARED_PP",
    "Surface",
    "analyze",
    "conclude_nudge_credibility",
    "credibility_needed",
    "fit_surface",
    "nudge_credibility_figures",
    "nudge_credibility_grid",
    "nudge_credibility_surfaces",
    "surface_thresholds",
    "thresholds_table",
]

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
    for rid, cols in (
        ("new_job", {"rel": "rel_new_job", "true_rel": "true_rel_new_job"}),
        ("new_job_low", {"rel": "rel_new_job_low", "true_rel": "true_rel_new_job_low"}),
        ("shared", {"effect": "shared_pp", "true": "true_shared_pp"}),
    ):
        part = pt.loc[pt["id"] == rid, ["point", *cols]].rename(columns=cols)
        out = out.merge(part, on="point", how="left")
    for c in ("rel_new_job", "true_rel_new_job", "rel_new_job_low", "true_rel_new_job_low"):
        out[c] = 100 * out[c]
    return out[
        [
            "point",
            NUDGE,
            "nudge_x",
            CREDIBILITY,
            "n",
            "rel_new_job",
            "true_rel_new_job",
            "rel_new_job_low",
            "true_rel_new_job_low",
            "shared_pp",
            "true_shared_pp",
        ]
    ].reset_index(drop=True)


def credibility_needed(
    grid: pd.DataFrame, value: str, level: float, x: str = "nudge_x", y: str = CREDIBILITY
) -> pd.DataFrame:
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
    ``<=`` the lowest credibility when that already does; ``none`` when no grid point
    does). True effects by default when there are any."""
    if use_true is None:
        use_true = bool(grid["true_rel_new_job"].notna().any())
    pre = "true_" if use_true else ""

    def text(r: pd.Series) -> str:
        if not np.isfinite(r["needed"]):
            return "none on the grid"
        return f"{'<=' if r['at_edge'] else '~'}{r['needed']:.2f}"

    out = {}
    for col, level, label in (
        (f"{pre}rel_new_job", LEVELS_PCT[0], "overall"),
        (f"{pre}rel_new_job_low", LEVELS_PCT[1], "low tertile"),
    ):
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


def fit_surface(
    grid: pd.DataFrame, value: str, x: str = "nudge_x", y: str = CREDIBILITY
) -> Surface | None:
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


def _lowest_reaching(surface: Surface, x: float, level: float, ys: np.ndarray) -> float:
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


def surface_thresholds(
    surfaces: Mapping[str, Surface | None],
    nudges: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
    y_range: tuple[float, float] = (0.0, 1.0),
) -> pd.DataFrame:
    """Per nudge multiple: the credibility from which the fitted overall effect reaches
    6% and the low-tertile one 11% (``surfaces``: value column -> :class:`Surface`, keys
    ``"overall"`` and ``"low"``), written out as :func:`thresholds_table` does; the
    credibility is searched over ``y_range`` (the grid's, in :func:`analyze`)."""
    ys = np.linspace(*y_range, 951)
    out: dict[str, list[str]] = {}
    for key, level, label in (
        ("overall", LEVELS_PCT[0], "overall"),
        ("low", LEVELS_PCT[1], "low tertile"),
    ):
        sf = surfaces.get(key)
        col = []
        for x in nudges:
            c = _lowest_reaching(sf, x, level, ys) if sf is not None else math.nan
            col.append(
                "none in range"
                if not np.isfinite(c)
                else f"<={c:.2f}"
                if c <= ys[0]
                else f"~{c:.2f}"
            )
        out[f"credibility for {level:g}% ({label})"] = col
    table = pd.DataFrame(out, index=pd.Index(list(nudges), name="nudge (x calibrated)"))
    return table


def nudge_credibility_surfaces(grid: pd.DataFrame) -> dict[str, Surface | None]:
    """Fitted surfaces of every map column (true effects where there are any)."""
    cols = (
        "rel_new_job",
        "true_rel_new_job",
        "rel_new_job_low",
        "true_rel_new_job_low",
        "shared_pp",
        "true_shared_pp",
    )
    return {c: fit_surface(grid, c) for c in cols if c in grid}


def nudge_credibility_figures(
    res: SweepResults, calibrated: Mapping[str, Any] | None = None, smooth: bool = True
) -> dict[str, Figure]:
    """The maps: relative new-job effect (estimate, true), low tertile (estimate, true),
    sharing (estimate); contours at 6% and 11% (2.8 pp for sharing), calibrated point.
    With ``smooth`` the contours are those of each map's fitted :class:`Surface`."""
    grid = nudge_credibility_grid(res)
    cal = calibrated if calibrated is not None else calibrated_point(res)
    base_nudge = float(res.base.sharing.nudge_strength) or 1.0
    marker = (cal[NUDGE] / base_nudge, cal[CREDIBILITY])
    reps = res.replications
    common = dict(
        marker=marker,
        marker_label=f"calibrated point ({cal['source']})",
        xlabel="nudge strength (multiple of the calibrated nudge, x)",
        ylabel="credibility (1: a Bayesian reading)",
    )
    what = (
        f"mean of {reps} simulated studies' estimates"
        if reps > 1
        else "one simulated study's estimate"
    )
    specs = {
        "rel_new_job": ("rel_new_job", f"New job, all matched learners: {what}"),
        "rel_new_job_true": (
            "true_rel_new_job",
            "New job, all matched learners: true effect (twins)",
        ),
        "rel_new_job_low": ("rel_new_job_low", f"New job, low-employability tertile: {what}"),
        "rel_new_job_low_true": (
            "true_rel_new_job_low",
            "New job, low-employability tertile: true effect (twins)",
        ),
    }
    surfaces = nudge_credibility_surfaces(grid) if smooth else {}
    figs = {}
    for key, (col, title) in specs.items():
        if grid[col].notna().any():
            figs[key] = plots.effect_heatmap(
                grid,
                "nudge_x",
                CREDIBILITY,
                col,
                levels=LEVELS_PCT,
                colorbar_label="effect of the nudge / control mean (%)",
                title=title,
                surface=surfaces.get(col),
                **common,
            )
    if grid["shared_pp"].notna().any():
        figs["shared_pp"] = plots.effect_heatmap(
            grid,
            "nudge_x",
            CREDIBILITY,
            "shared_pp",
            levels=(PAPER_SHARED_PP,),
            level_fmt="{:g} pp",
            colorbar_label="effect of the nudge on sharing (pp)",
            title=f"Credential shared: {what} (paper: 2.8 pp)",
            surface=surfaces.get("shared_pp"),
            **common,
        )
    return figs


def conclude_nudge_credibility(
    grid: pd.DataFrame,
    calibrated: Mapping[str, Any],
    base_nudge: float,
    replications: int = 0,
    surfaces: Mapping[str, Surface | None] | None = None,
) -> str:
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
    cal_x = nearest(nxs, calibrated[NUDGE] / (base_nudge or 1.0))
    cal_y = nearest(cys, calibrated[CREDIBILITY])
    at = grid[(grid["nudge_x"] == cal_x) & (grid[CREDIBILITY] == cal_y)].iloc[0]
    col_x = grid[grid["nudge_x"] == cal_x].sort_values(CREDIBILITY)
    row_y = grid[grid[CREDIBILITY] == cal_y].sort_values("nudge_x")
    reps = f", {replications} replication(s) per point" if replications else ""
    parts = [
        f"The map covers {len(nxs)} nudge strengths (x{nxs[0]:.2g} to x{nxs[-1]:.2g} the "
        f"calibrated nudge) and {len(cys)} credibility values ({cys[0]:.2f} to "
        f"{cys[-1]:.2f}){reps}. At the grid point nearest the calibrated one (nudge "
        f"x{cal_x:.2f}, credibility {cal_y:.2f}) the mean estimate of the relative new-job "
        f"effect is {pct(at['rel_new_job'])} (true {pct(at['true_rel_new_job'])}) overall "
        f"and {pct(at['rel_new_job_low'])} (true {pct(at['true_rel_new_job_low'])}) in "
        f"the low-employability tertile; the paper reports {100 * PAPER_REL_OVERALL:.1f}% "
        f"and {100 * PAPER_REL_LOW:.1f}%.",
        f"At that nudge, raising credibility from {cys[0]:.2f} to {cys[-1]:.2f} moves the "
        f"{kind} overall effect from {pct(col_x[overall].iloc[0])} to "
        f"{pct(col_x[overall].iloc[-1])} and the low-tertile effect from "
        f"{pct(col_x[low].iloc[0])} to {pct(col_x[low].iloc[-1])}; at that credibility, "
        f"raising the nudge from x{nxs[0]:.2g} to x{nxs[-1]:.2g} moves the overall effect "
        f"from {pct(row_y[overall].iloc[0])} to {pct(row_y[overall].iloc[-1])} and the "
        f"effect on sharing from {pp(row_y[shared].iloc[0])} to "
        f"{pp(row_y[shared].iloc[-1])}.",
    ]
    for col, level, who in (
        (overall, LEVELS_PCT[0], "overall"),
        (low, LEVELS_PCT[1], "low-tertile"),
    ):
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
            sentence += (
                f"{';' if reached else ''} at nudge {' and '.join(never)} no "
                "credibility on the grid reaches it"
            )
        parts.append(sentence + ".")
    match = grid[
        grid[overall].between(100 * MATCH_OVERALL[0], 100 * MATCH_OVERALL[1])
        & grid[low].between(100 * MATCH_LOW[0], 100 * MATCH_LOW[1])
    ]
    both = match[match[shared].between(*MATCH_SHARED_PP)]
    if len(match):
        pts = ", ".join(f"(x{r.nudge_x:.2g}, {r[CREDIBILITY]:.2f})" for _, r in match.iterrows())
        parts.append(
            f"{len(match)} of {len(grid)} grid points give both published numbers "
            f"({100 * MATCH_OVERALL[0]:g}-{100 * MATCH_OVERALL[1]:g}% overall and "
            f"{100 * MATCH_LOW[0]:g}-{100 * MATCH_LOW[1]:g}% in the low tertile, {kind} "
            f"effects): {pts}; {len(both)} of them also give the paper's sharing effect "
            f"({MATCH_SHARED_PP[0]:.1f}-{MATCH_SHARED_PP[1]:.1f} pp). The two relative "
            "effects alone do not pin down nudge and credibility separately when these "
            "points spread along a contour; the sharing effect, which the nudge sets and "
            "credibility does not, is what separates them."
        )
    else:
        parts.append(
            f"No grid point gives both published numbers at once "
            f"({100 * MATCH_OVERALL[0]:g}-{100 * MATCH_OVERALL[1]:g}% overall and "
            f"{100 * MATCH_LOW[0]:g}-{100 * MATCH_LOW[1]:g}% in the low tertile, {kind} "
            "effects); with this few replications or learners, noise alone can cause that."
        )
    if surfaces:
        y_range = (float(grid[CREDIBILITY].min()), float(grid[CREDIBILITY].max()))
        parts.append(
            _surface_sentences(surfaces, overall, low, kind, calibrated, base_nudge, y_range)
        )
    return " ".join(parts)


def _surface_sentences(
    surfaces: Mapping[str, Surface | None],
    overall: str,
    low: str,
    kind: str,
    calibrated: Mapping[str, Any],
    base_nudge: float,
    y_range: tuple[float, float] = (0.0, 1.0),
) -> str:
    so, sl = surfaces.get(overall), surfaces.get(low)
    if so is None or sl is None:
        return ""
    cx, cy = calibrated[NUDGE] / (base_nudge or 1.0), calibrated[CREDIBILITY]
    ys = np.linspace(*y_range, 951)
    need_o = _lowest_reaching(so, cx, LEVELS_PCT[0], ys)
    need_l = _lowest_reaching(sl, cx, LEVELS_PCT[1], ys)

    def need(c: float, level: float) -> str:
        return (
            f"no credibility up to {ys[-1]:.2f} reaches {level:g}%"
            if not np.isfinite(c)
            else f"{level:g}% needs credibility of at least ~{c:.2f}"
        )

    return (
        f"Smoothed by a fitted surface (nudge times a quadratic in credibility, plus "
        f"nudge squared times another; R^2 {so.r2:.2f} overall and {sl.r2:.2f} in the "
        f"low tertile, residual SD of a cell {so.resid_sd:.1f} and {sl.resid_sd:.1f} "
        f"points), the {kind} effect at the calibrated point itself (nudge "
        f"x{cx:.2f}, credibility {cy:.2f}) is {pct(float(so(cx, cy)))} overall and "
        f"{pct(float(sl(cx, cy)))} in the low tertile; at the calibrated nudge "
        f"{need(need_o, LEVELS_PCT[0])} overall, and {need(need_l, LEVELS_PCT[1])} in "
        "the low tertile."
    )


def analyze(
    res: SweepResults, calibrated: Mapping[str, Any] | None = None, name: str = "nudge_credibility"
) -> Analysis:
    """The maps, the grid table, the credibility needed (grid cells and fitted surface)
    and the conclusion; ``calibrated`` defaults to :func:`calibrated_point`."""
    cal = calibrated if calibrated is not None else calibrated_point(res)
    grid = nudge_credibility_grid(res)
    surfaces = nudge_credibility_surfaces(grid)
    text = conclude_nudge_credibility(
        grid, cal, float(res.base.sharing.nudge_strength), res.replications, surfaces
    )
    use_true = bool(grid["true_rel_new_job"].notna().any())
    pre = "true_" if use_true else ""
    fitted = surface_thresholds(
        {
            "overall": surfaces.get(f"{pre}rel_new_job"),
            "low": surfaces.get(f"{pre}rel_new_job_low"),
        },
        y_range=(float(grid[CREDIBILITY].min()), float(grid[CREDIBILITY].max())),
    )
    thresholds = thresholds_table(grid)
    table = short_table(
        grid,
        [
            "nudge_x",
            CREDIBILITY,
            "n",
            "rel_new_job",
            "true_rel_new_job",
            "rel_new_job_low",
            "true_rel_new_job_low",
            "shared_pp",
        ],
    )
    figs = nudge_credibility_figures(res, cal)
    return Analysis(
        name,
        figs,
        table,
        text,
        {
            "grid": grid,
            "calibrated": cal,
            "surfaces": surfaces,
            "thresholds": thresholds,
            "surface_thresholds": fitted,
        },
        tables={
            "credibility needed, grid cells": thresholds,
            "credibility needed, fitted surface": fitted,
        },
        figure_data=dict.fromkeys(figs, grid),  # every map draws the grid's cells
    )
