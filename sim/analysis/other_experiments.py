"""Other published experiments, predicted out of sample.

The calibrated market (the ``paper`` scenario, read when the experiments run) is kept as
it is; only the *intervention* is re-parametrized: who is treated, what the treatment
makes employers see, and when the outcome is measured. Each experiment is a 50/50
randomized study run as twins (every learner's arm flipped in the mirror world), so the
model's prediction is the **true** effect, with a Student-t interval over replications
(new populations and worlds), beside the effect a difference in means would estimate in
the same world.

How an experiment becomes scenario overrides (:func:`overrides`), the knobs used:

* **Who is treated**: ``population.*`` (country group, domains, education, past jobs in
  scope, credential type), equal in the population and the matched sample so that the
  two are consistent whatever ``matched_share`` is. Every learner's outcome is measured
  (the published studies followed everyone), so the matched sample plays no part.
* **What the treatment gives**: a credential that employers can see. The control group
  has none to show (``sharing.hazard_at_grant`` and ``sharing.hazard_floor`` 0), and the
  treated all show theirs at once (``sharing.app_open_share`` ``[1, 1]``,
  ``sharing.nudge_strength`` :data:`SURE_NUDGE`: full take-up). A certified report or a
  portfolio is mapped to the most informative credential type the model has
  (``professional_certificate``; its precision is the scenario's own
  ``signal.credential_weight``).
* **When**: one graduation batch (``calendar.n_batches`` 1) measured ``horizon_weeks``
  later (``calendar.collection_date``), every job from randomization on counting
  (``calendar.new_job_min_weeks`` 0).

Outcomes are the model's truth at the horizon, not what a profile reports
(:func:`external_rows`): a new job (in scope) started since randomization, or holding a
job (in scope) at the horizon. Each experiment says plainly where its mapping is
imperfect (:attr:`External.imperfect`).

The tasks run through the project's runner and result store (:mod:`sim.runner`), so an
interrupted run resumes: ``experiments/other_experiments.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from sim import plots
from sim.analysis.common import Analysis, mean_interval, pct, pp
from sim.params import CREDENTIAL_TYPES, DOMAINS, EDUCATION_LEVELS, Scenario
from sim.runner.tasks import Task, TaskOutput

__all__ = [
    "EXTERNAL",
    "OUTCOMES",
    "SAMPLES",
    "SURE_NUDGE",
    "External",
    "Published",
    "analyze",
    "build_tasks",
    "conclude_external",
    "external_rows",
    "external_table",
    "mapping_table",
    "overrides",
    "run_external",
    "scenario_for",
]

#: A nudge strength at which a notification all but surely leads to sharing
#: (1 - exp(-10) > 0.9999): full take-up of the treatment.
SURE_NUDGE = 10.0

#: The outcomes measured at the horizon (per learner, from a run's learners frame).
OUTCOMES: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "new_job": lambda f: f["first_job_week"].notna().to_numpy(),
    "new_job_in_scope": lambda f: f["first_scope_job_week"].notna().to_numpy(),
    "employed": lambda f: f["employed"].to_numpy(dtype=bool),
    "employed_in_scope": lambda f: (f["employed"] & f["job_in_scope"]).to_numpy(dtype=bool),
    "shared": lambda f: f["shared"].to_numpy(dtype=bool),
}
#: Who the outcome is measured on.
SAMPLES: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "all": lambda f: np.ones(len(f), dtype=bool),
    "not_employed": lambda f: ~f["employed_baseline"].to_numpy(dtype=bool),
    "searching": lambda f: (
        f["attached"].to_numpy(dtype=bool) & ~f["employed_baseline"].to_numpy(dtype=bool)
    ),
}


@dataclass(frozen=True)
class Published:
    """A published result, as written in its source."""

    outcome: str  # in the paper's words
    horizon: str
    control: float  # % of the control group (NaN if not recorded here)
    treated: float  # % of the treated group
    rel: float  # effect relative to the control group, a fraction
    source: str  # where the numbers are written

    @property
    def effect_pp(self) -> float:
        """Treated minus control, percentage points."""
        return self.treated - self.control


@dataclass(frozen=True)
class External:
    """One published experiment and how the model runs it."""

    key: str
    title: str
    citation: str
    published: Published
    horizon_weeks: int
    outcome: str  # a key of OUTCOMES
    sample: str  # a key of SAMPLES
    who: dict[str, Any]  # population overrides (fixed values; see overrides())
    credential: str | None  # the credential type every learner holds (None: the study's)
    shown: bool  # the treated show the credential to employers
    mapping: tuple[tuple[str, str], ...]  # (the experiment's feature, the model's knob)
    imperfect: tuple[str, ...]
    #: What the difference teaches, by verdict: "under" (the model predicts less than was
    #: published), "within", "over" (more), "n/a" (no published number).
    lessons: dict[str, str] = field(default_factory=dict)

    @property
    def row_id(self) -> str:
        """The id of the row of :func:`external_rows` that is the prediction."""
        return f"{self.outcome}@{self.sample}"


_SOUTH_AFRICA = {
    "population.developing_share": 1.0,
    "population.matched_developing_share": 1.0,
    "population.education_shares": {lvl: float(lvl == "high_school") for lvl in EDUCATION_LEVELS},
    "population.matched_education_shares": {
        lvl: float(lvl == "high_school") for lvl in EDUCATION_LEVELS
    },
}

EXTERNAL: tuple[External, ...] = (
    External(
        key="athey_palikot_challenges",
        title="Challenges portfolios, Poland (Athey & Palikot)",
        citation=(
            "Athey, S. and E. Palikot (2022-2024), 'Effective and scalable programs to "
            "facilitate labor market transitions for women in technology', arXiv 2211.09968"
        ),
        published=Published(
            outcome="a job in the technology sector within four months",
            horizon="4 months",
            control=20.0,
            treated=29.0,
            rel=0.45,
            source="arXiv 2211.09968 v3 (3 Jan 2024), abstract: Challenges raises the "
            "probability of a technology job within four months 'from 20% to 29%'",
        ),
        horizon_weeks=17,  # four months of 52/12 weeks
        outcome="new_job_in_scope",
        sample="all",
        who={
            "population.developing_share": 0.0,
            "population.matched_developing_share": 0.0,
            "population.past_tech_share": 0.0,
        },
        credential="professional_certificate",
        shown=True,
        mapping=(
            (
                "women in Poland moving into tech jobs",
                "developed country group; tech "
                "domains only (computer science, data science, IT in the study's proportions); "
                "no past job in tech",
            ),
            (
                "a portfolio of team projects that shows job-relevant skills",
                "a credential of the most informative type the model has (professional "
                "certificate), shown by every admitted participant at admission",
            ),
            (
                "the control group (not admitted) has no portfolio",
                "control learners never share a credential",
            ),
            ("a tech job within four months", "a job in scope started within 17 weeks"),
        ),
        imperfect=(
            "No gender in the model; education, experience and baseline employment stay "
            "at the study's matched-sample values.",
            "A portfolio's precision is the professional certificate's; employers' "
            "credibility stays calibrated to the Coursera credential.",
            "Full take-up: every admitted participant shows a portfolio at once (the "
            "published effect is an intent-to-treat with partial completion).",
            "'In scope' is tech or managerial, wider than a tech job.",
            "The market keeps the calibrated learners' share of the job seekers; the "
            "participants are a far smaller share of Poland's tech job seekers, so "
            "crowding out is if anything overstated.",
        ),
        lessons={
            "under": "A credential that employers read only as a signal of skill, seen by "
            "recruiters of the learner's network, moves tech hiring far less than a "
            "portfolio did for career switchers. The portfolio likely worked through "
            "channels the model lacks: new skills, the confidence and applications of "
            "people entering a new field, and employers who value demonstrated projects "
            "above any course credential.",
            "within": "The information channel alone accounts for the portfolio's effect: "
            "career switchers have thin tech records, exactly where a credible signal "
            "moves employers most.",
            "over": "The model's employers react more to a visible, precise credential on "
            "a thin tech record than Polish tech employers did to portfolios; the "
            "calibrated credibility (weakly identified) may be too high for a credential "
            "type employers do not know.",
        },
    ),
    External(
        key="carranza_public",
        title="Certified skill reports shown to employers, South Africa (Carranza et al.)",
        citation=(
            "Carranza, E., R. Garlick, K. Orkin and N. Rankin (2022), 'Job search and "
            "hiring with limited information about workseekers' skills', American "
            "Economic Review 112(11)"
        ),
        published=Published(
            outcome="employment 3-4 months after the reports (workseekers could show "
            "them to employers)",
            horizon="3-4 months",
            control=math.nan,
            treated=math.nan,
            rel=0.17,
            source="AER 2022; the abstract says shareable reports raise employment and "
            "earnings, and reports the workseekers cannot easily share raise them less. "
            "The size, about 17% above the control group's employment at 3-4 months, is "
            "as quoted when this comparison was set up, not checked against the paper's "
            "tables",
        ),
        horizon_weeks=15,  # 3.5 months
        outcome="employed",
        sample="searching",
        who=_SOUTH_AFRICA,
        credential="professional_certificate",
        shown=True,
        mapping=(
            (
                "young workseekers in Johannesburg with a secondary-school certificate",
                "developing country group; high school as the highest education",
            ),
            (
                "active job seekers without a job",
                "learners attached to the labour force and not employed at baseline",
            ),
            (
                "a certified multi-skill assessment report the workseeker can show employers",
                "a credential of the most informative type (professional "
                "certificate), shown by every treated learner at once",
            ),
            ("no report in the control group", "control learners never share one"),
            ("employment at 3-4 months", "employed 15 weeks after randomization"),
        ),
        imperfect=(
            "The population starts in the market's steady state: the unemployed "
            "workseekers are the learners not employed at baseline, not a sample drawn "
            "as unemployed; age is not modelled; domains and experience stay at the "
            "study's values.",
            "Several skill scores are one signal of one skill.",
            "The paper finds that reports also change the workseekers' own beliefs and "
            "search; learners in the model have no beliefs about their own skill, so "
            "that channel is absent.",
        ),
        lessons={
            "under": "Employers' reading of a credible report explains only part of the "
            "effect: the reports also redirected the workseekers' own search (the "
            "paper's private-report arm shows that channel), which the model's learners "
            "lack.",
            "within": "Information to employers about thin records accounts for the "
            "effect, as the model's thin-record mechanism predicts.",
            "over": "The model overstates how much employers move on a certified "
            "report; the calibrated credibility may be too high for South African "
            "employers.",
        },
    ),
    External(
        key="carranza_private",
        title="Skill reports given only to the workseekers (Carranza et al.)",
        citation=(
            "Carranza, E., R. Garlick, K. Orkin and N. Rankin (2022), American Economic "
            "Review 112(11)"
        ),
        published=Published(
            outcome="employment 3-4 months after reports the workseekers could not "
            "easily show employers",
            horizon="3-4 months",
            control=math.nan,
            treated=math.nan,
            rel=math.nan,
            source="AER 2022 abstract: reports workseekers cannot easily share have "
            "'similar effects on beliefs and search, but smaller effects on employment "
            "and earnings' than shareable ones (no number recorded here)",
        ),
        horizon_weeks=15,
        outcome="employed",
        sample="searching",
        who=_SOUTH_AFRICA,
        credential="professional_certificate",
        shown=False,
        mapping=(
            ("the same workseekers", "as in the public-report arm"),
            (
                "a report only the workseeker sees",
                "no credential shown to employers: nobody shares (the treated get no nudge)",
            ),
        ),
        imperfect=(
            "The model has no channel from information the learner alone holds to jobs: "
            "its prediction is zero by construction, and the twins check it.",
        ),
        lessons={
            "n/a": "The paper finds this arm's employment effect positive but smaller than "
            "the shareable reports'; against the model's zero, that effect is the "
            "workseekers' own channel (beliefs and search), which the model lacks, and "
            "the gap between the two arms is what employers seeing the report adds.",
        },
    ),
    External(
        key="wheeler_linkedin",
        title="LinkedIn profile training, South Africa (Wheeler et al.)",
        citation=(
            "Wheeler, L., R. Garlick, E. Johnson, P. Shaw and M. Gargano (2022), "
            "'LinkedIn(to) job opportunities: experimental evidence from job readiness "
            "training', American Economic Journal: Applied Economics"
        ),
        published=Published(
            outcome="employment 12 months after the training",
            horizon="12 months",
            control=70.0,
            treated=77.0,
            rel=0.10,
            source="working-paper abstract (2019, SSRN 3452609): training raises "
            "employment at the end of the programme from 70% to 77%, and the effect "
            "persists for at least twelve months",
        ),
        horizon_weeks=52,
        outcome="employed",
        sample="searching",
        who=_SOUTH_AFRICA,
        credential=None,
        shown=True,
        mapping=(
            (
                "job-readiness trainees in South Africa, secondary school",
                "developing country group; high school as the highest education",
            ),
            ("unemployed at the training", "attached learners not employed at baseline"),
            (
                "training to build a LinkedIn profile and use it",
                "every treated learner "
                "shares its (study-type) credential at once: the profile makes it visible to "
                "recruiters and the feed, and readable as a signal",
            ),
            ("no profile training in the control group", "control learners never share"),
            ("employment at 12 months", "employed 52 weeks after randomization"),
        ),
        imperfect=(
            "A profile is more than a shared credential (contacts, a record, messages); "
            "the model's only lever is the credential's visibility and signal.",
            "The published control group was 70% employed after a year, far above what "
            "the model's market gives unemployed job seekers; compare relative effects.",
            "Domains and experience stay at the study's values.",
        ),
        lessons={
            "under": "Visibility and a credential signal explain only part of a profile's "
            "value: the training also built networks and taught search, channels the model "
            "has only through a shared credential.",
            "within": "A visible profile's value is what the model's visibility and "
            "signal channels give.",
            "over": "The model overstates what a visible credential does for job seekers "
            "already trained for work readiness.",
        },
    ),
)
_BY_KEY = {e.key: e for e in EXTERNAL}


def overrides(ext: External, base: Scenario) -> dict[str, Any]:
    """The scenario overrides of ``ext`` applied to the calibrated ``base``.

    Only the intervention (who, what is shown, when); values that depend on the base
    (the study's domain proportions, its start date) are read from it here, never copied.
    """
    pop = base.population
    out: dict[str, Any] = dict(ext.who)
    if ext.key == "athey_palikot_challenges":
        tech = {d: (0.0 if d == "business" else pop.domain_shares[d]) for d in DOMAINS}
        total = sum(tech.values())
        tech = {d: v / total for d, v in tech.items()}
        out["population.domain_shares"] = tech
        out["population.matched_domain_shares"] = dict(tech)
    if ext.credential is not None:
        shares = {c: float(c == ext.credential) for c in CREDENTIAL_TYPES}
        out["population.credential_type_shares"] = shares
    cal = base.calendar
    out.update(
        {
            "calendar.n_batches": 1,
            "calendar.matched_batches": 1,
            "calendar.collection_date": cal.start_date + timedelta(weeks=ext.horizon_weeks),
            "calendar.new_job_min_weeks": 0,
            "sharing.hazard_at_grant": 0.0,
            "sharing.hazard_floor": 0.0,
            "sharing.app_open_share": [1.0, 1.0],
            "sharing.nudge_strength": SURE_NUDGE if ext.shown else 0.0,
            "study.treated_share": 0.5,
        }
    )
    return out


def scenario_for(ext: External, base: Scenario, **extra: Any) -> Scenario:
    """``base`` with :func:`overrides` of ``ext`` and ``extra`` dotted keys (e.g. the
    population's size), validated."""
    return base.with_overrides({**overrides(ext, base), **extra}, source=f"{ext.key} mapping")


# ---- one task ------------------------------------------------------------------------


def external_rows(study: pd.DataFrame, mirror: pd.DataFrame) -> pd.DataFrame:
    """Rows (:data:`sim.runner.ESTIMATE_COLUMNS`) of every outcome x sample of a twin run.

    ``study`` and ``mirror`` are the learners frames of the study world and its flipped
    twin. Row id ``<outcome>@<sample>``: ``effect`` and ``se`` the difference in means
    between the arms of the study world and its SE (pp), ``n`` the learners,
    ``control_mean`` the mean outcome without the treatment (twins, %), ``rel`` the
    estimate over it, ``true_effect`` the mean of ``Y(1) - Y(0)`` (pp).
    """
    treated = study["treated"].to_numpy(dtype=bool)
    rows = []
    for oname, outcome in OUTCOMES.items():
        ya, yb = outcome(study).astype(float), outcome(mirror).astype(float)
        y1, y0 = np.where(treated, ya, yb), np.where(treated, yb, ya)
        for sname, sample in SAMPLES.items():
            m = sample(study)
            n = int(m.sum())
            t, c = ya[m & treated], ya[m & ~treated]
            ok = len(t) > 1 and len(c) > 1
            eff = 100 * (t.mean() - c.mean()) if ok else math.nan
            se = (
                100 * math.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c)) if ok else math.nan
            )
            cm = 100 * float(y0[m].mean()) if n else math.nan
            rows.append(
                {
                    "id": f"{oname}@{sname}",
                    "outcome": oname,
                    "group": sname,
                    "estimator": "difference_in_means",
                    "effect": eff,
                    "se": se,
                    "n": n,
                    "control_mean": cm,
                    "rel": eff / cm if cm else math.nan,
                    "rel_se": se / cm if cm else math.nan,
                    "first_stage_f": math.nan,
                    "true_effect": 100 * float((y1[m] - y0[m]).mean()) if n else math.nan,
                }
            )
    return pd.DataFrame(rows)


