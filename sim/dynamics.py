"""The five phases of one week (MODEL.md, "One week"), vectorized over learners.

Each phase is a function of arrays; its docstring states the per-learner (or
per-vacancy) rule it applies. The model (:mod:`sim.model`) owns the state and calls the
phases in order; nothing here keeps state of its own, reads a clock or does I/O.

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

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from sim.network import ProfessionalGraph
from sim.params import Scenario

__all__ = [
    "NO_WEEK",
    "Vacancies",
    "expand_csr",
    "flows",
    "posterior_mean",
    "screen_and_hire",
    "search_and_apply",
    "share",
    "unique_first",
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
        return Vacancies(self.id[mask], self.employer[mask], self.domain[mask],
                         self.in_scope[mask], self.posted_week[mask])

    def extend(self, other: Vacancies) -> Vacancies:
        """These vacancies followed by ``other``."""
        return Vacancies(*(np.concatenate([a, b]) for a, b in zip(
            (self.id, self.employer, self.domain, self.in_scope, self.posted_week),
            (other.id, other.employer, other.domain, other.in_scope, other.posted_week),
            strict=True,
        )))

    @classmethod
    def empty(cls) -> Vacancies:
        return cls(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int8),
                   np.empty(0, bool), np.empty(0, np.int16))


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


# ---- phase 1 ------------------------------------------------------------------------


def share(
    scn: Scenario,
    week: int,
    *,
    shared: np.ndarray,
    grant_week: np.ndarray,
    activity: np.ndarray,
    treated: np.ndarray,
    app_open_week: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Phase 1, sharing: the learners who share this week (boolean mask).

    For a learner with a granted, unshared credential, aged ``a`` weeks, activity ``x``:
    ordinary hazard ``h = min(max_hazard, (floor + at_grant * exp(-a / decay)) * x**e)``
    per week, times ``two_click_multiplier`` for treated learners who have opened the app;
    in a notification week a treated learner also shares with probability
    ``1 - exp(-nudge_strength * x**e)``. Sharing never un-happens.
    """
    s = scn.sharing
    u = rng.random(len(shared))
    eligible = ~shared & (grant_week <= week)
    age = (week - grant_week).astype(np.float32)
    act = activity ** np.float32(s.activity_elasticity)
    h = (s.hazard_floor + s.hazard_at_grant * np.exp(-age / s.hazard_decay_weeks)) * act
    opened = treated & (app_open_week >= 0) & (app_open_week <= week)
    h = np.where(opened, h * s.two_click_multiplier, h)
    h = np.minimum(h, s.max_hazard)
    notified = treated & (app_open_week >= 0) & (
        (week == app_open_week) | (week == app_open_week + s.second_notification_weeks)
    )
    p_nudge = np.where(notified, -np.expm1(-s.nudge_strength * act), 0.0)
    p = 1.0 - (1.0 - h) * (1.0 - p_nudge)
    return eligible & (u < p)


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
    *,
    new_sharers: np.ndarray,
    shared: np.ndarray,
    grant_week: np.ndarray,
    activity: np.ndarray,
    graph: ProfessionalGraph,
    rng: np.random.Generator,
) -> Seen:
    """Phase 2, visibility: certificate views and employers' looks at new shares.

    Feed: each neighbour of a new sharer sees the post with ``feed_see_prob``; a learner
    who sees it views the certificate with ``click_prob`` and reshares it with
    ``reshare_prob`` (its neighbours then see it with ``feed_see_prob``); an employer who
    sees it looks with ``employer_look_prob`` (a view). Ongoing views per week: a shared
    credential gets one with probability ``shared_view_rate * activity``, a granted
    unshared one with ``unshared_view_rate * activity``; a learner views their own with
    ``own_view_rate`` (capped at 1).
    """
    v = scn.visibility
    n = len(shared)
    p_see = v.feed_see_prob
    # fixed-size draws first (common random numbers across twin runs)
    u_view = rng.random(n)
    u_own = rng.random(n)
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
    hop_rows, hop_nb = expand_csr(graph.ll_indptr, graph.ll_indices, nb[reshare])
    origin2 = np.repeat(rs_origin, np.diff(graph.ll_indptr)[nb[reshare]])
    keep = (hop_nb != origin2) & (rng.random(len(hop_nb)) < p_see)
    origin2 = origin2[keep]
    clicks2 = rng.random(len(origin2)) < v.click_prob
    views += np.bincount(src[clicks], minlength=n).astype(np.int32)
    views += np.bincount(origin2[clicks2], minlength=n).astype(np.int32)

    # employers among first- and second-degree contacts (via resharers)
    seeds = np.concatenate([new_sharers, nb[reshare]])
    origin = np.concatenate([new_sharers, rs_origin])
    e_src, emp = expand_csr(graph.le_indptr, graph.le_indices, seeds)
    e_origin = np.repeat(origin, np.diff(graph.le_indptr)[seeds])
    looks = rng.random(len(emp)) < p_see * v.employer_look_prob
    look_employer, look_learner = emp[looks], e_origin[looks]
    views += np.bincount(look_learner, minlength=n).astype(np.int32)
    del e_src, hop_rows
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


