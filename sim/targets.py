"""The study's published numbers (TARGETS.md): what the calibrated model must reproduce.

Source: Athey & Palikot, "The value of non-traditional credentials in the labor market",
arXiv 2405.00247 (v1, 2024); T2, T4, T5, T6 are its tables. Effects are ITT in
percentage points with their SE; control means are in percent. Where the paper gives no
SE for a control mean it is the binomial SE of a mean over the control group's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "FLOW_TARGETS",
    "MATCHED_N",
    "MOMENT_KINDS",
    "PAPER",
    "TARGETS",
    "FlowTarget",
    "MomentTarget",
    "Target",
    "flow_moments",
    "monthly_to_weekly",
    "paper_moments",
]

#: Matched sample of the paper: 36,946 learners (18,487 treated, 18,459 control).
MATCHED_N = {"total": 36_946, "treated": 18_487, "control": 18_459}
#: Learners in the certificate-view regressions (T6).
VIEWS_N = 765_616


@dataclass(frozen=True)
class Target:
    """One row of the paper: an ITT effect with its SE and the control mean."""

    id: str
    label: str
    itt_pp: float
    se_pp: float
    control_mean: float  # percent
    n: int
    source: str
    rel: float | None = None  # relative effect as published (fraction)
    rel_se: float | None = None

    @property
    def control_se(self) -> float:
        """Binomial SE (pp) of the control mean over the control half of ``n``."""
        p = self.control_mean / 100
        return 100 * math.sqrt(p * (1 - p) / (self.n / 2))

    def ci95(self) -> tuple[float, float]:
        """The paper's 95% interval for the effect (pp)."""
        return (self.itt_pp - 1.96 * self.se_pp, self.itt_pp + 1.96 * self.se_pp)


TARGETS: dict[str, Target] = {
    t.id: t
    for t in (
        Target(
            "shared", "credential shared", 2.8, 0.4, 16.5, MATCHED_N["total"], "T4, p.14", rel=0.17
        ),
        Target(
            "new_job",
            "new job (start >= 1 month after randomization)",
            1.006,
            0.452,
            17.3,
            MATCHED_N["total"],
            "T2 col 1",
            rel=0.058,
            rel_se=0.026,
        ),
        Target(
            "new_job_in_scope",
            "new job in scope (tech or managerial)",
            1.187,
            0.397,
            12.7,
            MATCHED_N["total"],
            "T2 col 2",
            rel=0.093,
            rel_se=0.031,
        ),
        Target(
            "any_view",
            "any certificate view (full population)",
            0.619,
            0.090,
            18.84,
            VIEWS_N,
            "T6",
            rel=0.034,
        ),
        Target(
            "new_job_high",
            "new job, high predicted employability",
            0.382,
            1.141,
            31.6,
            9_432,
            "T5",
            rel=0.012,
            rel_se=0.037,
        ),
        Target(
            "new_job_medium",
            "new job, medium predicted employability",
            0.671,
            0.640,
            12.0,
            11_817,
            "T5",
            rel=0.054,
            rel_se=0.053,
        ),
        Target(
            "new_job_low",
            "new job, low predicted employability",
            1.265,
            0.529,
            11.0,
            15_697,
            "T5",
            rel=0.109,
            rel_se=0.048,
        ),
    )
}


# ---- the market's flows: outside sources ----------------------------------------------


@dataclass(frozen=True)
class FlowTarget:
    """A labour-market flow moment from outside the study, with the tolerance we give it
    (the spread of the sources, not a sampling SE) and where it comes from."""

    id: str
    label: str
    value: float
    tolerance: float
    unit: str
    source: str


