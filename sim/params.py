"""The scenario schema: one source of every parameter's default, unit and allowed range.

A scenario is a TOML file whose tables mirror the sections below (``[population]``,
``[graph]``, ``[sharing]``, ...). Every key is optional; a missing key takes the default
written here, and nowhere else. A file may extend another: ``[meta] base = "paper"`` (a
bare name or a path relative to the file, found by :mod:`sim.scenarios`) starts from that
scenario and applies the file's own values; cycles are refused, and errors still name the
file and the key. Validation happens once, at the boundary
(:meth:`Scenario.from_toml`, :meth:`Scenario.from_dict`): an unknown key (with the
nearest valid name), a wrong type, a value out of range or an inconsistent set of values
raises :class:`ScenarioError` naming the file, the dotted key and what was expected.

**Defaults are pre-calibration values.** The twelve parameters that ``credsim calibrate``
fits (``SHARING_PARAMS`` and ``MARKET_PARAMS`` in :mod:`sim.calibrate`; ``calibrated`` in
:func:`field_info`) default to round starting values of the calibration. The calibrated
values live in one place only, the packaged ``sim/scenarios/paper.toml``; the other
packaged scenarios say ``base = "paper"`` plus their own differences (except
``uncalibrated``, which is the defaults). So ``Scenario()`` is the uncalibrated market:
for the study as calibrated, load ``paper``.

Units are part of each field's description (``unit`` in the JSON schema): rates are
*per week* unless the name says otherwise; durations are in weeks; shares are in [0, 1].
Every number must be finite (NaN and infinities are rejected) and lie in a declared range,
including the entries of tables (``*_shares``, ``signal.credential_weight``) and lists
(``sharing.app_open_share``), whose range is the one of their ``Share`` or ``Weight`` type.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Self, get_args, get_origin

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "CREDENTIAL_TYPES",
    "DOMAINS",
    "EDUCATION_LEVELS",
    "MIN_ARM_LEARNERS",
    "Scenario",
    "ScenarioError",
    "dumps_toml",
    "field_info",
    "load_scenario",
]

DOMAINS = ("business", "computer_science", "data_science", "information_technology")
EDUCATION_LEVELS = (
    "none_mentioned",
    "less_than_high_school",
    "high_school",
    "some_college",
    "associate",
    "bachelor",
    "master",
    "doctorate",
    "professional",
)
#: Levels that count as a college degree for the study's strata.
COLLEGE_LEVELS = ("bachelor", "master", "doctorate", "professional")
CREDENTIAL_TYPES = ("course", "guided_project", "specialization", "professional_certificate")


class ScenarioError(ValueError):
    """A scenario file or dictionary that does not fit the schema."""


def _f(default: Any, unit: str, doc: str, **bounds: Any) -> Any:
    """A schema field: default, unit and bounds in one place."""
    return Field(default, description=doc, json_schema_extra={"unit": unit}, **bounds)


#: Appended to the description of every parameter that ``credsim calibrate`` fits.
CALIBRATED_NOTE = (
    " Calibrated: this default is a round starting value of the calibration "
    "(sim/calibrate.py); the fitted value is in the packaged paper scenario "
    "(sim/scenarios/paper.toml)."
)


def _calibrated(default: float, unit: str, doc: str, **bounds: Any) -> Any:
    """A field that ``credsim calibrate`` fits (``SHARING_PARAMS``, ``MARKET_PARAMS``).

    Its default is a round pre-calibration value, never a copy of a fitted one: fitted
    values live only in ``sim/scenarios/paper.toml``. ``field_info`` reports
    ``calibrated: True``.
    """
    return Field(
        default,
        description=doc + CALIBRATED_NOTE,
        json_schema_extra={"unit": unit, "calibrated": True},
        **bounds,
    )


#: An entry of a table or list of shares: a finite number in [0, 1].
Share = Annotated[float, Field(ge=0, le=1)]
#: A credential type's signal precision relative to a course: a finite ratio in [0, 100].
Weight = Annotated[float, Field(ge=0, le=100)]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, validate_assignment=True, allow_inf_nan=False
    )


#: Error type of a rule that ties several values together (see :func:`_inconsistent`).
_INCONSISTENT = "inconsistent"


def _inconsistent(key: str, message: str) -> PydanticCustomError:
    """The error of a cross-field rule, about ``key``.

    ``key`` is dotted from the model that raises it (``app_open_share`` in ``Sharing``,
    ``study.treated_share`` in ``Scenario``); :func:`_explain` appends it to the error's
    location, so the message names ``sharing.app_open_share`` rather than ``sharing``.
    ``message`` states the rule and the allowed values given the other fields.
    """
    return PydanticCustomError(_INCONSISTENT, "{message}", {"key": key, "message": message})


def _check_shares(shares: Mapping[str, float], names: tuple[str, ...], key: str) -> None:
    missing = [n for n in names if n not in shares]
    extra = [n for n in shares if n not in names]
    if missing or extra:
        raise _inconsistent(
            key,
            f"expected exactly the keys {list(names)} (missing {missing}, unknown {extra})",
        )
    total = sum(shares.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise _inconsistent(key, f"shares must sum to 1 (they sum to {total:.6f})")


class Meta(_Section):
    name: str = _f("unnamed", "-", "Short name of the scenario, used in output folders.")
    description: str = _f("", "-", "What the scenario is for.")


class Population(_Section):
    """Pre-treatment traits (TARGETS.md, 'Design of the study')."""

    n_learners: int = _f(880_000, "learners", "Learners randomized.", ge=200, le=5_000_000)
    matched_share: float = _f(
        0.042,
        "share",
        "Share of learners whose profile the study observes (36,946 / 880,000).",
        gt=0.0,
        le=1.0,
    )
    domain_shares: dict[str, Share] = _f(
        {
            "business": 0.37,
            "computer_science": 0.25,
            "data_science": 0.24,
            "information_technology": 0.14,
        },
        "share",
        "Credential domain, whole population (T8).",
    )
    matched_domain_shares: dict[str, Share] = _f(
        {
            "business": 0.332,
            "computer_science": 0.230,
            "data_science": 0.300,
            "information_technology": 0.138,
        },
        "share",
        "Credential domain, matched sample (T1).",
    )
    developing_share: float = _f(0.896, "share", "Developing country, population.", ge=0, le=1)
    matched_developing_share: float = _f(0.850, "share", "Developing, matched.", ge=0, le=1)
    education_shares: dict[str, Share] = _f(
        {
            "none_mentioned": 0.645,
            "less_than_high_school": 0.006,
            "high_school": 0.059,
            "some_college": 0.072,
            "associate": 0.029,
            "bachelor": 0.127,
            "master": 0.050,
            "doctorate": 0.005,
            "professional": 0.007,
        },
        "share",
        "Education, population (T1; the three levels T1 omits share the remaining 1.8%).",
    )
    matched_education_shares: dict[str, Share] = _f(
        {
            "none_mentioned": 0.164,
            "less_than_high_school": 0.012,
            "high_school": 0.097,
            "some_college": 0.130,
            "associate": 0.062,
            "bachelor": 0.367,
            "master": 0.146,
            "doctorate": 0.012,
            "professional": 0.010,
        },
        "share",
        "Education, matched sample (T1).",
    )
    experience_mean_years: float = _f(
        2.0, "years", "Mean years of experience, unmatched learners.", ge=0, le=30
    )
    matched_experience_mean_years: float = _f(
        3.04, "years", "Mean years of experience, matched sample (T1).", ge=0, le=30
    )
    experience_zero_share: float = _f(
        0.35, "share", "Share with no work experience at all.", ge=0, lt=1
    )
    past_tech_share: float = _f(0.127, "share", "Past job in tech (T1, matched).", ge=0, le=1)
    past_manager_share: float = _f(0.064, "share", "Past job managerial (T1, matched).", ge=0, le=1)
    employed_share: float = _f(0.45, "share", "Employed at baseline.", ge=0, le=1)
    credential_type_shares: dict[str, Share] = _f(
        {
            "course": 0.816,
            "guided_project": 0.170,
            "specialization": 0.009,
            "professional_certificate": 0.005,
        },
        "share",
        "Credential type (T1).",
    )
    activity_sigma: float = _f(
        0.8, "log-sd", "Dispersion of network activity (log-normal, median 1).", ge=0, le=3
    )
    matched_activity_multiplier: float = _f(
        2.0,
        "ratio",
        "Matched learners' activity relative to the rest (they keep public profiles).",
        gt=0,
        le=20,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_shares(self.domain_shares, DOMAINS, "domain_shares")
        _check_shares(self.matched_domain_shares, DOMAINS, "matched_domain_shares")
        _check_shares(self.education_shares, EDUCATION_LEVELS, "education_shares")
        _check_shares(self.matched_education_shares, EDUCATION_LEVELS, "matched_education_shares")
        _check_shares(self.credential_type_shares, CREDENTIAL_TYPES, "credential_type_shares")
        m = self.matched_share
        # The unmatched learners' shares are implied by population = m*matched + (1-m)*rest.
        # Each error names the matched entry, and the range it may take given the
        # population's value and matched_share (the rest's share must lie in [0, 1]).
        pairs = [
            ("domain_shares", self.domain_shares, self.matched_domain_shares),
            ("education_shares", self.education_shares, self.matched_education_shares),
            (
                "developing_share",
                {"": self.developing_share},
                {"": self.matched_developing_share},
            ),
        ]
        # m <= pop / matched and m <= (1 - pop) / (1 - matched) for every category:
        m_max = min(
            [pop[k] / matched[k] for _, pop, matched in pairs for k in pop if matched[k] > 0]
            + [
                (1 - pop[k]) / (1 - matched[k])
                for _, pop, matched in pairs
                for k in pop
                if matched[k] < 1
            ]
            + [1.0]
        )
        for key, pop, matched in pairs:
            for k in pop:
                rest = pop[k] - m * matched[k]
                if rest < -1e-9 or (m < 1 and rest / (1 - m) > 1 + 1e-9):
                    lo = max(0.0, (pop[k] - (1 - m)) / m)
                    hi = min(1.0, pop[k] / m)
                    entry = f"matched_{key}" + (f".{k}" if k else "")
                    what = f" for '{k}'" if k else ""
                    raise _inconsistent(
                        entry,
                        f"with matched_share={m}, the matched value {matched[k]}{what} cannot "
                        f"be part of a population value {pop[k]} (population.{key}"
                        f"{'.' + k if k else ''}); allowed range [{lo:.4g}, {hi:.4g}] share "
                        f"(or, with these shares, population.matched_share <= {m_max:.4g})",
                    )
        return self


class Calendar(_Section):
    """The study's calendar: graduation batches and the data-collection date."""

    start_date: date = _f(date(2022, 9, 1), "date", "Week 0: first graduation batch.")
    n_batches: int = _f(
        7, "months", "Monthly graduation batches (Sep 2022 - Mar 2023).", ge=1, le=24
    )
    matched_batches: int = _f(
        5, "months", "Batches from which the matched sample is drawn.", ge=1, le=24
    )
    collection_date: date = _f(date(2023, 9, 1), "date", "Profiles collected; follow-up ends here.")
    burn_in_weeks: int = _f(
        8,
        "weeks",
        "Weeks the market runs before week 0 to reach its steady state.",
        ge=0,
        le=104,
    )
    new_job_min_weeks: int = _f(
        4,
        "weeks",
        "A new job counts only if it starts this long after randomization.",
        ge=0,
        le=52,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.matched_batches > self.n_batches:
            raise _inconsistent(
                "matched_batches",
                f"matched_batches ({self.matched_batches}) must be <= n_batches "
                f"({self.n_batches}); allowed range [1, {self.n_batches}] months",
            )
        if self.n_weeks < 1:
            raise _inconsistent(
                "collection_date",
                f"collection_date ({self.collection_date}) must come at least a week after "
                f"start_date ({self.start_date}); allowed range: from "
                f"{self.start_date + timedelta(weeks=1)}",
            )
        if self.batch_week(self.n_batches - 1) >= self.n_weeks:
            most = max(b + 1 for b in range(24) if self.batch_week(b) < self.n_weeks)
            raise _inconsistent(
                "n_batches",
                f"the last of {self.n_batches} monthly batches graduates in week "
                f"{self.batch_week(self.n_batches - 1)}, not before the collection date "
                f"(week {self.n_weeks}); allowed range [1, {most}] months with this "
                "calendar",
            )
        return self

    @property
    def n_weeks(self) -> int:
        """Weeks from the first graduation to data collection."""
        return (self.collection_date - self.start_date).days // 7

    def batch_week(self, batch: int) -> int:
        """Week (from ``start_date``) at which monthly batch ``batch`` graduates."""
        return round(batch * 52 / 12)


class Graph(_Section):
    """The default professional-graph generator (see :mod:`sim.network`)."""

    mean_degree: float = _f(12.0, "links", "Mean learner-learner degree.", ge=0, le=200)
    degree_exponent: float = _f(
        2.5,
        "-",
        "Tail exponent of the degree distribution (Pareto, > 2 for a finite mean).",
        gt=2.0,
        le=10,
    )
    domain_homophily: float = _f(
        0.6, "share", "Share of a learner's links drawn within its domain.", ge=0, le=1
    )
    country_homophily: float = _f(
        0.7, "share", "Share of links drawn within the learner's country group.", ge=0, le=1
    )
    employers_per_1000: float = _f(
        4.0, "employers / 1000 learners", "Employers in the market.", gt=0, le=200
    )
    employer_size_exponent: float = _f(
        2.0, "-", "Tail exponent of employer size (recruiters, vacancy share).", gt=1, le=10
    )
    employer_links_per_learner: float = _f(
        2.0,
        "links",
        "Mean number of employers linked to a learner (recruiters following "
        "learners of their domain); an employer's share grows with its size.",
        ge=0,
        le=100,
    )


class Sharing(_Section):
    """Phase 1: who shares the credential, and when."""

    hazard_at_grant: float = _calibrated(
        0.02,
        "per week",
        "Control sharing hazard in the week the credential is granted (median activity).",
        ge=0,
        le=1,
    )
    hazard_decay_weeks: float = _f(
        3.0, "weeks", "e-folding time of the control hazard after the grant.", gt=0, le=520
    )
    hazard_floor: float = _f(0.0003, "per week", "Long-run control sharing hazard.", ge=0, le=1)
    activity_elasticity: float = _f(
        1.0, "-", "Elasticity of the sharing hazard with respect to activity.", ge=0, le=5
    )
    max_hazard: float = _f(0.9, "per week", "Cap on any weekly sharing hazard.", gt=0, le=1)
    app_open_share: list[Share] = _f(
        [0.82, 0.96],
        "share",
        "Range of the share of treated learners who open the app "
        "within 30 days, by batch (drawn once per batch).",
        min_length=2,
        max_length=2,
    )
    nudge_strength: float = _calibrated(
        0.01,
        "-",
        "Scale of a notification's effect: the chance that a notification, seen "
        "by a median-activity learner, leads to sharing is 1 - exp(-nudge_strength).",
        ge=0,
        le=20,
    )
    second_notification_weeks: int = _f(
        1,
        "weeks",
        "Delay of the second notification (sent only if the first did not lead to sharing).",
        ge=1,
        le=12,
    )
    two_click_multiplier: float = _f(
        1.0,
        "ratio",
        "Multiplier of the ordinary hazard of treated learners once they have "
        "opened the app (the two-click flow lowers friction).",
        ge=1,
        le=10,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        lo, hi = self.app_open_share  # two shares in [0, 1] (checked by the field)
        if lo > hi:
            raise _inconsistent(
                "app_open_share",
                f"expected [low, high] with low <= high, got [{lo}, {hi}]; allowed range: "
                "each in [0, 1] share, low <= high",
            )
        return self


class Visibility(_Section):
    """Phase 2: how a shared credential is seen."""

    enabled: bool = _f(
        True,
        "-",
        "The visibility channel: a shared credential makes employers consider the "
        "learner more often (search boost, feed).",
    )
    search_boost: float = _calibrated(
        3.0,
        "ratio",
        "Extra weight of a shared credential in recruiter searches of its "
        "domain (weight = activity * (1 + boost)).",
        ge=0,
        le=100,
    )
    feed_see_prob: float = _f(
        0.15,
        "probability",
        "Chance that a neighbour sees a new share in the feed (median activity).",
        ge=0,
        le=1,
    )
    reshare_prob: float = _f(
        0.03,
        "probability",
        "Chance that a neighbour who saw the post reshares it to its own neighbours.",
        ge=0,
        le=1,
    )
    click_prob: float = _f(
        0.05,
        "probability",
        "Chance that a learner who sees the post opens the certificate (a certificate view).",
        ge=0,
        le=1,
    )
    employer_look_prob: float = _f(
        0.5,
        "probability",
        "Chance that an employer who sees the post looks at the "
        "credential (a view; the learner becomes a candidate if the employer is hiring).",
        ge=0,
        le=1,
    )
    recruiter_view_prob: float = _f(
        0.1,
        "probability",
        "Chance that a recruiter whose search finds a learner with a "
        "shared credential opens it (a view).",
        ge=0,
        le=1,
    )
    shared_view_rate: float = _f(
        0.002,
        "per week",
        "Ongoing certificate views of a shared credential from profile visits (median activity).",
        ge=0,
        le=1,
    )
    unshared_view_rate: float = _calibrated(
        0.003,
        "per week",
        "Certificate views of an unshared credential (link sent with an "
        "application, CV), median activity.",
        ge=0,
        le=1,
    )
    own_view_rate: float = _f(
        0.05,
        "per week",
        "Learner looks at their own certificate (counted apart).",
        ge=0,
        le=1,
    )


class Market(_Section):
    """Phases 3-5: an open, segmented labour market (see :mod:`sim.dynamics`).

    Learners are a small share of the job seekers of their segment (domain x country
    group); background seekers send the rest of the applications. Flow rates are
    calibrated to outside sources (``sim/targets.py``, ``FLOW_TARGETS``).
    """

    learner_share: float = _f(
        0.05,
        "share",
        "Learners' share of the job seekers (and applications) in their segment "
        "(domain x country group); background seekers are the rest. One platform's "
        "graduates are a small share of any labour market.",
        gt=0,
        le=0.9,
    )
    attached_share: float = _f(
        0.4,
        "share",
        "Share of learners attached to the labour force: when not employed they search "
        "actively (unemployed); the others are marginally attached (students, carers, "
        "the discouraged) and search little. A trait, fixed for the run.",
        gt=0,
        le=1,
    )
    in_scope_share: float = _calibrated(
        0.6, "share", "Share of vacancies with a tech or managerial title.", ge=0, le=1
    )
    vacancy_duration_weeks: float = _f(
        5.0,
        "weeks",
        "Mean time a vacancy stays open (filled or withdrawn). US vacancies last about a "
        "month on average (Davis, Faberman & Haltiwanger 2013, QJE: mean 'vacancy "
        "duration' ~ 3-4 weeks in JOLTS); we take 5 for slower, less formal markets.",
        ge=1,
        le=104,
    )
    vacancy_fill_share: float = _f(
        0.8,
        "share",
        "Share of vacancies that end filled (the rest are withdrawn).",
        gt=0,
        lt=1,
    )
    applications_unemployed: float = _calibrated(
        2.5,
        "per week",
        "Applications sent by an attached, non-employed learner (median activity).",
        ge=0,
        le=100,
    )
    applications_marginal: float = _calibrated(
        0.03,
        "per week",
        "Applications sent by a marginally attached, non-employed learner.",
        ge=0,
        le=100,
    )
    applications_employed: float = _calibrated(
        0.5,
        "per week",
        "On-the-job search: applications sent by an employed learner. An offer is taken "
        "only if its match quality beats the current job's (a job ladder).",
        ge=0,
        le=100,
    )
    settling_in_weeks: int = _f(
        13,
        "weeks",
        "A new hire does not look for another job (nor answer recruiters) in its first "
        "weeks: the monthly hazard of a new job ending rises over its first three months "
        "(Farber 1994, JOLE 12(4), NLSY), and MODEL.md asks that most people who change "
        "job do so once in a year. Without it the ladder concentrates job-to-job moves on "
        "the newest hires (their match is the lowest).",
        ge=0,
        le=52,
    )
    in_domain_application_share: float = _f(
        0.8,
        "share",
        "Share of applications to vacancies in the learner's domain (the rest go to "
        "another domain of the learner's country group).",
        ge=0,
        le=1,
    )
    sourced_per_vacancy: float = _f(
        0.3,
        "per week",
        "Profiles a recruiter finds by searching the network, per open vacancy (among "
        "learners and background workers of the vacancy's segment, employed or not).",
        ge=0,
        le=1000,
    )
    background_skill_mean: float = _f(
        0.0, "skill sd", "Mean perceived skill of background applicants.", ge=-10, le=10
    )
    background_skill_sd: float = _f(
        1.0, "skill sd", "Sd of background applicants' perceived skill.", gt=0, le=10
    )
    hiring_bar: float = _f(
        2.0,
        "skill sd",
        "Minimum score (belief + fit) an employer accepts; with the vacancy duration it "
        "sets how many background applicants a vacancy needs.",
        ge=-10,
        le=10,
    )
    fit_noise_sd: float = _f(
        1.0,
        "skill sd",
        "Sd of the idiosyncratic fit of a candidate to a vacancy (what an interview reveals).",
        ge=0,
        le=10,
    )
    separation_rate_per_year: float = _f(
        0.3,
        "per year",
        "Rate at which jobs end in non-employment: 2.5% a month. US monthly E->U plus "
        "E->N flows are ~1.5-3% (CPS, Shimer 2012); poorer countries run 2-3x US "
        "separation rates (Donovan, Lu & Schoellman 2023, QJE); a graduate population "
        "sits at the low end.",
        ge=0,
        le=10,
    )
    report_prob: float = _calibrated(
        0.75, "probability", "Chance that a new job is reported on the profile.", ge=0, le=1
    )
    report_lag_weeks: float = _f(
        4.0,
        "weeks",
        "Mean lag between a job start and its report on the profile.",
        ge=0,
        le=104,
    )


class Signal(_Section):
    """Phase 4: what employers believe about a candidate's skill."""

    enabled: bool = _f(
        True,
        "-",
        "The signal channel: employers update their belief on a visible credential.",
    )
    credibility: float = _calibrated(
        1.0,
        "ratio",
        "Weight employers give the credential's content relative to its true precision "
        "(0: only the fact of completion counts; 1: Bayesian with the signal's true "
        "precision; above 1: employers over-read it).",
        ge=0,
        le=20,
    )
    out_of_scope_relevance: float = _f(
        0.0,
        "share",
        "How much an employer hiring for a title out of scope (neither tech nor "
        "managerial) reads a course credential, relative to one hiring in scope: it scales "
        "both the news of completion and the content's weight. 0: course skills matter "
        "only for in-scope titles, which is how the study's in-scope effect can exceed its "
        "effect on all new jobs (TARGETS.md).",
        ge=0,
        le=1,
    )
    max_signal_precision: float = _f(
        4.0,
        "1 / skill variance",
        "True precision of a course credential's signal of skill (what a Bayesian "
        "employer at credibility 1 weights it by).",
        ge=0,
        le=1000,
    )
    prior_precision_thin: float = _f(
        0.5,
        "1 / skill variance",
        "Precision of the employer's prior from a thin record "
        "(no degree, no experience, no past job in scope).",
        gt=0,
        le=1000,
    )
    prior_precision_thick: float = _f(
        4.0,
        "1 / skill variance",
        "Precision of the prior from a full record (degree, 5+ years, past job in scope).",
        gt=0,
        le=1000,
    )
    course_skill_gain: float = _f(
        0.25,
        "skill sd",
        "How much more skilled a completer is than a non-completer with the same record "
        "(what the fact of completion tells an employer who sees the credential).",
        ge=-5,
        le=5,
    )
    education_skill: float = _f(
        0.5,
        "skill sd",
        "Prior-mean skill gap between a doctorate and no education.",
        ge=0,
        le=10,
    )
    experience_skill: float = _f(
        0.08,
        "skill sd per year",
        "Prior-mean skill per year of experience (to 15 years).",
        ge=0,
        le=1,
    )
    past_scope_skill: float = _f(
        0.4, "skill sd", "Prior-mean skill of a past job in tech or management.", ge=0, le=10
    )
    developing_skill: float = _f(
        -0.2,
        "skill sd",
        "Prior-mean skill shift for a developing-country record.",
        ge=-10,
        le=10,
    )
    credential_weight: dict[str, Weight] = _f(
        {
            "course": 1.0,
            "guided_project": 0.5,
            "specialization": 1.5,
            "professional_certificate": 2.0,
        },
        "ratio",
        "Signal precision of each credential type relative to a course.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.prior_precision_thick < self.prior_precision_thin:
            hi = field_info("signal.prior_precision_thick")["le"]
            raise _inconsistent(
                "prior_precision_thick",
                f"prior_precision_thick ({self.prior_precision_thick}) must be >= "
                f"prior_precision_thin ({self.prior_precision_thin}); allowed range "
                f"[{self.prior_precision_thin}, {hi}] 1 / skill variance",
            )
        if set(self.credential_weight) != set(CREDENTIAL_TYPES):
            missing = [k for k in CREDENTIAL_TYPES if k not in self.credential_weight]
            extra = [k for k in self.credential_weight if k not in CREDENTIAL_TYPES]
            raise _inconsistent(
                "credential_weight",
                f"expected exactly the keys {list(CREDENTIAL_TYPES)} (missing {missing}, "
                f"unknown {extra})",
            )
        return self


#: The fewest matched learners either arm must expect when ``0 < treated_share < 1``.
#: The study's estimators need both arms: the employability model is trained on the
#: control arm in 5 cross-fitting folds (it fails below 10 controls), and the tertile
#: rows compare the arms within each third of predicted employability. 30 per arm is
#: about 10 per arm and tertile, the fewest with which a difference in means and its
#: robust SE mean anything; it also keeps the realised arm (the expectation +- a few
#: learners) well clear of the estimators' hard failures.
MIN_ARM_LEARNERS = 30


#: Who gets the nudges (``study.targeting``); see :func:`sim.study.assign`.
TARGETING = ("random", "low_employability", "predicted_effect")
#: The twin world beside the study's (``study.mirror``); see :func:`sim.study.run_twins`.
MIRRORS = ("flipped", "no_nudge")


class Study(_Section):
    """The experiment layer: assignment and measurement."""

    treated_share: float = _f(
        0.5,
        "share",
        "Share of each stratum assigned to the nudge. 0 and 1 (one arm: everyone or no one "
        "nudged, measured by twin runs) are always allowed; in between, each arm must expect "
        f"at least {MIN_ARM_LEARNERS} matched learners (see Scenario.expected_matched). "
        "With a targeting other than 'random' it is the number of nudges as a share of "
        "each graduation batch.",
        ge=0,
        le=1,
    )
    targeting: str = _f(
        "random",
        "-",
        "Who is nudged. 'random': the study's design, treated_share of every batch x "
        "stratum cell at random. 'low_employability': in each batch, the treated_share "
        "of learners with the lowest predicted chance of a new job without the nudge; "
        "'predicted_effect': those with the highest predicted effect of the nudge. Both "
        "predictions come from a model learnt on a simulated 50/50 study of the same "
        "scenario in another world (sim.targeting). A targeted design is a policy, not "
        "a randomized study: it needs mirror = 'no_nudge'.",
    )
    mirror: str = _f(
        "flipped",
        "-",
        "The twin world run beside the study's. 'flipped': every learner's arm flipped "
        "(the true effect of the design's assignment on each learner). 'no_nudge': a "
        "world where no one is nudged, so the twin difference is the total effect of "
        "the nudges, crowding out included; the study's estimators are then not run.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for key, allowed in (("targeting", TARGETING), ("mirror", MIRRORS)):
            value = getattr(self, key)
            if value not in allowed:
                near = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise _inconsistent(
                    key, f"unknown value {value!r}{hint}; allowed values {list(allowed)}"
                )
        if self.targeting != "random" and self.mirror != "no_nudge":
            raise _inconsistent(
                "mirror",
                f"targeting = {self.targeting!r} is a policy, not a randomized study: its "
                "total effect needs the world where no one is nudged; allowed values with "
                f"this targeting ['no_nudge'] (got {self.mirror!r})",
            )
        return self


class Scenario(_Section):
    """A complete, validated scenario."""

    meta: Meta = Field(default_factory=Meta)
    population: Population = Field(default_factory=Population)
    calendar: Calendar = Field(default_factory=Calendar)
    graph: Graph = Field(default_factory=Graph)
    sharing: Sharing = Field(default_factory=Sharing)
    visibility: Visibility = Field(default_factory=Visibility)
    market: Market = Field(default_factory=Market)
    signal: Signal = Field(default_factory=Signal)
    study: Study = Field(default_factory=Study)

    @property
    def expected_matched(self) -> float:
        """Expected size of the matched sample (the study's estimation sample).

        As :func:`sim.population.draw_learners` draws it: matched learners come only from
        the first ``matched_batches`` of ``n_batches`` equally likely batches, each with
        probability ``min(1, matched_share * n_batches / matched_batches)``, so
        ``n_learners * min(matched_share, matched_batches / n_batches)``.
        """
        pop, cal = self.population, self.calendar
        return pop.n_learners * min(pop.matched_share, cal.matched_batches / cal.n_batches)

    @model_validator(mode="after")
    def _arms(self) -> Self:
        """Both arms of a study must be large enough for its estimators, before any work.

        :func:`sim.population.stratified_assignment` treats ``floor(g * share)`` learners
        of each batch x stratum cell of size ``g``, plus one with probability equal to the
        remainder: the rounding is random, so each arm's expected size is exactly its
        share of the expected matched sample however small the cells, and a share near 0
        or 1 leaves the smaller arm with a handful of learners or none.
        """
        share = self.study.treated_share
        if not 0 < share < 1:
            return self
        matched = self.expected_matched
        smaller = matched * min(share, 1 - share)
        if smaller >= MIN_ARM_LEARNERS - 1e-9:
            return self
        pop = self.population
        arm = "control" if share > 0.5 else "treated"
        why = (
            f"with about {matched:,.2f} matched learners expected (population.n_learners "
            f"{pop.n_learners:,}, matched_share {pop.matched_share}), treated_share = {share} "
            f"leaves about {smaller:.2f} of them in the {arm} arm, fewer than the "
            f"{MIN_ARM_LEARNERS} per arm the study's estimators need"
        )
        if matched >= 2 * MIN_ARM_LEARNERS:
            lo = math.ceil(MIN_ARM_LEARNERS / matched * 1e4) / 1e4
            hi = math.floor((1 - MIN_ARM_LEARNERS / matched) * 1e4) / 1e4
            allowed = f"allowed range for this population [{lo}, {hi}] share, or exactly 0 or 1"
        else:
            cal = self.calendar
            ways = []
            need_n = math.ceil(2 * MIN_ARM_LEARNERS * pop.n_learners / matched - 1e-6)
            if need_n <= field_info("population.n_learners")["le"]:
                ways.append(f"population.n_learners >= {need_n:,}")
            need_m = 2 * MIN_ARM_LEARNERS / pop.n_learners
            if need_m <= min(1.0, cal.matched_batches / cal.n_batches):
                ways.append(f"population.matched_share >= {math.ceil(need_m * 1e6) / 1e6}")
            allowed = (
                "no share between 0 and 1 leaves enough in both arms: allowed values for "
                "this population 0 or 1 only"
                + (f" (a 50/50 study needs {' or '.join(ways)})" if ways else "")
            )
        raise _inconsistent("study.treated_share", f"{why}; {allowed}")

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Scenario:
        """Validate a nested mapping; errors name ``source`` and the dotted key."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as err:
            raise ScenarioError(_explain(err, source)) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        """Read and validate a scenario file (``[meta] base`` relative to its folder)."""
        path = Path(path)
        if not path.is_file():
            raise ScenarioError(f"{path}: no such scenario file")
        text = path.read_text(encoding="utf-8")
        return _from_text(text, str(path), path.parent, (path.resolve(),))

    @classmethod
    def from_toml_text(
        cls, text: str, source: str = "<toml>", folder: str | Path | None = None
    ) -> Scenario:
        """Validate scenario TOML text; ``[provenance]`` (from calibration) is skipped.

        ``[meta] base`` (see :data:`BASE_KEY`) is found by :func:`sim.scenarios.find`,
        a relative path from ``folder`` (default: the current folder).
        """
        return _from_text(text, source, None if folder is None else Path(folder), ())

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "overrides") -> Scenario:
        """A copy with dotted keys replaced, e.g. ``{"signal.credibility": 0.8}``."""
        data = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if not name or section not in data or not isinstance(data[section], dict):
                valid = [f"{s}.{k}" for s, sec in data.items() for k in sec]
                raise ScenarioError(f"{source}: unknown key '{key}'{_nearest(key, valid)}")
            data[section][name] = value
        return Scenario.from_dict(data, source=source)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (dates as ``datetime.date``, tuples as lists)."""
        return _plain(self.model_dump())

    def to_toml(self) -> str:
        """Every parameter written out explicitly, one table per section."""
        return dumps_toml(self.to_dict())


#: The ``[meta]`` key by which a scenario file extends another: ``base = "paper"`` (a bare
#: name, or a path relative to the file) means "that scenario, with this file's values".
BASE_KEY = "base"


def _from_text(text: str, source: str, folder: Path | None, chain: tuple[Path, ...]) -> Scenario:
    """A scenario file's text, validated, its base (if any) applied first.

    A section's keys replace the base's one by one (a table value such as
    ``credential_weight`` as a whole); ``[meta]`` (name, description) is the file's own,
    never inherited. ``chain`` holds the files being read, to refuse a cycle of bases.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{source}: not valid TOML ({err})") from None
    data.pop("provenance", None)  # written by `credsim calibrate`; informational
    meta = data.get("meta")
    if isinstance(meta, dict) and BASE_KEY in meta:
        ref = meta[BASE_KEY]
        data["meta"] = {k: v for k, v in meta.items() if k != BASE_KEY}
        base = _base_of(ref, source, folder, chain)
        merged: dict[str, Any] = {**base.to_dict(), "meta": {}}
        for section, body in data.items():
            if isinstance(body, dict) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **body}
            else:  # an unknown section or a value that is not a table: validation says so
                merged[section] = body
        data = merged
    return Scenario.from_dict(data, source=source)


def _base_of(ref: Any, source: str, folder: Path | None, chain: tuple[Path, ...]) -> Scenario:
    """The scenario named by ``[meta] base = ref`` in ``source``, its own bases applied."""
    from sim import scenarios  # the one place that finds scenario files

    where = f"{source}: key 'meta.{BASE_KEY}'"
    if not isinstance(ref, str) or not ref.strip():
        raise ScenarioError(
            f"{where}: expected the name or path of a scenario (a string), got {ref!r}"
        )
    try:
        path = scenarios.find(ref, folder=folder)
    except ScenarioError as err:
        raise ScenarioError(f"{where}: {err}") from None
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ScenarioError(f"{where}: {ref!r} extends itself (cycle of bases: {cycle})")
    try:
        return _from_text(
            path.read_text(encoding="utf-8"), str(path), path.parent, (*chain, path.resolve())
        )
    except ScenarioError as err:
        raise ScenarioError(f"{where} = {ref!r}: in the base scenario: {err}") from None


def load_scenario(path_or_name: str | Path, scenarios_dir: str | Path | None = None) -> Scenario:
    """Load a scenario file or a scenario by bare name (:func:`sim.scenarios.load`).

    ``scenarios_dir``: a folder to look in first for a bare name (and to resolve a
    relative path from).
    """
    from sim import scenarios  # the one place that finds scenario files

    return scenarios.load(path_or_name, folder=scenarios_dir)


def field_info(dotted: str) -> dict[str, Any]:
    """Default, unit, bounds and description of one parameter (for CLIs and apps).

    ``calibrated: True`` marks a parameter that ``credsim calibrate`` fits: its default
    is the calibration's starting value, not the calibrated one (that is in ``paper``).

    A table or list of numbers (``population.domain_shares``, ``sharing.app_open_share``)
    has no bounds of its own; ``items`` holds the bounds of each of its entries.
    """
    section, _, name = dotted.partition(".")
    sec_cls = Scenario.model_fields[section].default_factory
    f = sec_cls.model_fields[name]
    extra = f.json_schema_extra or {}
    info = {"default": f.default, "unit": extra.get("unit", ""), "doc": f.description}
    if extra.get("calibrated"):
        info["calibrated"] = True
    info.update(_bounds(f.metadata))
    if get_origin(f.annotation) in (dict, list):
        item = get_args(f.annotation)[-1]
        if get_origin(item) is Annotated:
            info["items"] = _bounds(m for a in get_args(item)[1:] for m in a.metadata)
    return info


def _bounds(metadata: Any) -> dict[str, Any]:
    """``ge``/``gt``/``le``/``lt`` of a field's annotated-types metadata."""
    out: dict[str, Any] = {}
    for m in metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(m, attr, None) is not None:
                out[attr] = getattr(m, attr)
    return out


# ---- helpers ------------------------------------------------------------------------


def _nearest(key: str, valid: list[str]) -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _expected(section: str, name: str, entry: bool = False) -> str:
    """``; allowed range [lo, hi] unit`` of a field, or of one entry of a table or list."""
    try:
        info = field_info(f"{section}.{name}")
    except (KeyError, AttributeError, TypeError):
        return ""
    if "items" in info:
        each = "" if entry else " for each entry"
        return _expected_range(info["items"], info["unit"] + each)
    return _expected_range(info, info["unit"])


def _expected_range(info: Mapping[str, Any], unit: str) -> str:
    lo = info.get("ge", info.get("gt"))
    hi = info.get("le", info.get("lt"))
    if lo is None and hi is None:
        return ""
    lb = "[" if "ge" in info else "("
    rb = "]" if "le" in info else ")"
    return f"; allowed range {lb}{lo}, {hi}{rb} {unit}".rstrip()


def _explain(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = _dotted(e["loc"])
        if e["type"] == "extra_forbidden":
            if len(loc) == 1:
                valid = list(Scenario.model_fields)
            else:
                sec_cls = Scenario.model_fields[loc[0]].default_factory
                valid = [f"{loc[0]}.{k}" for k in sec_cls.model_fields]
            lines.append(f"{source}: unknown key '{key}'{_nearest(key, valid)}")
            continue
        if e["type"] == _INCONSISTENT:  # a cross-field rule: the message has the range
            key = _dotted((*e["loc"], e["ctx"]["key"]))
            lines.append(f"{source}: key '{key}': {e['msg']}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        hint = _expected(loc[0], loc[1], entry=len(loc) > 2) if len(loc) >= 2 else ""
        lines.append(f"{source}: key '{key}': {msg}{got_s}{hint}")
    return "\n".join(lines)


def _dotted(loc: tuple[str | int, ...]) -> str:
    """``("sharing", "app_open_share", 0)`` -> ``sharing.app_open_share[0]``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out or "(top level)"


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    return obj


def dumps_toml(data: Mapping[str, Any]) -> str:
    """The project's one TOML writer (``tomli_w``): any nesting of tables, dates, and keys
    that need quoting (``"sharing.nudge_strength" = 0.01``) or strings that need escaping.

    Sub-tables are written as ``[section.name]`` tables after the section's plain keys;
    ``tomllib.loads(dumps_toml(d)) == d`` for any TOML-representable ``d``.
    """
    return tomli_w.dumps(_plain(dict(data)))
