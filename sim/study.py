"""The study layer: the experiment run inside the model, measured and estimated as the paper did.

One entry point, :func:`run_study`: a scenario and a seed in, a :class:`StudyResult` out
(the paper's estimates, and with ``twin=True`` the model's true effects beside them).
``credsim reproduce``, sweeps and the calibration all call it; nothing else builds a
study.

* **Design** (:func:`assign`). Learners graduate in monthly batches (a trait drawn with
  the population, :mod:`sim.population`); within every batch x stratum cell (domain x
  developing country x college degree) ``study.treated_share`` of the learners are
  assigned to the nudge. The model takes the assignment as an input
  (``CredentialMarket(treated=...)``) and applies it; when none is given it asks this
  function for the study's design. ``study.targeting`` other than ``"random"`` gives
  the nudges instead to the learners a model learnt on a pilot 50/50 study ranks first
  (:mod:`sim.targeting`): a policy rather than a randomized study.
* **Measurement** (:func:`study_dataset`, :func:`population_dataset`). At the collection
  date the study sees the *matched* learners' profiles: whether the credential is shared,
  and reported jobs. A new job is one that started at least ``calendar.new_job_min_weeks``
  after randomization and was reported on the profile by the collection date; its start
  (in weeks since randomization) is kept for the Cox model, censored at the collection
  date. Certificate views are measured on the whole population.
* **Twin runs** (:func:`run_twins`). The same population, graph and weekly random numbers
  are run twice: once with the study's assignment and once with its mirror image (every
  learner's arm flipped). Each learner is treated in one world and control in the other,
  so each learner's outcome under both arms is known and the *true* effect is the mean
  difference. With ``treated_share = 1`` the mirror is a world where no one is nudged, and
  the twin difference is the total effect of nudging everyone.
* **Policies** (``study.mirror = "no_nudge"``, :func:`policy`). The mirror is the world
  where no one is nudged, whatever the assignment: the twin difference is then the total
  effect of the nudges given, spillovers onto the learners not nudged included
  (:func:`policy_truth`: over the matched learners and over everyone, among the nudged
  and the others, by third of baseline employability). Targeted designs need it. The
  study's estimators are not run (a targeted assignment is not random, and the twins
  measure the policy without sampling noise).
* **One arm** (``treated_share`` 0 or 1). No estimator can run on a study with an empty
  arm; :func:`run_study` then reports the twins' true effects only (estimator ``"twin"``)
  and refuses to run without twins, since there would be nothing to measure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.model import CredentialMarket, RunResult
from sim.params import Scenario
from sim.population import Learners, stratified_assignment
from sim.runner.tasks import ESTIMATE_COLUMNS as _ESTIMATE_COLUMNS

if TYPE_CHECKING:  # sim.targeting imports the estimators: not on the path of a run
    from sim.targeting import TargetingModel

__all__ = [
    "ESTIMATE_COLUMNS",
    "OUTCOMES",
    "StudyResult",
    "Twins",
    "assign",
    "one_arm",
    "policy",
    "policy_truth",
    "population_dataset",
    "run_study",
    "run_twins",
    "study_dataset",
    "study_outcomes",
    "true_effects",
    "true_late",
]

#: Study outcomes measured on the matched sample (0/1 per learner).
OUTCOMES = ("shared", "new_job", "new_job_in_scope")

#: Columns of :meth:`StudyResult.rows`: the estimators' columns, then the true effect
#: (written once, in the runner's light module: tasks store these rows).
ESTIMATE_COLUMNS = _ESTIMATE_COLUMNS

_TRAITS = [
    "learner",
    "batch",
    "grant_week",
    "treated",
    "stratum",
    "domain",
    "developing",
    "education",
    "college",
    "experience_years",
    "past_tech",
    "past_manager",
    "employed_baseline",
    "credential_type",
]
_FLAGS = ("treated", "developing", "college", "past_tech", "past_manager", "employed_baseline")


# ---- design ---------------------------------------------------------------------------


def assign(
    scenario: Scenario,
    population: Learners,
    rng: np.random.Generator,
    model: TargetingModel | None = None,
) -> np.ndarray:
    """The study's assignment: who is nudged (``study.targeting``).

    ``"random"`` (the study): ``treated_share`` of every batch x stratum cell, at random;
    within a cell of ``g`` learners exactly ``floor(g * share)`` are treated, plus one
    more with probability equal to the remainder
    (:func:`sim.population.stratified_assignment`).

    ``"low_employability"`` / ``"predicted_effect"`` (a policy): ``treated_share`` of
    every graduation batch, those whom ``model`` ranks first
    (:func:`sim.targeting.select`). Without ``model`` one is learnt here on a pilot
    50/50 study of ``scenario`` in a world of its own, seeded from ``rng``
    (:func:`sim.targeting.learn_from_pilot`).
    """
    study = scenario.study
    if study.targeting == "random":
        cells = population.stratum.astype(np.int64) * 64 + population.batch
        return stratified_assignment(cells, study.treated_share, rng)
    from sim import targeting

    if study.treated_share in (0.0, 1.0):  # no one or everyone: nothing to rank
        return np.full(len(population), study.treated_share == 1.0)
    if model is None:
        model = targeting.learn_from_pilot(scenario, targeting.pilot_seed(rng), study.targeting)
    scores = model.score(targeting.trait_frame(population))
    return targeting.select(scores, population.batch, study.treated_share, rng)


def one_arm(scenario: Scenario) -> bool:
    """Whether the design leaves one arm empty (``treated_share`` 0 or 1)."""
    return scenario.study.treated_share in (0.0, 1.0)


def policy(scenario: Scenario) -> bool:
    """Whether the twin is the world where no one is nudged (``study.mirror =
    "no_nudge"``): the design is then measured as a policy, by its total effects."""
    return scenario.study.mirror == "no_nudge"


# ---- measurement ----------------------------------------------------------------------


def study_dataset(learners: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """One row per matched learner with the columns the study had.

    Columns: identifiers and pre-treatment traits, ``treated`` (0/1), ``stratum``,
    ``batch``; outcomes ``shared``, ``new_job``, ``new_job_in_scope`` (0/1), ``views``,
    ``any_view``; durations ``new_job_weeks`` and ``new_job_in_scope_weeks`` (weeks from
    randomization to the start of the first counted, reported job; NaN if none) and
    ``followup_weeks`` (randomization to collection: the censoring time).
    """
    m = learners[learners["matched"].to_numpy()]
    end = scenario.calendar.n_weeks
    df = _traits(m)
    grant = m["grant_week"].to_numpy().astype(float)
    df["shared"] = m["shared"].to_numpy().astype(np.int8)
    for out, col in (("new_job", "seen_job_week"), ("new_job_in_scope", "seen_scope_job_week")):
        wk = m[col].to_numpy(dtype=float, na_value=np.nan)
        seen = ~np.isnan(wk)
        df[out] = seen.astype(np.int8)
        df[f"{out}_weeks"] = wk - grant
    df["followup_weeks"] = end - grant
    df["views"] = m["views"].to_numpy()
    df["any_view"] = (df["views"] > 0).astype(np.int8)
    return df.reset_index(drop=True)


def population_dataset(learners: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Every learner, with traits, ``treated``, ``stratum``, ``views`` and ``any_view``."""
    df = _traits(learners)
    df["views"] = learners["views"].to_numpy()
    df["any_view"] = (df["views"] > 0).astype(np.int8)
    return df


