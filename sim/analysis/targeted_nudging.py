"""Targeted nudging (``experiments/sweeps/targeted_nudging.toml``).

A fixed number of nudges (``study.treated_share`` of each graduation batch) given at
random, to the learners with the lowest predicted employability, or to those with the
highest predicted effect of the nudge, both predictions learnt on a simulated 50/50
study in another world (:mod:`sim.targeting`). Each policy is run against the world
where no one is nudged (``study.mirror = "no_nudge"``), so every number is a total
effect over all learners: what the nudged gain (gross) and what the others lose when
the nudged take their vacancies (crowding out), and the difference (net).

Replication ``r`` of every point shares its seed (``common_seeds``): the three rules at
one treated share then act on the same population, graph and weekly draws, and are
compared replication by replication (paired differences with Student-t intervals).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim import plots
from sim.analysis.common import (
    TREATED_SHARE,
    Analysis,
    SweepResults,
    ci,
    mean_interval,
    ratio_interval,
    replication_values,
    short_table,
)

__all__ = ["RULES", "TARGETING", "analyze", "conclude_targeting", "targeting_tables"]

TARGETING = "study.targeting"
#: The rules, in the order they are shown.
RULES = ("random", "low_employability", "predicted_effect")
TERTILES = ("low", "medium", "high")


def _jobs(res: SweepResults, rid: str, **at: object) -> pd.Series:
    """Extra learners with a new job, per replication, in the group of row ``rid``:
    its true effect (pp) times its size."""
    eff = replication_values(res, rid, **at)
    n = replication_values(res, rid, "n", **at)
    return eff * n / 100


def _with_ci(row: dict, key: str, values: pd.Series) -> None:
    row[key], row[f"{key}_lo"], row[f"{key}_hi"] = mean_interval(values)


def targeting_tables(res: SweepResults) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The totals table and the who-gains table.

    Totals, one row per treated share and rule: ``treated_share``, ``rule``, ``nudges``
    (learners nudged, mean), ``total`` (extra new jobs over every learner, net of
    crowding out), ``gross`` (the nudged learners' own extra new jobs), ``spillover``
    (the others': negative when crowded out), ``vs_random`` (``total`` minus the random
    rule's at the same share, paired by replication), ``per_1000`` (``total`` per 1,000
    nudges), ``crowding`` (``-spillover / gross``: the share of the nudged learners' gain
    taken from the others), each with ``_lo`` / ``_hi`` 95% intervals;
    ``nudged_baseline`` (% of the nudged with a new job without any nudge: whom the rule
    picked) and ``replications``.

    Who gains, one row per treated share, rule and third of baseline employability:
    ``jobs`` (extra new jobs of that third, nudged or not) with ``jobs_lo`` / ``jobs_hi``,
    ``nudged_share`` (share of the third nudged).
    """
    totals, gains = [], []
    shares = sorted(res.ok[TREATED_SHARE].astype(float).unique())
    rules = [r for r in RULES if r in set(res.ok[TARGETING])]
    for share in shares:
        random_total = (
            _jobs(res, "pop_new_job", **{TREATED_SHARE: share, TARGETING: "random"})
            if "random" in rules
            else None
        )
        for rule in rules:
            at = {TREATED_SHARE: share, TARGETING: rule}
            total = _jobs(res, "pop_new_job", **at)
            if total.empty:
                continue
            gross = _jobs(res, "pop_new_job_nudged", **at)
            spill = _jobs(res, "pop_new_job_not_nudged", **at)
            nudges = replication_values(res, "pop_new_job_nudged", "n", **at)
            row: dict = {"treated_share": share, "rule": rule, "nudges": float(nudges.mean())}
            _with_ci(row, "total", total)
            _with_ci(row, "gross", gross)
            _with_ci(row, "spillover", spill)
            _with_ci(row, "per_1000", 1000 * total / nudges)
            if random_total is not None:
                diff = (total - random_total).dropna()
                _with_ci(row, "vs_random", diff)
            else:
                row["vs_random"] = row["vs_random_lo"] = row["vs_random_hi"] = math.nan
            c, lo, hi = ratio_interval(-spill, gross)
            row["crowding"], row["crowding_lo"], row["crowding_hi"] = c, lo, hi
            base = replication_values(res, "pop_new_job_nudged", "control_mean", **at)
            row["nudged_baseline"] = float(base.mean())
            row["replications"] = len(total)
            totals.append(row)
            for tert in TERTILES:
                jobs = _jobs(res, f"pop_new_job_{tert}", **at)
                n_t = replication_values(res, f"pop_new_job_{tert}", "n", **at)
                n_tn = replication_values(res, f"pop_new_job_{tert}_nudged", "n", **at)
                g = {"treated_share": share, "rule": rule, "tertile": tert}
                _with_ci(g, "jobs", jobs)
                g["nudged_share"] = float((n_tn / n_t).mean())
                gains.append(g)
    return pd.DataFrame(totals), pd.DataFrame(gains)


