"""Everyone nudged (``experiments/sweeps/everyone_nudged.toml``) and its variant in a
market without active on-the-job search (``everyone_nudged_pause.toml``).

What the 50/50 study predicts at scale (its ITT times every learner) against the total
effect of nudging everyone at once (from the twins of the all-nudged runs), and the
implied crowding out: the share of the predicted gain that does not materialise (when
nudged learners compete with each other for the same vacancies). Both sweeps share this
analysis (the variant only changes the market).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from sim import plots
from sim.analysis.common import (
    TREATED_SHARE,
    Z95,
    Analysis,
    SweepResults,
    mean_interval,
    point_row,
    point_table,
    pp,
    seeds_are_common,
    t95,
)

__all__ = ["analyze", "conclude_everyone_nudged", "crowding_out", "crowding_out_table"]


def crowding_out(
    res: SweepResults, outcome: str = "new_job", n_learners: int | None = None
) -> dict[str, float]:
    """The 50/50 study's prediction at scale against the total effect of nudging everyone.

    At ``study.treated_share`` 0.5 the study's ITT (mean estimate, pp) times the number
    of learners is what the study predicts nudging everyone would add (``predicted``,
    in learners with a new job); the twins' true ITT at 0.5 gives the same prediction
    without estimation noise (``predicted_true``). At 1.0 the twins' difference is the
    total effect of nudging everyone versus no one (``total``), crowding out included.
    ``crowding`` = 1 - total / predicted, the share of the predicted gain that does not
    materialise (``crowding_true`` against ``predicted_true``); ``*_lo``/``*_hi`` are 95%
    intervals: those of :func:`point_table` scaled for the counts; for the ratios the
    delta method (the parts independent, each part's SE read back from its interval)
    with Student's t on the fewer degrees of freedom of the two parts (conservative; one
    study's own SE counts as infinite). ``n_learners``
    defaults to the sweep's population; the effects are on the matched sample's
    reported jobs, extrapolated to every learner.
    """
    pt = point_table(res.results, res.keys)
    n = float(n_learners if n_learners is not None else res.n_learners)
    half = point_row(pt, outcome, **{TREATED_SHARE: 0.5})
    full = point_row(pt, outcome, **{TREATED_SHARE: 1.0})
    nan = math.nan

    def get(r: pd.Series | None, c: str) -> float:
        return float(r[c]) if r is not None and pd.notna(r[c]) else nan

    itt, itt_lo, itt_hi = get(half, "effect"), get(half, "effect_lo"), get(half, "effect_hi")
    tru, tru_lo, tru_hi = get(half, "true"), get(half, "true_lo"), get(half, "true_hi")
    tot, tot_lo, tot_hi = get(full, "true"), get(full, "true_lo"), get(full, "true_hi")
    out = {
        "n_learners": n,
        "itt_pp": itt,
        "true_itt_pp": tru,
        "total_pp": tot,
        "control_mean": get(half, "control_mean"),
        "untreated_mean": get(full, "control_mean"),
    }
    for key, (m, lo, hi) in {
        "predicted": (itt, itt_lo, itt_hi),
        "predicted_true": (tru, tru_lo, tru_hi),
        "total": (tot, tot_lo, tot_hi),
    }.items():
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = (n * m / 100, n * lo / 100, n * hi / 100)
    dof_t = _dof(get(full, "n_true"))
    for key, (p, plo, phi, dof_p) in {
        "crowding": (itt, itt_lo, itt_hi, _dof(get(half, "n"))),
        "crowding_true": (tru, tru_lo, tru_hi, _dof(get(half, "n_true"))),
    }.items():
        se_p = (phi - plo) / (2 * _q95(dof_p))
        se_t = (tot_hi - tot_lo) / (2 * _q95(dof_t))
        c = 1 - tot / p if p else nan
        se_c = math.sqrt((se_t / p) ** 2 + (tot * se_p / p**2) ** 2) if p else nan
        q = _q95(min(dof_p, dof_t)) if not math.isnan(dof_p + dof_t) else nan
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = c, c - q * se_c, c + q * se_c
    # with common seeds the two policies ran in the same worlds: the gap between the total
    # and the true 50/50 prediction is measured world by world
    out["gap_true"] = out["gap_true_lo"] = out["gap_true_hi"] = nan
    if seeds_are_common(res.results):
        ok = res.results[(res.results["status"] == "ok") & (res.results["id"] == outcome)]
        share = ok[TREATED_SHARE].astype(float)
        by_rep = {
            s: ok[np.isclose(share, s)].set_index("replication")["true_effect"] for s in (0.5, 1.0)
        }
        gap = (by_rep[1.0] - by_rep[0.5]).dropna()
        m, lo, hi = mean_interval(gap)
        out["gap_true"], out["gap_true_lo"], out["gap_true_hi"] = (
            n * m / 100,
            n * lo / 100,
            n * hi / 100,
        )
    return out


def _dof(n: float) -> float:
    """Degrees of freedom of a :func:`point_table` interval from ``n`` replications
    (``n - 1``; one replication's interval is its study's large-sample SE: infinite)."""
    return n - 1 if n >= 2 else math.inf if n == 1 else math.nan


def _q95(dof: float) -> float:
    """The 97.5% quantile of the interval with ``dof`` degrees of freedom."""
    if math.isnan(dof):
        return math.nan
    return Z95 if math.isinf(dof) else float(t95(dof + 1))


def crowding_out_table(co: Mapping[str, float]) -> pd.DataFrame:
    """The bars of :func:`plots.crowding_out_bars` from :func:`crowding_out`."""
    rows = [
        ("the 50/50 study's ITT\nx all learners", "predicted", "prediction"),
        ("true 50/50 ITT (twins)\nx all learners", "predicted_true", "prediction"),
        ("everyone nudged vs no one\n(twins: total effect)", "total", "total"),
    ]
    return pd.DataFrame(
        [
            {"label": label, "jobs": co[k], "lo": co[f"{k}_lo"], "hi": co[f"{k}_hi"], "kind": kind}
            for label, k, kind in rows
        ]
    )


def conclude_everyone_nudged(co: Mapping[str, float]) -> str:
    """One paragraph on :func:`crowding_out`."""
    n = co["n_learners"]

    def with_ci(k: str, fmt: Callable[[float], str]) -> str:
        """``co[k]`` and its 95% interval (``k_lo``, ``k_hi``), each written by ``fmt``."""
        if not np.isfinite(co[k]):
            return "n/a"
        ci = (
            f" (95% CI {fmt(co[k + '_lo'])} to {fmt(co[k + '_hi'])})"
            if np.isfinite(co[k + "_lo"])
            else ""
        )
        return f"{fmt(co[k])}{ci}"

    def jobs(k: str) -> str:
        return with_ci(k, lambda v: f"{v:+,.0f}")

    def share(k: str) -> str:
        return with_ci(k, lambda v: f"{100 * v:.0f}%")

    text = (
        f"The 50/50 study estimates an ITT of {pp(co['itt_pp'])} on a new job (true "
        f"{pp(co['true_itt_pp'])}); applied to all {n:,.0f} learners it predicts that "
        f"nudging everyone changes the number of learners with a new job by "
        f"{jobs('predicted')} ({jobs('predicted_true')} from the true ITT). Nudging everyone "
        f"at once changes it by {jobs('total')} (twins: everyone nudged versus no one, "
        f"{pp(co['total_pp'])}). "
        f"Crowding out, the share of the predicted gain that does not materialise, is "
        f"{share('crowding')} ({share('crowding_true')} of the true 50/50 effect)"
    )
    lo, hi = co.get("crowding_true_lo", math.nan), co.get("crowding_true_hi", math.nan)
    if np.isfinite(lo) and lo > 0:
        text += (
            ": nudged learners compete with each other for the same vacancies, which a "
            "50/50 experiment, where the nudged compete mostly with controls, cannot see."
        )
    elif np.isfinite(hi) and hi < 0:
        text += ": nudging everyone adds more than the 50/50 study predicts."
    elif np.isfinite(lo):
        text += (
            ": its interval against the true effect includes zero, so these replications "
            "cannot tell nudging everyone from the 50/50 study's prediction."
        )
    else:
        text += "."
    if np.isfinite(co.get("gap_true_lo", math.nan)):
        sure = (
            "so crowding out is clear of zero"
            if co["gap_true_hi"] < 0
            else "so nudging everyone adds more than predicted"
            if co["gap_true_lo"] > 0
            else "not distinguishable from zero"
        )
        text += (
            f" Paired world by world (common seeds), the total minus the true 50/50 "
            f"prediction is {jobs('gap_true')} learners, {sure}."
        )
    for key, what in (
        ("predicted", "The study's own prediction"),
        ("predicted_true", "The true 50/50 effect"),
    ):
        lo = co.get(f"{key}_lo", math.nan)
        if np.isfinite(lo) and lo <= 0:
            text += (
                f" {what} is not distinguishable from zero here, so the crowding-out "
                "share against it is not informative."
            )
    return text


def analyze(res: SweepResults, name: str = "everyone_nudged") -> Analysis:
    """The bars of predicted and total extra new jobs, the table of
    :func:`crowding_out` and the conclusion."""
    co = crowding_out(res)
    bars = crowding_out_table(co)
    fig = plots.crowding_out_bars(
        bars,
        title=f"Nudging all {co['n_learners']:,.0f} learners: predicted and total extra new jobs",
    )
    table = pd.DataFrame([{"quantity": k, "value": v} for k, v in co.items()])
    return Analysis(
        name,
        {"crowding_out": fig},
        table,
        conclude_everyone_nudged(co),
        {"crowding_out": co},
        figure_data={"crowding_out": bars},
    )
