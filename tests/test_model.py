"""The weekly model (sim.model, sim.dynamics): invariants, determinism, channels.

Statistical checks use stated tolerances (binomial standard errors) or twin runs with
common random numbers (same seed, same population, one thing changed), which remove
most of the noise: two models built from one seed share the population, the graph and
every weekly draw, learner by learner.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import (
    SEED,
    assert_global_random_state_is,
    global_random_state,
    scenario_file,
    small_scenario,
)

from sim.agents import Employer, Learner
from sim.model import NO_WEEK, CredentialMarket
from sim.params import Scenario

# ---- helpers ---------------------------------------------------------------------------


def _run(scn: Scenario, seed: int = SEED, **kwargs) -> CredentialMarket:
    model = CredentialMarket(scn, rng=seed, **kwargs)
    model.run()
    return model


def _twins(scn: Scenario, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study run and its mirror: same seed (so same population, graph and draws),
    every learner's arm flipped. Returns both final learner frames."""
    a = _run(scn, seed)
    b = _run(scn, seed, treated=~a.treated)
    return a.learners_frame(), b.learners_frame()


def _has(week: pd.Series | np.ndarray) -> np.ndarray:
    """Where a week is set: a frame's nullable column, or a state array (NO_WEEK: never)."""
    if isinstance(week, pd.Series):
        return week.notna().to_numpy()
    week = np.asarray(week)
    return ~np.isnan(week) if week.dtype.kind == "f" else week != NO_WEEK


JOB_OUTCOMES = (
    "first_job_week",
    "first_scope_job_week",
    "seen_job_week",
    "seen_scope_job_week",
    "employed",
    "jobs_started",
)


def _binomial_se(p1: float, n1: int, p0: float, n0: int) -> float:
    p = (p1 * n1 + p0 * n0) / (n1 + n0)
    return float(np.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n0)))


# ---- invariants of one run ---------------------------------------------------------------


def test_run_reaches_the_collection_date(small_run):
    model, res = small_run.model, small_run.result
    cal = model.params.calendar
    assert not model.running
    assert res.series["week"].tolist() == list(range(-cal.burn_in_weeks, cal.n_weeks))
    assert len(res.learners) == model.params.population.n_learners


def test_a_vacancy_is_filled_at_most_once_a_week(small_run):
    """A vacancy slot gets at most one offer a week, and a filled slot is an open one of
    the steady stock, with the employer and title the market gives that slot."""
    model, hires = small_run.model, small_run.result.hires
    mk = model.market
    assert len(hires) > 100
    assert not hires.duplicated(["week", "slot"]).any()
    slot = hires["slot"].to_numpy()
    assert slot.min() >= 0 and slot.max() < model.vacancies_open
    np.testing.assert_array_equal(hires["employer"], mk.employer_of(slot))
    np.testing.assert_array_equal(hires["in_scope"], mk.in_scope(model.params, slot))


def test_a_learner_is_hired_at_most_once_a_week(small_run):
    hires = small_run.result.hires
    assert (hires["learner"] >= 0).all()
    assert hires["learner"].max() < len(small_run.result.learners)
    assert not hires.duplicated(["week", "learner"]).any()
    assert set(hires["status"].cat.categories) == {"employed", "unemployed", "marginal"}
    assert hires["status"].notna().all()


def test_hires_log_matches_jobs_started(small_run):
    res = small_run.result
    n = len(res.learners)
    counted = np.bincount(res.hires["learner"].to_numpy(np.int64), minlength=n)
    np.testing.assert_array_equal(counted, res.learners["jobs_started"].to_numpy())


def test_employment_state_is_consistent(small_run):
    model, df = small_run.model, small_run.result.learners
    assert df["employed"].dtype == bool
    employed, started = df["employed"].to_numpy(), df["jobs_started"].to_numpy()
    job_employer = df["job_employer"].to_numpy(dtype=float, na_value=-1)
    n_employers = len(model.market.employers)
    hired_now = employed & (started > 0)
    assert hired_now.any()
    assert (job_employer[hired_now] >= 0).all()
    assert (job_employer < n_employers).all()
    # a learner never hired in the run holds no employer's job
    assert (job_employer[started == 0] == -1).all()
    # learners who never found a job keep their baseline status or lost it
    baseline = df["employed_baseline"].to_numpy()
    assert not (employed & (started == 0) & ~baseline).any()