def conclude_targeting(totals: pd.DataFrame, gains: pd.DataFrame, n_learners: int) -> str:
    """One paragraph on :func:`targeting_tables`, written from its numbers."""
    if totals.empty:
        return "No finished tasks: nothing to conclude."

    def jobs(v: float) -> str:
        return f"{v:+,.0f}" if np.isfinite(v) else "n/a"

    def ci(r: pd.Series, key: str, fmt=jobs) -> str:
        lo, hi = r[f"{key}_lo"], r[f"{key}_hi"]
        inner = f" (95% CI {fmt(lo)} to {fmt(hi)})" if np.isfinite(lo) and np.isfinite(hi) else ""
        return f"{fmt(r[key])}{inner}"

    def frac(v: float) -> str:
        return f"{100 * v:.0f}%" if np.isfinite(v) else "n/a"

    label = {
        "random": "at random",
        "low_employability": "to the least employable",
        "predicted_effect": "to the highest predicted effects",
    }
    text = []
    for share, t in totals.groupby("treated_share", sort=True):
        t = t.set_index("rule")
        parts = [f"{label.get(rule, rule)} {ci(r, 'total')}" for rule, r in t.iterrows()]
        nudges = t["nudges"].mean()
        text.append(
            f"With {nudges:,.0f} nudges ({100 * share:g}% of the {n_learners:,} learners), "
            "the extra learners with a new job, net of crowding out, are: " + "; ".join(parts) + "."
        )
        best = t["total"].idxmax()
        if best != "random" and "random" in t.index:
            r = t.loc[best]
            sure = r["vs_random_lo"] > 0
            text.append(
                f"Nudging {label.get(best, best)} does best, {ci(r, 'vs_random')} jobs against "
                "random nudges with the same worlds"
                + (
                    " (its interval excludes zero)."
                    if sure
                    else ", which the replications cannot tell from zero."
                )
            )
        elif best == "random":
            text.append("No targeting rule beats random nudges here.")
        if "random" in t.index:
            r = t.loc["random"]
            if r["gross_lo"] > 0:
                text.append(
                    f"Of the nudged learners' own gain at random ({ci(r, 'gross')} jobs), "
                    f"{ci(r, 'crowding', frac)} is taken from the learners not nudged "
                    f"({ci(r, 'spillover')} jobs)."
                )
            else:
                text.append(
                    f"At random, the nudged learners' own gain ({ci(r, 'gross')} jobs) cannot "
                    "be told from zero, so the share crowded out is not measured here."
                )
        if "low_employability" in t.index:
            r = t.loc["low_employability"]
            base = t.loc["random", "nudged_baseline"] if "random" in t.index else math.nan
            text.append(
                f"The least-employable rule picks learners of whom {r['nudged_baseline']:.1f}% "
                f"find a new job without any nudge (random picks: {base:.1f}%)."
            )
    if not gains.empty:
        top = gains[gains["treated_share"] == gains["treated_share"].max()]
        for rule, g in top.groupby("rule", sort=False):
            g = g.set_index("tertile")
            most = g["jobs"].idxmax()
            text.append(
                f"Who gains at {100 * g['treated_share'].iloc[0]:g}% nudged, "
                f"{label.get(rule, rule)}: mostly the {most} third "
                f"({ci(g.loc[most], 'jobs')} jobs; low {jobs(g.loc['low', 'jobs'])}, "
                f"medium {jobs(g.loc['medium', 'jobs'])}, high {jobs(g.loc['high', 'jobs'])})."
            )
    return " ".join(text)


def analyze(res: SweepResults, name: str = "targeted_nudging") -> Analysis:
    """Totals by number of nudges and rule, who gains by tertile, tables and conclusion."""
    totals, gains = targeting_tables(res)
    reps = res.replications
    fig_tot = plots.targeting_totals(
        totals,
        title=f"Targeted nudging: extra new jobs among {res.n_learners:,} learners "
        f"({reps} replication(s) per point)",
    )
    fig_who = plots.targeting_who_gains(
        gains, title="Who gains: extra new jobs by third of baseline employability"
    )
    table = short_table(
        totals,
        [
            *("treated_share", "rule", "nudges", *ci("total"), "gross", "spillover"),
            *(*ci("vs_random"), "per_1000", "nudged_baseline"),
        ],
    )
    data_tot = totals[["treated_share", "rule", "nudges", *ci("total"), *ci("gross")]]
    return Analysis(
        name,
        {"totals": fig_tot, "who_gains": fig_who},
        table,
        conclude_targeting(totals, gains, res.n_learners),
        {"totals": totals, "gains": gains},
        tables={"who gains (extra new jobs by third of baseline employability)": gains.round(3)},
        figure_data={"totals": data_tot, "who_gains": gains},
    )
