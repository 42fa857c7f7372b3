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

The market (MODEL.md, "The market must be believable")
-----------------------------------------------------

* **Open and segmented.** A segment is a domain x country group (developed,
  developing). Learners are ``market.learner_share`` of the job seekers of their segment;
  the rest are *background* seekers, who are not agents: they send ``(1 - s) / s`` times
  the learners' expected applications (fixed when the market opens) and carry the same
  share of recruiters' search weight. Each segment holds a steady stock of open
  vacancies, sized so that a vacancy is filled from the background with the steady-state
  probability ``vacancy_fill_share / vacancy_duration_weeks`` a week; a vacancy is a
  numbered *slot*, slots are laid out by employer in proportion to size, and a fixed
  hash of the slot decides whether its title is in scope. Most vacancies never see a
  learner and are filled, or withdrawn, as binomial counts per segment; the vacancies
  learners apply to are screened candidate by candidate against the best of their
  ``Poisson(a)`` background applicants. Crowding out among learners therefore grows with
  their share of the market, which a scenario sets.
* **Search status.** Employed learners search on the job at ``applications_employed``;
  a non-employed learner searches at ``applications_unemployed`` if attached to the
  labour force and at ``applications_marginal`` if marginally attached (a trait:
  :mod:`sim.population`). Recruiters also find passive candidates, employed or not.
* **A job ladder.** Every offer carries a match quality ``q ~ U(0, 1)``; an employed
  learner takes an offer only if ``q`` beats its current job's, so job-to-job moves have
  a reason and slow down as a worker climbs. A new hire does not search for its first
  ``settling_in_weeks`` (the hazard of a new job ending rises over its first months), so
  a fresh hire's low rung does not turn into a second move within weeks. Jobs end in
  non-employment at ``separation_rate_per_year``.
