"""A more (or less) credible credential (``experiments/sweeps/credibility_boost.toml``).

The nudge's effects against the credential's credibility to employers (the weight they
give its content relative to a Bayesian reading: 0 counts only the fact of completion,
1 is Bayesian, above 1 over-reads it) at the calibrated nudge, overall and by
employability tertile (who gains), with 95% intervals; see :mod:`sim.analysis.curves`.
"""

from __future__ import annotations

from sim.analysis.common import CREDIBILITY, Analysis, SweepResults
from sim.analysis.curves import CurveSpec, analyze_curve

__all__ = ["SPEC", "analyze"]

SPEC = CurveSpec(
    CREDIBILITY,
    False,
    "credibility",
    "{:.2f}",
    "credibility (1: a Bayesian reading)",
)


def analyze(res: SweepResults, name: str = "credibility_boost") -> Analysis:
    """The effects figure, the table and the conclusion (:func:`analyze_curve`)."""
    return analyze_curve(res, SPEC, name)
