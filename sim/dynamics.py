"""The five phases of one week (MODEL.md, "One week"), vectorized over learners.

Each phase is a function of the week's state (:class:`LearnerState` for learners,
:class:`Market` for employers and vacancies) that it updates in place; its docstring
states the per-learner (or per-vacancy) rule it applies. Every behavioural rule lives
here: when a learner opens the app, who shares, who sees and views a credential, who
searches and applies, how employers judge and hire, how jobs end, how vacancies are
seeded, posted and expire, and how new jobs are reported. The model (:mod:`sim.model`)
calls the phases in order and records what happened; nothing here reads a clock or does
I/O.

Random numbers: every phase receives its own generator for the week, spawned from the
run's dynamics stream by (week, phase). Draws that concern every learner are made for
*all* learners in fixed-size arrays, whether or not they are used, so two runs of the same
population (the twin runs of the study layer) see the same numbers for the same learner in
the same week: common random numbers, learner by learner.

Choices MODEL.md leaves open, written down here:

* A notification reaches a treated learner who has opened the app, in the week of
  opening and again ``second_notification_weeks`` later if the first did not lead to
  sharing. It shares with probability ``1 - exp(-nudge_strength * activity**e)``, on top
  of the ordinary hazard.
* The feed: a new share is seen by each learner neighbour and each linked employer with
  probability ``feed_see_prob``; a learner who sees it opens the certificate (a view) with
  ``click_prob`` and reshares with ``reshare_prob`` to its own neighbours (one more hop);
  an employer who sees it looks (a view) with ``employer_look_prob`` and, when the
  visibility channel is on and it has an open vacancy, adds the learner to that
  vacancy's candidates.
* Recruiter search: each open vacancy draws ``Poisson(sourced_per_vacancy)`` learners of
  its domain with probability proportional to ``activity * (1 + search_boost * shared)``
  (no boost when the visibility channel is off). A recruiter who finds a learner with a
  shared credential opens it (a view) with probability ``recruiter_view_prob``.
* On-the-job search: an employed learner applies like anyone else (at
  ``applications_employed``) and can be sourced or found in the feed, except within
  ``search_pause_weeks`` of starting a job (default 0: no pause), when it neither applies
  nor takes an approach; its draws are made all the same.
* Screening: an employer's belief about a candidate is the prior from the record; when
  the signal channel is on and the credential is shared, it is updated on the signal with
  precision ``credibility * signal_precision`` (normal-normal updating). The candidate's
  score is the posterior mean plus an idiosyncratic fit ``N(0, fit_noise_sd)``. The best
  of the background applicants (``Poisson(background_applicants)`` draws from
  ``N(background_skill_mean, background_skill_sd)`` plus fit noise, drawn as the maximum
  directly) competes with the best learner. The vacancy is filled by the best candidate
  whose score clears ``hiring_bar``, or stays open. A learner with several offers in a
  week takes the best one; the other vacancies stay open.
* Visibility off means sharing changes no employer's candidate set; certificate views are
  still counted (they measure exposure, not hiring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, pdtr

from sim.network import ProfessionalGraph
from sim.params import DOMAINS, Scenario
from sim.population import Employers, Learners

__all__ = [
    "NO_WEEK",
    "Candidates",
    "Flow",
    "Hires",
    "LearnerState",
    "Market",
    "Seen",
    "Vacancies",
    "app_open_weeks",
    "choose",
    "expand_csr",
    "flows",
    "hashed_uniform",
    "poisson_quantile",
    "posterior_mean",
    "report_new_jobs",
    "screen_and_hire",
    "search_and_apply",
    "searching",
    "seed_vacancies",
    "share",
    "unique_pairs",
    "visibility",
]


#: Marker for "never" in week-valued arrays.
NO_WEEK = np.iinfo(np.int16).min


@dataclass
class Vacancies:
    """Open vacancies (one entry each)."""

    id: np.ndarray  # int64, unique over the run
    employer: np.ndarray  # int32
    domain: np.ndarray  # int8
    in_scope: np.ndarray  # bool
    posted_week: np.ndarray  # int16

    def __len__(self) -> int:
        return len(self.id)

    def keep(self, mask: np.ndarray) -> Vacancies:
        """The vacancies where ``mask`` is true."""
        return Vacancies(
            self.id[mask],
            self.employer[mask],
            self.domain[mask],
            self.in_scope[mask],
            self.posted_week[mask],
        )

    def extend(self, other: Vacancies) -> Vacancies:
        """These vacancies followed by ``other``."""
        return Vacancies(
            *(
                np.concatenate([a, b])
                for a, b in zip(
                    (self.id, self.employer, self.domain, self.in_scope, self.posted_week),
                    (other.id, other.employer, other.domain, other.in_scope, other.posted_week),
                    strict=True,
                )
            )
        )

    @classmethod
    def empty(cls) -> Vacancies:
        return cls(
            np.empty(0, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.int8),
            np.empty(0, bool),
            np.empty(0, np.int16),
        )


def expand_csr(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray):
    """All (row, neighbour) pairs of ``rows`` in a CSR structure, as two arrays."""
    starts = indptr[rows]
    counts = (indptr[rows + 1] - starts).astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, indices.dtype)
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts)
    pos = offsets + np.arange(total)
    return np.repeat(rows, counts), indices[pos]


# ---- the state the phases work on ---------------------------------------------------


@dataclass
class LearnerState:
    """Dynamic state, one entry per learner (weeks count from ``calendar.start_date``;
    :data:`NO_WEEK` means "never")."""

    shared: np.ndarray  # bool: the credential is on the profile
    share_week: np.ndarray  # int16: week of sharing
    employed: np.ndarray  # bool: holds a job now
    job_employer: np.ndarray  # int32: employer of the job held (-1: held since before)
    job_in_scope: np.ndarray  # bool: the job held has a tech or managerial title
    jobs_started: np.ndarray  # int16: jobs started during the run (burn-in included)
    last_hire_week: np.ndarray  # int16: week the current or last job started
    first_job_week: np.ndarray  # int16: first job counted as new (>= min weeks after grant)
    first_scope_job_week: np.ndarray  # int16: same, in-scope jobs
    seen_job_week: np.ndarray  # int16: first counted job that is reported by collection
    seen_scope_job_week: np.ndarray  # int16: same, in-scope jobs
    views: np.ndarray  # int32: certificate views by others
    own_views: np.ndarray  # int32: the learner's own views of the certificate
    app_open_week: np.ndarray  # int16: week the learner opens the app (-1: never)

    @classmethod
    def initial(cls, pop: Learners, app_open_week: np.ndarray) -> LearnerState:
        """The state at the start of the burn-in: baseline employment, nothing else."""
        n = len(pop)
        never = np.full(n, NO_WEEK, dtype=np.int16)
        return cls(
            shared=np.zeros(n, bool),
            share_week=never.copy(),
            employed=pop.employed0.copy(),
            job_employer=np.full(n, -1, np.int32),
            job_in_scope=(pop.past_tech | pop.past_manager) & pop.employed0,
            jobs_started=np.zeros(n, np.int16),
            last_hire_week=never.copy(),
            first_job_week=never.copy(),
            first_scope_job_week=never.copy(),
            seen_job_week=never.copy(),
            seen_scope_job_week=never.copy(),
            views=np.zeros(n, np.int32),
            own_views=np.zeros(n, np.int32),
            app_open_week=app_open_week,
        )


@dataclass
class Market:
    """The employer side: employers, their open vacancies, and an index of learners by
    domain for recruiter search."""

    employers: Employers
    vacancies: Vacancies
    next_vacancy_id: int  # ids are unique over the run
    employer_cum_size: np.ndarray  # cumulative employer size (vacancy arrival weights)
    domain_order: np.ndarray  # learners sorted by domain (stable)
    domain_starts: np.ndarray  # where each domain's block starts in domain_order

    @classmethod
    def open(
        cls, scn: Scenario, pop: Learners, employers: Employers, week: int, rng: np.random.Generator
    ) -> Market:
        """The market at the start of the burn-in, with its first vacancies seeded."""
        counts = np.bincount(pop.domain, minlength=len(DOMAINS))
        market = cls(
            employers=employers,
            vacancies=Vacancies.empty(),
            next_vacancy_id=0,
            employer_cum_size=np.cumsum(employers.size),
            domain_order=np.argsort(pop.domain, kind="stable"),
            domain_starts=np.cumsum(counts) - counts,
        )
        market.vacancies = seed_vacancies(scn, market, len(pop), week, rng)
        market.next_vacancy_id = len(market.vacancies)
        return market

    def post(self, scn: Scenario, k: int, week: int, rng: np.random.Generator) -> Vacancies:
        """``k`` new vacancies: each at an employer drawn in proportion to size, in the
        employer's domain, in scope with probability ``in_scope_share``."""
        cum = self.employer_cum_size
        emp = np.searchsorted(cum, rng.random(k) * cum[-1], side="right").astype(np.int32)
        emp = np.minimum(emp, len(cum) - 1)
        new = Vacancies(
            id=np.arange(self.next_vacancy_id, self.next_vacancy_id + k, dtype=np.int64),
            employer=emp,
            domain=self.employers.domain[emp].astype(np.int8),
            in_scope=rng.random(k) < scn.market.in_scope_share,
            posted_week=np.full(k, week, dtype=np.int16),
        )
        self.next_vacancy_id += k
        return new


