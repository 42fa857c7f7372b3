"""The market's flows, measured as a labour economist would: transition rates, repeat
hiring, job durations and vacancy filling, over the study window.

:func:`market_flows` reads one run's weekly series, hires log and separations log
(:meth:`sim.model.CredentialMarket.flows`). Rates are pooled over the study window (week
0 to the collection date): a weekly hazard is the number of transitions over the number
of people at risk at the start of each week, and a monthly rate is ``1 - (1 - h)^(52/12)``.

* ``ue_monthly``: attached non-employed learners (the unemployed) finding a job;
  ``ne_monthly`` the marginally attached; ``ee_monthly`` job-to-job moves of the
  employed; ``eu_monthly`` jobs ending in non-employment.
* ``employment_drift_pp``: the least-squares trend of learners' employment rate over the
  window, times its length (pp): a steady state has none.
* ``hired_2plus_share`` / ``hired_5plus_share``: among learners hired at least once in
  the first 52 weeks of the window, the share hired 2+ / 5+ times in them;
  ``median_gap_weeks``: median time between two consecutive hires of one learner.
* ``median_tenure_weeks``: Kaplan-Meier median duration of the jobs learners start in
  the window (a job ends with a separation or a move; censored at the collection date;
  ``inf`` when more than half are still running); ``tenure_survival_52w`` the share of
  them lasting a year.
* ``background_fill_share``: vacancies filled by background job seekers over all filled;
  ``vacancy_duration_weeks``: open stock over weekly exits (filled or withdrawn).

:data:`BARS` are the bars a believable market must clear (issue "a labour market an
economist would believe"); :func:`bar_checks` reports them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.params import Scenario

__all__ = ["BARS", "bar_checks", "kaplan_meier_median", "market_flows"]

WEEKS_PER_MONTH = 52.0 / 12.0

#: Bars on the measured flows: id -> (comparison, bound, what it says).
BARS: dict[str, tuple[str, float, str]] = {
    "hired_2plus_share": ("<", 0.20, "fewer than 20% of hired learners hired 2+ times a year"),
    "hired_5plus_share": ("<", 0.01, "under 1% hired 5+ times a year"),
    "median_gap_weeks": (">=", 13.0, "median gap between two hires of a learner >= 13 weeks"),
    "background_fill_share": (">=", 0.5, "background seekers fill at least half of vacancies"),
    "abs_employment_drift_pp": ("<", 1.0, "employment moves less than 1 pp over the study"),
}


def _monthly(events: float, at_risk: float) -> float:
    if at_risk <= 0:
        return float("nan")
    return float(1.0 - (1.0 - events / at_risk) ** WEEKS_PER_MONTH)


def kaplan_meier_median(duration: np.ndarray, event: np.ndarray) -> tuple[float, np.ndarray]:
    """Kaplan-Meier median of right-censored durations (``inf`` if the curve never
    falls to one half), and the survival function on weeks 0, 1, ..."""
    if len(duration) == 0:
        return float("nan"), np.ones(1)
    t_max = int(duration.max()) + 1
    deaths = np.bincount(duration[event], minlength=t_max + 1).astype(float)
    leaving = np.bincount(duration, minlength=t_max + 1).astype(float)
    at_risk = len(duration) - np.r_[0.0, np.cumsum(leaving)[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, deaths / at_risk, 0.0)
    surv = np.cumprod(1.0 - hazard)
    below = np.flatnonzero(surv <= 0.5)
    return (float(below[0]) if len(below) else math.inf), surv


def market_flows(
    scenario: Scenario, series: pd.DataFrame, hires: pd.DataFrame, separations: pd.DataFrame
) -> dict[str, float]:
    """The flow moments of one run over its study window (module docstring)."""
    end = scenario.calendar.n_weeks
    win = series[(series["week"] >= 0) & (series["week"] < end)]
    out: dict[str, float] = {
        "ue_monthly": _monthly(win["hires_from_unemployed"].sum(), win["n_unemployed"].sum()),
        "ne_monthly": _monthly(win["hires_from_marginal"].sum(), win["n_marginal"].sum()),
        "ee_monthly": _monthly(win["hires_job_to_job"].sum(), win["n_employed"].sum()),
        "eu_monthly": _monthly(win["separations"].sum(), win["n_employed"].sum()),
    }
    n_people = (win["n_employed"] + win["n_unemployed"] + win["n_marginal"]).to_numpy(float)
    emp = win["n_employed"].to_numpy(float) / np.maximum(n_people, 1)
    weeks = win["week"].to_numpy(float)
    if len(weeks) > 1:
        slope = np.polyfit(weeks, emp, 1)[0]
        out["employment_drift_pp"] = float(100 * slope * (weeks[-1] - weeks[0]))
    else:
        out["employment_drift_pp"] = float("nan")
    out["abs_employment_drift_pp"] = abs(out["employment_drift_pp"])
    out["employment_rate"] = float(emp.mean()) if len(emp) else float("nan")
    out["unemployment_rate"] = float(
        win["n_unemployed"].sum() / max(1, (win["n_unemployed"] + win["n_employed"]).sum())
    )

    h = hires[(hires["week"] >= 0) & (hires["week"] < end)]
    year = h[h["week"] < 52]
    per = year.groupby("learner").size()
    out["hired_2plus_share"] = float((per >= 2).mean()) if len(per) else float("nan")
    out["hired_5plus_share"] = float((per >= 5).mean()) if len(per) else float("nan")
    hs = h.sort_values(["learner", "week"])
    lrn, wk = hs["learner"].to_numpy(np.int64), hs["week"].to_numpy(np.int64)
    same = lrn[1:] == lrn[:-1]
    gaps = (wk[1:] - wk[:-1])[same]
    out["median_gap_weeks"] = float(np.median(gaps)) if len(gaps) else float("nan")
    out["job_to_job_share_of_hires"] = (
        float((h["status"] == "employed").mean()) if len(h) else float("nan")
    )

    # job spells started in the window: the next hire or separation of the learner ends it
    ev = pd.concat(
        [
            pd.DataFrame({"learner": lrn, "week": wk, "hire": True}),
            pd.DataFrame(
                {
                    "learner": separations["learner"].to_numpy(np.int64),
                    "week": separations["week"].to_numpy(np.int64),
                    "hire": False,
                }
            ),
        ],
        ignore_index=True,
    )
    ev = ev[ev["week"] >= 0].sort_values(["learner", "week", "hire"], kind="stable")
    el, ew, eh = (ev[c].to_numpy() for c in ("learner", "week", "hire"))
    nxt_same = np.r_[el[1:] == el[:-1], False]
    nxt_week = np.r_[ew[1:], 0]
    starts = np.flatnonzero(eh)
    ended = nxt_same[starts]
    duration = np.where(ended, nxt_week[starts] - ew[starts], end - ew[starts]).astype(np.int64)
    median, surv = kaplan_meier_median(np.maximum(duration, 0), ended)
    out["median_tenure_weeks"] = median
    out["tenure_survival_52w"] = float(surv[min(52, len(surv) - 1)])

    filled = win["vacancies_filled"].sum()
    out["background_fill_share"] = (
        float(win["hires_background"].sum() / filled) if filled else float("nan")
    )
    exits = (win["vacancies_filled"] + win["vacancies_expired"]).mean()
    out["vacancy_duration_weeks"] = (
        float(win["vacancies_open"].mean() / exits) if exits else float("nan")
    )
    return out


def bar_checks(flows: dict[str, float]) -> dict[str, bool]:
    """Whether each of :data:`BARS` holds for ``flows``."""
    out = {}
    for key, (op, bound, _) in BARS.items():
        v = flows.get(key, float("nan"))
        out[key] = bool(v < bound) if op == "<" else bool(v >= bound)
    return out