def run_external(task: Task) -> TaskOutput:
    """One replication of one experiment: its twins and :func:`external_rows` (a task
    function of :func:`sim.runner.run_tasks`)."""
    from threadpoolctl import threadpool_limits

    from sim.study import run_twins

    with threadpool_limits(1):
        tw = run_twins(task.scenario(), task.seed)
        return TaskOutput(external_rows(tw.study.learners, tw.mirror.learners))


def build_tasks(
    base: Scenario,
    replications: int,
    seed: int,
    experiments: Sequence[External] = EXTERNAL,
    extra: Mapping[str, Any] | None = None,
) -> list[Task]:
    """The tasks: experiment ``e`` (its index in :data:`EXTERNAL`) x replication ``r``,
    id ``<key>-r<r>``, seed child ``e * 1000 + r`` of ``SeedSequence(seed)`` (so adding
    replications or experiments never changes the others' seeds)."""
    tasks = []
    root = np.random.SeedSequence(seed)
    for ext in experiments:
        e = EXTERNAL.index(ext)
        ov = {**overrides(ext, base), **dict(extra or {})}
        scenario_for(ext, base, **dict(extra or {}))  # validate before any work
        for r in range(replications):
            tasks.append(
                Task(
                    task_id=f"{ext.key}-r{r:02d}",
                    overrides=ov,
                    seed_entropy=int(root.entropy),
                    spawn_key=(e * 1000 + r,),
                    base=base,
                    twin=True,
                    estimate=False,
                    point=e,
                    replication=r,
                    index=len(tasks),
                )
            )
    return tasks