* **Rational employers.** An employer's prior about a candidate is the mean skill of job
  seekers with the same record (learners are a small share of them, so it is the
  non-completers' mean). A visible credential first tells it that the course was
  completed, which is worth ``course_skill_gain`` (the *news of completion*), then its
  content revises the belief, up or down, with the weight ``credibility`` times the
  signal's true precision (1: Bayesian). The prior is tight for a thick record and
  loose for a thin one, so the same credential moves beliefs most where records are
  thin; nothing is set per group. Course skills are tech and managerial skills: an
  employer hiring for a title out of scope reads the credential with relevance
  ``out_of_scope_relevance`` (0: not at all), which scales both parts.
* **Steady state.** Attachment, baseline employment and baseline match quality are
  drawn from the steady state of the targeted flows (:mod:`sim.population`) and the
  vacancy stock is steady, so the calibrated market's flows are flat over the study;
  :mod:`sim.flows` measures them.

Other choices MODEL.md leaves open, written down here:

* A notification reaches a treated learner who has opened the app, in the week of
  opening and again ``second_notification_weeks`` later if the first did not lead to
  sharing. It shares with probability ``1 - exp(-nudge_strength * activity**e)``, on top
  of the ordinary hazard.
* The feed: a new share is seen by each learner neighbour and each linked employer with
  probability ``feed_see_prob``; a learner who sees it opens the certificate (a view) with
  ``click_prob`` and reshares with ``reshare_prob`` to its own neighbours (one more hop);
  an employer who sees it looks (a view) with ``employer_look_prob`` and, when the
  visibility channel is on, considers the learner for one of its open vacancies.
* Recruiter search: the weight of a learner is ``activity``, and
  ``activity * (1 + search_boost * shared)`` for a recruiter of an in-scope title (no
  boost when the visibility channel is off). A recruiter who finds a learner with a
  shared credential opens it (a view) with probability ``recruiter_view_prob``.
* Screening: the candidate's score is the posterior mean plus an idiosyncratic fit
  ``N(0, fit_noise_sd)``; background applicants' scores are
  ``N(background_skill_mean, background_skill_sd)`` plus fit. The best candidate whose
  score clears ``hiring_bar`` gets the offer; a learner with several offers considers
  the best match.
* Visibility off means sharing changes no employer's candidate set; certificate views are
  still counted (they measure exposure, not hiring). Signal off means employers never
  read the credential (neither the fact of completion nor its content); credibility 0
  keeps the news of completion and drops the content.
* Common random numbers: the draws of single applications, fits, match qualities,
  background competition and reports are hashes of (week key, learner, vacancy)
  (:func:`hashed_uniform`), so twin worlds agree on them wherever their candidates agree.
  Recruiter search is not hashed: a shared credential changes the search weights, and
  with them which learners are found.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri, pdtr

from sim.network import ProfessionalGraph, run_both
from sim.params import DOMAINS, Scenario
from sim.population import Employers, Learners

__all__ = [
    "NO_WEEK",
    "N_SEGMENTS",
    "Candidates",
    "Flow",
    "Hires",
    "LearnerState",
    "Market",
    "Seen",
    "app_open_weeks",
    "choose",
    "expand_csr",
    "flows",
    "hashed_uniform",
    "match_quality",
    "poisson_nonzero_by",
    "poisson_quantile",
    "posterior_mean",
    "report_new_jobs",
    "screen_and_hire",
    "search_and_apply",
    "share",
    "slots_by_scope",
    "status_counts",
    "unique_pairs",
    "visibility",
]


#: Marker for "never" in week-valued arrays.
NO_WEEK = np.iinfo(np.int16).min


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


def _degree(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Row lengths of a CSR matrix at ``rows`` (without differencing all of ``indptr``)."""
    return indptr[rows + 1] - indptr[rows]


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
    match: np.ndarray  # float32: match quality of the job held (its rung on the ladder)

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
            match=np.where(pop.employed0, pop.match0, 0.0).astype(np.float32),
        )


#: Segments of the labour market: domain x country group (developed 0, developing 1).
N_SEGMENTS = 2 * len(DOMAINS)


def segment_of(domain: np.ndarray, developing: np.ndarray) -> np.ndarray:
    """The market segment of a domain and country group: ``2 * domain + developing``."""
    return (domain.astype(np.int64) * 2 + developing).astype(np.int8)


def weekly_prob(rate_per_year: float) -> float:
    """A yearly Poisson rate as a weekly probability."""
    return float(-np.expm1(-rate_per_year / 52.0))


def background_win_prob(scn: Scenario) -> float:
    """Chance that one background applicant's score (perceived skill + fit) clears the
    hiring bar."""
    m = scn.market
    sd = math.hypot(m.background_skill_sd, m.fit_noise_sd)
    return float(ndtr((m.background_skill_mean - m.hiring_bar) / sd))


def vacancy_rates(scn: Scenario) -> tuple[float, float]:
    """Weekly probabilities that an open vacancy is filled, and that it is withdrawn, in
    the steady state (``vacancy_fill_share`` of ``1 / vacancy_duration_weeks``)."""
    m = scn.market
    exit_rate = 1.0 / m.vacancy_duration_weeks
    return m.vacancy_fill_share * exit_rate, (1.0 - m.vacancy_fill_share) * exit_rate


def application_rates(scn: Scenario) -> np.ndarray:
    """Weekly applications by search status: employed, attached non-employed (unemployed),
    marginally attached non-employed (index :func:`search_status`)."""
    m = scn.market
    return np.array([m.applications_employed, m.applications_unemployed, m.applications_marginal])


def search_status(employed: np.ndarray, attached: np.ndarray) -> np.ndarray:
    """0 employed, 1 unemployed (attached, not employed), 2 marginal (not employed)."""
    return (~employed).view(np.int8) * (2 - attached.view(np.int8))


def status_counts(employed: np.ndarray, attached: np.ndarray) -> np.ndarray:
    """How many learners have each :func:`search_status` (its bincount, without the
    per-learner codes)."""
    n_employed = np.count_nonzero(employed)
    n_unemployed = np.count_nonzero(attached) - np.count_nonzero(attached & employed)
    return np.array([n_employed, n_unemployed, len(employed) - n_employed - n_unemployed])


@dataclass
class Market:
    """The employer side of an open, segmented market.

    Each segment (domain x country group) holds a steady stock of open vacancies
    (``stock``); a vacancy is a *slot*, numbered globally, and slots are laid out by
    employer in proportion to employer size, so a slot has an employer and (by a fixed
    hash) a title in or out of scope. Background job seekers are not agents: in each
    segment they send ``bg_applicants`` applications per vacancy and week and carry
    ``bg_search_weight`` of the recruiters' search weight; both are fixed when the market
    opens, from the learners' share of the segment's job seekers.
    """

    employers: Employers
    stock: np.ndarray  # int64 per segment: open vacancies
    slot_start: np.ndarray  # int64, len N_SEGMENTS + 1: first slot of each segment
    slot_employer: np.ndarray  # int32 employer ids in slot order (by segment, then id)
    slot_employer_end: np.ndarray  # int64: end slot (exclusive) of each of them
    employer_slots: np.ndarray  # int64 per employer: (first slot, slot count) rows
    bg_applicants: np.ndarray  # float per segment: background applicants / vacancy / week
    bg_search_weight: np.ndarray  # float per segment: background weight in recruiter search
    learner_segment: np.ndarray  # int8 per learner
    seg_order: np.ndarray  # learners sorted by segment (stable)
    seg_starts: np.ndarray  # where each segment's block starts in seg_order
    scope_key: np.uint64  # hash key of the slots' in-scope titles
    activity_ord: np.ndarray  # float64 activity of the learners in seg_order
    activity_cum: np.ndarray  # its running sum
    scope_slots: tuple[np.ndarray, np.ndarray]  # in-scope slots by segment, segment starts
    other_slots: tuple[np.ndarray, np.ndarray]  # the same, out of scope
    _boosted: tuple[float, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(
        cls, scn: Scenario, pop: Learners, employers: Employers, rng: np.random.Generator
    ) -> Market:
        """The steady-state market for ``pop``: see the module docstring, "The market"."""
        m = scn.market
        seg = segment_of(pop.domain, pop.developing)
        n_lrn = np.bincount(seg, minlength=N_SEGMENTS)
        # learners' expected weekly applications, by segment, at their starting status
        rate = application_rates(scn)[search_status(pop.employed0, pop.attached)]
        learner_apps = np.bincount(seg, weights=rate, minlength=N_SEGMENTS)
        odds = (1.0 - m.learner_share) / m.learner_share  # background per learner
        bg_apps = odds * learner_apps
        p_fill, _ = vacancy_rates(scn)
        q = background_win_prob(scn)
        per_vacancy = -math.log1p(-p_fill) / max(q, 1e-12)  # fills a vacancy at p_fill
        stock = np.where(n_lrn > 0, np.maximum(1, np.round(bg_apps / per_vacancy)), 0)
        stock = stock.astype(np.int64)
        bg_per_vacancy = np.where(stock > 0, bg_apps / np.maximum(stock, 1), 0.0)
        bg_weight = odds * np.bincount(seg, weights=pop.activity, minlength=N_SEGMENTS)

        # slots by employer within each segment, in proportion to size (a segment with
        # no employer of its own, possible with a user's graph, borrows its domain's
        # employers, or all of them)
        e_seg = segment_of(employers.domain, employers.developing)
        slot_start = np.r_[0, np.cumsum(stock)].astype(np.int64)
        slot_employer, slot_end = [], []
        employer_slots = np.zeros((len(e_seg), 2), np.int64)
        for g in range(N_SEGMENTS):
            members = np.flatnonzero(e_seg == g)
            own = len(members) > 0
            if not own:
                members = np.flatnonzero(employers.domain == g // 2)
            if len(members) == 0:
                members = np.arange(len(e_seg))
            cum = np.cumsum(employers.size[members])
            e = slot_start[g] + np.floor(cum / cum[-1] * stock[g] + 1e-9).astype(np.int64)
            e[-1] = slot_start[g + 1]
            if own:
                employer_slots[members, 0] = np.r_[slot_start[g], e[:-1]]
                employer_slots[members, 1] = e - np.r_[slot_start[g], e[:-1]]
            slot_employer.append(members)
            slot_end.append(e)
        counts = n_lrn
        order = np.argsort(seg, kind="stable")
        scope_key = np.uint64(rng.integers(0, 2**63))
        scope_slots, other_slots = slots_by_scope(scope_key, stock, m.in_scope_share)
        return cls(
            employers=employers,
            stock=stock,
            slot_start=slot_start,
            slot_employer=np.concatenate(slot_employer).astype(np.int32),
            slot_employer_end=np.concatenate(slot_end),
            employer_slots=employer_slots,
            bg_applicants=bg_per_vacancy,
            bg_search_weight=bg_weight,
            learner_segment=seg,
            seg_order=order,
            seg_starts=np.cumsum(counts) - counts,
            scope_key=scope_key,
            activity_ord=pop.activity[order].astype(np.float64),
            activity_cum=np.cumsum(pop.activity[order], dtype=np.float64),
            scope_slots=scope_slots,
            other_slots=other_slots,
        )

    def boosted_cum(self, boost: float, shared: np.ndarray) -> np.ndarray:
        """Running sum, in ``seg_order``, of ``activity * (1 + boost * shared)``."""
        if self._boosted is None or self._boosted[0] != boost:
            self._boosted = (boost, self.activity_ord * (1.0 + boost))
        return np.cumsum(np.where(shared[self.seg_order], self._boosted[1], self.activity_ord))

    @property
    def n_slots(self) -> int:
        return int(self.slot_start[-1])

    def employer_of(self, slot: np.ndarray) -> np.ndarray:
        """Employer of each slot."""
        pos = np.searchsorted(self.slot_employer_end, slot, side="right")
        return self.slot_employer[np.minimum(pos, len(self.slot_employer) - 1)]

    def segment_of_slot(self, slot: np.ndarray) -> np.ndarray:
        return (np.searchsorted(self.slot_start, slot, side="right") - 1).astype(np.int64)

    def in_scope(self, scn: Scenario, slot: np.ndarray) -> np.ndarray:
        """Whether each slot's title is in scope (tech or managerial): a fixed hash of the
        slot below ``in_scope_share``."""
        return hashed_uniform(self.scope_key, slot) < scn.market.in_scope_share


def slots_by_scope(
    scope_key: np.uint64, stock: np.ndarray, in_scope_share: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The in-scope and the out-of-scope slots (:meth:`Market.in_scope`), each as the
    slots in segment order and the start of each segment's block (``N_SEGMENTS + 1``)."""
    slots = np.arange(int(np.sum(stock)), dtype=np.int64)
    scope = hashed_uniform(scope_key, slots) < in_scope_share
    slot_seg = np.repeat(np.arange(N_SEGMENTS), stock)

    def by_segment(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.bincount(slot_seg[mask], minlength=N_SEGMENTS)
        return slots[mask], np.r_[0, np.cumsum(n)].astype(np.int64)

    return by_segment(scope), by_segment(~scope)


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
    # Sharing is rare, so most learners are settled by one comparison first: outside a
    # notification week no hazard exceeds its value at grant times the two-click
    # multiplier (a margin covers float32 rounding); only those below it and the
    # notified go through the rule itself, which gives the same sharers as all would.
    x = pop.activity
    if s.activity_elasticity != 1.0:
        x = x ** np.float32(s.activity_elasticity)
    peak = (s.hazard_floor + s.hazard_at_grant) * max(s.two_click_multiplier, 1.0)
    maybe = u < np.minimum(np.float32(peak * (1 + 1e-5)) * x, s.max_hazard) + np.float32(1e-6)
    opens = state.app_open_week
    notify = (
        treated & (opens >= 0) & ((week == opens) | (week == opens + s.second_notification_weeks))
    )
    idx = np.flatnonzero(~state.shared & (pop.grant_week <= week) & (maybe | notify))
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
    # views are rare: settle most learners by comparing with the largest rate first
    top = min(max(v.shared_view_rate, v.unshared_view_rate) * float(activity.max(initial=0.0)), 1.0)
    i = np.flatnonzero(u_view < top)
    rate = np.where(shared[i], v.shared_view_rate, v.unshared_view_rate) * activity[i]
    views = np.zeros(n, np.int32)
    views[i[(grant_week[i] <= week) & (u_view[i] < np.minimum(rate, 1.0))]] = 1
    own_views = np.zeros(n, np.int32)
    i = np.flatnonzero(u_own < v.own_view_rate)
    own_views[i[grant_week[i] <= week]] = 1

    src, nb = expand_csr(graph.ll_indptr, graph.ll_indices, new_sharers)
    sees = rng.random(len(nb)) < p_see
    src, nb = src[sees], nb[sees]
    clicks = rng.random(len(nb)) < v.click_prob
    reshare = rng.random(len(nb)) < v.reshare_prob
    # second hop: neighbours of resharers see the original sharer's post
    rs_origin = src[reshare]
    _, hop_nb = expand_csr(graph.ll_indptr, graph.ll_indices, nb[reshare])
    origin2 = np.repeat(rs_origin, _degree(graph.ll_indptr, nb[reshare]))
    keep = (hop_nb != origin2) & (rng.random(len(hop_nb)) < p_see)
    origin2 = origin2[keep]
    clicks2 = rng.random(len(origin2)) < v.click_prob
    np.add.at(views, src[clicks], 1)  # few entries: cheaper than a full-length bincount
    np.add.at(views, origin2[clicks2], 1)

    # employers among first- and second-degree contacts (via resharers)
    seeds = np.concatenate([new_sharers, nb[reshare]])
    origin = np.concatenate([new_sharers, rs_origin])
    _, emp = expand_csr(graph.le_indptr, graph.le_indices, seeds)
    e_origin = np.repeat(origin, _degree(graph.le_indptr, seeds))
    looks = rng.random(len(emp)) < p_see * v.employer_look_prob
    look_employer, look_learner = emp[looks], e_origin[looks]
    np.add.at(views, look_learner, 1)
    state.views += views
    state.own_views += own_views
    return Seen(views, own_views, look_employer.astype(np.int64), look_learner)


# ---- phase 3 ------------------------------------------------------------------------


@dataclass
class Candidates:
    """(vacancy position, learner) pairs, with where they came from."""

    vacancy: np.ndarray  # int64, vacancy slot (see Market)
    learner: np.ndarray  # int64
    n_applications: int
    n_sourced: int
    n_feed: int
    sourced_views: np.ndarray  # learners whose shared credential a recruiter opened (one per look)
    match_key: int = 0  # hash key of the week's match qualities (a uint64)


def match_quality(key: np.uint64, vacancy: np.ndarray, learner: np.ndarray) -> np.ndarray:
    """The match quality ``q ~ U(0, 1)`` of a learner at a vacancy this week: a hash of the
    week's key, the vacancy and the learner (the same in twin worlds)."""
    pair = learner.astype(np.uint64) * np.uint64(1 << 32) + vacancy.astype(np.uint64)
    return hashed_uniform(key, pair)


def _worth_moving(
    key: np.uint64,
    state: LearnerState,
    vacancy: np.ndarray,
    learner: np.ndarray,
    week: int = 0,
    settling_in_weeks: int = 0,
) -> np.ndarray:
    """Which candidacies a learner would take the job of: all for the non-employed; for
    the employed, those whose match quality beats the current job's, once the job is
    ``settling_in_weeks`` old (a new hire does not look yet)."""
    keep = np.ones(len(learner), bool)
    emp = np.flatnonzero(state.employed[learner])
    if settling_in_weeks and len(emp):
        settling = week - state.last_hire_week[learner[emp]].astype(np.int64) < settling_in_weeks
        keep[emp[settling]] = False
        emp = emp[~settling]
    if len(emp):
        who = learner[emp]
        keep[emp] = match_quality(key, vacancy[emp], who) > state.match[who]
    return keep


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


def search_and_apply(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
    market: Market,
    seen: Seen,
    rng_apply: np.random.Generator,
    rng_source: np.random.Generator,
    pool: Executor | None = None,
) -> Candidates:
    """Phase 3, search and applications: who is considered for which vacancy (slot).

    Applications: each learner sends ``Poisson(r)`` applications a week, ``r`` by search
    status (:func:`search_status`: ``applications_employed``, ``_unemployed`` or
    ``_marginal``); each goes to a uniformly chosen open vacancy of the learner's segment
    with probability ``in_domain_application_share``, else of another domain of the
    learner's country group. Recruiter search: each open vacancy finds
    ``Poisson(sourced_per_vacancy)`` profiles of its segment, learners or background
    workers, with probability proportional to ``activity`` (background workers carry a
    fixed weight); a recruiter for an in-scope title searches for course skills, so
    there the weight is ``activity * (1 + search_boost * shared)``. Learners are found
    ``Poisson(stock * sourced * W_L / (W_L + W_B))`` times per segment, scope and week (no
    boost when the visibility channel is off). A recruiter who finds a shared credential opens
    it with ``recruiter_view_prob`` (a view, added to ``state``). Employers that looked at
    a new share in the feed consider the learner for one of their open vacancies
    (visibility channel only). Employed learners are candidates too (on-the-job search
    and passive candidates), but only for vacancies whose match quality
    (:func:`match_quality`) beats their current job's: they see it before they apply or
    answer a recruiter (directed on-the-job search on the job ladder), and not before
    their job is ``settling_in_weeks`` old.

    Learners' applications and recruiters' search draw from their own streams and touch
    different parts of ``state`` (only the search adds views), so with ``pool`` (an
    executor with a free worker) recruiters search there while learners apply and weigh
    their applications' matches, on another core: the result is the same either way.
    """
    settling = scn.market.settling_in_weeks

    def worth_it(vacancy: np.ndarray, learner: np.ndarray, key: np.uint64):
        """Directed on-the-job search: an employed learner sees a vacancy's match before
        it applies or answers a recruiter, and only a better match is worth it."""
        keep = _worth_moving(key, state, vacancy, learner, week, settling)
        return vacancy[keep], learner[keep]

    def apply() -> tuple[tuple[np.ndarray, np.ndarray], np.uint64]:
        vacancy, learner, key = _applications(scn, pop, state, market, rng_apply)
        return worth_it(vacancy, learner, key), key

    found, (applied, key) = run_both(
        pool, lambda: _recruiters(scn, state, market, seen, rng_source), apply
    )
    src_vac, src_learner, feed_vac, feed_learner, views = found
    groups = [applied, worth_it(src_vac, src_learner, key), worth_it(feed_vac, feed_learner, key)]
    return Candidates(
        vacancy=np.concatenate([g[0] for g in groups]),
        learner=np.concatenate([g[1] for g in groups]),
        n_applications=len(groups[0][0]),
        n_sourced=len(groups[1][0]),
        n_feed=len(groups[2][0]),
        sourced_views=views,
        match_key=int(key),
    )


def _applications(
    scn: Scenario, pop: Learners, state: LearnerState, market: Market, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.uint64]:
    """The week's applications (:func:`search_and_apply`): their vacancies and learners,
    and the hash key of the week's match qualities."""
    m = scn.market
    seg = market.learner_segment
    n = len(state.shared)
    # applications: per-learner counts from one fixed-size draw (common random numbers)
    u_app = rng.random(n, dtype=np.float32)
    status = search_status(state.employed, pop.attached)
    senders, count = poisson_nonzero_by(application_rates(scn), status, u_app)
    app_learner = np.repeat(senders, count)
    k = len(app_learner)
    # each application's draws are a hash of (week key, learner, its number): a learner
    # whose count differs between twin worlds shifts nobody else's draws
    first = np.cumsum(count, dtype=np.int64) - count
    nth = np.arange(k, dtype=np.int64) - np.repeat(first, count)
    app_key = app_learner.astype(np.uint64) * np.uint64(1 << 16) + nth.astype(np.uint64)
    # keys of the week's hashes, drawn before any draw whose count depends on the state:
    # the application targets (2) and the match qualities (1), the same in twin worlds
    keys = rng.integers(0, 2**63, size=3, dtype=np.uint64)
    u_dom = hashed_uniform(keys[0], app_key)
    u_slot = hashed_uniform(keys[1], app_key)
    target = seg[app_learner].astype(np.int64)
    share = m.in_domain_application_share
    if share < 1:
        # above the in-domain share: one of the other domains of the country group
        other = np.flatnonzero(u_dom >= share)
        shift = 1 + ((u_dom[other] - share) / (1.0 - share) * (len(DOMAINS) - 1)).astype(np.int64)
        shift = np.minimum(shift, len(DOMAINS) - 1)
        dom = (target[other] // 2 + shift) % len(DOMAINS)
        target[other] = dom * 2 + target[other] % 2
    stock = market.stock[target]
    ok = stock > 0
    app_vac = market.slot_start[target[ok]] + (u_slot[ok] * stock[ok]).astype(np.int64)
    return app_vac, app_learner[ok], keys[2]


def _recruiters(
    scn: Scenario, state: LearnerState, market: Market, seen: Seen, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Recruiters' search and the feed's considerations (:func:`search_and_apply`): the
    sourced (vacancy, learner) pairs, the feed's pairs, and the learners whose shared
    credential a recruiter opened (a view each, added to ``state``)."""
    m, vis = scn.market, scn.visibility
    shared = state.shared
    # recruiters of in-scope titles search for course skills, so a shared credential
    # raises a learner's weight there
    boost = vis.search_boost if vis.enabled else 0.0
    cum_in = market.boosted_cum(boost, shared) if boost else None
    src_vac, src_learner = [], []
    for cum, (slots, sstart) in (
        (market.activity_cum if cum_in is None else cum_in, market.scope_slots),
        (market.activity_cum, market.other_slots),
    ):
        vac, lrn = _source(m.sourced_per_vacancy, market, cum, slots, sstart, rng)
        src_vac.append(vac)
        src_learner.append(lrn)
    src_vac, src_learner = np.concatenate(src_vac), np.concatenate(src_learner)
    looked = shared[src_learner] & (rng.random(len(src_learner)) < vis.recruiter_view_prob)
    sourced_views = src_learner[looked]
    np.add.at(state.views, sourced_views, 1)

    # employers who looked at a new share consider the learner for one open vacancy
    if vis.enabled and len(seen.look_employer):
        first, count = market.employer_slots[seen.look_employer].T
        u_feed = rng.random(len(first))
        ok = count > 0
        feed_vac = first[ok] + np.minimum((u_feed[ok] * count[ok]).astype(np.int64), count[ok] - 1)
        feed_learner = seen.look_learner[ok].astype(np.int64)
    else:
        feed_vac = feed_learner = np.empty(0, np.int64)
    return src_vac, src_learner, feed_vac, feed_learner, sourced_views


def _source(
    per_vacancy: float,
    market: Market,
    cum: np.ndarray,
    slots: np.ndarray,
    slot_starts: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Recruiter search at the vacancies ``slots`` (grouped by segment at
    ``slot_starts``): each finds ``Poisson(per_vacancy)`` profiles of its segment with
    probability proportional to the weights whose running sum, in ``market.seg_order``,
    is ``cum``; returns the (vacancy, learner) pairs of the learners found."""
    n = len(cum)
    starts = market.seg_starts
    ends = np.r_[starts[1:], n]
    lo = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    hi = np.where(ends > 0, cum[np.maximum(ends - 1, 0)], 0.0)
    w_learners = hi - lo
    stock = np.diff(slot_starts)
    expected = (
        stock * per_vacancy * w_learners / np.maximum(w_learners + market.bg_search_weight, 1e-300)
    )
    n_src = rng.poisson(expected)
    d = np.repeat(np.arange(N_SEGMENTS, dtype=np.int64), n_src)
    u = lo[d] + rng.random(len(d)) * (hi[d] - lo[d])
    # searched in ascending order, the needles walk the running sum once: far fewer
    # cache misses than in the order drawn (the same positions)
    order = np.argsort(u)
    pos = np.empty(len(u), np.int64)
    pos[order] = np.minimum(np.searchsorted(cum, u[order], side="right"), n - 1)
    learner = market.seg_order[pos].astype(np.int64)
    vacancy = slots[slot_starts[d] + (rng.random(len(d)) * stock[d]).astype(np.int64)]
    return vacancy, learner


def poisson_nonzero_by(
    lams: np.ndarray, group: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero ``Poisson(lams[group[i]])`` draws by inversion (:func:`poisson_quantile`),
    one uniform each, so the count of ``i`` depends on its own uniform and rate only:
    the indices ``i`` with a nonzero count (ascending) and their counts. Most counts are
    zero (most learners send no application in a week), so those are settled with one
    comparison each, and only the rest are counted."""
    lams = np.asarray(lams, dtype=float)
    rest = np.flatnonzero(u >= np.exp(-lams).astype(np.float32).take(group))
    g = group[rest]
    count = np.zeros(len(rest), dtype=np.int16)
    for k, lam in enumerate(lams):
        at = np.flatnonzero(g == k)
        if len(at) and lam > 0:
            count[at] = poisson_quantile(float(lam), u[rest[at]])
    keep = count > 0  # a uniform at the float32 rounding of exp(-lam) still counts zero
    return rest[keep], count[keep]


# ---- phase 4 ------------------------------------------------------------------------


def posterior_mean(
    scn: Scenario,
    idx: np.ndarray,
    pop: Learners,
    shared: np.ndarray,
    in_scope: np.ndarray | None = None,
) -> np.ndarray:
    """An employer's posterior mean of skill for learners ``idx`` (normal-normal).

    Without a visible credential the employer knows the record only, and its prior mean
    is ``mu`` (the record's mean skill among all job seekers, of whom learners are a small
    share). A visible credential (shared, signal channel on) tells it that the course was
    completed, so its prior mean becomes ``mu + r * course_skill_gain`` (the *news of
    completion*); the credential's content ``s`` then revises it with weight
    ``tau_c = r * credibility * signal_precision``:
    ``(tau_p * (mu + r * gain) + tau_c * s) / (tau_p + tau_c)``. The relevance ``r`` of
    course skills to the title is 1 for a vacancy in scope and ``out_of_scope_relevance``
    for one out of scope (``in_scope``: per entry of ``idx``; ``None``: all in scope).
    """
    sg = scn.signal
    mu = pop.prior_mean[idx].astype(np.float64)
    if not sg.enabled:
        return mu
    sel = np.flatnonzero(shared[idx])
    j = idx[sel]
    r = 1.0 if in_scope is None else np.where(in_scope[sel], 1.0, sg.out_of_scope_relevance)
    tp = pop.prior_precision[j].astype(np.float64)
    tc = r * sg.credibility * pop.signal_precision[j].astype(np.float64)
    prior = mu[sel] + r * sg.course_skill_gain
    mu[sel] = (tp * prior + tc * pop.signal[j]) / (tp + tc)
    return mu


@dataclass
class Hires:
    """Phase 4's outcome for the week: learners' new jobs and vacancies filled."""

    vacancy: np.ndarray  # slots filled by learners
    learner: np.ndarray  # the learner hired into each
    employer: np.ndarray  # its employer
    in_scope: np.ndarray  # bool: the title is in scope
    job_to_job: np.ndarray  # bool: the learner was employed (a job-to-job move)
    status: np.ndarray  # int8: search status before the hire (see search_status)
    n_candidates: int
    n_offers: int  # offers made to learners (taken or not)
    n_touched: np.ndarray  # per segment: vacancies with at least one learner candidate
    background_touched: np.ndarray  # per segment: of those, filled from the background


def choose(
    scn: Scenario,
    vacancy: np.ndarray,
    learner: np.ndarray,
    belief: np.ndarray,
    bg_applicants: np.ndarray,
    rng: np.random.Generator,
):
    """The employers' rule at the vacancies with learner candidates: the best candidate
    above the bar gets the offer, if any.

    The pairs are distinct and sorted by vacancy (:func:`unique_pairs`); ``belief`` is
    the employer's posterior mean of each pair's learner and ``bg_applicants`` the mean
    number of background applicants at each pair's vacancy. Per vacancy: the best learner
    candidate (belief + fit noise ``N(0, fit_noise_sd)``), the best of
    ``Poisson(bg_applicants)`` background applicants (perceived skill + fit, drawn
    directly as a maximum, one uniform per vacancy), and the bar. Returns the positions of
    the vacancies' first pairs, the pair offered each vacancy (-1: none), whether the
    background filled it, and every pair's score.
    """
    # draws keyed by (vacancy, learner) and by vacancy, so twin worlds agree on them
    keys = rng.integers(0, 2**63, size=2, dtype=np.uint64)
    return _choose_keyed(scn, keys, vacancy, learner, belief, bg_applicants)


def _choose_keyed(
    scn: Scenario,
    keys: np.ndarray,
    vacancy: np.ndarray,
    learner: np.ndarray,
    belief: np.ndarray,
    bg_applicants: np.ndarray,
):
    """:func:`choose` with the week's two hash keys given: the fit of each pair and the
    background's best at each vacancy depend on the keys and on that pair or vacancy
    alone, so any set of whole vacancies can be screened apart."""
    m = scn.market
    pair = vacancy.astype(np.uint64) * np.uint64(1 << 32) + learner.astype(np.uint64)
    fit = ndtri(np.clip(hashed_uniform(keys[0], pair), 1e-12, 1 - 1e-12))
    score = belief + m.fit_noise_sd * fit
    if len(vacancy) == 0:
        e = np.empty(0, np.int64)
        return e, e, np.empty(0, bool), score
    starts = np.flatnonzero(np.r_[True, vacancy[1:] != vacancy[:-1]])
    best = np.maximum.reduceat(score, starts)
    block = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(vacancy)]))
    cand_pos = np.flatnonzero(score >= best[block])
    first = np.r_[True, block[cand_pos][1:] != block[cand_pos][:-1]]
    best_pair = cand_pos[first]  # one per block (ties have probability zero)

    # the best of Poisson(a) background scores, by inversion of its distribution
    # P(max < x) = exp(-a * (1 - F(x))), F the normal cdf of one background score; with
    # no applicant (probability exp(-a)) there is no background candidate
    a = bg_applicants[starts]
    u = hashed_uniform(keys[1], vacancy[starts])
    sd = math.hypot(m.background_skill_sd, m.fit_noise_sd)
    has_bg = u > np.exp(-a)
    with np.errstate(divide="ignore"):
        q = 1.0 + np.log(u) / np.maximum(a, 1e-300)  # log(u) / a = -(1 - F(x)): F(bg) = q
    # the background's best clears the bar where its quantile is above the bar's
    bg_clears = has_bg & (q >= ndtr((m.hiring_bar - m.background_skill_mean) / sd))
    # its score is needed only where a learner clears the bar too: the two compete
    learner_clears = best >= m.hiring_bar
    compete = np.flatnonzero(has_bg & learner_clears)
    bg = np.full(len(starts), -np.inf)
    bg[compete] = m.background_skill_mean + sd * ndtri(q[compete])
    learner_wins = (best > bg) & learner_clears
    # where the learner clears the bar and loses, the background beat it, so it cleared
    background_wins = ~learner_wins & (learner_clears | bg_clears)
    return starts, np.where(learner_wins, best_pair, -1), background_wins, score


def screen_and_hire(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
    market: Market,
    cand: Candidates,
    rng: np.random.Generator,
    pool: Executor | None = None,
) -> Hires:
    """Phase 4, screening and hiring: employers' beliefs (:func:`posterior_mean`), their
    offers (:func:`choose`), and the learners' choices on the job ladder.

    Every offer carries a match quality ``q ~ U(0, 1)`` (:func:`match_quality`: the same
    in twin worlds). Employed learners are candidates only where ``q`` beats the match of
    their current job (phase 3: directed on-the-job search), so on-the-job moves slow
    down as a worker climbs. A learner with several offers takes the best match. A hired
    learner is employed from this week; the job is a *new job* for the study if it
    starts at least ``calendar.new_job_min_weeks`` after the learner's credential was
    granted (``first_job_week``, and ``first_scope_job_week`` for a vacancy in scope).

    Every draw of the screening is keyed by its pair or vacancy (:func:`choose`), so the
    vacancies can be screened in two halves; with ``pool`` (an executor with a free
    worker) the lower half of the slots is screened there, on another core, and the
    offers come out in the same order, so the hires are the same either way.
    """
    keys = rng.integers(0, 2**63, size=2, dtype=np.uint64)  # as choose draws them

    def screen(mask: np.ndarray | slice):
        """Beliefs and offers at the vacancies of the candidacies ``mask``."""
        vacancy, learner = unique_pairs(cand.vacancy[mask], cand.learner[mask])
        # the title's scope matters only where the credential is visible
        shown = np.flatnonzero(state.shared[learner])
        scope = np.ones(len(vacancy), bool)
        scope[shown] = market.in_scope(scn, vacancy[shown])
        belief = posterior_mean(scn, learner, pop, state.shared, scope)
        bg = market.bg_applicants[market.segment_of_slot(vacancy)]
        starts, offer_pair, bg_filled, _ = _choose_keyed(scn, keys, vacancy, learner, belief, bg)
        offered = offer_pair[offer_pair >= 0]
        return vacancy[offered], learner[offered], vacancy[starts], bg_filled, len(vacancy)

    if pool is None:
        parts = [screen(slice(None))]
    else:
        # whole vacancies apart: the lower half of the slots there, the upper half here
        low = cand.vacancy < market.n_slots // 2
        parts = run_both(pool, lambda: screen(low), lambda: screen(~low))
    o_vac, o_lrn, touched, bg_filled = (np.concatenate([p[i] for p in parts]) for i in range(4))
    n_candidates = sum(p[4] for p in parts)
    q = match_quality(np.uint64(cand.match_key), o_vac, o_lrn)
    # each learner considers its best match
    order = np.lexsort((-q, o_lrn))
    top = order[np.r_[True, o_lrn[order][1:] != o_lrn[order][:-1]]] if len(order) else order
    was_employed = state.employed[o_lrn[top]]
    take = top[~was_employed | (q[top] > state.match[o_lrn[top]])]
    i, vac = o_lrn[take], o_vac[take]
    status = search_status(state.employed[i], pop.attached[i])
    in_scope = market.in_scope(scn, vac)
    employer = market.employer_of(vac)
    state.employed[i] = True
    state.job_employer[i] = employer
    state.job_in_scope[i] = in_scope
    state.match[i] = q[take]
    state.jobs_started[i] += 1
    state.last_hire_week[i] = week
    counts = (week - pop.grant_week[i]) >= scn.calendar.new_job_min_weeks
    _first(state.first_job_week, i[counts], week)
    _first(state.first_scope_job_week, i[counts & in_scope], week)
    touched_seg = market.segment_of_slot(touched)
    return Hires(
        vacancy=vac,
        learner=i,
        employer=employer,
        in_scope=in_scope,
        job_to_job=status == 0,
        status=status,
        n_candidates=n_candidates,
        n_offers=len(o_vac),
        n_touched=np.bincount(touched_seg, minlength=N_SEGMENTS),
        background_touched=np.bincount(touched_seg[bg_filled], minlength=N_SEGMENTS),
    )


def _first(weeks: np.ndarray, idx: np.ndarray, week: int) -> None:
    """Set ``weeks[idx] = week`` where no week is set yet."""
    weeks[idx[weeks[idx] == NO_WEEK]] = week


# ---- phase 5 ------------------------------------------------------------------------


@dataclass
class Flow:
    """Phase 5's outcome for the week."""

    separated: np.ndarray  # int64: learners whose job ended
    n_filled_background: int  # vacancies filled by background seekers
    n_expired: int  # vacancies withdrawn unfilled
    n_posted: int  # new vacancies (the stock is steady: filled + withdrawn)


def report_new_jobs(
    scn: Scenario,
    week: int,
    pop: Learners,
    state: LearnerState,
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
    counts = (week - pop.grant_week[i]) >= cal.new_job_min_weeks
    keys = rng.integers(0, 2**63, size=2, dtype=np.uint64)
    reported_u, lag_u = hashed_uniform(keys[0], i), hashed_uniform(keys[1], i)
    lag = -mk.report_lag_weeks * np.log1p(-lag_u)
    seen = counts & (reported_u < mk.report_prob) & (week + lag <= cal.n_weeks)
    _first(state.seen_job_week, i[seen], week)
    _first(state.seen_scope_job_week, i[seen & hires.in_scope], week)


def flows(
    scn: Scenario,
    week: int,
    state: LearnerState,
    market: Market,
    hires: Hires,
    rng_sep: np.random.Generator,
    rng_vac: np.random.Generator,
) -> Flow:
    """Phase 5, flows: separations, and the vacancies filled by the background and
    withdrawn; updates ``state``.

    A job held at the start of the week (not one started this week) ends in
    non-employment with probability ``1 - exp(-separation_rate_per_year / 52)``; the
    worker keeps its attachment (an attached worker becomes unemployed, a marginal one
    marginal again). Vacancies no learner applied to are filled from the background with
    the steady-state probability (:func:`vacancy_rates`), drawn as one binomial count per
    segment; an unfilled vacancy is withdrawn with the steady-state probability. The stock
    is steady: as many vacancies are posted as were filled or withdrawn.
    """
    n = len(state.employed)
    hired = np.zeros(n, bool)
    hired[hires.learner] = True
    p_sep = weekly_prob(scn.market.separation_rate_per_year)
    ending = np.flatnonzero(rng_sep.random(n, dtype=np.float32) < p_sep)  # few: filter them
    separated = ending[state.employed[ending] & ~hired[ending]]
    state.employed[separated] = False
    state.match[separated] = 0.0
    p_fill, p_exp = vacancy_rates(scn)
    untouched = np.maximum(market.stock - hires.n_touched, 0)
    bg_fills = rng_vac.binomial(untouched, p_fill) + hires.background_touched
    open_left = (
        market.stock
        - bg_fills
        - np.bincount(market.segment_of_slot(hires.vacancy), minlength=N_SEGMENTS)
    )
    expired = rng_vac.binomial(np.maximum(open_left, 0), p_exp / (1.0 - p_fill))
    n_bg, n_exp = int(bg_fills.sum()), int(expired.sum())
    return Flow(separated, n_bg, n_exp, n_bg + n_exp + len(hires.learner))