def test_the_vacancy_stock_is_steady(small_run, weekly_trace):
    """The market holds a steady stock of vacancies: every week as many are posted as
    were filled or withdrawn, so the stock of each segment never changes."""
    for run in (small_run.result.series, weekly_trace.model.series()):
        assert (run["vacancies_open"] == run["vacancies_open"].iloc[0]).all()
        np.testing.assert_array_equal(
            run["vacancies_posted"], run["vacancies_filled"] + run["vacancies_expired"]
        )
        assert (run["vacancies_posted"] > 0).all()
    model = weekly_trace.model
    stock = model.market.stock
    assert model.vacancies_open == stock.sum() == model.market.n_slots > 0
    for rec in weekly_trace.weeks:
        assert rec.open_before == rec.open_after == stock.sum(), rec.week
        np.testing.assert_array_equal(rec.stock_after, stock)


def test_the_status_counts_follow_the_learners(small_run, weekly_trace):
    s = small_run.result.series
    n = len(small_run.result.learners)
    np.testing.assert_array_equal(s["n_employed"] + s["n_unemployed"] + s["n_marginal"], n)
    np.testing.assert_array_equal(
        s["hires_learners"],
        s["hires_job_to_job"] + s["hires_from_unemployed"] + s["hires_from_marginal"],
    )
    assert (s["offers_to_learners"] >= s["hires_learners"]).all()
    assert (s["offers_to_learners"] > s["hires_learners"]).any()  # employed learners decline
    # the counts are taken at the start of each week: last week's employment
    t = weekly_trace.model.series()
    employed_after = np.array([rec.employed.sum() for rec in weekly_trace.weeks])
    np.testing.assert_array_equal(t["n_employed"].to_numpy()[1:], employed_after[:-1])


def test_weekly_counts_add_up(small_run):
    s, hires = small_run.result.series, small_run.result.hires
    opened = s["vacancies_open"].to_numpy()
    flow = (
        s["vacancies_open"] - s["vacancies_filled"] - s["vacancies_expired"] + s["vacancies_posted"]
    ).to_numpy()
    np.testing.assert_array_equal(opened[1:], flow[:-1])
    np.testing.assert_array_equal(
        s["vacancies_filled"], s["hires_learners"] + s["hires_background"]
    )
    per_week = hires.groupby("week").size().reindex(s["week"], fill_value=0).to_numpy()
    np.testing.assert_array_equal(per_week, s["hires_learners"].to_numpy())
    for col in (
        "vacancies_open",
        "vacancies_posted",
        "vacancies_filled",
        "vacancies_expired",
        "applications",
        "sourced",
        "feed_candidates",
        "views",
        "own_views",
        "separations",
        "hires_learners",
        "hires_background",
        "hires_job_to_job",
        "hires_from_unemployed",
        "hires_from_marginal",
        "offers_to_learners",
        "n_employed",
        "n_unemployed",
        "n_marginal",
    ):
        assert (s[col] >= 0).all(), col
    assert (s["vacancies_filled"] + s["vacancies_expired"] <= s["vacancies_open"]).all()


def test_weekly_counts_match_the_final_state(small_run):
    s, df = small_run.result.series, small_run.result.learners
    assert s["views"].sum() == df["views"].sum()
    assert s["own_views"].sum() == df["own_views"].sum()
    assert s["hires_learners"].sum() == df["jobs_started"].sum()
    assert s["granted"].iloc[-1] == len(df)