# ---- the analysis ----------------------------------------------------------------------


def _verdict(published: float, lo: float, hi: float) -> str:
    """``under`` / ``over`` when the interval [lo, hi] lies under / over ``published``,
    ``within`` when it contains it, ``n/a`` without a number, ``no interval`` without
    bounds (one replication)."""
    if not np.isfinite(published):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    if np.isfinite(hi) and hi < published:
        return "under"
    if np.isfinite(lo) and lo > published:
        return "over"
    return "within"


def external_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment with results: the model's prediction beside the published.

    Columns: ``key``, ``label``, ``outcome``, ``sample``, ``horizon_weeks``,
    ``replications``, ``n`` (learners measured per world), ``control_mean`` (model, %),
    ``predicted_pp`` / ``_lo`` / ``_hi`` (true effect, pp, Student-t 95% over
    replications), ``predicted_rel`` / ``_lo`` / ``_hi`` (per replication true effect
    over control mean), ``estimate_pp`` (mean difference in means), ``take_up``
    (treated minus control sharing, pp), ``published_control``, ``published_pp``,
    ``published_rel``, ``verdict`` (``under``, ``within`` or ``over``: whether the
    model's interval of the relative effect lies under the published one, contains it
    or lies over it; ``n/a`` without a published number, ``no interval`` with one
    replication), ``verdict_pp`` (the same in percentage points), ``source``.
    """
    ok = results[(results["status"] == "ok") & results["id"].notna()]
    rows = []
    for ext in EXTERNAL:
        mine = ok[ok["task_id"].str.startswith(f"{ext.key}-r")]
        if mine.empty:
            continue
        pred = mine[mine["id"] == ext.row_id].set_index("replication")
        shared = mine[mine["id"] == f"shared@{ext.sample}"].set_index("replication")
        eff = pred["true_effect"].astype(float)
        rel = eff / pred["control_mean"].astype(float)
        m, lo, hi = mean_interval(eff)
        rm, rlo, rhi = mean_interval(rel)
        pub = ext.published
        verdict = _verdict(pub.rel, rlo, rhi)
        verdict_pp = _verdict(pub.effect_pp, lo, hi)
        rows.append(
            {
                "key": ext.key,
                "label": ext.title,
                "outcome": ext.outcome,
                "sample": ext.sample,
                "horizon_weeks": ext.horizon_weeks,
                "replications": len(eff),
                "n": float(pred["n"].mean()),
                "control_mean": float(pred["control_mean"].mean()),
                "predicted_pp": m,
                "predicted_pp_lo": lo,
                "predicted_pp_hi": hi,
                "predicted_rel": rm,
                "predicted_rel_lo": rlo,
                "predicted_rel_hi": rhi,
                "estimate_pp": float(pred["effect"].mean()),
                "take_up": float(shared["true_effect"].mean()) if len(shared) else math.nan,
                "published_control": pub.control,
                "published_pp": pub.effect_pp,
                "published_rel": pub.rel,
                "verdict": verdict,
                "verdict_pp": verdict_pp,
                "source": pub.source,
            }
        )
    return pd.DataFrame(rows)


def conclude_external(table: pd.DataFrame) -> str:
    """One paragraph per experiment: mapping in brief, prediction, published, lesson."""
    if table.empty:
        return "No finished tasks: nothing to conclude."
    paras = []
    for r in table.itertuples(index=False):
        ext = _BY_KEY[r.key]
        pub = ext.published
        ci = (
            f" (95% CI {pp(r.predicted_pp_lo)} to {pp(r.predicted_pp_hi)}; relative "
            f"{pct(100 * r.predicted_rel, 1)}, {pct(100 * r.predicted_rel_lo, 1)} to "
            f"{pct(100 * r.predicted_rel_hi, 1)})"
            if np.isfinite(r.predicted_pp_lo)
            else f" (relative {pct(100 * r.predicted_rel, 1)}; one replication, no interval)"
        )
        published = (
            f"{pub.control:.0f}% to {pub.treated:.0f}% ({pp(pub.effect_pp, 1)}, "
            f"{pct(100 * pub.rel, 0)})"
            if np.isfinite(pub.control)
            else f"{pct(100 * pub.rel, 0)} relative to control"
            if np.isfinite(pub.rel)
            else "smaller than with shareable reports (no number)"
        )
        text = (
            f"{ext.title}: {pub.outcome}. The model predicts {pp(r.predicted_pp)}{ci} on "
            f"{r.outcome.replace('_', ' ')} at {r.horizon_weeks} weeks among "
            f"{r.sample.replace('_', ' ')} learners, from a control rate of "
            f"{pct(r.control_mean)}; published: {published} [{pub.source}]."
        )
        if r.verdict in ("under", "over"):
            factor = r.predicted_rel / pub.rel if pub.rel else math.nan
            text += (
                " Relative to the control group the model predicts "
                + {"under": "less", "over": "more"}[r.verdict]
                + f" than the published effect ({factor:.2f} times it; the published "
                "number is outside the model's interval). " + ext.lessons.get(r.verdict, "")
            )
        elif r.verdict == "within":
            text += (
                " The published relative effect is within the model's interval"
                + (
                    " (a wide one: more replications would sharpen the comparison). "
                    if r.predicted_rel_hi - r.predicted_rel_lo > abs(pub.rel)
                    else ". "
                )
                + ext.lessons.get("within", "")
            )
        elif r.verdict == "no interval":
            text += (
                " With one replication there is no interval to set the published number "
                "against; run more replications."
            )
        else:
            text += " There is no published number to set beside it. " + ext.lessons.get("n/a", "")
        if np.isfinite(pub.control) and np.isfinite(r.control_mean):
            far = max(pub.control, r.control_mean) > 1.5 * min(pub.control, r.control_mean)
            if far:
                where = {"under": "above", "over": "below", "within": "within"}
                in_points = (
                    f"the published {pp(pub.effect_pp, 1)} is {where[r.verdict_pp]} the "
                    f"model's interval ({pp(r.predicted_pp_lo)} to {pp(r.predicted_pp_hi)})"
                    if r.verdict_pp in where
                    else f"the model gives {pp(r.predicted_pp)} against the published "
                    f"{pp(pub.effect_pp, 1)}"
                )
                text += (
                    f" The model's control rate ({pct(r.control_mean)}) is far from the "
                    f"published ({pct(pub.control, 0)}): the mapped learners start from "
                    "another level, so the relative effects say less than the effects in "
                    f"points, where {in_points}."
                )
        paras.append(text.strip())
    return "\n\n".join(paras)


def mapping_table() -> pd.DataFrame:
    """Every experiment's mapping, one row per feature: what the experiment did and the
    model's knob for it, then the imperfections."""
    rows = []
    for ext in EXTERNAL:
        rows += [{"experiment": ext.key, "feature": f, "model": m} for f, m in ext.mapping]
        rows += [{"experiment": ext.key, "feature": "imperfect", "model": i} for i in ext.imperfect]
    return pd.DataFrame(rows)


def analyze(results: pd.DataFrame, name: str = "other_experiments") -> Analysis:
    """The predictions beside the published numbers: table, figure, its data, conclusion."""
    t = external_table(results)
    fig = plots.external_predictions(t[np.isfinite(t["predicted_rel"])] if len(t) else t)
    cols = [
        "key",
        "replications",
        "control_mean",
        "predicted_pp",
        "predicted_pp_lo",
        "predicted_pp_hi",
        "predicted_rel",
        "published_rel",
        "verdict",
        "verdict_pp",
    ]
    data = (
        t[["label", "predicted_rel", "predicted_rel_lo", "predicted_rel_hi", "published_rel"]]
        if len(t)
        else t
    )
    return Analysis(
        name,
        {"predictions": fig},
        t[cols].round(4) if len(t) else t,
        conclude_external(t),
        {"table": t, "mapping": mapping_table()},
        figure_data={"predictions": data},
    )
