"""A more informative credential (``experiments/sweeps/signal_precision.toml``).

The nudge's effects against the precision of the credential's signal about skill at
the calibrated credibility (baseline 4), overall and by employability tertile, with 95%
intervals; see :mod:`sim.analysis.curves`.
"""

from __future__ import annotations

from sim.analysis.common import PRECISION, Analysis, SweepResults
from sim.analysis.curves import CurveSpec, analyze_curve

__all__ = ["SPEC", "analyze"]

SPEC = CurveSpec(
    PRECISION,
    False,
    "the credential's signal precision",
    "{:.0f}",
    "precision of the credential signal (1 / skill variance)",
)


def analyze(res: SweepResults, name: str = "signal_precision") -> Analysis:
    """The effects figure, the table and the conclusion (:func:`analyze_curve`)."""
    return analyze_curve(res, SPEC, name)