def test_shares_and_rates_are_in_the_unit_interval(small_run):
    s, df = small_run.result.series, small_run.result.learners
    granted = s["granted"] > 0
    for col in ("shared_treated", "shared_control", "employed"):
        vals = s.loc[granted, col]
        assert vals.notna().all() and vals.between(0, 1).all(), col
    # before the first graduation there is no one to share: undefined, not a number
    assert s.loc[~granted, "shared_treated"].isna().all()
    for col in ("shared", "employed", "treated", "matched"):
        assert 0 <= df[col].mean() <= 1
    assert 0 < df["shared"].mean() < 1
    assert 0 < df["employed"].mean() < 1


def test_series_sharing_rates_match_the_final_state(small_run):
    s, df = small_run.result.series, small_run.result.learners
    t = df["treated"].to_numpy()
    assert s["shared_treated"].iloc[-1] == pytest.approx(df["shared"][t].mean())
    assert s["shared_control"].iloc[-1] == pytest.approx(df["shared"][~t].mean())
    assert s["employed"].iloc[-1] == pytest.approx(df["employed"].mean())


def test_sharing_never_unhappens(weekly_trace):
    grant = weekly_trace.model.population.grant_week
    prev_shared = np.zeros_like(grant, dtype=bool)
    prev_week = np.full(len(grant), NO_WEEK)
    for rec in weekly_trace.weeks:
        shared, sw = rec.shared, rec.share_week
        assert (shared >= prev_shared).all(), rec.week
        assert (_has(sw) == shared).all(), rec.week
        # a share week, once set, never changes
        assert (sw[prev_shared] == prev_week[prev_shared]).all(), rec.week
        assert (sw[shared] <= rec.week).all(), rec.week
        assert (sw[shared] >= grant[shared]).all(), rec.week
        prev_shared, prev_week = shared, sw
    assert prev_shared.any()


def test_no_learner_shares_before_its_grant_week(weekly_trace):
    grant = weekly_trace.model.population.grant_week
    for rec in weekly_trace.weeks:
        assert not (rec.shared & (grant > rec.week)).any(), rec.week
        if rec.week < 0:
            assert not rec.shared.any()


def test_new_jobs_start_after_the_minimum_delay(small_run):
    model, df = small_run.model, small_run.result.learners
    k = model.params.calendar.new_job_min_weeks
    for col in ("first_job_week", "first_scope_job_week", "seen_job_week", "seen_scope_job_week"):
        w = df[col].to_numpy()
        has = _has(w)
        assert has.any(), col
        assert (w[has] >= df["grant_week"].to_numpy()[has] + k).all(), col
        assert (w[has] < model.end_week).all(), col


def test_reported_jobs_are_counted_jobs(small_run):
    df = small_run.result.learners
    first, seen = df["first_job_week"].to_numpy(), df["seen_job_week"].to_numpy()
    first_sc, seen_sc = df["first_scope_job_week"].to_numpy(), df["seen_scope_job_week"].to_numpy()
    # seen is the first *reported* counted job, so it can only come at or after the first
    assert (_has(first)[_has(seen)]).all()
    assert (seen[_has(seen)] >= first[_has(seen)]).all()
    assert (_has(first_sc)[_has(seen_sc)]).all()
    assert (seen_sc[_has(seen_sc)] >= first_sc[_has(seen_sc)]).all()
    # an in-scope job is a job: in-scope outcomes imply (and follow) the general ones
    assert (_has(first)[_has(first_sc)]).all()
    assert (first_sc[_has(first_sc)] >= first[_has(first_sc)]).all()
    assert (_has(seen)[_has(seen_sc)]).all()
    assert (seen_sc[_has(seen_sc)] >= seen[_has(seen_sc)]).all()
    assert (df["jobs_started"][_has(first)] >= 1).all()
    # not every counted job is reported (report_prob < 1, lags, censoring)
    assert _has(seen).sum() < _has(first).sum()


def test_views_are_nonnegative(small_run):
    df = small_run.result.learners
    assert (df["views"] >= 0).all() and (df["own_views"] >= 0).all()
    assert df["views"].sum() > 0 and df["own_views"].sum() > 0


# ---- determinism and agents ----------------------------------------------------------------


