"""Each phase of the week (sim.dynamics) against its own rule, on small hand-set states.

The model tests check a whole run's invariants; these check one rule at a time: a phase
is called on a state set up for the rule, with the other parameters switched off, and its
output is compared with what the docstring says (exactly, or within stated statistical
tolerances).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_scenario
from scipy.stats import poisson

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
    return scn, pop, state


def _empty_graph(n: int, m: int = 1) -> ProfessionalGraph:
    return ProfessionalGraph.from_networkx(_nx_graph(n, m))


def _nx_graph(n: int, m: int):
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n), kind="learner")
    g.add_nodes_from(range(n, n + m), kind="employer")
    return g


def _market(scn, pop, n_vacancies: int, domain: int = 0, in_scope: bool = True) -> dyn.Market:
    employers = Employers(domain=np.array([domain], np.int8), size=np.ones(1))
    market = dyn.Market.open(
        scn.with_overrides({"market.vacancies_per_1000": 0.0}),
        pop,
        employers,
        0,
        np.random.default_rng(0),
    )
    market.vacancies = dyn.Vacancies(
        id=np.arange(n_vacancies, dtype=np.int64),
        employer=np.zeros(n_vacancies, np.int32),
        domain=np.full(n_vacancies, domain, np.int8),
        in_scope=np.full(n_vacancies, in_scope),
        posted_week=np.zeros(n_vacancies, np.int16),
    )
    market.next_vacancy_id = n_vacancies
    return market


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


def test_applications_go_to_open_vacancies_at_the_poisson_rate():
    scn, pop, st = _world(
        {
            "market.applications_unemployed": 2.0,
            "market.applications_employed": 0.0,
            "market.in_domain_application_share": 1.0,
            "market.sourced_per_vacancy": 0.0,
        },
        n=20_000,
    )
    st.employed[:] = np.arange(len(pop)) % 2 == 0
    market = _market(scn, pop, 50, domain=0)
    seen = dyn.Seen(
        np.zeros(len(pop), np.int32),
        np.zeros(len(pop), np.int32),
        np.empty(0, np.int64),
        np.empty(0, np.int64),
    )
    cand = dyn.search_and_apply(
        scn, 10, pop, st, market, seen, np.random.default_rng(11), np.random.default_rng(12)
    )
    assert cand.n_sourced == cand.n_feed == 0
    assert not st.employed[cand.learner].any()  # the employed send none
    assert (pop.domain[cand.learner] == 0).all()  # in-domain only, and vacancies are in 0
    assert ((cand.vacancy >= 0) & (cand.vacancy < 50)).all()
    n_searching = int(((~st.employed) & (pop.domain == 0)).sum())
    assert abs(cand.n_applications - 2.0 * n_searching) < 4 * np.sqrt(2.0 * n_searching)


def test_a_search_pause_makes_the_recently_hired_unavailable():
    scn, _, st = _world({"market.search_pause_weeks": 10.0})
    st.employed[:3] = True
    st.last_hire_week[:3] = [2, 12, dyn.NO_WEEK]  # 12, 2 and never weeks ago
    avail = dyn.searching(scn, 14, st)
    assert avail[:3].tolist() == [True, False, True]
    assert dyn.searching(small_scenario(N), 14, st) is None  # no pause: everyone


def test_poisson_by_inversion_is_poisson_and_uses_one_uniform_per_draw():
    u = np.random.default_rng(0).random(200_000)
    for lam in (0.0, 0.7, 3.0, 25.0):
        x = dyn.poisson_quantile(lam, u)
        np.testing.assert_array_equal(x, poisson.ppf(u, lam).astype(np.int64) if lam else 0)
    # a learner's count depends on its own uniform only
    np.testing.assert_array_equal(
        dyn.poisson_quantile(0.7, u[:10]), dyn.poisson_quantile(0.7, u)[:10]
    )


# ---- phase 4: screening and hiring ----------------------------------------------------------


def test_beliefs_are_normal_normal_updates_on_a_shared_credential():
    scn, pop, _ = _world({"signal.credibility": 0.5})
    shared = np.zeros(N, bool)
    shared[::2] = True
    idx = np.arange(N)
    post = dyn.posterior_mean(scn, idx, pop, shared)
    tp = pop.prior_precision.astype(float)
    tc = 0.5 * pop.signal_precision.astype(float)
    expect = (tp * pop.prior_mean + tc * pop.signal) / (tp + tc)
    np.testing.assert_allclose(post[shared], expect[shared], rtol=1e-5)
    np.testing.assert_allclose(post[~shared], pop.prior_mean[~shared], rtol=1e-6)
    off = small_scenario(N, {"signal.credibility": 0.0})
    np.testing.assert_allclose(dyn.posterior_mean(off, idx, pop, shared), pop.prior_mean)


def test_the_best_candidate_above_the_bar_is_hired_once():
    scn = small_scenario(
        N,
        {"market.fit_noise_sd": 0.0, "market.background_applicants": 0.0, "market.hiring_bar": 0.5},
    )
    # vacancy 0: learners 1 (0.9) and 2 (0.7); vacancy 1: learner 1 (0.9) again and 3 (0.2);
    # vacancy 2: learner 3 only (below the bar)
    vac = np.array([0, 0, 1, 1, 2])
    lrn = np.array([1, 2, 1, 3, 3])
    belief = np.array([0.9, 0.7, 0.9, 0.2, 0.2])
    hires = dyn.choose(scn, vac, lrn, belief, 3, np.random.default_rng(0))
    # learner 1 is best at both 0 and 1 and takes one offer; the other vacancy stays open
    assert hires.learner.tolist() == [1]
    assert len(hires.vacancy) == 1 and hires.vacancy[0] in (0, 1)
    assert hires.background.size == 0
    filled = hires.filled(3)
    assert filled.sum() == 1 and not filled[2]


def test_a_better_background_applicant_takes_the_vacancy():
    scn = small_scenario(
        N,
        {
            "market.fit_noise_sd": 0.0,
            "market.background_applicants": 500.0,
            "market.background_skill_mean": 3.0,
            "market.hiring_bar": 0.0,
        },
    )
    hires = dyn.choose(
        scn, np.array([0]), np.array([7]), np.array([0.5]), 1, np.random.default_rng(0)
    )
    assert hires.learner.size == 0 and hires.background.tolist() == [0]


def test_unique_pairs_drops_repeated_applications():
    v, lr = dyn.unique_pairs(np.array([3, 1, 3, 1, 0]), np.array([5, 2, 5, 9, 2]))
    assert list(zip(v.tolist(), lr.tolist(), strict=True)) == [(0, 2), (1, 2), (1, 9), (3, 5)]


def test_hiring_starts_a_job_that_counts_after_the_minimum_delay():
    scn, pop, st = _world(
        {
            "market.fit_noise_sd": 0.0,
            "market.background_applicants": 0.0,
            "market.hiring_bar": -10.0,
            "calendar.new_job_min_weeks": 4,
        }
    )
    market = _market(scn, pop, 2, in_scope=True)
    week = 27
    recent = np.flatnonzero(pop.grant_week == week - 1)[0]  # granted a week ago
    old = np.flatnonzero(pop.grant_week <= week - 4)[0]
    cand = dyn.Candidates(np.array([0, 1]), np.array([recent, old]), 2, 0, 0, np.zeros(N, np.int32))
    dyn.screen_and_hire(scn, week, pop, st, market, cand, np.random.default_rng(0))
    assert st.employed[[recent, old]].all()
    assert (st.last_hire_week[[recent, old]] == week).all()
    assert st.first_job_week[recent] == dyn.NO_WEEK  # too soon after the grant
    assert st.first_job_week[old] == week and st.first_scope_job_week[old] == week


# ---- phase 5: reporting and flows -------------------------------------------------------------


@pytest.mark.parametrize(("prob", "lag", "seen"), [(0.0, 0.0, False), (1.0, 0.0, True)])
def test_new_jobs_are_reported_with_the_probability_and_lag(prob, lag, seen):
    scn, pop, st = _world({"market.report_prob": prob, "market.report_lag_weeks": lag})
    market = _market(scn, pop, 1)
    old = np.flatnonzero(pop.grant_week <= 2)[:1]
    hires = dyn.Hires(np.array([0]), old, np.empty(0, np.int64), 1)
    dyn.report_new_jobs(scn, 10, pop, st, market, hires, np.random.default_rng(0))
    assert (st.seen_job_week[old] == 10).all() == seen


def test_a_report_after_the_collection_date_is_not_seen():
    """A mean lag of 104 weeks, hired in the last week: a report comes in time with
    probability 1 - exp(-1/104), under 1%."""
    scn, pop, st = _world({"market.report_prob": 1.0, "market.report_lag_weeks": 104.0})
    market = _market(scn, pop, 400)
    old = np.flatnonzero(pop.grant_week <= 2)[:400]
    hires = dyn.Hires(np.arange(400), old, np.empty(0, np.int64), 400)
    dyn.report_new_jobs(
        scn, scn.calendar.n_weeks - 1, pop, st, market, hires, np.random.default_rng(0)
    )
    assert (st.seen_job_week[old] != dyn.NO_WEEK).sum() <= 12


def test_flows_end_jobs_expire_and_post_vacancies():
    scn, pop, st = _world(
        {
            "market.separation_rate_per_year": 10.0,
            "market.vacancy_duration_weeks": 1.0,
            "market.vacancies_per_1000": 10.0,
        },
        n=40_000,
    )
    st.employed[:] = True
    market = _market(scn, pop, 5)
    hires = dyn.Hires(np.array([0]), np.array([7]), np.array([1]), 1)
    flow = dyn.flows(scn, 3, st, market, hires, np.random.default_rng(0), np.random.default_rng(1))
    assert st.employed[7]  # a job started this week does not end this week
    p = 1 - np.exp(-10 / 52)
    n = len(pop) - 1
    assert abs(flow.separated.sum() - p * n) < 4 * np.sqrt(n * p * (1 - p))
    assert not flow.separated[7]
    assert (st.employed == ~flow.separated).all()
    assert flow.n_expired == 3  # unfilled vacancies 2, 3, 4 expire; 0 and 1 were filled
    new = market.vacancies
    assert len(new) == flow.n_posted
    assert (new.posted_week == 3).all()
    np.testing.assert_array_equal(new.id, np.arange(5, 5 + flow.n_posted))
    assert market.next_vacancy_id == 5 + flow.n_posted


def test_vacancies_are_posted_in_their_employers_domain():
    scn, pop, _ = _world({"market.vacancies_per_1000": 50.0})
    employers = Employers(domain=np.array([0, 1, 2, 3], np.int8), size=np.array([1, 2, 3, 4.0]))
    market = dyn.Market.open(scn, pop, employers, -8, np.random.default_rng(2))
    v = market.vacancies
    assert len(v) > 0 and (v.posted_week == -8).all()
    np.testing.assert_array_equal(v.domain, employers.domain[v.employer])
    # larger employers post more, in proportion to size
    counts = np.bincount(v.employer, minlength=4)
    assert counts[3] > counts[0]
