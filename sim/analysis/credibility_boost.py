"""A more (or less) credible credential (``experiments/sweeps/credibility_boost.toml``).

The nudge's effects against the credential's credibility to employers (0.25 to 1) at
the calibrated nudge, overall and by employability tertile (who gains), with 95%
intervals; see :mod:`sim.analysis.curves`.
"""

from __future__ import annotations

from sim.analysis.common import CREDIBILITY, Analysis, SweepResults
from sim.analysis.curves import CurveSpec, analyze_curve

__all__ = ["SPEC", "analyze"]

SPEC = CurveSpec(
    CREDIBILITY, False, "credibility", "{:.2f}", "credential credibility to employers (share, 0-1)"
)


def analyze(res: SweepResults, name: str = "credibility_boost") -> Analysis:
    """The effects figure, the table and the conclusion (:func:`analyze_curve`)."""
    return analyze_curve(res, SPEC, name)