def _traits(learners: pd.DataFrame) -> pd.DataFrame:
    df = learners[_TRAITS].copy()
    for c in _FLAGS:
        df[c] = df[c].astype(np.int8)
    return df


def _outcomes(learners: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        "shared": learners["shared"].to_numpy(),
        "new_job": learners["seen_job_week"].notna().to_numpy(),
        "new_job_in_scope": learners["seen_scope_job_week"].notna().to_numpy(),
        "any_view": learners["views"].to_numpy() > 0,
    }


# ---- twins ----------------------------------------------------------------------------


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

        With ``study.mirror = "no_nudge"`` (:func:`policy`) the mirror is the world where
        no one is nudged: ``<outcome>_1`` is then every learner's outcome under the
        study's assignment (nudged or not) and ``<outcome>_0`` without any nudge, so
        ``Y(1) - Y(0)`` is what the whole assignment did to each learner, crowding out
        of the ones not nudged included.
        """
        a, b = self.study.learners, self.mirror.learners
        treated = a["treated"].to_numpy()
        out = a[["learner", "matched", "treated"]].copy()
        pa, pb = _outcomes(a), _outcomes(b)
        world = np.ones_like(treated) if policy(self.scenario) else treated
        for k in pa:
            out[f"{k}_1"] = np.where(world, pa[k], pb[k]).astype(np.int8)
            out[f"{k}_0"] = np.where(world, pb[k], pa[k]).astype(np.int8)
        return out


def true_effects(po: pd.DataFrame, mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean of ``Y(1) - Y(0)`` in percentage points over the learners in ``mask``."""
    sel = po if mask is None else po[mask]
    return {
        k[:-2]: float(100 * (sel[k].mean() - sel[k[:-2] + "_0"].mean()))
        for k in sel.columns
        if k.endswith("_1")
    }