def test_same_seed_gives_identical_output(small_run):
    again = CredentialMarket(small_run.model.params, rng=SEED)
    res = again.run()
    pd.testing.assert_frame_equal(res.learners, small_run.result.learners)
    pd.testing.assert_frame_equal(res.series, small_run.result.series)
    pd.testing.assert_frame_equal(res.hires, small_run.result.hires)
    assert res.seed == small_run.result.seed == SEED


def test_the_second_core_changes_no_number(small_run, monkeypatch):
    """The same run on one core (no worker thread: no draws made ahead, no graph halves,
    no recruiters or screening beside the main thread) gives the same tables."""
    import sim.model

    monkeypatch.setattr(sim.model, "second_core", lambda: None)
    one_core = CredentialMarket(small_run.model.params, rng=SEED).run()
    pd.testing.assert_frame_equal(one_core.learners, small_run.result.learners)
    pd.testing.assert_frame_equal(one_core.series, small_run.result.series)
    pd.testing.assert_frame_equal(one_core.hires, small_run.result.hires)


def test_draws_made_ahead_are_the_generators_own_and_come_in_order():
    from concurrent.futures import ThreadPoolExecutor

    from sim.model import Streams, _DrawnAhead

    streams = Streams(5)
    with ThreadPoolExecutor(1) as pool:
        ahead = _DrawnAhead(pool.submit(_DrawnAhead.make, streams, 3, "visibility", 100))
        fresh = streams.weekly(3, "visibility")
        for _ in range(2):  # the two draws made ahead, then the generator goes on
            np.testing.assert_array_equal(
                ahead.random(100, dtype=np.float32), fresh.random(100, dtype=np.float32)
            )
        np.testing.assert_array_equal(ahead.random(7), fresh.random(7))
        assert ahead.integers(0, 10, 5).tolist() == fresh.integers(0, 10, 5).tolist()
        wrong = _DrawnAhead(pool.submit(_DrawnAhead.make, streams, 3, "share", 100))
        with pytest.raises(RuntimeError, match="out of order"):
            wrong.random(50, dtype=np.float32)
        with pytest.raises(RuntimeError, match="out of order"):
            wrong.poisson(1.0, 5)


def test_a_model_pickles_mid_run_and_goes_on_alike():
    import pickle

    scn = small_scenario(3_000)
    a = CredentialMarket(scn, rng=SEED)
    for _ in range(5):
        a.step()
    b = pickle.loads(pickle.dumps(a))  # draws made ahead are dropped, then made in place
    ra, rb = a.run(), b.run()
    pd.testing.assert_frame_equal(ra.learners, rb.learners)
    pd.testing.assert_frame_equal(ra.series, rb.series)


def test_different_seeds_differ(small_run):
    other = CredentialMarket(small_run.model.params, rng=SEED + 99).run()
    a, b = small_run.result.learners, other.learners
    for col in ("domain", "skill", "grant_week", "treated", "shared", "views"):
        assert not a[col].equals(b[col]), col
    assert not small_run.result.series["hires_learners"].equals(other.series["hires_learners"])


def test_global_random_state_is_untouched():
    before = global_random_state()
    model = CredentialMarket(small_scenario(2_000), rng=3)
    for _ in range(12):
        model.step()
    model.result()
    assert_global_random_state_is(before)


def test_a_seed_sequence_is_accepted_and_recorded():
    ss = np.random.SeedSequence(1234)
    a = CredentialMarket(small_scenario(2_000), rng=ss)
    b = CredentialMarket(small_scenario(2_000), rng=1234)
    assert a.seed == b.seed == 1234
    np.testing.assert_array_equal(a.population.skill, b.population.skill)


