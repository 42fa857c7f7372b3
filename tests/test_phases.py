"""Each phase of the week (sim.dynamics) against its own rule, on small hand-set states.

The model tests check a whole run's invariants; these check one rule at a time: a phase
is called on a state set up for the rule, with the other parameters switched off, and its
output is compared with what the docstring says (exactly, or within stated statistical
tolerances).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from conftest import small_scenario
from scipy.stats import chisquare, poisson

from sim import dynamics as dyn
from sim.network import ProfessionalGraph
from sim.population import Employers, draw_learners

N = 4_000


def _world(overrides=None, n=N, seed=1):
    """A scenario, a population drawn from it and its initial state (nobody opens the
    app unless the test says so). Phases are then given generators of other seeds than
    ``seed``: one stream for both would correlate the phase's draws with the traits."""
    scn = small_scenario(n, overrides)
    pop = draw_learners(scn, np.random.default_rng(seed))
    state = dyn.LearnerState.initial(pop, np.full(n, -1, np.int16))
    # employed learners at the bottom rung consider every vacancy (directed on-the-job
    # search has its own test), so counts follow the Poisson rates alone
    state.match[:] = 0.0
    return scn, pop, state


def _empty_graph(n: int, m: int = 1) -> ProfessionalGraph:
    return ProfessionalGraph.from_networkx(_nx_graph(n, m))


def _nx_graph(n: int, m: int):
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n), kind="learner")
    g.add_nodes_from(range(n, n + m), kind="employer")
    return g


