"""A stronger nudge (``experiments/sweeps/stronger_nudge.toml``).

The nudge's effects against its strength, as a multiple of the calibrated (the
study's) nudge, overall and by employability tertile, with 95% intervals; see
:mod:`sim.analysis.curves`.
"""

from __future__ import annotations

from sim.analysis.common import NUDGE, Analysis, SweepResults
from sim.analysis.curves import CurveSpec, analyze_curve

__all__ = ["SPEC", "analyze"]

SPEC = CurveSpec(
    NUDGE,
    True,
    "the nudge strength",
    "x{:.2g} the study's",
    "nudge strength (multiple of the calibrated nudge, x)",
)


def analyze(res: SweepResults, name: str = "stronger_nudge") -> Analysis:
    """The effects figure, the table and the conclusion (:func:`analyze_curve`)."""
    return analyze_curve(res, SPEC, name)
