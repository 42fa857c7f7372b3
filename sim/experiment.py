"""The study layer: the experiment run inside the model, measured as the paper measured it.

* **Design.** Monthly graduation batches, 50/50 assignment within batch x stratum
  (domain x developing country x college degree), app opening within 30 days (82-96% by
  batch), up to two notifications: all of it lives in the model's construction
  (:mod:`sim.population`, :mod:`sim.model`); ``study.treated_share`` sets the share.
* **Measurement** (:func:`study_dataset`). At the collection date the study sees the
  *matched* learners' profiles: whether the credential is shared, and reported jobs. A
  new job is one that started at least ``calendar.new_job_min_weeks`` after
  randomization and was reported on the profile by the collection date; its start (in
  weeks since randomization) is kept for the Cox model, censored at the collection date.
  Certificate views are measured on the whole population (:func:`population_dataset`).
* **Twin runs** (:func:`run_twins`). The same population, graph and weekly random
  numbers are run twice: once with the study's assignment and once with its mirror image
  (every learner's arm flipped). Each learner is treated in one world and control in the
  other, at the same overall treated share when it is 0.5, so each learner's outcome
  under both arms is known and the *true* effect is their mean difference. With
  ``treated_share = 1`` the mirror is a world where no one is nudged, and the twin
  difference is the total effect of nudging everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.model import NO_WEEK, CredentialMarket, RunResult
from sim.params import Scenario

__all__ = [
    "OUTCOMES",
    "Twins",
    "population_dataset",
    "run_twins",
    "study_dataset",
    "true_effects",
]

#: Study outcomes measured on the matched sample (0/1 per learner).
OUTCOMES = ("shared", "new_job", "new_job_in_scope")

_TRAITS = [
    "learner", "batch", "grant_week", "treated", "stratum", "domain", "developing",
    "education", "college", "experience_years", "past_tech", "past_manager",
    "employed_baseline", "credential_type",
]


def study_dataset(learners: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """One row per matched learner with the columns the study had.

    Columns: identifiers and pre-treatment traits, ``treated`` (0/1), ``stratum``,
    ``batch``; outcomes ``shared``, ``new_job``, ``new_job_in_scope`` (0/1), ``views``,
    ``any_view``; durations ``new_job_weeks`` and ``new_job_in_scope_weeks`` (weeks from
    randomization to the start of the first counted, reported job; NaN if none) and
    ``followup_weeks`` (randomization to collection: the censoring time).
    """
    m = learners[learners["matched"].to_numpy()]
    return _measure(m, scenario)


def population_dataset(learners: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Every learner, with traits, ``treated``, ``stratum``, ``views`` and ``any_view``."""
    df = learners[_TRAITS].copy()
    for c in ("treated", "developing", "college", "past_tech", "past_manager",
              "employed_baseline"):
        df[c] = df[c].astype(np.int8)
    df["views"] = learners["views"].to_numpy()
    df["any_view"] = (df["views"] > 0).astype(np.int8)
    return df


def _measure(m: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    end = scenario.calendar.n_weeks
    df = m[_TRAITS].copy()
    for c in ("treated", "developing", "college", "past_tech", "past_manager",
              "employed_baseline"):
        df[c] = df[c].astype(np.int8)
    grant = m["grant_week"].to_numpy().astype(float)
    df["shared"] = m["shared"].to_numpy().astype(np.int8)
    for out, col in (("new_job", "seen_job_week"), ("new_job_in_scope", "seen_scope_job_week")):
        wk = m[col].to_numpy()
        seen = wk != NO_WEEK
        df[out] = seen.astype(np.int8)
        df[f"{out}_weeks"] = np.where(seen, wk - grant, np.nan)
    df["followup_weeks"] = end - grant
    df["views"] = m["views"].to_numpy()
    df["any_view"] = (df["views"] > 0).astype(np.int8)
    return df.reset_index(drop=True)


@dataclass
class Twins:
    """A study world and its mirror, run on the same population and random numbers."""

    scenario: Scenario
    seed: int
    study: RunResult  # the world with the study's assignment
    mirror: RunResult  # every learner's arm flipped
    meta: dict = field(default_factory=dict)

    def potential_outcomes(self) -> pd.DataFrame:
        """Per learner: traits, assignment, and each outcome under treatment and control.

        Columns ``<outcome>_1`` / ``<outcome>_0`` for ``shared``, ``new_job``,
        ``new_job_in_scope``, ``any_view``.
        """
        a, b = self.study.learners, self.mirror.learners
        treated = a["treated"].to_numpy()
        out = a[["learner", "matched", "treated"]].copy()
        pa, pb = _outcomes(a, self.scenario), _outcomes(b, self.scenario)
        for k in pa:
            out[f"{k}_1"] = np.where(treated, pa[k], pb[k]).astype(np.int8)
            out[f"{k}_0"] = np.where(treated, pb[k], pa[k]).astype(np.int8)
        return out


def _outcomes(learners: pd.DataFrame, scenario: Scenario) -> dict[str, np.ndarray]:
    return {
        "shared": learners["shared"].to_numpy(),
        "new_job": learners["seen_job_week"].to_numpy() != NO_WEEK,
        "new_job_in_scope": learners["seen_scope_job_week"].to_numpy() != NO_WEEK,
        "any_view": learners["views"].to_numpy() > 0,
    }


def true_effects(po: pd.DataFrame, mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean of ``Y(1) - Y(0)`` in percentage points over the learners in ``mask``."""
    sel = po if mask is None else po[mask]
    return {
        k[:-2]: float(100 * (sel[k].mean() - sel[k[:-2] + "_0"].mean()))
        for k in sel.columns if k.endswith("_1")
    }


def run_twins(
    scenario: Scenario,
    seed: int | np.random.SeedSequence,
    progress: Callable[[int, int], None] | None = None,
) -> Twins:
    """Run the study world and its mirror (see the module docstring).

    ``progress(done, total)`` counts weeks over both runs.
    """
    a = CredentialMarket(scenario, rng=seed, agents=False)
    b = CredentialMarket(
        scenario, rng=seed, agents=False, population=a.population,
        employers=a.employers_traits, graph=a.network, treated=~a.treated,
    )
    total = 2 * (a.end_week - a.week)

    def report(offset: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, total)

    ra = a.run(report(0))
    rb = b.run(report(total // 2))
    return Twins(scenario, a.seed, ra, rb)