def unique_first(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values of ``key`` and a position at which each occurs.

    Which of several equal keys is "first" is left to the sort (callers only use it to
    pick one of identical pairs); a plain sort is faster than ``np.unique``'s hash path
    and than a stable sort on large integer arrays.
    """
    order = np.argsort(key)
    ks = key[order]
    first = np.ones(len(ks), dtype=bool)
    first[1:] = ks[1:] != ks[:-1]
    return ks[first], order[first]


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
    out = np.full(len(groups), -1, dtype=np.int64)
    ok = c > 0
    out[ok] = order[starts[groups[ok]] + k[ok]]
    return out


def search_and_apply(
    scn: Scenario,
    *,
    vac: Vacancies,
    employed: np.ndarray,
    domain: np.ndarray,
    shared: np.ndarray,
    activity: np.ndarray,
    domain_order: np.ndarray,
    domain_starts: np.ndarray,
    n_employers: int,
    seen: Seen,
    rng_apply: np.random.Generator,
    rng_source: np.random.Generator,
    available: np.ndarray | None = None,
) -> Candidates:
    """Phase 3, search and applications: who is considered for which vacancy.

    Each learner sends ``Poisson(applications_unemployed or applications_employed)``
    applications a week, each to a uniformly chosen open vacancy of its own domain with
    probability ``in_domain_application_share`` or else of a uniformly chosen domain.
    Each open vacancy sources ``Poisson(sourced_per_vacancy)`` learners of its domain with
    probability proportional to ``activity * (1 + search_boost * shared)``. Employers that
    looked at a new share in the feed add the learner to one of their open vacancies
    (visibility channel only). Learners not ``available`` (within
    ``search_pause_weeks`` of starting a job) are then dropped from every candidacy;
    recruiters still see their profiles, and the random draws are the same.
    """
    m, vis = scn.market, scn.visibility
    n = len(employed)
    nd = int(domain.max(initial=0)) + 1 if n else 1
    nd = max(nd, int(vac.domain.max(initial=0)) + 1, 4)
    n_vac = len(vac)
    # applications: per-learner counts from a fixed-size draw
    lam = np.where(employed, m.applications_employed, m.applications_unemployed)
    n_app = rng_apply.poisson(lam)
    app_learner = np.repeat(np.arange(n, dtype=np.int64), n_app)
    k = len(app_learner)
    in_dom = rng_apply.random(k) < m.in_domain_application_share
    target_dom = np.where(in_dom, domain[app_learner], rng_apply.integers(0, nd, k))
    v_order, v_starts, v_counts = _group_index(vac.domain.astype(np.int64), nd)
    app_vac = _pick_in_group(v_order, v_starts, v_counts, target_dom, rng_apply.random(k))
    ok = app_vac >= 0
    app_vac, app_learner = app_vac[ok], app_learner[ok]

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

    # employers who looked at a new share consider the learner for one open vacancy
    if vis.enabled and len(seen.look_employer) and n_vac:
        e_order, e_starts, e_counts = _group_index(vac.employer.astype(np.int64), n_employers)
        feed_vac = _pick_in_group(e_order, e_starts, e_counts, seen.look_employer,
                                  rng_source.random(len(seen.look_employer)))
        ok = feed_vac >= 0
        feed_vac, feed_learner = feed_vac[ok], seen.look_learner[ok].astype(np.int64)
    else:
        feed_vac = feed_learner = np.empty(0, np.int64)

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


def posterior_mean(
    scn: Scenario,
    idx: np.ndarray,
    *,
    shared: np.ndarray,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    signal: np.ndarray,
    signal_precision: np.ndarray,
) -> np.ndarray:
    """An employer's posterior mean of skill for learners ``idx`` (normal-normal).

    ``(tau_p * mu + tau_c * s) / (tau_p + tau_c)`` with ``tau_c = credibility *
    signal_precision`` when the credential is shared and the signal channel is on, else
    the prior mean ``mu``.
    """
    sg = scn.signal
    mu = prior_mean[idx].astype(np.float64)
    if not sg.enabled or sg.credibility == 0:
        return mu
    tp = prior_precision[idx]
    tc = np.where(shared[idx], sg.credibility * signal_precision[idx], 0.0)
    return (tp * mu + tc * signal[idx]) / (tp + tc)


@dataclass
class Hires:
    """Phase 4's outcome for the week."""

    vacancy: np.ndarray  # positions of vacancies filled by learners
    learner: np.ndarray  # the learner hired into each
    background: np.ndarray  # positions of vacancies filled from the background pool
    n_candidates: int


def screen_and_hire(
    scn: Scenario,
    cand: Candidates,
    n_vacancies: int,
    score_of: np.ndarray,
    rng: np.random.Generator,
) -> Hires:
    """Phase 4, screening and hiring: fill each vacancy with its best candidate, if any.

    ``score_of`` is the posterior mean of each candidate pair's learner. Per vacancy: the
    best learner candidate (score + fit noise), the best background applicant, and the bar;
    the best candidate above the bar is hired. A learner with several offers takes the one
    with the highest score; each vacancy is filled at most once.
    """
    m = scn.market
    # drop duplicate (vacancy, learner) pairs: one application counts once
    key = cand.vacancy * (int(cand.learner.max(initial=0)) + 1) + cand.learner
    key, first = unique_first(key)
    vac_c, lrn_c = cand.vacancy[first], cand.learner[first]
    score = score_of[first] + m.fit_noise_sd * rng.standard_normal(len(first))

    # best learner per vacancy (pairs are sorted by vacancy already)
    best = np.full(n_vacancies, -np.inf)
    np.maximum.at(best, vac_c, score)
    is_best = score >= best[vac_c]
    # one best pair per vacancy (ties have probability zero; keep the first)
    best_pair = np.full(n_vacancies, -1, dtype=np.int64)
    cand_pos = np.flatnonzero(is_best)
    vac_best, at = unique_first(vac_c[cand_pos])
    best_pair[vac_best] = cand_pos[at]

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
    offer_lrn = lrn_c[offer_pair]
    offer_score = score[offer_pair]
    # each learner accepts the best of its offers
    order = np.lexsort((-offer_score, offer_lrn))
    first_of_learner = np.r_[True, np.diff(offer_lrn[order]) != 0] if len(order) else order
    take = order[first_of_learner.astype(bool)] if len(order) else order
    return Hires(
        vacancy=offer_vac[take],
        learner=offer_lrn[take],
        background=np.flatnonzero(background_wins),
        n_candidates=len(first),
    )


# ---- phase 5 ------------------------------------------------------------------------


@dataclass
class Flow:
    """Phase 5's outcome for the week."""

    separated: np.ndarray  # bool per learner: job ended
    keep_vacancy: np.ndarray  # bool per current vacancy: still open next week
    new_vacancies: Vacancies
    n_expired: int


def flows(
    scn: Scenario,
    week: int,
    *,
    employed: np.ndarray,
    hired: np.ndarray,
    vac: Vacancies,
    filled: np.ndarray,
    employer_domain: np.ndarray,
    employer_cum_size: np.ndarray,
    next_id: int,
    n_learners: int,
    rng_sep: np.random.Generator,
    rng_vac: np.random.Generator,
) -> Flow:
    """Phase 5, flows: separations, vacancy expiry and arrival.

    A job held at the start of the week (not one started this week) ends with probability
    ``1 - exp(-separation_rate_per_year / 52)``. An unfilled vacancy expires with
    probability ``1 / vacancy_duration_weeks``. ``Poisson(vacancies_per_1000 * n / 1000)``
    vacancies arrive, each at an employer drawn in proportion to size, in the employer's
    domain, in scope with probability ``in_scope_share``.
    """
    m = scn.market
    p_sep = -np.expm1(-m.separation_rate_per_year / 52.0)
    separated = employed & ~hired & (rng_sep.random(len(employed)) < p_sep)
    expire = rng_vac.random(len(vac)) < 1.0 / m.vacancy_duration_weeks
    keep = ~filled & ~expire
    k = rng_vac.poisson(m.vacancies_per_1000 * n_learners / 1000.0)
    u = rng_vac.random(k) * employer_cum_size[-1]
    emp = np.searchsorted(employer_cum_size, u, side="right").astype(np.int32)
    emp = np.minimum(emp, len(employer_cum_size) - 1)
    new = Vacancies(
        id=np.arange(next_id, next_id + k, dtype=np.int64),
        employer=emp,
        domain=employer_domain[emp].astype(np.int8),
        in_scope=rng_vac.random(k) < m.in_scope_share,
        posted_week=np.full(k, week, dtype=np.int16),
    )
    return Flow(separated, keep, new, int((~filled & expire).sum()))
