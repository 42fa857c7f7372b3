"""Crowding out as a function of the learners' market share
(``experiments/sweeps/crowding_share.toml``).

At each share of the job seekers of their segment that the learners make up
(``market.learner_share``), two policies are run against the world where no one is nudged
(``study.mirror = "no_nudge"``): half the learners nudged at random (the study's 50/50
design) and everyone nudged. From the first comes the ITT the study would measure
(``pop_itt_new_job``: the nudged learners' total effect minus the others', over every
learner, so without sampling noise), and what it predicts for nudging everyone: that ITT
times every learner. From the second comes the total effect of nudging everyone
(``pop_new_job``: every learner's new-job rate with everyone nudged minus with no one).
Crowding out is the share of the predicted gain that does not materialise,
``1 - total / predicted``.

Replication ``r`` of every point shares its seed (``common_seeds``), so the prediction
and the total of one share come from the same population and graph, and their ratio is
taken over paired replications (:func:`sim.analysis.common.ratio_interval`).
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
    pct,
    ratio_interval,
    replication_values,
    short_table,
)

__all__ = ["LEARNER_SHARE", "analyze", "conclude_crowding_share", "crowding_share_table"]

LEARNER_SHARE = "market.learner_share"


def crowding_share_table(res: SweepResults) -> pd.DataFrame:
    """One row per learner share: the 50/50 prediction, the total and the crowding out.

    Columns: ``learner_share``; ``itt_pp`` (the 50/50 ITT on a new job over every learner,
    pp) and ``itt_matched_pp`` (the same over the matched sample the study sees);
    ``total_pp`` (everyone nudged versus no one, pp); ``predicted`` and ``total`` (the same
    as extra learners with a new job: times ``n_learners``), ``predicted_study`` (the
    matched sample's ITT times ``n_learners``: what the study itself would predict) and
    ``crowding`` (``1 - total / predicted``), each with ``_lo`` / ``_hi`` 95% Student-t
    intervals over the replications (paired replications for the ratio); ``half_total``
    (extra new jobs from nudging half at random, with its interval); ``replications``;
    ``base`` (True at the base scenario's own share).
    """
    n = float(res.n_learners)
    base_share = float(res.base.market.learner_share)
    rows = []
    for share in sorted(res.ok[LEARNER_SHARE].astype(float).unique()):
        at = {LEARNER_SHARE: share}
        itt = replication_values(res, "pop_itt_new_job", **at, **{TREATED_SHARE: 0.5})
        itt_m = replication_values(res, "itt_new_job", **at, **{TREATED_SHARE: 0.5})
        half = replication_values(res, "pop_new_job", **at, **{TREATED_SHARE: 0.5})
        tot = replication_values(res, "pop_new_job", **at, **{TREATED_SHARE: 1.0})
        pair = pd.concat({"itt": itt, "tot": tot}, axis=1).dropna()
        row: dict[str, float | bool] = {"learner_share": share}
        for key, v in (("itt_pp", itt), ("itt_matched_pp", itt_m), ("total_pp", tot)):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = mean_interval(v)
        for key, v, scale in (
            ("predicted", itt, n / 100),
            ("predicted_study", itt_m, n / 100),
            ("total", tot, n / 100),
            ("half_total", half, n / 100),
        ):
            m, lo, hi = mean_interval(v)
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = m * scale, lo * scale, hi * scale
        r, lo, hi = ratio_interval(pair["tot"], pair["itt"])
        row["crowding"], row["crowding_lo"], row["crowding_hi"] = 1 - r, 1 - hi, 1 - lo
        row["replications"] = int(min(len(itt), len(tot)))
        row["base"] = bool(math.isclose(share, base_share))
        rows.append(row)
    return pd.DataFrame(rows)


def _interp_share(t: pd.DataFrame, level: float) -> float:
    """The learner share (log-interpolated) at which crowding first reaches ``level``."""
    x = np.log(t["learner_share"].to_numpy(float))
    c = t["crowding"].to_numpy(float)
    for i in range(1, len(c)):
        if np.isfinite(c[i - 1]) and np.isfinite(c[i]) and (c[i - 1] - level) * (c[i] - level) <= 0:
            if c[i] == c[i - 1]:
                return float(np.exp(x[i]))
            w = (level - c[i - 1]) / (c[i] - c[i - 1])
            return float(np.exp(x[i - 1] + w * (x[i] - x[i - 1])))
    return math.nan


def conclude_crowding_share(t: pd.DataFrame, n_learners: int) -> str:
    """One paragraph on :func:`crowding_share_table`, written from its numbers."""
    if t.empty:
        return "No finished tasks: nothing to conclude."
    t = t.sort_values("learner_share").reset_index(drop=True)

    def share(v: float) -> str:
        return f"{100 * v:g}%"

    def ci(r: pd.Series, key: str, fmt) -> str:
        lo, hi = r[f"{key}_lo"], r[f"{key}_hi"]
        inner = f" (95% CI {fmt(lo)} to {fmt(hi)})" if np.isfinite(lo) and np.isfinite(hi) else ""
        return f"{fmt(r[key])}{inner}"

    def jobs(v: float) -> str:
        return f"{v:+,.0f}" if np.isfinite(v) else "n/a"

    def frac(v: float) -> str:
        return pct(100 * v, 0) if np.isfinite(v) else "n/a"

    lo_r, hi_r = t.iloc[0], t.iloc[-1]
    text = [
        f"Nudging all {n_learners:,} learners, the 50/50 design's true ITT over every "
        "learner predicts "
        f"{jobs(lo_r['predicted'])} learners with a new job when learners are "
        f"{share(lo_r['learner_share'])} of the job seekers in their market, and "
        f"{jobs(hi_r['predicted'])} at {share(hi_r['learner_share'])}. Nudging everyone "
        f"at once adds {ci(lo_r, 'total', jobs)} at {share(lo_r['learner_share'])} and "
        f"{ci(hi_r, 'total', jobs)} at {share(hi_r['learner_share'])}: crowding out of "
        f"{ci(lo_r, 'crowding', frac)} and {ci(hi_r, 'crowding', frac)} of the predicted "
        "gain."
    ]
    c = t["crowding"].to_numpy(float)
    ok = np.isfinite(c) & (t["predicted_lo"].to_numpy(float) > 0)  # informative points only
    direction = ""
    if ok.sum() >= 2:
        slope = np.polyfit(np.log2(t.loc[ok, "learner_share"].to_numpy(float)), c[ok], 1)[0]
        direction = "rises" if slope > 0.02 else "falls" if slope < -0.02 else "barely changes"
        text.append(
            f"Over the {int(ok.sum())} shares where the predicted gain is clearly positive, "
            f"crowding out {direction} with the learners' market share: "
            f"{100 * slope:+.0f} points per doubling of the share (a line fitted to the "
            "points against the log of the share)."
        )
        for level in (0.5, 1.0):
            s = _interp_share(t[ok], level)
            if np.isfinite(s):
                text.append(
                    f"It crosses {level:.0%} near a share of {share(round(s, 4))}"
                    + (
                        " (beyond it, nudging everyone adds no new jobs on net)."
                        if level == 1.0
                        else "."
                    )
                )
    else:
        text.append(
            "The predicted gain is clearly positive at fewer than two shares, so how crowding "
            "out changes with the share is not estimated."
        )
    ratio = t["itt_matched_pp"] / t["itt_pp"]
    if np.isfinite(ratio).any() and (t["itt_pp"] > 0).all():
        text.append(
            "The study sees only its matched learners, whose ITT is "
            f"{ratio.min():.1f} to {ratio.max():.1f} times the ITT over every learner "
            "across the shares: its own ITT times every learner would predict "
            f"{jobs(lo_r['predicted_study'])} at {share(lo_r['learner_share'])} and "
            f"{jobs(hi_r['predicted_study'])} at {share(hi_r['learner_share'])}, so "
            "extrapolating from the matched sample would overstate the gain before any "
            "crowding out."
            if ratio.min() > 1
            else "The study sees only its matched learners, whose ITT is "
            f"{ratio.min():.1f} to {ratio.max():.1f} times the ITT over every learner "
            "across the shares."
        )
    base = t[t["base"]]
    if len(base):
        b = base.iloc[0]
        text.append(
            f"At the scenario's own share ({share(b['learner_share'])}), the prediction is "
            f"{ci(b, 'predicted', jobs)} and the total {ci(b, 'total', jobs)}."
        )
    unclear = t[(t["crowding_lo"] <= 0) & (t["crowding_hi"] >= 1)]
    if len(unclear):
        text.append(
            "At "
            + ", ".join(share(v) for v in unclear["learner_share"])
            + " the interval of the crowding out spans both 0% and 100%: more replications "
            "are needed there."
        )
    weak = t[t["predicted_lo"] <= 0]
    if len(weak):
        text.append(
            "Where the predicted gain's interval reaches zero ("
            + ", ".join(share(v) for v in weak["learner_share"])
            + "), the crowding-out share is not informative."
        )
    if direction == "rises":
        text.append(
            "This is competition for the same vacancies: the larger the learners' share of "
            "the applicants, the more a nudged learner's new job is one another learner does "
            "not get, which a 50/50 experiment, where the nudged compete mostly with "
            "controls and background seekers, cannot see."
        )
    elif direction:
        text.append(
            "So in these runs the learners' market share does not drive crowding out up: "
            "what a nudged learner gains is not mostly taken from other learners even where "
            "they are a large share of the applicants."
        )
    return " ".join(text)


def analyze(res: SweepResults, name: str = "crowding_share") -> Analysis:
    """The figure (prediction and total by share, crowding out by share), its data, the
    table and the conclusion."""
    t = crowding_share_table(res)
    fig = plots.crowding_by_share(
        t,
        title=f"Nudging all {res.n_learners:,} learners, by the learners' market share "
        f"({res.replications} replication(s) per point)",
    )
    cols = [
        *("learner_share", "replications", "itt_pp", "itt_matched_pp", "total_pp"),
        *ci("predicted"),
        *ci("total"),
        *ci("crowding"),
    ]
    shown = ("predicted", "predicted_study", "total", "crowding")
    data = t[["learner_share", "base", *(c for name in shown for c in ci(name))]]
    return Analysis(
        name,
        {"by_share": fig},
        short_table(t, cols),
        conclude_crowding_share(t, res.n_learners),
        {"crowding_share": t},
        figure_data={"by_share": data},
    )