def seed_vacancies(
    scn: Scenario, market: Market, n_learners: int, week: int, rng: np.random.Generator
) -> Vacancies:
    """The vacancies open when the market starts: arrivals over one mean duration,
    ``Poisson(vacancies_per_1000 * n / 1000 * vacancy_duration_weeks)``, posted in
    ``week``."""
    m = scn.market
    k = rng.poisson(m.vacancies_per_1000 * n_learners / 1000.0 * m.vacancy_duration_weeks)
    return market.post(scn, k, week, rng)


def app_open_weeks(scn: Scenario, pop: Learners, rng: np.random.Generator) -> np.ndarray:
    """Week each learner opens the app (-1: never).

    A batch-level share is drawn uniformly in ``sharing.app_open_share``; each learner of
    the batch opens the app with that probability, 0 to 4 weeks after the grant (within
    30 days). Only treated learners see notifications there, but the week is drawn for
    everyone, so the twin worlds share it.
    """
    lo, hi = scn.sharing.app_open_share
    batch_share = lo + (hi - lo) * rng.random(scn.calendar.n_batches)
    n = len(pop)
    opens = rng.random(n) < batch_share[pop.batch]
    delay = rng.integers(0, 5, n)  # weeks 0..4 after the grant, i.e. within 30 days
    return np.where(opens, pop.grant_week + delay, -1).astype(np.int16)


