"""Pre-treatment traits of learners and employers, and the study's random assignment.

Pure functions: a scenario section and a ``numpy.random.Generator`` in, arrays out.

Modelling choices (MODEL.md leaves them to us):

* **Matched vs. unmatched learners.** TARGETS.md gives trait shares for the population
  and for the matched sample (~4%). A learner's matched flag is drawn first; its traits
  then come from the matched distribution or from the *implied* unmatched one,
  ``(population - m * matched) / (1 - m)``, so both margins are reproduced. Matched
  learners come only from the first ``calendar.matched_batches`` batches, as in the
  paper's matched-sample tables.
* **Skill.** Latent skill is in units of its population standard deviation. An employer
  reading a record forms a prior ``N(mu(x), 1/tau(x))``: ``mu`` rises with education,
  experience and a past job in scope and falls with a developing-country record;
  ``tau`` grows with how *thick* the record is (degree, years of experience, past job in
  scope). The prior is correct on average for people who have not taken the course:
  ``skill = mu + course_gain + e / sqrt(tau)``. The course adds ``course_skill_gain`` that
  no record shows; the credential, when an employer sees it, reveals a noisy reading of
  skill, ``signal = skill + n / sqrt(precision)``. Thin records leave more to learn, so the
  same credential moves beliefs most for low-employability learners.
* **Attachment and baseline employment: the market's steady state.** A share
  ``market.attached_share`` of learners are attached to the labour force (when not
  employed they search actively: the unemployed); the others are marginally attached
  (students, carers, the discouraged: they search little). Each type starts at its own
  steady state of the targeted flows (``sim.targets.FLOW_TARGETS``): an attached learner
  is employed with probability ``f / (f + d)`` (``f`` the targeted monthly U->E rate,
  ``d`` the monthly separation rate); the marginal rate then makes the population's
  employment ``population.employed_share``. Within a type, employment rises with the
  record's prior mean (logistic, slope 1 per sd).
* **The job ladder's steady state.** A job's match quality is a rung in (0, 1); every
  offer draws one uniformly and an employed worker moves only up. Baseline jobs are drawn
  from the ladder's steady-state distribution (Burdett & Mortensen 1998),
  ``G(q) = q / (1 + k (1 - q))``, with ``k`` the offer rate over the separation rate that
  makes the job-to-job rate equal its target: ``ee = d ((1 + k) ln(1 + k) / k - 1)``.
  A calibrated market that meets its flow targets therefore starts at its steady state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit

from sim.params import (
    COLLEGE_LEVELS,
    CREDENTIAL_TYPES,
    DOMAINS,
    EDUCATION_LEVELS,
    Scenario,
    ScenarioError,
)
from sim.targets import FLOW_TARGETS

__all__ = [
    "EDUCATION_RANK",
    "Employers",
    "Learners",
    "draw_employers",
    "draw_learners",
    "stratified_assignment",
    "treat_first",
]

#: Ordinal position of each education level on a 0..1 scale (prior mean of skill).
EDUCATION_RANK = np.array([0.15, 0.0, 0.25, 0.4, 0.5, 0.65, 0.8, 1.0, 0.9])
_COLLEGE = np.array([lvl in COLLEGE_LEVELS for lvl in EDUCATION_LEVELS])


@dataclass
class Learners:
    """Pre-treatment traits, one array entry per learner (index = learner id)."""

    domain: np.ndarray  # int8, index into DOMAINS
    developing: np.ndarray  # bool
    education: np.ndarray  # int8, index into EDUCATION_LEVELS
    college: np.ndarray  # bool
    experience: np.ndarray  # float32, years
    past_tech: np.ndarray  # bool
    past_manager: np.ndarray  # bool
    employed0: np.ndarray  # bool, employed at baseline
    attached: np.ndarray  # bool, searches actively when not employed (else marginal)
    match0: np.ndarray  # float32, match quality (ladder rung) of the baseline job
    matched: np.ndarray  # bool, profile observable by the study
    activity: np.ndarray  # float32, network activity (median 1)
    credential: np.ndarray  # int8, index into CREDENTIAL_TYPES
    batch: np.ndarray  # int8, graduation batch (month)
    grant_week: np.ndarray  # int16, week the credential is granted (= randomization)
    prior_mean: np.ndarray  # float32, employer's prior mean of skill from the record
    prior_precision: np.ndarray  # float32, 1 / variance of that prior
    skill: np.ndarray  # float32, latent true skill
    signal: np.ndarray  # float32, what the credential reveals about skill
    signal_precision: np.ndarray  # float32, precision of that reading at credibility 1

    def __len__(self) -> int:
        return len(self.domain)

    @property
    def stratum(self) -> np.ndarray:
        """Randomization stratum: domain x developing x college (0..15)."""
        return (self.domain.astype(np.int16) * 4 + self.developing * 2 + self.college).astype(
            np.int16
        )

    def take(self, idx: np.ndarray) -> Learners:
        """A subset of learners (copies)."""
        return Learners(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass
class Employers:
    """Employers: a domain and a size (share of recruiters and vacancies)."""

    domain: np.ndarray  # int8
    size: np.ndarray  # float64, relative size (mean 1)
    developing: np.ndarray  # bool, the country group it hires in

    def __len__(self) -> int:
        return len(self.domain)


def _categorical(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws of category indices with probabilities ``p`` (inverse CDF)."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    # searchsorted(cdf, u, side="right") is the number of cdf entries <= u; with a
    # handful of categories, counting them is faster than a search per draw.
    u = rng.random(n)
    out = np.zeros(n, dtype=np.int8)
    for c in cdf:
        out += u >= c
    return out


def _split(pop: dict[str, float], matched: dict[str, float], names, m: float):
    """Matched and implied unmatched category probabilities."""
    p_m = np.array([matched[k] for k in names], dtype=float)
    p_pop = np.array([pop[k] for k in names], dtype=float)
    p_u = np.clip(p_pop - m * p_m, 0, None) if m < 1 else p_m.copy()
    return p_m, (p_u / p_u.sum() if p_u.sum() > 0 else p_m)


def draw_learners(scenario: Scenario, rng: np.random.Generator) -> Learners:
    """Draw the learner population of ``scenario`` (TARGETS.md margins, see module doc)."""
    pop, cal, sig = scenario.population, scenario.calendar, scenario.signal
    n, m = pop.n_learners, pop.matched_share

    # Batches are equal in expectation; matched learners only in the first batches.
    batch = rng.integers(0, cal.n_batches, n).astype(np.int8)
    in_matched_batches = batch < cal.matched_batches
    p_match = min(1.0, m * cal.n_batches / cal.matched_batches)
    matched = in_matched_batches & (rng.random(n) < p_match)
    m_eff = matched.mean() if n else m

    def by_group(pop_shares, matched_shares, names):
        p_m, p_u = _split(pop_shares, matched_shares, names, m_eff)
        out = _categorical(rng, p_u, n)
        out[matched] = _categorical(rng, p_m, int(matched.sum()))
        return out

    domain = by_group(pop.domain_shares, pop.matched_domain_shares, DOMAINS)
    education = by_group(pop.education_shares, pop.matched_education_shares, EDUCATION_LEVELS)
    p_dev_u = np.clip(
        (pop.developing_share - m_eff * pop.matched_developing_share) / max(1 - m_eff, 1e-12), 0, 1
    )
    developing = rng.random(n) < np.where(matched, pop.matched_developing_share, p_dev_u)
    college = _COLLEGE[education]

    # Experience: a share with none, the rest exponential with the matching overall mean.
    mean_exp = np.where(matched, pop.matched_experience_mean_years, pop.experience_mean_years)
    z = pop.experience_zero_share
    has_exp = rng.random(n) >= z
    experience = (has_exp * rng.exponential(1.0, n) * mean_exp / (1 - z)).astype(np.float32)

    # Past jobs in scope are more common with more experience (mean-preserving tilt).
    tilt = np.minimum(experience, 15) / max(float(np.mean(np.minimum(experience, 15))), 1e-9)
    tilt = 0.5 + 0.5 * tilt
    past_tech = rng.random(n) < np.clip(pop.past_tech_share * tilt, 0, 1)
    past_manager = rng.random(n) < np.clip(pop.past_manager_share * tilt, 0, 1)

    credential = _categorical(
        rng, np.array([pop.credential_type_shares[k] for k in CREDENTIAL_TYPES]), n
    )
    activity = np.exp(pop.activity_sigma * rng.standard_normal(n)).astype(np.float32)
    activity[matched] *= pop.matched_activity_multiplier

    # Employer's prior from the record, and latent skill (see module docstring).
    past_scope = past_tech | past_manager
    exp_c = np.minimum(experience, 15.0)
    prior_mean = (
        sig.education_skill * EDUCATION_RANK[education]
        + sig.experience_skill * exp_c
        + sig.past_scope_skill * past_scope
        + sig.developing_skill * developing
    )
    prior_mean -= prior_mean.mean()
    thickness = (college + np.minimum(experience, 5.0) / 5.0 + past_scope) / 3.0
    tau = sig.prior_precision_thin + (sig.prior_precision_thick - sig.prior_precision_thin) * (
        thickness
    )
    skill = prior_mean + sig.course_skill_gain + rng.standard_normal(n) / np.sqrt(tau)
    weight = np.array([sig.credential_weight[k] for k in CREDENTIAL_TYPES])[credential]
    signal_precision = sig.max_signal_precision * weight
    noise = rng.standard_normal(n) / np.sqrt(np.maximum(signal_precision, 1e-12))
    signal = skill + np.where(signal_precision > 0, noise, 0.0)

    attached, employed0, match0 = steady_state_start(scenario, prior_mean, rng)

    grant_week = np.array([cal.batch_week(b) for b in range(cal.n_batches)], dtype=np.int16)
    f32 = np.float32
    return Learners(
        domain=domain,
        developing=developing,
        education=education,
        college=college,
        experience=experience,
        past_tech=past_tech,
        past_manager=past_manager,
        employed0=employed0,
        attached=attached,
        match0=match0.astype(f32),
        matched=matched,
        activity=activity,
        credential=credential,
        batch=batch,
        grant_week=grant_week[batch],
        prior_mean=prior_mean.astype(f32),
        prior_precision=tau.astype(f32),
        skill=skill.astype(f32),
        signal=signal.astype(f32),
        signal_precision=signal_precision.astype(f32),
    )


def draw_employers(scenario: Scenario, rng: np.random.Generator) -> Employers:
    """Employers: domain by the population's domain shares, Pareto-tailed size (mean 1)."""
    n_lrn = scenario.population.n_learners
    n = max(2 * len(DOMAINS), round(n_lrn * scenario.graph.employers_per_1000 / 1000))
    p = np.array([scenario.population.domain_shares[k] for k in DOMAINS])
    domain = _categorical(rng, p, n)
    # every domain has two employers, so every segment (domain x country group) has one
    domain[: 2 * len(DOMAINS)] = np.repeat(np.arange(len(DOMAINS)), 2)
    a = scenario.graph.employer_size_exponent
    size = (1.0 - rng.random(n)) ** (-1.0 / a)
    developing = employer_country_groups(scenario, domain, rng)
    return Employers(domain=domain, size=size / size.mean(), developing=developing)