def _market(pop, stock, bg_applicants: float = 0.0) -> dyn.Market:
    """A hand-built market: ``stock`` open vacancies in each segment (a number, or one per
    segment), all of segment ``g`` at employer ``g`` (domain ``g // 2``, developing
    ``g % 2``), ``bg_applicants`` background applicants per vacancy and week and no
    background weight in recruiter search."""
    stock = np.broadcast_to(np.asarray(stock, np.int64), (dyn.N_SEGMENTS,)).copy()
    g = np.arange(dyn.N_SEGMENTS)
    employers = Employers(
        domain=(g // 2).astype(np.int8), size=np.ones(len(g)), developing=g % 2 == 1
    )
    slot_start = np.r_[0, np.cumsum(stock)].astype(np.int64)
    seg = dyn.segment_of(pop.domain, pop.developing)
    counts = np.bincount(seg, minlength=dyn.N_SEGMENTS)
    order = np.argsort(seg, kind="stable")
    scope, other = dyn.slots_by_scope(np.uint64(12345), stock, 0.5)
    return dyn.Market(
        employers=employers,
        stock=stock,
        slot_start=slot_start,
        slot_employer=g.astype(np.int32),
        slot_employer_end=slot_start[1:].copy(),
        employer_slots=np.column_stack([slot_start[:-1], stock]),
        bg_applicants=np.full(dyn.N_SEGMENTS, float(bg_applicants)),
        bg_search_weight=np.zeros(dyn.N_SEGMENTS),
        learner_segment=seg,
        seg_order=order,
        seg_starts=np.cumsum(counts) - counts,
        scope_key=np.uint64(12345),
        activity_ord=pop.activity[order].astype(np.float64),
        activity_cum=np.cumsum(pop.activity[order], dtype=np.float64),
        scope_slots=scope,
        other_slots=other,
    )


def _busy_world(bg_applicants: float = 0.0):
    """A world where every kind of candidacy occurs: a third of the learners share, half
    are employed (at match 0.5), employed learners apply, recruiters search a lot."""
    scn, pop, st = _world(
        {"market.applications_employed": 0.5, "market.sourced_per_vacancy": 10.0}, n=20_000
    )
    st.shared[::3] = True
    st.employed[::2] = True
    st.match[::2] = 0.5
    return scn, pop, st, _market(pop, 40, bg_applicants=bg_applicants)


def _no_looks(n: int) -> dyn.Seen:
    """Phase 2's output with no views and no employer looks."""
    zero = np.zeros(n, np.int32)
    return dyn.Seen(zero, zero.copy(), np.empty(0, np.int64), np.empty(0, np.int64))


def _own_slots(market: dyn.Market, learners: np.ndarray) -> np.ndarray:
    """One distinct slot for each of ``learners`` in its own segment (the segment's
    stock must be large enough)."""
    seg = market.learner_segment[learners].astype(np.int64)
    rank = np.zeros(len(learners), np.int64)
    for g in np.unique(seg):
        at = np.flatnonzero(seg == g)
        rank[at] = np.arange(len(at))
    assert (rank < market.stock[seg]).all()
    return market.slot_start[seg] + rank


def _hires(scn, market, learner, vacancy, state) -> dyn.Hires:
    """A hand-set phase-4 outcome: ``learner[k]`` hired into slot ``vacancy[k]``."""
    learner, vacancy = np.asarray(learner, np.int64), np.asarray(vacancy, np.int64)
    status = dyn.search_status(state.employed[learner], np.ones(len(learner), bool))
    seg = market.segment_of_slot(vacancy)
    return dyn.Hires(
        vacancy=vacancy,
        learner=learner,
        employer=market.employer_of(vacancy),
        in_scope=market.in_scope(scn, vacancy),
        job_to_job=status == 0,
        status=status,
        n_candidates=len(learner),
        n_offers=len(learner),
        n_touched=np.bincount(seg, minlength=dyn.N_SEGMENTS),
        background_touched=np.zeros(dyn.N_SEGMENTS, np.int64),
    )


# ---- app opening ---------------------------------------------------------------------


def test_app_opening_comes_within_30_days_at_the_batch_share():
    scn, pop, _ = _world({"sharing.app_open_share": [0.82, 0.96]}, n=40_000)
    opens = dyn.app_open_weeks(scn, pop, np.random.default_rng(3))
    opened = opens >= 0
    delay = opens[opened] - pop.grant_week[opened]
    assert delay.min() == 0 and delay.max() == 4  # weeks 0..4: within 30 days
    for b in range(scn.calendar.n_batches):
        share = opened[pop.batch == b].mean()
        assert 0.82 - 0.02 < share < 0.96 + 0.02, (b, share)


# ---- phase 1: sharing ------------------------------------------------------------------


def test_sharing_needs_a_granted_credential_and_never_unhappens():
    scn, pop, st = _world(
        {"sharing.hazard_at_grant": 0.9, "sharing.hazard_floor": 0.9, "sharing.max_hazard": 1.0}
    )
    week = 10
    st.shared[:100] = True
    st.share_week[:100] = 3
    new = dyn.share(scn, week, pop, st, np.zeros(N, bool), np.random.default_rng(0))
    assert (pop.grant_week[new] <= week).all()
    assert not np.isin(new, np.arange(100)).any()
    assert (st.share_week[:100] == 3).all() and st.shared[:100].all()
    assert (st.share_week[new] == week).all()
    ungranted = pop.grant_week > week
    assert ungranted[100:].any() and not st.shared[100:][ungranted[100:]].any()


def test_a_notification_adds_the_nudge_probability():
    """With no ordinary hazard, only notified treated learners share, each with
    probability 1 - exp(-nudge_strength * activity) (elasticity 1)."""
    k = 0.3
    scn, pop, st = _world(
        {"sharing.hazard_at_grant": 0.0, "sharing.hazard_floor": 0.0, "sharing.nudge_strength": k},
        n=60_000,
    )
    week = 20
    treated = np.arange(len(pop)) % 2 == 0
    st.app_open_week[:] = np.where(pop.grant_week <= week, week, -1)  # all open now
    new = dyn.share(scn, week, pop, st, treated, np.random.default_rng(5))
    assert treated[new].all()
    eligible = treated & (pop.grant_week <= week)
    expected = (1 - np.exp(-k * pop.activity[eligible].astype(float))).sum()
    got = len(new)
    assert abs(got - expected) < 4 * np.sqrt(expected), (got, expected)


def test_the_hazard_decays_with_the_credentials_age():
    scn, pop, st = _world(
        {
            "sharing.hazard_floor": 0.0,
            "sharing.hazard_at_grant": 0.2,
            "sharing.hazard_decay_weeks": 2.0,
        },
        n=60_000,
    )
    week = 27  # batches graduate in weeks 0, 4, 9, 13, 17, 22 and 26
    new = dyn.share(scn, week, pop, st, np.zeros(len(pop), bool), np.random.default_rng(2))
    age = week - pop.grant_week
    young, old = (age <= 1), (age >= 12)
    shared = np.zeros(len(pop), bool)
    shared[new] = True
    assert shared[young].mean() > 5 * shared[old].mean()


# ---- phase 2: visibility -----------------------------------------------------------------


def _share_by_the_rule(scn, week, pop, st, treated, u):
    """The sharing rule of :func:`dyn.share`'s docstring applied to every eligible
    learner, in the same float32 arithmetic: what the first comparison must not change."""
    s = scn.sharing
    idx = np.flatnonzero(~st.shared & (pop.grant_week <= week))
    age = week - pop.grant_week[idx]
    ages = np.arange(int(age.max(initial=0)) + 1, dtype=np.float32)
    profile = s.hazard_floor + s.hazard_at_grant * np.exp(-ages / s.hazard_decay_weeks)
    act = pop.activity[idx] ** np.float32(s.activity_elasticity)
    opens, tr = st.app_open_week[idx], treated[idx]
    opened = tr & (opens >= 0) & (opens <= week)
    h = np.minimum(
        np.where(opened, profile[age] * act * s.two_click_multiplier, profile[age] * act),
        s.max_hazard,
    )
    notified = tr & (opens >= 0) & ((week == opens) | (week == opens + s.second_notification_weeks))
    stay = 1.0 - h
    stay[notified] *= 1.0 + np.expm1(-s.nudge_strength * act[notified])
    return idx[u[idx] < 1.0 - stay]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "sharing.two_click_multiplier": 2.5,
            "sharing.activity_elasticity": 1.4,
            "sharing.nudge_strength": 0.8,
            "sharing.hazard_at_grant": 0.3,
            "sharing.max_hazard": 0.35,
        },
    ],
)
def test_sharing_settles_most_learners_by_one_comparison_without_changing_who_shares(overrides):
    scn, pop, st = _world(overrides, n=60_000)
    treated = np.arange(len(pop)) % 2 == 0
    st.app_open_week[:] = dyn.app_open_weeks(scn, pop, np.random.default_rng(4))
    for week in (1, 2, 6, 10, 11, 15, 28):  # ages 0 to 2 of some batch, and older
        want = _share_by_the_rule(
            scn, week, pop, st, treated, np.random.default_rng(week).random(len(pop), np.float32)
        )
        got = dyn.share(scn, week, pop, st, treated, np.random.default_rng(week))
        assert len(got) > 0
        np.testing.assert_array_equal(got, want)