FLOW_TARGETS: dict[str, FlowTarget] = {
    t.id: t
    for t in (
        FlowTarget(
            "flow.ue_monthly",
            "monthly job-finding rate of the unemployed (U->E)",
            0.20,
            0.03,
            "share per month",
            "Household labour-force panels: U->E runs at roughly 20-28% a month across "
            "countries (Donovan, Lu & Schoellman 2023, QJE, 'Labor Market Dynamics and "
            "Development'; US CPS about 25%, Shimer 2012, RED); MODEL.md gives 10-30% "
            "for the study's countries. We take 20%.",
        ),
        FlowTarget(
            "flow.ee_monthly",
            "monthly job-to-job rate of the employed (E->E)",
            0.02,
            0.005,
            "share per month",
            "US E->E about 2% a month (Fallick & Fleischman 2004, CPS; Fujita, "
            "Moscarini & Postel-Vinay 2024, AER); poorer countries run higher "
            "(Donovan, Lu & Schoellman 2023), graduates with stable jobs lower. We take "
            "2%, with a tolerance of 0.5 pp.",
        ),
        FlowTarget(
            "flow.hired_2plus_share",
            "share of learners hired in a year who are hired 2+ times in it",
            0.15,
            0.04,
            "share",
            "Most people who change job do so once in a year (MODEL.md, 'The market must "
            "be believable'); this project's bar is under 20% (under 1% 5+ times). We "
            "take 15%, with a tolerance of 4 pp.",
        ),
        FlowTarget(
            "flow.tenure_survival_52w",
            "share of new jobs lasting a year (Kaplan-Meier)",
            0.50,
            0.10,
            "share",
            "Most new jobs end early: about half of new jobs end within their first "
            "year, and the hazard of a job ending falls with tenure after its first "
            "months (Farber 1999, 'Mobility and stability', Handbook of Labor Economics "
            "3B; Farber 1994, JOLE 12(4), NLSY). We take 50%, with a tolerance of 10 pp.",
        ),
        FlowTarget(
            "flow.employment_drift_pp",
            "change in learners' employment rate over the study window (pp)",
            0.0,
            0.5,
            "pp",
            "Steady state at randomization (MODEL.md): weekly flows are flat over the "
            "study window; the bar is |drift| < 1 pp.",
        ),
    )
}


def monthly_to_weekly(rate: float) -> float:
    """A monthly transition probability as a weekly one (52 / 12 weeks a month)."""
    return 1.0 - (1.0 - rate) ** (12.0 / 52.0)


# ---- moments as calibration targets -------------------------------------------------------

#: The paper the targets come from (the citation of every ``kind="paper"`` moment).
PAPER = "Athey & Palikot (2024), arXiv 2405.00247"
#: Where a moment target comes from: the paper's tables, or an outside labour-flow number.
MOMENT_KINDS = ("paper", "flow")


@dataclass(frozen=True)
class MomentTarget:
    """One moment a calibration matches: its id, target value and data-side uncertainty.

    ``id`` names a simulated moment (``<row id>.control`` or ``<row id>.itt`` of a twin
    run, or an outside moment such as ``flow.ue_monthly``). ``se`` is the uncertainty of
    ``value`` on the data side, in its units: the published SE for the paper's numbers, a
    stated tolerance for an outside flow moment. ``source`` cites where ``value`` (and
    ``se``) come from; ``kind`` is one of :data:`MOMENT_KINDS`.
    """

    id: str
    value: float
    se: float
    source: str
    kind: str = "paper"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and math.isfinite(self.se) and self.se > 0):
            raise ValueError(f"{self.id}: value and se must be finite, se > 0 ({self})")
        if self.kind not in MOMENT_KINDS:
            raise ValueError(f"{self.id}: kind must be one of {MOMENT_KINDS}, not {self.kind!r}")


def paper_moments(*ids: str) -> tuple[MomentTarget, ...]:
    """The control mean (%) and ITT (pp) of each row of :data:`TARGETS`, as moment targets:
    ``<id>.control`` with SE :attr:`Target.control_se` and ``<id>.itt`` with the published
    SE of the effect."""
    out = []
    for tid in ids:
        t = TARGETS[tid]
        out.append(
            MomentTarget(
                f"{tid}.control",
                t.control_mean,
                t.control_se,
                f"{PAPER}, {t.source}: control mean (binomial SE over n/2 = {t.n // 2:,})",
            )
        )
        out.append(
            MomentTarget(
                f"{tid}.itt", t.itt_pp, t.se_pp, f"{PAPER}, {t.source}: ITT (published SE)"
            )
        )
    return tuple(out)


def flow_moments(*ids: str) -> tuple[MomentTarget, ...]:
    """The outside flow moments of :data:`FLOW_TARGETS` as moment targets (``se`` = the
    stated tolerance; ``source`` the citation)."""
    return tuple(
        MomentTarget(t.id, t.value, t.tolerance, t.source, kind="flow")
        for t in (FLOW_TARGETS[i] for i in (ids or tuple(FLOW_TARGETS)))
    )
