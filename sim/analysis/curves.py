"""Effects against one swept parameter, overall and by employability tertile.

The machinery of the one-parameter experiments (:mod:`~sim.analysis.credibility_boost`,
:mod:`~sim.analysis.signal_precision`, :mod:`~sim.analysis.stronger_nudge`): a table
of the effects against the parameter with 95% intervals (:func:`curve_table`), a
paragraph on how the effect and who gains change from one end to the other
(:func:`conclude_curve`), and the figure (:func:`sim.plots.effect_curves`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim import plots
from sim.analysis.common import (
    Analysis,
    SweepResults,
    ci,
    mean_interval,
    pct,
    point_table,
    pp,
    seeds_are_common,
    short_table,
)

__all__ = [
    "GROUP_IDS",
    "CurveSpec",
    "analyze_curve",
    "conclude_changes",
    "conclude_curve",
    "curve_table",
    "paired_changes",
]

#: Estimate id -> group label of the tertile figures.
GROUP_IDS = {
    "all": "new_job",
    "low": "new_job_low",
    "medium": "new_job_medium",
    "high": "new_job_high",
    "shared": "shared",
}


@dataclass(frozen=True)
class CurveSpec:
    """What a one-parameter experiment sweeps and how to write about it."""

    param: str  # the swept scenario key
    relative_to_base: bool  # x as a multiple of the base scenario's value
    what: str  # the parameter in a sentence, e.g. "credibility"
    fmt: str  # its values in a sentence, e.g. "{:.2f}"
    xlabel: str  # the figure's x axis


def curve_table(
    res: SweepResults,
    param: str,
    *,
    relative_to_base: bool = False,
    groups: Mapping[str, str] = GROUP_IDS,
) -> pd.DataFrame:
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
    cols = [
        "x",
        "group",
        "id",
        "n",
        "effect",
        "effect_lo",
        "effect_hi",
        "true",
        "true_lo",
        "true_hi",
        "control_mean",
        "rel",
        "rel_lo",
        "rel_hi",
        "true_rel",
    ]
    order = {g: i for i, g in enumerate(groups)}
    t = t.sort_values(["group", "x"], key=lambda c: c.map(order) if c.name == "group" else c)
    return t[cols].reset_index(drop=True)


def paired_changes(
    res: SweepResults,
    param: str,
    *,
    relative_to_base: bool = False,
    groups: Mapping[str, str] = GROUP_IDS,
) -> pd.DataFrame:
    """Each point's effects minus those at the base scenario's value of ``param``, paired
    by replication.

    In a sweep with ``common_seeds`` replication ``r`` of every point is the same world
    but for ``param``, so the change from the reference point is measured within a world,
    replication by replication, and its 95% interval (Student's t over the replications)
    is much narrower than the two points' own intervals suggest. Empty when the sweep's
    seeds are not common to its points or no point is at the base value. Columns: ``x``
    (as in :func:`curve_table`), ``group``, ``id``, ``n``, ``change`` (mean estimate, pp)
    and ``true_change`` (true effects), each with ``_lo``/``_hi``.
    """
    cols = ["x", "group", "id", "n", *ci("change"), *ci("true_change")]
    df = res.results
    df = df[df["status"] == "ok"] if "status" in df else df
    section, _, name = param.partition(".")
    base = float(getattr(getattr(res.base, section), name))
    if not seeds_are_common(df):
        return pd.DataFrame(columns=cols)  # each point has its own seeds: nothing to pair
    back = {rid: g for g, rid in groups.items()}
    d = df[df["id"].isin(list(back))]
    at_base = np.isclose(d[param].astype(float), base, rtol=1e-9, atol=1e-12)
    if not at_base.any():
        return pd.DataFrame(columns=cols)
    ref = d[at_base].set_index(["id", "replication"])[["effect", "true_effect"]]
    scale = base if relative_to_base and base else 1.0
    rows = []
    for (value, rid), g in d.groupby([param, "id"], sort=True):
        if rid not in ref.index.get_level_values(0):
            continue
        g = g.set_index("replication")
        r = ref.loc[rid].reindex(g.index)
        row = {"x": float(value) / scale, "group": back[rid], "id": rid, "n": len(g)}
        for col, out in (("effect", "change"), ("true_effect", "true_change")):
            row.update(zip(ci(out), mean_interval(g[col] - r[col]), strict=True))
        rows.append(row)
    t = pd.DataFrame(rows, columns=cols)
    order = {g: i for i, g in enumerate(groups)}
    t = t.sort_values(["group", "x"], key=lambda c: c.map(order) if c.name == "group" else c)
    return t.reset_index(drop=True)


def conclude_changes(changes: pd.DataFrame, what: str, fmt: str = "{:.2f}") -> str:
    """One sentence per end of the curve on :func:`paired_changes`: the true change of the
    overall and the low-tertile effect from the base value, and whether its interval
    excludes zero."""
    if changes.empty:
        return ""
    parts = []
    for grp, label in (("all", "overall"), ("low", "low-tertile")):
        t = changes[(changes["group"] == grp) & np.isfinite(changes["true_change_lo"])]
        t = t[t["true_change"].abs() > 0].sort_values("x")
        if len(t) < 1:
            continue
        said = []
        for _, r in (t.iloc[[0, -1]] if len(t) > 1 else t).iterrows():
            # clear of zero as written (two decimals), not only in the last digits
            clear = round(r["true_change_lo"], 2) > 0 or round(r["true_change_hi"], 2) < 0
            sure = "clear of zero" if clear else "not distinguishable from zero"
            said.append(
                f"at {fmt.format(r['x'])} {pp(r['true_change'])} ({pp(r['true_change_lo'])} "
                f"to {pp(r['true_change_hi'])}, {sure})"
            )
        parts.append(f"{label} {'; '.join(said)}")
    if not parts:
        return ""
    n = int(changes["n"].max())
    return (
        f"Paired within each of the {n} worlds (common seeds), the change of the true "
        f"effect from the base scenario's value of {what}: " + "; ".join(parts) + "."
    )


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
    parts = [
        f"Raising {what} from {x0} to {x1} moves the relative new-job effect (mean "
        f"estimate, true effect in brackets) from {pct(100 * a0['rel'])} to "
        f"{pct(100 * a1['rel'])} ({pct(100 * a0['true_rel'])} to "
        f"{pct(100 * a1['true_rel'])}) overall"
    ]
    if e_low is not None:
        l0, l1 = e_low
        parts[0] += (
            f", and the low-tertile effect from {pct(100 * l0['rel'])} to "
            f"{pct(100 * l1['rel'])} ({pct(100 * l0['true_rel'])} to "
            f"{pct(100 * l1['true_rel'])})"
        )
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
        said = ", ".join(f"{g} {pp(v)}" for g, (v, _) in gains.items())
        parts.append(
            f"In percentage points ({kind}) the change is {said} by employability "
            f"tertile: largest for the {best} tertile."
        )
    sharp = "distinguishable" if not _overlap(a0, a1) else "not distinguishable"
    n = int(table["n"].max()) if len(table) else 0
    parts.append(
        f"The overall estimates at the two ends are {sharp} at 95% across {n} "
        f"replication(s) ({pp(a0['effect'])} [{pp(a0['effect_lo'])}, "
        f"{pp(a0['effect_hi'])}] vs {pp(a1['effect'])} [{pp(a1['effect_lo'])}, "
        f"{pp(a1['effect_hi'])}])."
    )
    s = ends("shared")
    if s is not None:
        parts.append(
            f"The effect on sharing goes from {pp(s[0]['effect'])} to {pp(s[1]['effect'])}."
        )
    return " ".join(parts)


def analyze_curve(res: SweepResults, spec: CurveSpec, name: str) -> Analysis:
    """The effects figure, the table and the conclusion of a one-parameter experiment."""
    t = curve_table(res, spec.param, relative_to_base=spec.relative_to_base)
    fig = plots.effect_curves(
        t,
        "x",
        xlabel=spec.xlabel,
        title=f"Effects of the nudge as {spec.what} varies ({res.replications} replication(s) "
        f"per point, {res.n_learners:,} learners per study)",
    )
    table = short_table(
        t, ["x", "group", "n", "effect", "effect_lo", "effect_hi", "true", "rel", "true_rel"]
    )
    changes = paired_changes(res, spec.param, relative_to_base=spec.relative_to_base)
    text = " ".join(
        s
        for s in (
            conclude_curve(t, spec.what, spec.fmt),
            conclude_changes(changes, spec.what, spec.fmt),
        )
        if s
    )
    tables = {}
    if not changes.empty:
        tables["change from the base value, paired by replication (pp)"] = short_table(
            changes, ["x", "group", "n", *ci("change"), *ci("true_change")]
        )
    return Analysis(
        name,
        {"effects": fig},
        table,
        text,
        {"curves": t, "changes": changes},
        tables=tables,
        figure_data={"effects": t},
    )