def employer_country_groups(
    scenario: Scenario, domain: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The country group each employer hires in: developing with the population's
    developing share; the first employer of each domain in each group is placed there,
    so every segment (domain x country group) has an employer."""
    developing = rng.random(len(domain)) < scenario.population.developing_share
    for d in range(len(DOMAINS)):
        members = np.flatnonzero(domain == d)
        if len(members) >= 2:
            developing[members[0]], developing[members[1]] = True, False
    return developing


def separation_monthly(scenario: Scenario) -> float:
    """The monthly probability that a job ends in non-employment."""
    return float(-np.expm1(-scenario.market.separation_rate_per_year / 12.0))


def ladder_kappa(ee_monthly: float, sep_monthly: float) -> float:
    """Offer rate over separation rate of employed workers, ``k``, that makes the job
    ladder's steady-state job-to-job rate ``ee = d ((1 + k) ln(1 + k) / k - 1)``."""
    ratio = ee_monthly / max(sep_monthly, 1e-12)
    if ratio <= 0:
        return 0.0

    def gap(k: float) -> float:
        return (1.0 + k) * np.log1p(k) / k - 1.0 - ratio

    return float(brentq(gap, 1e-9, 1e9))


def steady_state_start(
    scenario: Scenario, prior_mean: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attachment, baseline employment and baseline match quality (module docstring)."""
    pop, m = scenario.population, scenario.market
    n = len(prior_mean)
    d = separation_monthly(scenario)
    f = FLOW_TARGETS["flow.ue_monthly"].value
    e_att = f / (f + d) if f + d > 0 else 0.0
    es, share = pop.employed_share, m.attached_share
    # the others' employment rate (es - s e_att) / (1 - s) must lie in [0, 1]:
    # s e_att <= es and s (1 - e_att) <= 1 - es
    hi = 1.0
    if e_att > 0:
        hi = min(hi, es / e_att)
    if e_att < 1:
        hi = min(hi, (1.0 - es) / (1.0 - e_att))
    e_marg = (es - share * e_att) / (1.0 - share) if share < 1 else e_att
    if share > hi + 1e-9 or not 0.0 <= e_marg <= 1.0:
        needs = (
            f"an employment rate of {e_marg:.3f} among the others"
            if share < 1
            else f"some learners not attached (all are, and employed at {e_att:.3f})"
        )
        raise ScenarioError(
            f"key 'market.attached_share' = {share}: attached learners are employed at "
            f"{e_att:.3f} in the steady state (targeted U->E rate and "
            f"market.separation_rate_per_year), so population.employed_share = {es} "
            f"needs {needs}; allowed range for market.attached_share (0, {hi:.4f}]"
        )
    attached = rng.random(n) < share
    base = np.clip(np.where(attached, e_att, e_marg), 1e-6, 1 - 1e-6)
    employed0 = rng.random(n) < expit(logit(base) + (prior_mean - prior_mean.mean()))
    kappa = ladder_kappa(FLOW_TARGETS["flow.ee_monthly"].value, d)
    u = rng.random(n)
    match0 = u * (1.0 + kappa) / (1.0 + u * kappa)
    return attached, employed0, match0


def stratified_assignment(
    groups: np.ndarray, treated_share: float, rng: np.random.Generator
) -> np.ndarray:
    """Assign ``treated_share`` of every group to treatment, at random.

    Within a group of size ``g`` exactly ``floor(g * share)`` learners are treated, plus
    one more with probability equal to the remainder, so the share holds in expectation
    and as closely as integers allow in every group (a 50/50 split within each batch x
    stratum cell, as in the study).
    """
    n = len(groups)
    key = rng.random(n)
    extra = rng.random(n)
    return treat_first(_lexsort2(key, groups), groups, treated_share, extra)


def treat_first(
    order: np.ndarray, groups: np.ndarray, share: float, extra: np.ndarray
) -> np.ndarray:
    """Treat the first ``share`` of every group in ``order`` (learners sorted by group,
    then by priority): ``floor(g * share)`` of a group of ``g``, plus the next one with
    probability equal to the remainder (``extra``: one uniform per learner). Returns a
    boolean vector aligned with ``groups``."""
    n = len(order)
    g_sorted = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1] if n else np.array([], int)
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    target = sizes * share
    k = np.floor(target) + (extra[order[starts]] < target - np.floor(target))
    treated = np.empty(n, dtype=bool)
    treated[order] = rank < np.repeat(k, sizes)
    return treated


def _lexsort2(key: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``np.lexsort((key, groups))``: by group, then key, then position; faster.

    Sort by key first (a quicksort; ties are broken by position, which only a stable
    sort guarantees, so with ties it sorts again stably), then stably by group: with a
    16-bit group key the second sort is a radix sort.
    """
    order = np.argsort(key)
    k = key[order]
    if len(k) > 1 and (k[1:] == k[:-1]).any():
        order = np.argsort(key, kind="stable")
    g = groups[order]
    if len(g) and 0 <= g.min() and g.max() < 1 << 16:
        g = g.astype(np.uint16)
    return order[np.argsort(g, kind="stable")]