def test_agents_are_views_of_the_arrays(small_run):
    model = small_run.model
    n, m = len(model.population), len(model.market.employers)
    assert len(model.learners) == n
    assert len(model.employers) == m
    assert len(model.agents) == n + m
    assert all(isinstance(a, Learner) for a in model.learners)
    assert all(isinstance(e, Employer) for e in model.employers)
    st = model.state
    for i in range(n):
        agent = model.learner(i)
        assert agent.idx == i
        assert agent.shared == bool(st.shared[i])
        assert agent.employed == bool(st.employed[i])
        job = agent.job
        if st.employed[i]:
            assert job is not None
            assert job.employer == st.job_employer[i]
            assert job.in_scope == bool(st.job_in_scope[i])
        else:
            assert job is None
        assert [a.idx for a in agent.neighbors] == model.network.learner_neighbors(i).tolist()
        assert agent.views == st.views[i]
        assert agent.treated == bool(model.treated[i])
        assert (agent.share_week is None) == (not st.shared[i])
    slots = np.arange(model.vacancies_open)
    assert sum(model.employer(e).open_vacancies for e in range(m)) == len(slots)
    for e in range(m):
        emp = model.employer(e)
        assert emp.open_vacancies == int((model.market.employer_of(slots) == e).sum())
        assert emp.developing == bool(model.market.employers.developing[e])
        assert [a.idx for a in emp.followees] == model.network.employer_followees(e).tolist()


def test_agent_views_follow_the_state_during_a_run():
    model = CredentialMarket(small_scenario(2_000), rng=5)
    learner = model.learner(0)
    for _ in range(20):
        model.step()
        assert learner.shared == bool(model.state.shared[0])
        assert learner.employed == bool(model.state.employed[0])


def test_agent_views_are_built_on_first_access_and_change_no_number(small_run):
    """The agent views cost seconds at the study's scale, so a run that never looks at
    them never builds them; building them (``agents=True`` or first access) changes no
    number."""
    headless = CredentialMarket(small_run.model.params, rng=SEED)
    res = headless.run()
    assert len(headless.agents) == 0
    eager = CredentialMarket(small_run.model.params, rng=SEED, agents=True)
    assert len(eager.agents) == len(eager.population) + len(eager.market.employers)
    for other in (res, eager.run()):
        pd.testing.assert_frame_equal(other.learners, small_run.result.learners)
        pd.testing.assert_frame_equal(other.series, small_run.result.series)
        pd.testing.assert_frame_equal(other.hires, small_run.result.hires)
    assert headless.learner(0).idx == 0
    assert len(headless.agents) == len(headless.population) + len(headless.market.employers)


def test_treated_vector_must_match_the_population():
    with pytest.raises(ValueError, match="treated"):
        CredentialMarket(small_scenario(2_000), rng=1, treated=np.zeros(1_999, bool))


def test_default_assignment_is_balanced_within_strata(small_run):
    df = small_run.result.learners
    cells = df.groupby(["stratum", "batch"], observed=True)["treated"].agg(["sum", "size"])
    # floor(g/2) or ceil(g/2) treated in every batch x stratum cell
    assert (np.abs(cells["sum"] - cells["size"] / 2) <= 0.5).all()


# ---- A/A, twins and the exclusion restriction ------------------------------------------------


def test_no_nudge_arms_differ_only_by_noise():
    scn = scenario_file("no_nudge").with_overrides({"population.n_learners": 20_000})
    df = _run(scn).learners_frame()
    t = df["treated"].to_numpy()
    for name, y in (
        ("shared", df["shared"].to_numpy()),
        ("new job", _has(df["first_job_week"])),
        ("reported new job", _has(df["seen_job_week"])),
    ):
        p1, p0 = y[t].mean(), y[~t].mean()
        se = _binomial_se(p1, int(t.sum()), p0, int((~t).sum()))
        assert abs(p1 - p0) < 4 * se, (name, p1, p0, se)


def test_twins_from_one_seed_share_population_graph_and_behaviour():
    scn = small_scenario(5_000)
    a = CredentialMarket(scn, rng=SEED)
    b = CredentialMarket(scn, rng=SEED, treated=~a.treated)
    for f in ("skill", "signal", "domain", "grant_week", "activity", "employed0"):
        np.testing.assert_array_equal(getattr(a.population, f), getattr(b.population, f))
    np.testing.assert_array_equal(a.network.ll_indices, b.network.ll_indices)
    np.testing.assert_array_equal(a.network.le_indices, b.network.le_indices)
    np.testing.assert_array_equal(a.state.app_open_week, b.state.app_open_week)
    np.testing.assert_array_equal(b.treated, ~a.treated)


