"""Figures, tables and conclusions of the policy experiments (``experiments/sweeps/``).

One module per experiment, each with the tables, figures and the one-paragraph
conclusion of its sweep (``credsim sweep experiments/sweeps/<name>.toml``):

- :mod:`~sim.analysis.nudge_credibility`: maps over nudge strength x credibility of the
  relative new-job effect (mean estimate and true effect), the low-tertile effect and
  the sharing effect, with the paper's 6% and 11% as contour lines and the calibrated
  point marked;
- :mod:`~sim.analysis.credibility_boost`, :mod:`~sim.analysis.signal_precision`,
  :mod:`~sim.analysis.stronger_nudge`: effects against the swept parameter, overall and
  by employability tertile (who gains), with 95% intervals (:mod:`~sim.analysis.curves`);
- :mod:`~sim.analysis.everyone_nudged`: what the 50/50 study predicts at scale versus
  the total effect of nudging everyone (from the twins), and the implied crowding out;
  ``everyone_nudged_pause`` is the same in a market where employed learners send no
  applications (no active on-the-job search; the file keeps the name of the 26-week
  search pause it replaced, which the open market no longer has);
- :mod:`~sim.analysis.channels`: the new-job effect with visibility and signal each on
  or off;
- :mod:`~sim.analysis.crowding_share`: the 50/50 study's prediction for nudging everyone
  against the total effect, by the learners' share of the job seekers in their market;
- :mod:`~sim.analysis.targeted_nudging`: a fixed number of nudges at random, to the least
  employable or to the highest predicted effects: total new jobs net of crowding out,
  and who gains.

:mod:`~sim.analysis.other_experiments` predicts other published experiments out of
sample (its own runner, ``experiments/other_experiments.py``, not a sweep).

What they share (loading a result folder, per-point means and intervals, the calibrated
point, saving figures) is in :mod:`~sim.analysis.common`, with the conventions (units,
relative effects, 95% intervals with Student's t over replications); reduced-scale
versions of the sweeps, for readers without the full-scale results, in
:mod:`~sim.analysis.small`. The figures themselves are drawn by :mod:`sim.plots`.
``experiments/analyze.py`` runs all of it on the sweeps that exist and prints the tables
and conclusions; notebooks 03 and 04 show the same::

    from sim.analysis import analyze_experiment, load_experiment

    res = load_experiment("channels", "results/sweeps")
    a = analyze_experiment("channels", res)
    a.figures["channels"], a.table, a.conclusion
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim.analysis import (
    channels,
    credibility_boost,
    crowding_share,
    curves,
    everyone_nudged,
    nudge_credibility,
    signal_precision,
    small,
    stronger_nudge,
    targeted_nudging,
)
from sim.analysis.channels import CHANNEL_LABELS, channels_table, conclude_channels
from sim.analysis.common import (
    CREDIBILITY,
    NUDGE,
    PRECISION,
    SIGNAL,
    TREATED_SHARE,
    VISIBILITY,
    Analysis,
    SweepResults,
    calibrated_point,
    load_experiment,
    load_results,
    point_table,
    save_figures,
)
from sim.analysis.curves import (
    GROUP_IDS,
    conclude_changes,
    conclude_curve,
    curve_table,
    paired_changes,
)
from sim.analysis.everyone_nudged import (
    conclude_everyone_nudged,
    crowding_out,
    crowding_out_table,
)
from sim.analysis.nudge_credibility import (
    Surface,
    conclude_nudge_credibility,
    credibility_needed,
    fit_surface,
    nudge_credibility_figures,
    nudge_credibility_grid,
    nudge_credibility_surfaces,
    surface_thresholds,
    thresholds_table,
)
from sim.analysis.small import load_or_run_small, run_small, small_sweep

__all__ = [
    "CHANNEL_LABELS",
    "CREDIBILITY",
    "EXPERIMENTS",
    "GROUP_IDS",
    "NUDGE",
    "PRECISION",
    "SIGNAL",
    "TREATED_SHARE",
    "VARIANT_OF",
    "VISIBILITY",
    "Analysis",
    "Surface",
    "SweepResults",
    "analyze_experiment",
    "calibrated_point",
    "channels",
    "channels_table",
    "conclude_changes",
    "conclude_channels",
    "conclude_curve",
    "conclude_everyone_nudged",
    "conclude_nudge_credibility",
    "credibility_boost",
    "credibility_needed",
    "crowding_out",
    "crowding_out_table",
    "crowding_share",
    "curve_table",
    "curves",
    "everyone_nudged",
    "fit_surface",
    "load_experiment",
    "load_or_run_small",
    "load_results",
    "nudge_credibility",
    "nudge_credibility_figures",
    "nudge_credibility_grid",
    "nudge_credibility_surfaces",
    "paired_changes",
    "point_table",
    "run_small",
    "save_figures",
    "signal_precision",
    "small",
    "small_sweep",
    "stronger_nudge",
    "surface_thresholds",
    "targeted_nudging",
    "thresholds_table",
]

#: The experiments, in the order they are analysed.
EXPERIMENTS = (
    "nudge_credibility",
    "credibility_boost",
    "signal_precision",
    "stronger_nudge",
    "everyone_nudged",
    "everyone_nudged_pause",
    "channels",
    "crowding_share",
    "targeted_nudging",
)
#: Experiments analysed as another one (the same design in a changed market).
VARIANT_OF = {"everyone_nudged_pause": "everyone_nudged"}

_MODULES = {
    "credibility_boost": credibility_boost,
    "signal_precision": signal_precision,
    "stronger_nudge": stronger_nudge,
    "everyone_nudged": everyone_nudged,
    "channels": channels,
    "crowding_share": crowding_share,
    "targeted_nudging": targeted_nudging,
}


def analyze_experiment(
    name: str, res: SweepResults, calibrated: Mapping[str, Any] | None = None
) -> Analysis:
    """Figures, table and conclusion of experiment ``name`` on ``res``.

    ``calibrated`` (the nudge_credibility map's marked point) defaults to
    :func:`calibrated_point`; the other experiments do not use it.
    """
    kind = VARIANT_OF.get(name, name)
    if kind == "nudge_credibility":
        return nudge_credibility.analyze(res, calibrated, name=name)
    if kind in _MODULES:
        return _MODULES[kind].analyze(res, name=name)
    raise ValueError(f"unknown experiment {name!r}; expected one of {list(EXPERIMENTS)}")