def test_ongoing_views_follow_the_rates_and_nobody_views_ungranted_credentials():
    scn, pop, st = _world(
        {
            "visibility.shared_view_rate": 1.0,
            "visibility.unshared_view_rate": 0.0,
            "visibility.own_view_rate": 0.0,
            "visibility.feed_see_prob": 0.0,
        }
    )
    week = 15
    st.shared[: N // 2] = pop.grant_week[: N // 2] <= week
    seen = dyn.visibility(
        scn, week, pop, st, _empty_graph(N), np.empty(0, np.int64), np.random.default_rng(101)
    )  # not the population's seed: the same stream would correlate draws and traits
    granted = pop.grant_week <= week
    viewed = seen.views > 0
    assert not viewed[~granted].any()
    assert not viewed[~st.shared].any()  # unshared rate 0
    # a shared credential is viewed with probability min(1, rate * activity)
    p = np.minimum(1.0, pop.activity[st.shared].astype(float))
    assert abs(viewed[st.shared].sum() - p.sum()) < 4 * np.sqrt(p.sum())
    np.testing.assert_array_equal(st.views, seen.views)  # added to the state
    assert seen.own_views.sum() == 0


def test_feed_views_come_from_neighbours_of_new_sharers():
    import networkx as nx

    scn, pop, st = _world(
        {
            "visibility.feed_see_prob": 1.0,
            "visibility.click_prob": 1.0,
            "visibility.reshare_prob": 0.0,
            "visibility.shared_view_rate": 0.0,
            "visibility.unshared_view_rate": 0.0,
            "visibility.employer_look_prob": 1.0,
        },
        n=2_000,
    )
    g = _nx_graph(2_000, 1)
    g.add_edges_from([(0, 1), (0, 2), (0, 3), (5, 6), (0, 2_000)])  # 2000: the employer
    graph = ProfessionalGraph.from_networkx(g)
    seen = dyn.visibility(scn, 60, pop, st, graph, np.array([0]), np.random.default_rng(0))
    assert seen.views[0] == 3 + 1  # three learner neighbours and the employer
    assert seen.views[1:].sum() == 0
    assert seen.look_employer.tolist() == [0] and seen.look_learner.tolist() == [0]
    assert nx.is_connected(g.subgraph([0, 1, 2, 3]))


# ---- phase 3: search and applications -------------------------------------------------------


def test_status_counts_are_the_bincount_of_the_search_status():
    rng = np.random.default_rng(4)
    employed, attached = rng.random(1_000) < 0.6, rng.random(1_000) < 0.7
    np.testing.assert_array_equal(
        dyn.status_counts(employed, attached),
        np.bincount(dyn.search_status(employed, attached), minlength=3),
    )
    np.testing.assert_array_equal(dyn.status_counts(employed[:0], attached[:0]), [0, 0, 0])


def test_applications_follow_the_search_status_at_the_poisson_rates():
    rates = {0: 0.3, 1: 2.0, 2: 0.5}  # employed, unemployed (attached), marginal
    scn, pop, st = _world(
        {
            "market.applications_employed": rates[0],
            "market.applications_unemployed": rates[1],
            "market.applications_marginal": rates[2],
            "market.in_domain_application_share": 1.0,
            "market.sourced_per_vacancy": 0.0,
        },
        n=30_000,
    )
    st.employed[:] = np.arange(len(pop)) % 3 == 0
    market = _market(pop, 50)
    cand = dyn.search_and_apply(
        scn,
        10,
        pop,
        st,
        market,
        _no_looks(len(pop)),
        np.random.default_rng(11),
        np.random.default_rng(12),
    )
    assert cand.n_sourced == cand.n_feed == 0 and cand.n_applications == len(cand.learner)
    # in-domain only: every application goes to an open slot of the learner's own segment
    seg = market.learner_segment[cand.learner]
    assert (market.segment_of_slot(cand.vacancy) == seg).all()
    assert (cand.vacancy >= market.slot_start[seg]).all()
    assert (cand.vacancy < market.slot_start[seg + 1]).all()
    status = dyn.search_status(st.employed, pop.attached)
    sent = np.bincount(status[cand.learner], minlength=3)
    for s, rate in rates.items():
        expected = rate * (status == s).sum()
        assert expected > 500, s
        assert abs(sent[s] - expected) < 4 * np.sqrt(expected), (s, sent[s], expected)
    # vacancies within a segment are chosen uniformly
    counts = np.bincount(cand.vacancy - market.slot_start[seg], minlength=50)
    assert chisquare(counts).pvalue > 1e-4


def test_applications_outside_the_domain_stay_in_the_country_group():
    scn, pop, st = _world(
        {
            "market.applications_unemployed": 2.0,
            "market.applications_marginal": 2.0,
            "market.in_domain_application_share": 0.0,
            "market.sourced_per_vacancy": 0.0,
        },
        n=20_000,
    )
    st.employed[:] = False
    market = _market(pop, 40)
    cand = dyn.search_and_apply(
        scn,
        10,
        pop,
        st,
        market,
        _no_looks(len(pop)),
        np.random.default_rng(21),
        np.random.default_rng(22),
    )
    target = market.segment_of_slot(cand.vacancy)
    own = market.learner_segment[cand.learner].astype(np.int64)
    assert len(target) > 10_000
    assert (target % 2 == own % 2).all()  # the learner's country group
    assert (target // 2 != own // 2).all()  # another domain
    shift = (target // 2 - own // 2) % 4
    share = np.bincount(shift, minlength=4)[1:] / len(shift)
    np.testing.assert_allclose(share, 1 / 3, atol=0.02)  # the other domains, evenly


def test_recruiters_searching_on_another_thread_change_nothing():
    """With an executor, recruiter search runs beside the applications: the candidates,
    their order and the views it adds are exactly those of the plain call."""
    from concurrent.futures import ThreadPoolExecutor

    scn, pop, st, market = _busy_world()
    looks = dyn.Seen(
        np.zeros(len(pop), np.int32),
        np.zeros(len(pop), np.int32),
        np.arange(dyn.N_SEGMENTS, dtype=np.int64),
        np.arange(dyn.N_SEGMENTS, dtype=np.int64) * 7,
    )
    runs = []
    with ThreadPoolExecutor(1) as pool:
        for executor in (None, pool):
            state = copy.deepcopy(st)
            cand = dyn.search_and_apply(
                scn,
                30,
                pop,
                state,
                market,
                looks,
                np.random.default_rng(31),
                np.random.default_rng(32),
                executor,
            )
            runs.append((cand, state.views))
    (plain, views), (threaded, views_threaded) = runs
    assert plain.n_applications > 1000 and plain.n_sourced > 100 and plain.n_feed > 0
    for f in ("vacancy", "learner", "sourced_views"):
        np.testing.assert_array_equal(getattr(plain, f), getattr(threaded, f))
    assert (plain.n_applications, plain.n_sourced, plain.n_feed, plain.match_key) == (
        threaded.n_applications,
        threaded.n_sourced,
        threaded.n_feed,
        threaded.match_key,
    )
    np.testing.assert_array_equal(views, views_threaded)


def _found_per_weight(found: np.ndarray, w: np.ndarray, shared: np.ndarray) -> float:
    """How often recruiters found sharers per unit of activity, relative to non-sharers."""
    k = np.bincount(found, minlength=len(w))
    return (k[shared].sum() / w[shared].sum()) / (k[~shared].sum() / w[~shared].sum())


def test_recruiters_find_learners_in_proportion_to_their_search_weight():
    """With a stock of S vacancies in a segment, sourced_per_vacancy r and background
    weight three times the learners', recruiters find learners S * r / 4 times a week; a
    shared credential weighs (1 + search_boost) times as much (visibility on only)."""
    scn, pop, st = _world(
        {
            "market.applications_employed": 0.0,
            "market.applications_unemployed": 0.0,
            "market.applications_marginal": 0.0,
            "market.sourced_per_vacancy": 2.0,
            "visibility.search_boost": 3.0,
            "visibility.recruiter_view_prob": 1.0,
        },
        n=20_000,
    )
    st.shared[::2] = True
    market = _market(pop, 1_000)
    w = pop.activity.astype(float)
    seg_w = np.bincount(market.learner_segment, weights=w * (1 + 3.0 * st.shared), minlength=8)
    market.bg_search_weight = 3.0 * seg_w

    def sourced(scenario, state):
        return dyn.search_and_apply(
            scenario,
            10,
            pop,
            state,
            market,
            _no_looks(len(pop)),
            np.random.default_rng(31),
            np.random.default_rng(32),
        )

    cand = sourced(scn, st)
    assert cand.n_applications == cand.n_feed == 0
    assert (market.segment_of_slot(cand.vacancy) == market.learner_segment[cand.learner]).all()
    # recruiters of in-scope titles weight a shared credential by 1 + boost; the others
    # by activity alone: learners carry 1/4 of the in-scope search weight, and
    # w / (w + 3 * 2.5 w) of the rest (half the learners shared: 2.5 w boosted)
    scope = np.isin(cand.vacancy, market.scope_slots[0])
    n_in = len(market.scope_slots[0])
    n_out = len(market.other_slots[0])
    assert n_in > 0 and n_out > 0
    for found, expected in ((scope.sum(), n_in * 2.0 / 4.0), ((~scope).sum(), n_out * 2.0 / 8.5)):
        assert abs(found - expected) < 4 * np.sqrt(expected), (found, expected)
    assert 3.4 < _found_per_weight(cand.learner[scope], w, st.shared) < 4.6  # 1 + search_boost
    assert 0.8 < _found_per_weight(cand.learner[~scope], w, st.shared) < 1.2
    # a recruiter opens every shared credential it finds (view probability 1), no other
    np.testing.assert_array_equal(
        np.sort(cand.sourced_views), np.sort(cand.learner[st.shared[cand.learner]])
    )
    assert st.views.sum() == len(cand.sourced_views)
    # visibility off: no boost
    off = sourced(scn.with_overrides({"visibility.enabled": False}), copy.deepcopy(st))
    assert 0.85 < _found_per_weight(off.learner, w, st.shared) < 1.15


@pytest.mark.parametrize("enabled", [True, False])
def test_an_employer_who_looked_considers_the_learner_for_one_of_its_vacancies(enabled):
    scn, pop, st = _world(
        {
            "market.applications_employed": 0.0,
            "market.applications_unemployed": 0.0,
            "market.applications_marginal": 0.0,
            "market.sourced_per_vacancy": 0.0,
            "visibility.enabled": enabled,
        }
    )
    market = _market(pop, 30)
    seen = _no_looks(len(pop))
    seen.look_employer = np.array([3, 5, 3])
    seen.look_learner = np.array([7, 8, 9])
    cand = dyn.search_and_apply(
        scn, 10, pop, st, market, seen, np.random.default_rng(1), np.random.default_rng(2)
    )
    if not enabled:
        assert cand.n_feed == len(cand.learner) == 0
        return
    assert cand.n_feed == 3 and cand.learner.tolist() == [7, 8, 9]
    np.testing.assert_array_equal(market.employer_of(cand.vacancy), [3, 5, 3])


def test_a_learner_whose_search_differs_shifts_no_other_learners_applications():
    """Common random numbers: each application's target is a hash of (week key, learner,
    its number), so in two worlds that differ in a few learners' search status (hence in
    their number of applications) every other learner applies to the same vacancies."""
    scn, pop, st = _world(
        {
            "market.applications_employed": 0.2,
            "market.applications_unemployed": 4.0,
            "market.applications_marginal": 1.0,
            "market.in_domain_application_share": 0.7,
        },
        n=10_000,
    )
    market = _market(pop, 200)
    other = copy.deepcopy(st)
    flipped = np.array([5, 1_234, 7_777])  # found a job in one world, not the other
    other.employed[flipped] = ~st.employed[flipped]

    def applications(state):
        cand = dyn.search_and_apply(
            scn,
            30,
            pop,
            state,
            market,
            _no_looks(len(pop)),
            np.random.default_rng(41),
            np.random.default_rng(42),
        )
        k = cand.n_applications
        return cand.learner[:k], cand.vacancy[:k]

    (la, va), (lb, vb) = applications(st), applications(other)
    keep_a, keep_b = ~np.isin(la, flipped), ~np.isin(lb, flipped)
    assert keep_a.sum() > 5_000
    np.testing.assert_array_equal(la[keep_a], lb[keep_b])
    np.testing.assert_array_equal(va[keep_a], vb[keep_b])
    # the flipped learners' own applications did change (the worlds do differ)
    assert (~keep_a).sum() != (~keep_b).sum() or (va[~keep_a] != vb[~keep_b]).any()


def test_poisson_by_inversion_is_poisson_and_uses_one_uniform_per_draw():
    u = np.random.default_rng(0).random(200_000)
    for lam in (0.0, 0.7, 3.0, 25.0):
        x = dyn.poisson_quantile(lam, u)
        np.testing.assert_array_equal(x, poisson.ppf(u, lam).astype(np.int64) if lam else 0)
    # a learner's count depends on its own uniform only
    np.testing.assert_array_equal(
        dyn.poisson_quantile(0.7, u[:10]), dyn.poisson_quantile(0.7, u)[:10]
    )


def test_poisson_nonzero_by_group_keeps_each_draw_and_only_the_nonzero_ones():
    rng = np.random.default_rng(1)
    u = rng.random(100_000, dtype=np.float32)
    group = rng.integers(0, 4, len(u)).astype(np.int8)
    lams = np.array([0.15, 2.0, 0.0, 0.02])
    idx, count = dyn.poisson_nonzero_by(lams, group, u)
    # the dense draws, one by one, by each learner's own rate and uniform
    dense = np.zeros(len(u), np.int64)
    for k, lam in enumerate(lams):
        at = group == k
        dense[at] = dyn.poisson_quantile(lam, u[at].astype(np.float64))
    np.testing.assert_array_equal(idx, np.flatnonzero(dense))
    np.testing.assert_array_equal(count, dense[idx])
    assert not np.isin(idx, np.flatnonzero(group == 2)).any()  # a zero rate sends none


# ---- phase 4: screening and hiring ----------------------------------------------------------


def test_posterior_mean_follows_the_channel_switches_and_credibility():
    """Signal off: the record's prior mean. Credibility 0: a visible credential tells
    only that the course was completed (prior + course_skill_gain). Credibility 1: the
    normal-normal posterior with the signal's true precision."""
    gain = 0.4
    scn, pop, _ = _world({"signal.course_skill_gain": gain})
    shared = np.zeros(N, bool)
    shared[::2] = True
    idx = np.arange(N)
    mu = pop.prior_mean.astype(float)
    tp, sp, s = (pop.prior_precision.astype(float), pop.signal_precision.astype(float), pop.signal)

    def post(**over):
        keys = {f"signal.{k}": v for k, v in over.items()}
        return dyn.posterior_mean(scn.with_overrides(keys), idx, pop, shared)

    off = post(enabled=False)
    np.testing.assert_allclose(off, mu, rtol=1e-6)  # shared or not
    news = post(credibility=0.0)
    np.testing.assert_allclose(news[shared], mu[shared] + gain, rtol=1e-6)
    np.testing.assert_allclose(news[~shared], mu[~shared], rtol=1e-6)
    bayes = post(credibility=1.0)
    expect = (tp * (mu + gain) + sp * s) / (tp + sp)
    np.testing.assert_allclose(bayes[shared], expect[shared], rtol=1e-5)
    np.testing.assert_allclose(bayes[~shared], mu[~shared], rtol=1e-6)
    over = post(credibility=3.0)  # over-reading: the weight is 3 x the true precision
    expect = (tp * (mu + gain) + 3 * sp * s) / (tp + 3 * sp)
    np.testing.assert_allclose(over[shared], expect[shared], rtol=1e-5)
    # by hand: prior 0 with precision 1, signal 2 with precision 1, gain 0.4
    one = pop.take(np.arange(1))
    one.prior_mean[:], one.prior_precision[:], one.signal[:], one.signal_precision[:] = 0, 1, 2, 1
    got = dyn.posterior_mean(scn, np.array([0]), one, np.array([True]))
    assert got[0] == pytest.approx((0.4 + 2.0) / 2)
    # a subset of learners gets the same beliefs as in the whole population
    np.testing.assert_allclose(
        dyn.posterior_mean(scn.with_overrides({"signal.credibility": 1.0}), idx[1::3], pop, shared),
        bayes[1::3],
    )


def test_an_out_of_scope_title_reads_the_credential_with_its_relevance():
    """Relevance r scales both the news of completion and the content's weight at a
    vacancy out of scope; in scope (or with no scope given) the credential counts fully."""
    gain = 0.4
    scn, pop, _ = _world({"signal.course_skill_gain": gain, "signal.credibility": 1.0})
    shared = np.ones(N, bool)
    idx = np.arange(N)
    mu, tp = pop.prior_mean.astype(float), pop.prior_precision.astype(float)
    sp, s = pop.signal_precision.astype(float), pop.signal
    scope = np.zeros(N, bool)
    scope[::2] = True
    full = dyn.posterior_mean(scn, idx, pop, shared)
    for r in (0.0, 0.5):
        got = dyn.posterior_mean(
            scn.with_overrides({"signal.out_of_scope_relevance": r}), idx, pop, shared, scope
        )
        np.testing.assert_allclose(got[scope], full[scope], rtol=1e-6)
        expect = (tp * (mu + r * gain) + r * sp * s) / (tp + r * sp)
        np.testing.assert_allclose(got[~scope], expect[~scope], rtol=1e-5)
    got0 = dyn.posterior_mean(scn, idx, pop, shared, scope)  # default relevance: 0
    np.testing.assert_allclose(got0[~scope], mu[~scope], rtol=1e-6)


def _screen_scn(**extra):
    """Screening with no fit noise and no background competition unless ``extra`` says."""
    return small_scenario(N, {"market.fit_noise_sd": 0.0, "market.hiring_bar": 0.5, **extra})


def test_the_best_candidate_above_the_bar_gets_the_offer():
    scn = _screen_scn()
    # vacancy 0: learners 1 (0.9) and 2 (0.7); vacancy 1: learner 1 (0.9) again and 3 (0.2);
    # vacancy 2: learner 3 only (below the bar)
    vac = np.array([0, 0, 1, 1, 2])
    lrn = np.array([1, 2, 1, 3, 3])
    belief = np.array([0.9, 0.7, 0.9, 0.2, 0.2])
    starts, offer, bg, score = dyn.choose(
        scn, vac, lrn, belief, np.zeros(len(vac)), np.random.default_rng(0)
    )
    assert starts.tolist() == [0, 2, 4]
    assert offer.tolist() == [0, 2, -1]  # the pair offered each vacancy, none at 2
    assert not bg.any()  # no background applicant
    np.testing.assert_allclose(score, belief)  # no fit noise


def test_a_better_background_applicant_takes_the_vacancy():
    scn = _screen_scn(**{"market.background_skill_mean": 3.0, "market.hiring_bar": 0.0})
    one = (np.array([0]), np.array([7]), np.array([0.5]))
    _, offer, bg, _ = dyn.choose(scn, *one, np.array([500.0]), np.random.default_rng(0))
    assert offer.tolist() == [-1] and bg.tolist() == [True]
    # nobody above the bar and no background applicant: the vacancy stays open
    scn = _screen_scn(**{"market.hiring_bar": 1.0})
    _, offer, bg, _ = dyn.choose(scn, *one, np.array([0.0]), np.random.default_rng(0))
    assert offer.tolist() == [-1] and bg.tolist() == [False]


def test_the_background_competitor_is_the_best_of_poisson_applicants():
    """A learner scoring b against Poisson(a) background applicants of scores N(0, 1):
    it wins with probability exp(-a (1 - Phi(b))) (no background score above b), and
    the background fills the vacancy otherwise (every such score clears a bar below b)."""
    from scipy.stats import norm

    n, a, b = 40_000, 2.0, 1.5
    scn = _screen_scn(**{"market.hiring_bar": 1.0})
    vac = np.arange(n)
    _, offer, bg, _ = dyn.choose(
        scn, vac, vac, np.full(n, b), np.full(n, a), np.random.default_rng(4)
    )
    p = np.exp(-a * norm.sf(b))
    won = (offer >= 0).mean()
    assert abs(won - p) < 4 * np.sqrt(p * (1 - p) / n), (won, p)
    np.testing.assert_array_equal(bg, offer < 0)
    # a learner below the bar never wins; the background fills at 1 - exp(-a (1 - Phi(bar)))
    _, offer, bg, _ = dyn.choose(
        scn, vac, vac, np.full(n, 0.0), np.full(n, a), np.random.default_rng(5)
    )
    assert (offer < 0).all()
    p = 1 - np.exp(-a * norm.sf(1.0))
    assert abs(bg.mean() - p) < 4 * np.sqrt(p * (1 - p) / n), (bg.mean(), p)


def _hire_world(n=N, **extra):
    """Screening where every candidate gets an offer: no fit noise, no background
    applicants, a bar nobody misses."""
    scn, pop, st = _world({"market.fit_noise_sd": 0.0, "market.hiring_bar": -10.0, **extra}, n=n)
    return scn, pop, st, _market(pop, max(n, 10), bg_applicants=0.0)


def _candidates(learner, vacancy) -> dyn.Candidates:
    learner, vacancy = np.asarray(learner, np.int64), np.asarray(vacancy, np.int64)
    return dyn.Candidates(vacancy, learner, len(learner), 0, 0, np.empty(0, np.int64))


def test_an_employed_learner_takes_an_offer_only_up_the_ladder():
    """Every candidate gets an offer. A non-employed learner takes it; an employed one
    only if its match quality beats the current job's. The offer's match quality is the
    same in any world (a hash of the week, learner and vacancy), so a world where nobody
    is employed reveals it."""
    scn, pop, st, market = _hire_world(n=3_000)
    n = len(pop)
    everyone = np.arange(n)
    slots = _own_slots(market, everyone)
    cand = _candidates(everyone, slots)

    free = copy.deepcopy(st)
    free.employed[:] = False
    taken = dyn.screen_and_hire(scn, 30, pop, free, market, cand, np.random.default_rng(9))
    assert taken.n_offers == n and len(taken.learner) == n  # the non-employed take any offer
    q = free.match.astype(float)
    assert ((q > 0) & (q < 1)).all()
    np.testing.assert_array_equal(taken.status, np.where(pop.attached[taken.learner], 1, 2))
    assert not taken.job_to_job.any()

    # now a third are not employed, a third employed at the top rung, a third at random
    group = everyone % 3
    st.employed[:] = group > 0
    old = np.where(group == 1, 1.0, np.random.default_rng(3).random(n)).astype(np.float32)
    old[group == 0] = 0.0
    st.match[:] = old
    st.job_employer[:] = -1
    hires = dyn.screen_and_hire(scn, 30, pop, st, market, cand, np.random.default_rng(9))
    assert hires.n_offers == n
    moved = np.zeros(n, bool)
    moved[hires.learner] = True
    np.testing.assert_array_equal(moved[group == 0], True)
    np.testing.assert_array_equal(moved[group == 1], False)  # nothing beats the top rung
    np.testing.assert_array_equal(moved[group == 2], q[group == 2] > old[group == 2])
    assert 0 < moved[group == 2].sum() < (group == 2).sum()
    np.testing.assert_allclose(st.match[moved], q[moved], rtol=1e-6)  # the new rung
    np.testing.assert_array_equal(st.match[~moved], old[~moved])  # stayers keep theirs
    assert (st.job_employer[~moved] == -1).all()
    np.testing.assert_array_equal(hires.job_to_job, group[hires.learner] > 0)
    assert st.employed.all()


def test_a_learner_with_several_offers_takes_the_best_match():
    """Learner L is offered two vacancies; it takes the one with the better match and the
    other stays open. Each offer's match is read from a world where it is L's only one."""
    scn, pop, st, market = _hire_world()
    st.employed[:] = False
    who = np.array([17, 17])
    a = _own_slots(market, np.array([17]))[0]
    b = a + 1  # the next slot of the same segment

    def hire(vacancies):
        state = copy.deepcopy(st)
        h = dyn.screen_and_hire(
            scn,
            30,
            pop,
            state,
            market,
            _candidates(who[: len(vacancies)], vacancies),
            np.random.default_rng(5),
        )
        return h, float(state.match[17])

    both, m_both = hire([a, b])
    (_, m_a), (_, m_b) = hire([a]), hire([b])
    assert m_a != m_b
    assert both.n_offers == 2 and both.learner.tolist() == [17]
    assert m_both == max(m_a, m_b)
    assert both.vacancy.tolist() == [a if m_a > m_b else b]


def test_unique_pairs_drops_repeated_applications():
    v, lr = dyn.unique_pairs(np.array([3, 1, 3, 1, 0]), np.array([5, 2, 5, 9, 2]))
    assert list(zip(v.tolist(), lr.tolist(), strict=True)) == [(0, 2), (1, 2), (1, 9), (3, 5)]


def test_hiring_starts_a_job_that_counts_after_the_minimum_delay():
    scn, pop, st, market = _hire_world(
        **{"calendar.new_job_min_weeks": 4, "market.in_scope_share": 1.0}
    )
    week = 27
    recent = np.flatnonzero(pop.grant_week == week - 1)[0]  # granted a week ago
    old = np.flatnonzero(pop.grant_week <= week - 4)[0]
    both = np.array([recent, old])
    st.employed[both] = False
    slots = _own_slots(market, both)
    hires = dyn.screen_and_hire(
        scn, week, pop, st, market, _candidates(both, slots), np.random.default_rng(0)
    )
    assert sorted(hires.learner.tolist()) == sorted(both.tolist())
    assert st.employed[both].all() and hires.in_scope.all()
    assert (st.last_hire_week[both] == week).all() and (st.jobs_started[both] == 1).all()
    np.testing.assert_array_equal(st.job_employer[both], market.employer_of(slots))
    assert st.job_in_scope[both].all()
    assert st.first_job_week[recent] == dyn.NO_WEEK  # too soon after the grant
    assert st.first_job_week[old] == week and st.first_scope_job_week[old] == week


def test_screening_in_two_halves_on_another_thread_changes_nothing():
    """With an executor, the lower half of the slots is screened on another thread: the
    hires, in their order, and every state array they touch are those of the plain call."""
    from concurrent.futures import ThreadPoolExecutor

    scn, pop, st, market = _busy_world(bg_applicants=2.0)
    cand = dyn.search_and_apply(
        scn,
        30,
        pop,
        st,
        market,
        _no_looks(len(pop)),
        np.random.default_rng(41),
        np.random.default_rng(42),
    )
    runs = []
    with ThreadPoolExecutor(1) as pool:
        for executor in (None, pool):
            state = copy.deepcopy(st)
            hires = dyn.screen_and_hire(
                scn, 30, pop, state, market, cand, np.random.default_rng(43), executor
            )
            runs.append((hires, state))
    (plain, st_plain), (threaded, st_threaded) = runs
    assert len(plain.learner) > 100 and plain.n_offers > len(plain.learner)
    for f in dataclasses.fields(dyn.Hires):
        np.testing.assert_array_equal(getattr(plain, f.name), getattr(threaded, f.name), f.name)
    for f in dataclasses.fields(dyn.LearnerState):
        np.testing.assert_array_equal(getattr(st_plain, f.name), getattr(st_threaded, f.name))


# ---- phase 5: reporting and flows -------------------------------------------------------------


@pytest.mark.parametrize(("prob", "lag", "seen"), [(0.0, 0.0, False), (1.0, 0.0, True)])
def test_new_jobs_are_reported_with_the_probability_and_lag(prob, lag, seen):
    scn, pop, st = _world({"market.report_prob": prob, "market.report_lag_weeks": lag})
    market = _market(pop, 10)
    old = np.flatnonzero(pop.grant_week <= 2)[:1]
    hires = _hires(scn, market, old, _own_slots(market, old), st)
    dyn.report_new_jobs(scn, 10, pop, st, hires, np.random.default_rng(0))
    assert (st.seen_job_week[old] == 10).all() == seen


def test_a_report_after_the_collection_date_is_not_seen():
    """A mean lag of 104 weeks, hired in the last week: a report comes in time with
    probability 1 - exp(-1/104), under 1%."""
    scn, pop, st = _world({"market.report_prob": 1.0, "market.report_lag_weeks": 104.0})
    market = _market(pop, 400)
    old = np.flatnonzero(pop.grant_week <= 2)[:400]
    hires = _hires(scn, market, old, _own_slots(market, old), st)
    dyn.report_new_jobs(scn, scn.calendar.n_weeks - 1, pop, st, hires, np.random.default_rng(0))
    assert (st.seen_job_week[old] != dyn.NO_WEEK).sum() <= 12


def test_reports_of_a_learner_do_not_depend_on_who_else_was_hired():
    """Report draws are a hash of the week's key and the learner (common random numbers)."""
    scn, pop, st = _world({"market.report_prob": 0.5, "market.report_lag_weeks": 2.0})
    market = _market(pop, 1_000)
    old = np.flatnonzero(pop.grant_week <= 2)[:600]
    few = copy.deepcopy(st)
    dyn.report_new_jobs(
        scn,
        20,
        pop,
        st,
        _hires(scn, market, old, _own_slots(market, old), st),
        np.random.default_rng(8),
    )
    dyn.report_new_jobs(
        scn,
        20,
        pop,
        few,
        _hires(scn, market, old[::3], _own_slots(market, old[::3]), few),
        np.random.default_rng(8),
    )
    np.testing.assert_array_equal(st.seen_job_week[old[::3]], few.seen_job_week[old[::3]])
    assert 0 < (st.seen_job_week[old] == 20).sum() < len(old)


def test_flows_end_jobs_and_keep_the_vacancy_stock_steady():
    scn, pop, st = _world(
        {
            "market.separation_rate_per_year": 10.0,
            "market.vacancy_duration_weeks": 2.0,
            "market.vacancy_fill_share": 0.5,
        },
        n=40_000,
    )
    st.employed[:] = True
    st.match[:] = 0.5
    market = _market(pop, 2_000)
    hires = _hires(scn, market, [7], _own_slots(market, np.array([7])), st)
    hires.n_touched = np.full(dyn.N_SEGMENTS, 1_000)  # vacancies with learner candidates
    hires.background_touched = np.full(dyn.N_SEGMENTS, 300)  # of which the background filled
    flow = dyn.flows(scn, 3, st, market, hires, np.random.default_rng(0), np.random.default_rng(1))
    # separations: each job held at the start of the week, with the weekly probability
    assert st.employed[7] and 7 not in flow.separated  # started this week: does not end
    p = 1 - np.exp(-10 / 52)
    n = len(pop) - 1
    assert abs(len(flow.separated) - p * n) < 4 * np.sqrt(n * p * (1 - p))
    ended = np.zeros(len(pop), bool)
    ended[flow.separated] = True
    np.testing.assert_array_equal(st.employed, ~ended)
    assert (st.match[ended] == 0).all() and (st.match[~ended] == 0.5).all()
    # vacancies: untouched ones filled by the background at vacancy_fill_share / duration,
    # plus those the background won against learners; the rest withdrawn at the same rate
    p_fill = p_exp = 0.5 / 2.0
    untouched = (market.stock - 1_000).sum()
    bg = flow.n_filled_background - 300 * dyn.N_SEGMENTS
    assert abs(bg - p_fill * untouched) < 4 * np.sqrt(untouched * p_fill * (1 - p_fill))
    still = market.stock.sum() - flow.n_filled_background - 1
    q = p_exp / (1 - p_fill)
    assert abs(flow.n_expired - q * still) < 4 * np.sqrt(still * q * (1 - q))
    # the stock is steady: what left is posted again
    assert flow.n_posted == flow.n_filled_background + flow.n_expired + 1


def test_the_market_opens_with_slots_laid_out_by_employer_size_within_segments():
    scn, pop, _ = _world({"market.in_scope_share": 0.6}, n=20_000)
    m = 24
    employers = Employers(
        domain=(np.arange(m) // 2 % 4).astype(np.int8),
        size=np.linspace(0.2, 3.0, m),
        developing=np.arange(m) % 2 == 1,
    )
    market = dyn.Market.open(scn, pop, employers, np.random.default_rng(2))
    slots = np.arange(market.n_slots)
    seg = market.segment_of_slot(slots)
    np.testing.assert_array_equal(np.bincount(seg, minlength=dyn.N_SEGMENTS), market.stock)
    owner = market.employer_of(slots)
    # a slot belongs to an employer of its own segment, and each employer's block is its own
    e_seg = dyn.segment_of(employers.domain, employers.developing)
    np.testing.assert_array_equal(e_seg[owner], seg)
    for e in range(m):
        first, count = market.employer_slots[e]
        np.testing.assert_array_equal(owner[first : first + count], e)
        assert (owner == e).sum() == count
    # larger employers hold more slots (the sizes grow with the index within a segment)
    for g in range(dyn.N_SEGMENTS):
        members = np.flatnonzero(e_seg == g)
        counts = market.employer_slots[members, 1]
        assert (np.diff(counts) >= 0).all() and counts[-1] > counts[0], (g, counts)
    # the stock is what fills a vacancy from the background at the steady-state rate
    p_fill, _ = dyn.vacancy_rates(scn)
    per_vacancy_fill = 1 - np.exp(-market.bg_applicants * dyn.background_win_prob(scn))
    np.testing.assert_allclose(per_vacancy_fill, p_fill, rtol=0.02)
    # titles in scope at the scenario's share
    assert abs(market.in_scope(scn, slots).mean() - 0.6) < 4 * np.sqrt(0.24 / len(slots))


def test_the_vacancy_stock_grows_with_the_background_share():
    """Background seekers send (1 - s) / s times the learners' applications: the stock
    that fills at the steady-state rate scales with those odds."""
    scn, pop, _ = _world(n=20_000)
    employers = Employers(
        domain=np.repeat(np.arange(4), 2).astype(np.int8),
        size=np.ones(8),
        developing=np.arange(8) % 2 == 1,
    )

    def stock(share):
        s = scn.with_overrides({"market.learner_share": share})
        return dyn.Market.open(s, pop, employers, np.random.default_rng(0)).stock

    small, large = stock(0.05), stock(0.5)
    odds = (0.95 / 0.05) / (0.5 / 0.5)
    np.testing.assert_allclose(small / large, odds, rtol=0.05)


def test_a_segment_without_its_own_employer_borrows_its_domains():
    scn, pop, _ = _world()
    employers = Employers(  # no developing-country employer at all
        domain=np.arange(4).astype(np.int8), size=np.ones(4), developing=np.zeros(4, bool)
    )
    market = dyn.Market.open(scn, pop, employers, np.random.default_rng(0))
    slots = np.arange(market.n_slots)
    seg = market.segment_of_slot(slots)
    np.testing.assert_array_equal(employers.domain[market.employer_of(slots)], seg // 2)
    assert market.stock[1::2].sum() > 0  # developing segments still have vacancies


def test_employed_learners_are_candidates_only_for_better_matches():
    """Directed on-the-job search: an employed learner at rung m keeps about 1 - m of its
    candidacies, each with a match above m; a non-employed learner keeps them all."""
    _, pop, st = _world()
    st.match[:] = np.where(st.employed, 0.7, 0.0).astype(np.float32)
    key = np.uint64(12345)
    learner = np.repeat(np.arange(len(pop), dtype=np.int64), 20)
    vacancy = np.tile(np.arange(20, dtype=np.int64), len(pop))
    keep = dyn._worth_moving(key, st, vacancy, learner)
    emp = st.employed[learner]
    assert keep[~emp].all()
    q = dyn.match_quality(key, vacancy[emp], learner[emp])
    np.testing.assert_array_equal(keep[emp], q > 0.7)
    assert abs(keep[emp].mean() - 0.3) < 0.02


def test_a_new_hire_does_not_search_while_settling_in():
    """An employed learner hired fewer than ``settling_in_weeks`` ago keeps no candidacy;
    one hired earlier keeps the better matches; the non-employed keep all."""
    _, pop, st = _world()
    st.match[:] = np.where(st.employed, 0.2, 0.0).astype(np.float32)
    st.last_hire_week[:] = np.where(np.arange(len(pop)) % 2 == 0, 30, 10).astype(np.int16)
    key = np.uint64(777)
    learner = np.repeat(np.arange(len(pop), dtype=np.int64), 10)
    vacancy = np.tile(np.arange(10, dtype=np.int64), len(pop))
    keep = dyn._worth_moving(key, st, vacancy, learner, week=35, settling_in_weeks=13)
    emp = st.employed[learner]
    fresh = emp & (learner % 2 == 0)  # hired in week 30: 5 weeks into the job
    assert emp.any() and fresh.any()
    assert not keep[fresh].any()
    old = emp & ~fresh
    q = dyn.match_quality(key, vacancy[old], learner[old])
    np.testing.assert_array_equal(keep[old], q > 0.2)
    assert keep[~emp].all()
    # no settling-in: the fresh hires keep their better matches too
    keep0 = dyn._worth_moving(key, st, vacancy, learner, week=35, settling_in_weeks=0)
    assert keep0[fresh].any()