def test_twin_given_the_population_keeps_common_random_numbers():
    """``population=`` is how a twin shares a pre-drawn population (model docstring); it
    must not change anything else: employers, graph and weekly draws stay common, so in
    the no-nudge world the mirror's outcomes are the study's, learner by learner."""
    scn = scenario_file("no_nudge").with_overrides({"population.n_learners": 5_000})
    a = CredentialMarket(scn, rng=SEED)
    b = CredentialMarket(scn, rng=SEED, population=a.population, treated=~a.treated)
    np.testing.assert_array_equal(a.market.employers.domain, b.market.employers.domain)
    np.testing.assert_array_equal(a.market.employers.size, b.market.employers.size)
    np.testing.assert_array_equal(a.network.le_indices, b.network.le_indices)
    a.run()
    b.run()
    pd.testing.assert_frame_equal(
        a.learners_frame().drop(columns="treated"), b.learners_frame().drop(columns="treated")
    )


def test_no_nudge_twins_are_identical_learner_by_learner():
    scn = scenario_file("no_nudge").with_overrides({"population.n_learners": 10_000})
    a, b = _twins(scn)
    assert (a["treated"] != b["treated"]).all()
    pd.testing.assert_frame_equal(a.drop(columns="treated"), b.drop(columns="treated"))


def test_without_channels_sharing_does_not_reach_jobs():
    """Signal off (employers never read the credential, not even the fact of completion)
    and visibility off: the nudge changes who shares and who views whose certificate, and
    nothing about anyone's jobs (the exclusion restriction, learner by learner): every
    hire, every vacancy count and every job outcome of the twins is the same."""
    scn = scenario_file("no_channels").with_overrides({"population.n_learners": 10_000})
    assert not scn.signal.enabled and not scn.visibility.enabled
    a = _run(scn)
    b = _run(scn, treated=~a.treated)
    fa, fb = a.learners_frame(), b.learners_frame()
    assert (fa["shared"] != fb["shared"]).sum() > 50
    for col in JOB_OUTCOMES:
        np.testing.assert_array_equal(fa[col].to_numpy(), fb[col].to_numpy(), err_msg=col)
    np.testing.assert_array_equal(a.state.match, b.state.match)
    pd.testing.assert_frame_equal(a.hires_log(), b.hires_log())
    pd.testing.assert_frame_equal(a.separations_log(), b.separations_log())
    # what sharing can touch: who shared and the certificate views (exposure)
    touched = {"shared_treated", "shared_control", "views"}
    sa, sb = a.series(), b.series()
    untouched = [c for c in sa.columns if c not in touched]
    pd.testing.assert_frame_equal(sa[untouched], sb[untouched])
    assert not sa["shared_treated"].equals(sb["shared_treated"])


def test_with_both_channels_twin_job_outcomes_differ():
    """Control for the test above: with the defaults, sharing does reach jobs."""
    scn = small_scenario(10_000)
    a, b = _twins(scn)
    assert (a["shared"] != b["shared"]).sum() > 50
    for col in ("first_job_week", "seen_job_week", "employed"):
        assert (a[col] != b[col]).sum() > 10, col


@pytest.mark.parametrize(
    "overrides",
    [
        {"visibility.enabled": False},
        {"signal.enabled": False},
        {"signal.credibility": 0.0, "visibility.enabled": False},
    ],
    ids=["signal only", "visibility only", "news of completion only"],
)
def test_each_channel_alone_lets_sharing_reach_jobs(overrides):
    """Either channel alone reaches jobs; so does the signal at credibility 0, which still
    tells employers that the course was completed (only ``signal.enabled = false``
    removes that)."""
    a, b = _twins(small_scenario(10_000, overrides))
    assert (a["first_job_week"] != b["first_job_week"]).sum() > 0