# ---- phase 1 ------------------------------------------------------------------------


def share(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
    treated: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Phase 1, sharing: who shares this week; returns their indices, updates ``state``.

    For a learner with a granted, unshared credential, aged ``a`` weeks, activity ``x``:
    ordinary hazard ``h = min(max_hazard, (floor + at_grant * exp(-a / decay)) * x**e)``
    per week, times ``two_click_multiplier`` for treated learners who have opened the app;
    in a notification week (the week of opening, and ``second_notification_weeks`` later)
    a treated learner also shares with probability ``1 - exp(-nudge_strength * x**e)``.
    Sharing never un-happens.
    """
    s = scn.sharing
    u = rng.random(len(state.shared), dtype=np.float32)  # one per learner, used or not (CRN)
    idx = np.flatnonzero(~state.shared & (pop.grant_week <= week))
    grant, opens, tr = pop.grant_week[idx], state.app_open_week[idx], treated[idx]
    age = week - grant
    # the hazard's age profile, tabulated once for the ages present (integer weeks)
    ages = np.arange(int(age.max(initial=0)) + 1, dtype=np.float32)
    profile = s.hazard_floor + s.hazard_at_grant * np.exp(-ages / s.hazard_decay_weeks)
    act = pop.activity[idx]
    if s.activity_elasticity != 1.0:
        act = act ** np.float32(s.activity_elasticity)
    h = profile[age] * act
    if s.two_click_multiplier != 1.0:
        opened = tr & (opens >= 0) & (opens <= week)
        h = np.where(opened, h * s.two_click_multiplier, h)
    h = np.minimum(h, s.max_hazard)
    notified = np.flatnonzero(
        tr & (opens >= 0) & ((week == opens) | (week == opens + s.second_notification_weeks))
    )
    # chance of not sharing: 1 - h, times 1 - p_nudge in a notification week
    stay = 1.0 - h
    stay[notified] *= 1.0 + np.expm1(-s.nudge_strength * act[notified])
    new = idx[u[idx] < 1.0 - stay]
    state.shared[new] = True
    state.share_week[new] = week
    return new


# ---- phase 2 ------------------------------------------------------------------------


@dataclass
class Seen:
    """What phase 2 produced: views per learner and employers that looked."""

    views: np.ndarray  # int, certificate views by others this week, per learner
    own_views: np.ndarray  # int, own views this week, per learner
    look_employer: np.ndarray  # employer ids that looked at a new share
    look_learner: np.ndarray  # the learner each of them looked at


def visibility(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
    graph: ProfessionalGraph,
    new_sharers: np.ndarray,
    rng: np.random.Generator,
) -> Seen:
    """Phase 2, visibility: certificate views and employers' looks at new shares.

    Feed: each neighbour of a new sharer sees the post with ``feed_see_prob``; a learner
    who sees it views the certificate with ``click_prob`` and reshares it with
    ``reshare_prob`` (its neighbours then see it with ``feed_see_prob``); an employer who
    sees it looks with ``employer_look_prob`` (a view). Ongoing views per week: a shared
    credential gets one with probability ``shared_view_rate * activity``, a granted
    unshared one with ``unshared_view_rate * activity``; a learner views their own with
    ``own_view_rate`` (capped at 1). Views are added to ``state``.
    """
    v = scn.visibility
    shared, grant_week, activity = state.shared, pop.grant_week, pop.activity
    n = len(shared)
    p_see = v.feed_see_prob
    # fixed-size draws first (common random numbers across twin runs)
    u_view = rng.random(n, dtype=np.float32)
    u_own = rng.random(n, dtype=np.float32)
    granted = grant_week <= week
    rate = np.where(shared, v.shared_view_rate, v.unshared_view_rate) * activity
    views = (granted & (u_view < np.minimum(rate, 1.0))).astype(np.int32)
    own_views = (granted & (u_own < v.own_view_rate)).astype(np.int32)

    src, nb = expand_csr(graph.ll_indptr, graph.ll_indices, new_sharers)
    sees = rng.random(len(nb)) < p_see
    src, nb = src[sees], nb[sees]
    clicks = rng.random(len(nb)) < v.click_prob
    reshare = rng.random(len(nb)) < v.reshare_prob
    # second hop: neighbours of resharers see the original sharer's post
    rs_origin = src[reshare]
    _, hop_nb = expand_csr(graph.ll_indptr, graph.ll_indices, nb[reshare])
    origin2 = np.repeat(rs_origin, np.diff(graph.ll_indptr)[nb[reshare]])
    keep = (hop_nb != origin2) & (rng.random(len(hop_nb)) < p_see)
    origin2 = origin2[keep]
    clicks2 = rng.random(len(origin2)) < v.click_prob
    views += np.bincount(src[clicks], minlength=n).astype(np.int32)
    views += np.bincount(origin2[clicks2], minlength=n).astype(np.int32)

    # employers among first- and second-degree contacts (via resharers)
    seeds = np.concatenate([new_sharers, nb[reshare]])
    origin = np.concatenate([new_sharers, rs_origin])
    _, emp = expand_csr(graph.le_indptr, graph.le_indices, seeds)
    e_origin = np.repeat(origin, np.diff(graph.le_indptr)[seeds])
    looks = rng.random(len(emp)) < p_see * v.employer_look_prob
    look_employer, look_learner = emp[looks], e_origin[looks]
    views += np.bincount(look_learner, minlength=n).astype(np.int32)
    state.views += views
    state.own_views += own_views
    return Seen(views, own_views, look_employer.astype(np.int64), look_learner)


# ---- phase 3 ------------------------------------------------------------------------


@dataclass
class Candidates:
    """(vacancy position, learner) pairs, with where they came from."""

    vacancy: np.ndarray  # int64, position in the current Vacancies
    learner: np.ndarray  # int64
    n_applications: int
    n_sourced: int
    n_feed: int
    sourced_views: np.ndarray  # int32 per learner: recruiter looks at shared credentials


def unique_pairs(vacancy: np.ndarray, learner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (vacancy, learner) pairs, sorted by vacancy, then learner.

    Sorting the combined key itself (not an argsort) is what makes this cheap: the pair is
    read back from the key.
    """
    width = int(learner.max(initial=0)) + 1
    key = np.sort(vacancy * width + learner)
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = key[1:] != key[:-1]
    key = key[keep]
    return key // width, key % width


def hashed_uniform(key: np.uint64, idx: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) for each index that depends on ``(key, index)`` alone
    (splitmix64 of ``key + index``): per-learner draws for a few learners without drawing
    for the whole population, the same for a learner in any world with the same key."""
    z = idx.astype(np.uint64) + np.uint64(key)
    z *= np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def poisson_quantile(lam: float, u: np.ndarray) -> np.ndarray:
    """``Poisson(lam)`` draws by inversion: the smallest ``k`` with ``F(k) > u``.

    One uniform per draw, so a learner's count depends on its own uniform only: two
    worlds that differ in one learner's employment (the twin runs) still give every other
    learner the same count. (Numpy's sampler consumes a varying number of uniforms per
    draw, so one different rate would shift every later learner's draws.)
    """
    if lam <= 0:
        return np.zeros(len(u), dtype=np.int64)
    cdf = pdtr(np.arange(int(lam + 12 * math.sqrt(lam) + 30)), lam)  # P(X <= k)
    # the first few thresholds by comparison (cheap), the rare tail by binary search
    head = min(4, len(cdf))
    x = np.zeros(len(u), dtype=np.int16)  # at most ~250 for the schema's rates
    for c in cdf[:head]:
        x += u >= c
    tail = np.flatnonzero(u >= cdf[head - 1])
    x[tail] = np.searchsorted(cdf, u[tail], side="right")
    return x


def _group_index(keys: np.ndarray, n_groups: int):
    """Order of items by key and the start and count of each key's block."""
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    return order, starts, counts


def _pick_in_group(order, starts, counts, groups, u):
    """For each draw, a uniformly chosen member of ``groups`` (or -1 if it is empty)."""
    c = counts[groups]
    k = np.minimum((u * c).astype(np.int64), np.maximum(c - 1, 0))
    if len(c) == 0 or c.min() > 0:  # every group chosen has members: no masks needed
        return order[starts[groups] + k].astype(np.int64)
    out = np.full(len(groups), -1, dtype=np.int64)
    ok = c > 0
    out[ok] = order[starts[groups[ok]] + k[ok]]
    return out


def searching(scn: Scenario, week: int, state: LearnerState) -> np.ndarray | None:
    """Who searches this week: everyone, except (with ``search_pause_weeks`` > 0) the
    employed within that many weeks of starting their job. ``None`` means everyone."""
    pause = scn.market.search_pause_weeks
    if pause == 0:
        return None
    return ~(state.employed & (week - state.last_hire_week.astype(np.int64) < pause))


def search_and_apply(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
    market: Market,
    seen: Seen,
    rng_apply: np.random.Generator,
    rng_source: np.random.Generator,
) -> Candidates:
    """Phase 3, search and applications: who is considered for which vacancy.

    Each learner sends ``Poisson(applications_unemployed or applications_employed)``
    applications a week, each to a uniformly chosen open vacancy of its own domain with
    probability ``in_domain_application_share`` or else of a uniformly chosen domain.
    Each open vacancy sources ``Poisson(sourced_per_vacancy)`` learners of its domain with
    probability proportional to ``activity * (1 + search_boost * shared)``. Employers that
    looked at a new share in the feed add the learner to one of their open vacancies
    (visibility channel only). Learners not searching (:func:`searching`) are then dropped
    from every candidacy; recruiters still see their profiles, and the random draws are
    the same. Recruiters' views of shared credentials are added to ``state``.
    """
    m, vis = scn.market, scn.visibility
    vac, domain, shared, activity = market.vacancies, pop.domain, state.shared, pop.activity
    domain_order, domain_starts = market.domain_order, market.domain_starts
    n = len(shared)
    nd = int(domain.max(initial=0)) + 1 if n else 1
    nd = max(nd, int(vac.domain.max(initial=0)) + 1, 4)
    n_vac = len(vac)
    # applications: per-learner counts from a fixed-size draw
    u_app = rng_apply.random(n, dtype=np.float32)
    n_app = np.where(
        state.employed,
        poisson_quantile(m.applications_employed, u_app),
        poisson_quantile(m.applications_unemployed, u_app),
    )
    app_learner = np.repeat(np.arange(n, dtype=np.int32), n_app)
    k = len(app_learner)
    # one uniform decides the domain: below the in-domain share, the learner's own;
    # above it, rescaled to a uniformly chosen domain
    share = m.in_domain_application_share
    u_dom = rng_apply.random(k, dtype=np.float32)
    target_dom = domain[app_learner].astype(np.int64)
    if share < 1:
        other = np.flatnonzero(u_dom >= share)
        pick = ((u_dom[other] - share) / (1.0 - share) * nd).astype(np.int64)
        target_dom[other] = np.minimum(pick, nd - 1)
    v_order, v_starts, v_counts = _group_index(vac.domain.astype(np.int64), nd)
    app_vac = _pick_in_group(v_order, v_starts, v_counts, target_dom, rng_apply.random(k))
    ok = app_vac >= 0
    app_vac, app_learner = app_vac[ok], app_learner[ok].astype(np.int64)

    # recruiter search within the vacancy's domain, weighted by visibility
    boost = vis.search_boost if vis.enabled else 0.0
    w = activity * (1.0 + boost * shared)
    cum = np.cumsum(w[domain_order], dtype=np.float64)
    ends = np.r_[domain_starts[1:], n]
    lo = np.where(domain_starts > 0, cum[np.maximum(domain_starts - 1, 0)], 0.0)
    hi = np.where(ends > 0, cum[np.maximum(ends - 1, 0)], 0.0)
    n_src = rng_source.poisson(m.sourced_per_vacancy, n_vac)
    src_vac = np.repeat(np.arange(n_vac, dtype=np.int64), n_src)
    d = vac.domain[src_vac].astype(np.int64)
    u = lo[d] + rng_source.random(len(d)) * (hi[d] - lo[d])
    pos = np.minimum(np.searchsorted(cum, u, side="right"), n - 1)
    src_learner = domain_order[pos].astype(np.int64)
    has_dom = hi[d] > lo[d]
    src_vac, src_learner = src_vac[has_dom], src_learner[has_dom]
    looked = shared[src_learner] & (rng_source.random(len(src_learner)) < vis.recruiter_view_prob)
    sourced_views = np.bincount(src_learner[looked], minlength=n).astype(np.int32)
    state.views += sourced_views

    # employers who looked at a new share consider the learner for one open vacancy
    if vis.enabled and len(seen.look_employer) and n_vac:
        e_order, e_starts, e_counts = _group_index(
            vac.employer.astype(np.int64), len(market.employers)
        )
        feed_vac = _pick_in_group(
            e_order,
            e_starts,
            e_counts,
            seen.look_employer,
            rng_source.random(len(seen.look_employer)),
        )
        ok = feed_vac >= 0
        feed_vac, feed_learner = feed_vac[ok], seen.look_learner[ok].astype(np.int64)
    else:
        feed_vac = feed_learner = np.empty(0, np.int64)

    available = searching(scn, week, state)
    if available is not None:
        app_vac, app_learner = _keep(available[app_learner], app_vac, app_learner)
        src_vac, src_learner = _keep(available[src_learner], src_vac, src_learner)
        feed_vac, feed_learner = _keep(available[feed_learner], feed_vac, feed_learner)
    return Candidates(
        vacancy=np.concatenate([app_vac, src_vac, feed_vac]),
        learner=np.concatenate([app_learner, src_learner, feed_learner]),
        n_applications=len(app_vac),
        n_sourced=len(src_vac),
        n_feed=len(feed_vac),
        sourced_views=sourced_views,
    )


def _keep(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(a[mask] for a in arrays)


# ---- phase 4 ------------------------------------------------------------------------


def posterior_mean(scn: Scenario, idx: np.ndarray, pop: Learners, shared: np.ndarray) -> np.ndarray:
    """An employer's posterior mean of skill for learners ``idx`` (normal-normal).

    ``(tau_p * mu + tau_c * s) / (tau_p + tau_c)`` with ``tau_c = credibility *
    signal_precision`` when the credential is shared and the signal channel is on, else
    the prior mean ``mu``.
    """
    sg = scn.signal
    if not sg.enabled or sg.credibility == 0:
        return pop.prior_mean[idx].astype(np.float64)
    # every learner's belief (contiguous arrays), then one gather: cheaper than five
    # gathers when ``idx`` is most of the population
    mu = pop.prior_mean.astype(np.float64)
    tp = pop.prior_precision
    tc = np.where(shared, sg.credibility * pop.signal_precision, 0.0)
    return ((tp * mu + tc * pop.signal) / (tp + tc))[idx]


@dataclass
class Hires:
    """Phase 4's outcome for the week."""

    vacancy: np.ndarray  # positions of vacancies filled by learners
    learner: np.ndarray  # the learner hired into each
    background: np.ndarray  # positions of vacancies filled from the background pool
    n_candidates: int

    def filled(self, n_vacancies: int) -> np.ndarray:
        """Boolean mask of the vacancies filled this week (by anyone)."""
        out = np.zeros(n_vacancies, bool)
        out[self.vacancy] = True
        out[self.background] = True
        return out


def choose(
    scn: Scenario,
    vacancy: np.ndarray,
    learner: np.ndarray,
    belief: np.ndarray,
    n_vacancies: int,
    rng: np.random.Generator,
) -> Hires:
    """The hiring rule: fill each vacancy with its best candidate above the bar, if any.

    The candidate pairs are distinct and sorted by vacancy (:func:`unique_pairs`);
    ``belief`` is the employer's posterior mean of each pair's learner. Per vacancy: the
    best learner candidate (belief + fit noise), the best background applicant, and the
    bar; the best candidate above the bar is hired. A learner with several offers takes
    the one with the highest score; each vacancy is filled at most once.
    """
    m = scn.market
    score = belief + m.fit_noise_sd * rng.standard_normal(len(vacancy), dtype=np.float32)

    # best learner per vacancy: pairs come in vacancy blocks, so the first pair of a
    # block that reaches the block's maximum (ties have probability zero)
    best = np.full(n_vacancies, -np.inf)
    starts = (
        np.flatnonzero(np.r_[True, vacancy[1:] != vacancy[:-1]])
        if len(vacancy)
        else np.empty(0, np.int64)
    )
    best[vacancy[starts]] = np.maximum.reduceat(score, starts) if len(starts) else best[:0]
    cand_pos = np.flatnonzero(score >= best[vacancy])
    first = (
        np.r_[True, vacancy[cand_pos][1:] != vacancy[cand_pos][:-1]]
        if len(cand_pos)
        else np.empty(0, bool)
    )
    best_pair = np.full(n_vacancies, -1, dtype=np.int64)
    best_pair[vacancy[cand_pos[first]]] = cand_pos[first]

    # best of Poisson(K) background applicants, drawn directly as a maximum
    k = rng.poisson(m.background_applicants, n_vacancies)
    u = rng.random(n_vacancies)
    sd = np.hypot(m.background_skill_sd, m.fit_noise_sd)
    with np.errstate(divide="ignore"):
        bg = np.where(
            k > 0, m.background_skill_mean + sd * ndtri(u ** (1.0 / np.maximum(k, 1))), -np.inf
        )
    learner_wins = (best > bg) & (best >= m.hiring_bar)
    background_wins = (bg >= best) & (bg >= m.hiring_bar)

    offer_vac = np.flatnonzero(learner_wins)
    offer_pair = best_pair[offer_vac]
    offer_lrn = learner[offer_pair]
    offer_score = score[offer_pair]
    # each learner accepts the best of its offers
    order = np.lexsort((-offer_score, offer_lrn))
    first_of_learner = np.r_[True, np.diff(offer_lrn[order]) != 0] if len(order) else order
    take = order[first_of_learner.astype(bool)] if len(order) else order
    return Hires(
        vacancy=offer_vac[take],
        learner=offer_lrn[take],
        background=np.flatnonzero(background_wins),
        n_candidates=len(vacancy),
    )


def screen_and_hire(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
    market: Market,
    cand: Candidates,
    rng: np.random.Generator,
) -> Hires:
    """Phase 4, screening and hiring: employers' beliefs (:func:`posterior_mean`), the
    hiring rule (:func:`choose`), and the hired learners' new jobs.

    A hired learner is employed from this week at the vacancy's employer; the job is a
    *new job* for the study if it starts at least ``calendar.new_job_min_weeks`` after the
    learner's credential was granted (``first_job_week``, and ``first_scope_job_week``
    for a vacancy in scope).
    """
    vacancy, learner = unique_pairs(cand.vacancy, cand.learner)  # one application counts once
    belief = posterior_mean(scn, learner, pop, state.shared)
    hires = choose(scn, vacancy, learner, belief, len(market.vacancies), rng)
    i, vac = hires.learner, market.vacancies
    in_scope = vac.in_scope[hires.vacancy]
    state.employed[i] = True
    state.job_employer[i] = vac.employer[hires.vacancy]
    state.job_in_scope[i] = in_scope
    state.jobs_started[i] += 1
    state.last_hire_week[i] = week
    counts = (week - pop.grant_week[i]) >= scn.calendar.new_job_min_weeks
    _first(state.first_job_week, i[counts], week)
    _first(state.first_scope_job_week, i[counts & in_scope], week)
    return hires


def _first(weeks: np.ndarray, idx: np.ndarray, week: int) -> None:
    """Set ``weeks[idx] = week`` where no week is set yet."""
    weeks[idx[weeks[idx] == NO_WEEK]] = week


# ---- phase 5 ------------------------------------------------------------------------


@dataclass
class Flow:
    """Phase 5's outcome for the week."""

    separated: np.ndarray  # bool per learner: job ended
    n_posted: int
    n_expired: int


def report_new_jobs(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
    market: Market,
    hires: Hires,
    rng: np.random.Generator,
) -> None:
    """Phase 5, reporting: a new job that counts is put on the profile with probability
    ``report_prob`` after an exponential lag of mean ``report_lag_weeks``; the study sees
    it if the report comes by the collection date (``seen_job_week``,
    ``seen_scope_job_week``). Each learner's draws are a function of the week's key and
    the learner alone (:func:`hashed_uniform`), so twin worlds agree on them learner by
    learner (common random numbers) at the cost of the hires only."""
    mk, cal = scn.market, scn.calendar
    i = hires.learner
    in_scope = market.vacancies.in_scope[hires.vacancy]
    counts = (week - pop.grant_week[i]) >= cal.new_job_min_weeks
    keys = rng.integers(0, 2**63, size=2, dtype=np.uint64)
    reported_u, lag_u = hashed_uniform(keys[0], i), hashed_uniform(keys[1], i)
    lag = -mk.report_lag_weeks * np.log1p(-lag_u)
    seen = counts & (reported_u < mk.report_prob) & (week + lag <= cal.n_weeks)
    _first(state.seen_job_week, i[seen], week)
    _first(state.seen_scope_job_week, i[seen & in_scope], week)


def flows(
    scn: Scenario,
    week: int,
    state: LearnerState,
    market: Market,
    hires: Hires,
    rng_sep: np.random.Generator,
    rng_vac: np.random.Generator,
) -> Flow:
    """Phase 5, flows: separations, vacancy expiry and arrival; updates ``state`` and
    ``market``.

    A job held at the start of the week (not one started this week) ends with probability
    ``1 - exp(-separation_rate_per_year / 52)``. An unfilled vacancy expires with
    probability ``1 / vacancy_duration_weeks``. ``Poisson(vacancies_per_1000 * n / 1000)``
    vacancies arrive (:meth:`Market.post`).
    """
    m = scn.market
    n = len(state.employed)
    hired = np.zeros(n, bool)
    hired[hires.learner] = True
    p_sep = -np.expm1(-m.separation_rate_per_year / 52.0)
    separated = state.employed & ~hired & (rng_sep.random(n, dtype=np.float32) < p_sep)
    state.employed &= ~separated
    vac = market.vacancies
    filled = hires.filled(len(vac))
    expire = rng_vac.random(len(vac)) < 1.0 / m.vacancy_duration_weeks
    k = rng_vac.poisson(m.vacancies_per_1000 * n / 1000.0)
    new = market.post(scn, k, week, rng_vac)
    market.vacancies = vac.keep(~filled & ~expire).extend(new)
    return Flow(separated, k, int((~filled & expire).sum()))
