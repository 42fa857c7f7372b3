"""Figures: data in, ``matplotlib.figure.Figure`` out (no files, no global state).

Used by the CLI, the notebooks and the app alike, so that a figure looks the same
wherever it is drawn: labelled axes with units, arms in fixed colours, confidence
intervals wherever there is uncertainty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["ARM_COLORS", "cumulative_new_jobs", "tertile_effects", "weekly_series"]

ARM_COLORS = {0: "#4c72b0", 1: "#dd8452"}
ARM_LABELS = {0: "control", 1: "nudged (treated)"}


def cumulative_new_jobs(curves: pd.DataFrame) -> Figure:
    """Share reporting a new job by months since randomization, by arm (paper Fig. 2).

    ``curves`` has columns ``months``, ``treated``, ``share`` and optionally ``rep``
    (replications are averaged; the band is the 2.5-97.5% range across them).
    """
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for arm in (0, 1):
        c = curves[curves["treated"] == arm]
        g = c.groupby("months")["share"]
        mean = 100 * g.mean()
        ax.plot(mean.index, mean.values, marker="o", ms=3, color=ARM_COLORS[arm],
                label=ARM_LABELS[arm])
        if "rep" in c and c["rep"].nunique() > 1:
            lo, hi = 100 * g.quantile(0.025), 100 * g.quantile(0.975)
            ax.fill_between(mean.index, lo.values, hi.values, color=ARM_COLORS[arm],
                            alpha=0.2, lw=0)
    ax.set_xlabel("months since randomization")
    ax.set_ylabel("share reporting a new job (%)")
    ax.set_title("Cumulative new jobs by arm (matched sample)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return fig


def tertile_effects(table: pd.DataFrame) -> Figure:
    """ITT on a new job by tertile of predicted employability: simulated beside paper.

    ``table`` is the reproduce table (``id``, ``itt_pp``, ``itt_se``, ``sim_sd``,
    ``paper_itt_pp``, ``paper_se``, ``true_itt_pp``). Intervals are 95%: for the paper
    its reported SE, for the simulation one study's spread (``sim_sd``) around the mean
    estimate over replications.
    """
    t = table.set_index("id")
    groups = ["new_job_low", "new_job_medium", "new_job_high", "new_job"]
    labels = ["low", "medium", "high", "all"]
    x = np.arange(len(groups))
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    paper = t.loc[groups, "paper_itt_pp"].to_numpy(float)
    pse = t.loc[groups, "paper_se"].to_numpy(float)
    sim = t.loc[groups, "itt_pp"].to_numpy(float)
    ssd = t.loc[groups, "sim_sd"].to_numpy(float)
    ax.errorbar(x - 0.12, paper, yerr=1.96 * pse, fmt="s", color="black", capsize=3,
                label="paper (95% CI)")
    ax.errorbar(x + 0.12, sim, yerr=1.96 * ssd, fmt="o", color=ARM_COLORS[1], capsize=3,
                label="simulated: mean estimate, 95% range of one study")
    true = t.loc[groups, "true_itt_pp"].to_numpy(float)
    if np.isfinite(true).any():
        ax.scatter(x + 0.12, true, marker="x", color="crimson", zorder=3,
                   label="model's true effect")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x, labels)
    ax.set_xlabel("predicted baseline employability (tertile)")
    ax.set_ylabel("ITT on new job (percentage points)")
    ax.set_title("Effect of the nudge on new jobs by employability")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def weekly_series(series: pd.DataFrame) -> Figure:
    """A run's weekly series: sharing by arm, employment, hires and open vacancies."""
    fig = Figure(figsize=(9, 6), layout="constrained")
    axs = fig.subplots(2, 2)
    s = series
    ax = axs[0, 0]
    ax.plot(s["week"], 100 * s["shared_control"], color=ARM_COLORS[0], label="control")
    ax.plot(s["week"], 100 * s["shared_treated"], color=ARM_COLORS[1], label="treated")
    ax.set_ylabel("shared, among granted (%)")
    ax.legend(frameon=False)
    ax = axs[0, 1]
    ax.plot(s["week"], 100 * s["employed"], color="black")
    ax.set_ylabel("learners employed (%)")
    ax = axs[1, 0]
    ax.plot(s["week"], s["hires_learners"], label="learners")
    ax.plot(s["week"], s["hires_background"], label="background seekers")
    ax.set_ylabel("hires per week")
    ax.legend(frameon=False)
    ax = axs[1, 1]
    ax.plot(s["week"], s["vacancies_open"], color="grey")
    ax.set_ylabel("open vacancies")
    for a in axs.flat:
        a.set_xlabel("week since first graduation")
        a.grid(alpha=0.3)
    return fig