# ---- sharing, views and the direction of effects ---------------------------------------------


def test_sharers_get_more_certificate_views(small_run):
    df = small_run.result.learners
    sharers = df["views"][df["shared"]].to_numpy(float)
    others = df["views"][~df["shared"]].to_numpy(float)
    se = np.sqrt(sharers.var(ddof=1) / len(sharers) + others.var(ddof=1) / len(others))
    assert sharers.mean() - others.mean() > 3 * se


def test_a_stronger_nudge_gives_treated_learners_more_views():
    scn = small_scenario(10_000)
    zero = _run(scn.with_overrides({"sharing.nudge_strength": 0.0})).learners_frame()
    high = _run(scn.with_overrides({"sharing.nudge_strength": 5.0})).learners_frame()
    t = zero["treated"].to_numpy()
    assert (high["treated"].to_numpy() == t).all()
    assert high["shared"][t].mean() > zero["shared"][t].mean() + 0.2
    d = (high["views"].to_numpy(float) - zero["views"].to_numpy(float))[t]
    assert d.mean() > 3 * d.std(ddof=1) / np.sqrt(len(d))


def test_raising_the_nudge_raises_treated_sharing_only():
    """With common random numbers a learner who shares under a weak nudge also shares
    under a stronger one; control learners are untouched."""
    scn = small_scenario(10_000)
    weak = _run(scn.with_overrides({"sharing.nudge_strength": 0.01})).learners_frame()
    strong = _run(scn.with_overrides({"sharing.nudge_strength": 0.5})).learners_frame()
    t = weak["treated"].to_numpy()
    ws, ss = weak["shared"].to_numpy(), strong["shared"].to_numpy()
    np.testing.assert_array_equal(ws[~t], ss[~t])
    assert not (ws[t] & ~ss[t]).any()
    assert ss[t].mean() > ws[t].mean() + 0.1


def test_nudge_raises_sharing_over_control_at_the_default_strength():
    """The study's effect is ~3 pp; 60,000 learners put it ~7 SE from zero."""
    df = _run(small_scenario(60_000)).learners_frame()
    t = df["treated"].to_numpy()
    y = df["shared"].to_numpy()
    se = _binomial_se(y[t].mean(), int(t.sum()), y[~t].mean(), int((~t).sum()))
    assert y[t].mean() - y[~t].mean() > 3 * se


@pytest.mark.parametrize(
    ("key", "low", "high"),
    [("visibility.search_boost", 0.0, 20.0), ("signal.credibility", 0.0, 1.0)],
)
def test_a_stronger_channel_does_not_reduce_sharers_job_finding(key, low, high):
    """Same seed, one channel turned up: sharing is identical (it does not depend on the
    market), and sharers' job-finding does not fall (paired difference > -3 SE)."""
    scn = small_scenario(20_000)
    a = _run(scn.with_overrides({key: low})).learners_frame()
    b = _run(scn.with_overrides({key: high})).learners_frame()
    np.testing.assert_array_equal(a["shared"], b["shared"])
    sharers = a["shared"].to_numpy()
    assert sharers.sum() > 1_000
    d = (_has(b["first_job_week"]).astype(float) - _has(a["first_job_week"]))[sharers]
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert d.mean() > -3 * se, (d.mean(), se)


# ---- the market: a job ladder, background seekers, common random numbers -------------------


def test_job_to_job_moves_go_up_the_ladder(weekly_trace):
    """An employed learner moves only to a better match; a learner who was not employed
    takes any job; a job that ends leaves no rung."""
    model = weekly_trace.model
    hires = model.hires_log()
    by_week = {w: g for w, g in hires.groupby("week")}
    pop = model.population
    employed = pop.employed0.copy()
    match = np.where(pop.employed0, pop.match0, 0.0).astype(np.float32)
    n_moves = 0
    for rec in weekly_trace.weeks:
        h = by_week.get(rec.week)
        if h is not None:
            who = h["learner"].to_numpy()
            moved = (h["status"] == "employed").to_numpy()
            np.testing.assert_array_equal(moved, employed[who])
            assert (rec.match[who[moved]] > match[who[moved]]).all(), rec.week
            assert ((rec.match[who] > 0) & (rec.match[who] < 1)).all(), rec.week
            n_moves += int(moved.sum())
        assert (rec.match[~rec.employed] == 0).all(), rec.week
        employed, match = rec.employed, rec.match
    assert n_moves > 20