def true_late(
    po: pd.DataFrame, outcome: str, mask: np.ndarray | None = None, endog: str = "shared"
) -> float:
    """The true LATE of sharing on ``outcome`` (pp) over the learners in ``mask``.

    The Wald ratio of the twins' true effects: mean ``Y(1) - Y(0)`` over mean
    ``S(1) - S(0)`` (``S`` = ``endog``, sharing), times 100. It is the estimand of the
    2SLS LATE; it equals the compliers' effect of sharing when the nudge moves outcomes
    only through sharing and never stops anyone sharing (exclusion and monotonicity).
    NaN when the nudge does not move sharing (or ``mask`` selects no one).
    """
    sel = po if mask is None else po[mask]
    if sel.empty:
        return math.nan
    d_y = float(sel[f"{outcome}_1"].mean() - sel[f"{outcome}_0"].mean())
    d_s = float(sel[f"{endog}_1"].mean() - sel[f"{endog}_0"].mean())
    return 100 * d_y / d_s if d_s != 0 else math.nan


def run_twins(
    scenario: Scenario,
    seed: int | np.random.SeedSequence,
    progress: Callable[[int, int], None] | None = None,
) -> Twins:
    """Run the study world and its mirror (see the module docstring).

    The mirror flips every learner's arm, or (``study.mirror = "no_nudge"``) nudges no
    one. ``progress(done, total)`` counts weeks over both runs.
    """
    a = CredentialMarket(scenario, rng=seed)
    b = CredentialMarket(
        scenario,
        rng=seed,
        population=a.population,
        employers=a.market.employers,
        graph=a.network,
        treated=np.zeros_like(a.treated) if policy(scenario) else ~a.treated,
    )
    total = 2 * a.weeks_total

    def report(offset: int) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, _total: progress(offset + done, total)

    ra = a.run(report(0))
    rb = b.run(report(total // 2))
    return Twins(scenario, a.seed, ra, rb)


# ---- one study ------------------------------------------------------------------------


@dataclass
class StudyResult:
    """One simulated study: what the paper's estimators found, and what was true.

    ``estimates`` has one row per estimate of :func:`sim.estimate.study_estimates`
    (effects and SEs in pp, control means in %, relative effects as fractions, the
    first-stage F of the 2SLS rows); it is empty when one arm is empty. ``truth`` (with
    twins) has one row per estimand id: its ``outcome`` and ``group``, the learners it
    covers (``n``), the mean outcome without the nudge (``control_mean``, %: the mean of
    ``Y(0)`` over those learners) and the true effect (``true_effect``, pp: the mean of
    ``Y(1) - Y(0)``; for the ``late_*`` ids the true LATE of :func:`true_late`); tertile
    rows use the study's estimated tertiles, subgroup rows
    :func:`sim.estimate.subgroup_masks` (with one arm empty: the four overall rows only).
    ``curves`` is the share of each arm with a new job by months since randomization;
    ``dataset`` the matched study dataset with its tertiles (when asked for).
    """

    scenario: Scenario
    seed_entropy: int
    spawn_key: tuple[int, ...]
    twin: bool
    estimates: pd.DataFrame
    truth: pd.DataFrame
    curves: pd.DataFrame
    dataset: pd.DataFrame | None = None
    flows: dict = field(default_factory=dict)  # the study world's market flows (sim.flows)

    @property
    def true(self) -> dict[str, float]:
        """True effects (pp) by outcome id (empty without twins)."""
        return dict(zip(self.truth["id"], self.truth["true_effect"], strict=True))

    def rows(self) -> pd.DataFrame:
        """Long form, columns :data:`ESTIMATE_COLUMNS`: every estimate with the true value
        of its estimand (the true ITT of its outcome and group; for a LATE the true LATE;
        NaN without twins); when one arm is empty, the twins' rows instead (estimator
        ``"twin"``, effect NaN)."""
        if self.estimates.empty:
            t = self.truth
            out = pd.DataFrame(
                {
                    "id": t["id"],
                    "outcome": t["outcome"] if "outcome" in t else t["id"],
                    "group": t["group"],
                    "estimator": "twin",
                    "effect": math.nan,
                    "se": math.nan,
                    "n": t["n"],
                    "control_mean": t["control_mean"],
                    "rel": math.nan,
                    "rel_se": math.nan,
                    "first_stage_f": math.nan,
                    "true_effect": t["true_effect"],
                }
            )
            return out.loc[:, list(ESTIMATE_COLUMNS)].reset_index(drop=True)
        true = self.true

        def truth(rid: str) -> float:
            return float(true.get(rid.removesuffix("_cox"), math.nan))

        est = self.estimates.copy()
        est["true_effect"] = [truth(r) for r in est["id"]]
        return est.loc[:, list(ESTIMATE_COLUMNS)]


def run_study(
    scenario: Scenario,
    seed: int | np.random.SeedSequence,
    *,
    twin: bool = False,
    keep_dataset: bool = False,
    estimate: bool = True,
) -> StudyResult:
    """Build one world from ``seed``, run the study in it, measure and estimate.

    Args:
        scenario: the validated scenario.
        seed: the study's root seed (an int, or one child of ``SeedSequence.spawn``).
        twin: also run the mirror world, for the true effects.
        keep_dataset: keep the matched study dataset (with tertiles) in the result.
        estimate: run the paper's estimators (LPM, Cox, 2SLS, tertiles). Without them
            (calibration) the result has the twins' truth only, with tertiles still cut
            by the study's cross-fitted employability model.

    The one-arm rule: with ``treated_share`` 0 or 1 the estimators are skipped and the
    twins give the true effects; without ``twin`` that is an error, raised before any work.
    Runs on one BLAS/OpenMP thread (many studies run side by side).
    """
    from threadpoolctl import threadpool_limits

    single = one_arm(scenario)
    if single and not twin:
        raise ValueError(
            f"study.treated_share = {scenario.study.treated_share}: one arm is empty, so no "
            "estimator can run; run it with twin=True for the true effects"
        )
    if policy(scenario) and not twin:
        raise ValueError(
            'study.mirror = "no_nudge": the design is measured by its total effects, '
            "from the twin world where no one is nudged; run it with twin=True"
        )
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    with threadpool_limits(1):
        return _run_study(
            scenario,
            ss,
            twin=twin,
            keep_dataset=keep_dataset,
            estimate=estimate and not single and not policy(scenario),
            single=single,
        )


def _run_study(
    scenario: Scenario,
    seed: np.random.SeedSequence,
    *,
    twin: bool,
    keep_dataset: bool,
    estimate: bool,
    single: bool,
) -> StudyResult:
    from sim.estimate import (
        STUDY_COLUMNS,
        TERTILE_LABELS,
        employability_tertiles,
        study_estimates,
    )

    if twin:
        tw = run_twins(scenario, seed)
        world = tw.study
    else:
        world = CredentialMarket(scenario, rng=seed).run()
    learners = world.learners
    ds = study_dataset(learners, scenario)
    pop = population_dataset(learners, scenario)
    tseed = int(seed.generate_state(1)[0] % 100_000)
    if policy(scenario):  # twin is required: who gains, by baseline employability
        codes = _baseline_tertiles(tw, tseed)
        matched = learners["matched"].to_numpy()
        tert = pd.Series(
            pd.Categorical.from_codes(codes[matched], categories=list(TERTILE_LABELS)),
            index=ds.index,
        )
    elif single:
        tert = pd.Series(pd.NA, index=ds.index, dtype="string")
    else:
        tert = employability_tertiles(ds, seed=tseed)
    if estimate:
        est = study_estimates(ds, tertiles=tert, pop_df=pop, seed=tseed)
    else:
        est = pd.DataFrame(columns=list(STUDY_COLUMNS))
    if twin and policy(scenario):
        truth = policy_truth(tw.potential_outcomes(), codes, itt=_randomized(scenario))
    elif twin:
        truth = _truth(tw.potential_outcomes(), ds, tert, single)
    else:
        truth = _empty_truth()
    return StudyResult(
        scenario=scenario,
        seed_entropy=int(seed.entropy),
        spawn_key=tuple(int(k) for k in seed.spawn_key),
        twin=twin,
        estimates=est,
        truth=truth,
        curves=_curves(ds),
        dataset=ds.assign(tertile=tert.to_numpy()) if keep_dataset else None,
        flows=world.flows,
    )


def _truth(po: pd.DataFrame, ds: pd.DataFrame, tert: pd.Series, single: bool) -> pd.DataFrame:
    """The twins' rows: n, mean Y(0) (%) and the true effect per estimand id.

    ITT rows: mean ``Y(1) - Y(0)`` (pp); ``late_*`` rows: the true LATE of sharing
    (:func:`true_late`, pp). ``ds`` is the matched study dataset (the matched learners
    of ``po`` in the same order): its traits define the subgroups.
    """
    from sim.estimate import SUBGROUP_LABELS, TERTILE_LABELS, subgroup_masks

    matched = po[po["matched"].to_numpy()].reset_index(drop=True)
    everyone = np.ones(len(matched), dtype=bool)
    groups = [
        ("shared", "shared", "all", matched, everyone),
        ("new_job", "new_job", "all", matched, everyone),
        ("new_job_in_scope", "new_job_in_scope", "all", matched, everyone),
        ("any_view", "any_view", "population", po, np.ones(len(po), dtype=bool)),
    ]
    lates = []
    if not single:  # a one-arm design has the four overall rows only (sweeps rely on it)
        labels = tert.astype(object).to_numpy()
        tertiles = [(g, labels == g) for g in TERTILE_LABELS]
        groups += [(f"new_job_{g}", "new_job", g, matched, m) for g, m in tertiles]
        masks = subgroup_masks(ds)
        groups += [(f"new_job_{g}", "new_job", g, matched, masks[g]) for g in SUBGROUP_LABELS]
        lates = [
            ("late_new_job", "new_job", "all", everyone),
            ("late_new_job_in_scope", "new_job_in_scope", "all", everyone),
            *((f"late_new_job_{g}", "new_job", g, m) for g, m in tertiles),
        ]
    rows = [_truth_row(rid, out, group, df, mask) for rid, out, group, df, mask in groups]
    rows += [
        _truth_row(rid, out, group, matched, mask, late=True) for rid, out, group, mask in lates
    ]
    return pd.DataFrame(rows)


def _randomized(scenario: Scenario) -> bool:
    """Random assignment with both arms non-empty: a within-world ITT exists."""
    return scenario.study.targeting == "random" and not one_arm(scenario)


def _baseline_tertiles(tw: Twins, seed: int) -> np.ndarray:
    """Each learner's third (0 low, 1 medium, 2 high) of predicted employability in the
    world where no one is nudged (:func:`sim.targeting.baseline_employability`)."""
    from sim import targeting

    scores = targeting.baseline_employability(tw.mirror.learners, seed=seed)
    return targeting.tertile_codes(scores)


#: Population groups of :func:`policy_truth`: (id suffix, group label).
POLICY_ARMS = (("", "population"), ("_nudged", "nudged"), ("_not_nudged", "not_nudged"))


def policy_truth(po: pd.DataFrame, tertiles: np.ndarray, itt: bool = False) -> pd.DataFrame:
    """The twins' rows of a policy design (``study.mirror = "no_nudge"``).

    ``po`` is :meth:`Twins.potential_outcomes` of the policy's twins (``Y(1)``: under
    the assignment, ``Y(0)``: no one nudged), ``tertiles`` each learner's third of
    baseline employability (0, 1, 2). Every row is a mean of ``Y(1) - Y(0)`` (pp) with
    its ``n`` and mean ``Y(0)`` (%), as :func:`_truth` writes them:

    * ``shared``, ``new_job``, ``new_job_in_scope`` (matched learners, group ``all``) and
      ``any_view`` (everyone): the same rows as a one-arm design's;
    * ``pop_<outcome>`` over every learner (group ``population``): the total effect per
      learner, crowding out included, for ``shared``, ``new_job``, ``new_job_in_scope``;
    * ``pop_new_job_nudged`` / ``pop_new_job_not_nudged``: among the learners nudged
      (the gain of those chosen) and the others (what the nudges did to them: crowding
      out when negative);
    * ``pop_new_job_<tertile>`` and ``pop_new_job_<tertile>_nudged`` /
      ``_not_nudged`` for the tertiles ``low``, ``medium``, ``high``: who gains;
    * with ``itt`` (a random assignment with both arms): ``itt_new_job`` (matched) and
      ``pop_itt_new_job`` (everyone), the ITT the study would estimate in this world,
      measured without sampling noise as the nudged learners' total effect minus the
      others' (group ``itt``).
    """
    from sim.estimate import TERTILE_LABELS

    everyone = np.ones(len(po), dtype=bool)
    matched = po["matched"].to_numpy()
    nudged = po["treated"].to_numpy().astype(bool)
    groups = [
        ("shared", "shared", "all", matched),
        ("new_job", "new_job", "all", matched),
        ("new_job_in_scope", "new_job_in_scope", "all", matched),
        ("any_view", "any_view", "population", everyone),
    ]
    groups += [(f"pop_{k}", k, "population", everyone) for k in OUTCOMES]
    arms = {"": everyone, "_nudged": nudged, "_not_nudged": ~nudged}
    groups += [
        (f"pop_new_job{suffix}", "new_job", label, arms[suffix])
        for suffix, label in POLICY_ARMS[1:]
    ]
    for code, tert in enumerate(TERTILE_LABELS):
        in_t = tertiles == code
        groups += [
            (f"pop_new_job_{tert}{suffix}", "new_job", f"{tert}{suffix}", in_t & arms[suffix])
            for suffix, _ in POLICY_ARMS
        ]
    rows = [_truth_row(rid, out, group, po, mask) for rid, out, group, mask in groups]
    if itt:
        for rid, mask in (("itt_new_job", matched), ("pop_itt_new_job", everyone)):
            row = _truth_row(rid, "new_job", "itt", po, mask)
            d = (po["new_job_1"].to_numpy(float) - po["new_job_0"].to_numpy(float))[mask]
            arm = nudged[mask]
            row["true_effect"] = (
                100 * float(d[arm].mean() - d[~arm].mean())
                if arm.any() and (~arm).any()
                else math.nan
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _truth_row(
    rid: str, outcome: str, group: str, po: pd.DataFrame, mask: np.ndarray, late: bool = False
) -> dict[str, Any]:
    """One row of :func:`_truth` over the learners of ``po`` in ``mask``."""
    n = int(mask.sum())
    y1, y0 = po[f"{outcome}_1"].to_numpy()[mask], po[f"{outcome}_0"].to_numpy()[mask]
    if not n:
        effect = math.nan
    elif late:
        effect = true_late(po, outcome, mask)
    else:
        effect = 100 * float(y1.mean() - y0.mean())
    return {
        "id": rid,
        "outcome": outcome,
        "group": group,
        "n": n,
        "control_mean": 100 * float(y0.mean()) if n else math.nan,
        "true_effect": effect,
    }


def _empty_truth() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(dtype=str),
            "outcome": pd.Series(dtype=str),
            "group": pd.Series(dtype=str),
            "n": pd.Series(dtype=int),
            "control_mean": pd.Series(dtype=float),
            "true_effect": pd.Series(dtype=float),
        }
    )


def _curves(ds: pd.DataFrame, months: int = 12) -> pd.DataFrame:
    """Share of each arm with a new job within m months of randomization (m = 0..12)."""
    rows = []
    weeks = ds["new_job_weeks"].to_numpy()
    follow = ds["followup_weeks"].to_numpy()
    for arm in (0, 1):
        sel = ds["treated"].to_numpy() == arm
        for m in range(months + 1):
            w = m * 52 / 12
            at_risk = sel & (follow >= w)  # learners followed at least m months
            got = at_risk & (weeks <= w)
            rows.append(
                {
                    "months": m,
                    "treated": arm,
                    "share": float(got.sum() / max(at_risk.sum(), 1)),
                    "n": int(at_risk.sum()),
                }
            )
    return pd.DataFrame(rows)


# ---- the model as a function ------------------------------------------------------------


def study_outcomes(
    scenario: Scenario | str = "paper",
    *,
    seed: int | np.random.SeedSequence = 0,
    twin: bool = True,
    **params: Any,
) -> dict[str, float]:
    """One study as a function from parameters to outcomes (the EMA Workbench's view).

    ``params`` are scenario values by dotted key (``**{"signal.credibility": 0.5}``),
    applied to ``scenario`` (a :class:`~sim.params.Scenario`, or a scenario's name or
    path). Returns a flat dict: for every row of :meth:`StudyResult.rows`,
    ``"<id>.effect"``, ``"<id>.se"``, ``"<id>.control_mean"`` and (with ``twin``)
    ``"<id>.true_effect"``, in the units of :class:`StudyResult`.
    """
    if not isinstance(scenario, Scenario):
        from sim.params import load_scenario

        scenario = load_scenario(scenario)
    if params:
        scenario = scenario.with_overrides(params, source="study_outcomes(**params)")
    rows = run_study(scenario, seed, twin=twin).rows()
    out: dict[str, float] = {}
    for r in rows.itertuples(index=False):
        for col in ("effect", "se", "control_mean") + (("true_effect",) if twin else ()):
            out[f"{r.id}.{col}"] = float(getattr(r, col))
    return out