def _fill_shares(learner_share: float) -> tuple[int, int]:
    """Learners' and background seekers' hires in a short run (burn-in and 20 weeks)."""
    model = CredentialMarket(
        small_scenario(4_000, {"market.learner_share": learner_share}), rng=SEED
    )
    for _ in range(model.params.calendar.burn_in_weeks + 20):
        model.step()
    s = model.series()
    return int(s["hires_learners"].sum()), int(s["hires_background"].sum())


def test_background_seekers_fill_most_vacancies_unless_learners_are_most_seekers():
    """Learners are learner_share of their segments' job seekers: when they are few the
    background fills nearly every vacancy; when they are 90% they fill a large share."""
    few_l, few_b = _fill_shares(0.02)
    many_l, many_b = _fill_shares(0.9)
    assert few_b > 20 * few_l, (few_l, few_b)
    few, many = few_l / (few_l + few_b), many_l / (many_l + many_b)
    assert many > 0.3 and many > 10 * few, (few, many)


def test_one_learners_treatment_shifts_no_other_learners_applications(monkeypatch):
    """Common random numbers with hashed draws: two worlds from one seed that differ only
    in one learner's ``treated`` flag give every learner whose search status is the same
    in both the same application targets, week after week, even once the worlds have
    diverged (the treated learner's share changes recruiters' searches, hence hires)."""
    from sim import dynamics as dyn

    scn = small_scenario(
        3_000,
        {
            "sharing.hazard_at_grant": 0.0,
            "sharing.hazard_floor": 0.0,
            "sharing.nudge_strength": 20.0,  # a notified treated learner shares
            "visibility.search_boost": 20.0,
        },
    )
    a = CredentialMarket(scn, rng=SEED)
    opens = a.state.app_open_week
    candidates = np.flatnonzero(a.treated & (opens >= 0))
    j = candidates[np.argmin(opens[candidates])]  # the first treated learner to be notified
    treated_b = a.treated.copy()
    treated_b[j] = False
    b = CredentialMarket(scn, rng=SEED, treated=treated_b)

    real = dyn.search_and_apply
    log: dict[int, list] = {}

    def recording(scn_, week, pop, state, market, seen, rng_apply, rng_source, pool=None):
        cand = real(scn_, week, pop, state, market, seen, rng_apply, rng_source, pool)
        k = cand.n_applications
        status = dyn.search_status(state.employed, pop.attached)
        # directed on-the-job search: an employed learner's candidacies also depend on
        # its current match, so "the same search" means the same status and match
        status = status.astype(np.float64) + state.match.astype(np.float64)
        log.setdefault(week, []).append((status, cand.learner[:k], cand.vacancy[:k]))
        return cand

    monkeypatch.setattr(dyn, "search_and_apply", recording)
    a.run()
    b.run()
    assert a.state.shared[j] and not b.state.shared[j]
    treated_week = int(a.state.share_week[j])
    assert treated_week == opens[j]
    diverged = 0
    for week in range(treated_week, treated_week + 20):
        (sa, la, va), (sb, lb, vb) = log[week]
        same = sa == sb
        diverged = max(diverged, int((~same).sum()))
        if week == treated_week:  # the share came before this week's search
            assert same.all()
        keep_a, keep_b = same[la], same[lb]
        np.testing.assert_array_equal(la[keep_a], lb[keep_b], err_msg=str(week))
        np.testing.assert_array_equal(va[keep_a], vb[keep_b], err_msg=str(week))
    assert diverged > 0  # the worlds did come apart: some learners' search differs
