"""The labour market as a ``mesa.Model``: state, and the weekly step phase by phase.

:class:`CredentialMarket` owns the arrays (traits, dynamic state, open vacancies, graph)
and its :meth:`~CredentialMarket.step` runs the five phases of MODEL.md in order, each a
function of :mod:`sim.dynamics`. ``Learner`` and ``Employer`` agents are views onto these
arrays, for inspection; the step never loops over agents.

Randomness: one root ``SeedSequence`` per run, spawned in a fixed order into the named
streams ``population``, ``graph``, ``assignment``, ``dynamics``, ``behaviour`` (when
each learner would open the app) and ``employers``; each week's phases get
generators spawned from ``dynamics`` by (week, phase). Two models built from the same
seed share the population, the graph and every weekly draw (common random numbers); a
different ``treated`` vector is then the only difference between them.

Time: week 0 is ``calendar.start_date`` (the first graduation); the market runs
``burn_in_weeks`` before it so that vacancies and employment start from a steady state,
and ends at the data-collection date. The model does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import timedelta

import mesa
import networkx as nx
import numpy as np
import pandas as pd

from sim import dynamics as dyn
from sim.agents import Employer, Learner
from sim.network import ProfessionalGraph, build_graph
from sim.params import CREDENTIAL_TYPES, DOMAINS, EDUCATION_LEVELS, Scenario
from sim.population import (
    Employers,
    Learners,
    draw_employers,
    draw_learners,
    stratified_assignment,
)

__all__ = ["NO_WEEK", "CredentialMarket", "LearnerState", "RunResult", "Streams"]

NO_WEEK = dyn.NO_WEEK
_PHASES = ("share", "visibility", "apply", "source", "screen", "separate", "vacancies",
           "report")


class Streams:
    """The run's named random streams (SPEC 7: one root, spawned in a fixed order)."""

    NAMES = ("population", "graph", "assignment", "dynamics", "behaviour", "employers")

    def __init__(self, seed: int | np.random.SeedSequence | None):
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(
            seed)
        self.root = root
        self.seed = root.entropy
        #: With ``seed``, what reproduces a spawned stream: ``SeedSequence(seed, spawn_key=...)``
        self.spawn_key = tuple(root.spawn_key)
        # The children ``root.spawn`` would give, built without calling it: ``spawn``
        # advances the caller's SeedSequence, so a second model given the same object
        # (a twin) would silently get other streams.
        self._children = {
            name: np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i),
                                         pool_size=root.pool_size)
            for i, name in enumerate(self.NAMES)
        }

    def rng(self, name: str) -> np.random.Generator:
        """A fresh generator for a named stream (same numbers every time it is asked)."""
        ss = self._children[name]
        return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key))

    def weekly(self, week: int, phase: str) -> np.random.Generator:
        """The generator of one phase in one week."""
        ss = self._children["dynamics"]
        key = (*ss.spawn_key, week + 10_000, _PHASES.index(phase))
        return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=key))


@dataclass
class LearnerState:
    """Dynamic state, one entry per learner."""

    shared: np.ndarray
    share_week: np.ndarray
    employed: np.ndarray
    job_employer: np.ndarray
    job_in_scope: np.ndarray
    jobs_started: np.ndarray
    last_hire_week: np.ndarray  # week the current or last job started (NO_WEEK: none yet)
    first_job_week: np.ndarray  # first job counted as new (>= min weeks after grant)
    first_scope_job_week: np.ndarray  # same, in-scope jobs
    seen_job_week: np.ndarray  # first counted job that is reported by collection
    seen_scope_job_week: np.ndarray
    views: np.ndarray
    own_views: np.ndarray
    app_open_week: np.ndarray  # week the learner would open the app (-1 never)

    @classmethod
    def initial(cls, pop: Learners, app_open_week: np.ndarray) -> LearnerState:
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
class RunResult:
    """What one run produced: its inputs, weekly series and final per-learner state."""

    scenario: Scenario
    seed: int
    series: pd.DataFrame
    learners: pd.DataFrame
    hires: pd.DataFrame
    meta: dict = field(default_factory=dict)


class CredentialMarket(mesa.Model):
    """Learners, employers and background job seekers on a professional graph.

    The scenario is ``model.params`` (Mesa reserves ``model.scenario``).

    Parameters
    ----------
    scenario:
        A validated :class:`~sim.params.Scenario` (default: all defaults).
    rng:
        Seed (int or ``SeedSequence``) of the run's root stream. Recorded as ``seed``.
    graph:
        Optional ``networkx.Graph`` (nodes with ``kind`` = learner/employer) or
        :class:`~sim.network.ProfessionalGraph`; its learner count must equal
        ``population.n_learners``. Default: the generator of :mod:`sim.network`.
    treated:
        Optional boolean assignment vector. Default: the study's design, ``treated_share``
        of every batch x stratum cell, drawn from the ``assignment`` stream.
    population:
        Optional pre-drawn :class:`~sim.population.Learners` (twin runs share one).
    agents:
        Create the ``Learner``/``Employer`` agent views (default). Headless study runs
        skip them; no number depends on it.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        rng: int | np.random.SeedSequence | None = None,
        graph: nx.Graph | ProfessionalGraph | None = None,
        treated: np.ndarray | None = None,
        population: Learners | None = None,
        employers: Employers | None = None,
        agents: bool = True,
    ) -> None:
        self.streams = Streams(rng)
        super().__init__(rng=int(self.streams.root.generate_state(1)[0]))
        self.params = scn = scenario or Scenario()
        self.seed = self.streams.seed
        self.spawn_key = self.streams.spawn_key
        cal = scn.calendar

        pop_rng = self.streams.rng("population")
        self.population = population if population is not None else draw_learners(
            scn, pop_rng)
        n = len(self.population)
        if isinstance(graph, nx.Graph):
            graph = ProfessionalGraph.from_networkx(graph)
        if graph is not None and graph.n_employers == 0:
            raise ValueError("graph has no employer nodes (kind='employer'); vacancies need "
                             "at least one employer")
        if employers is None:
            if graph is not None:
                employers = _employers_for_graph(scn, graph, self.streams.rng("employers"))
            else:
                employers = draw_employers(scn, self.streams.rng("employers"))
        self.employers_traits = employers
        if graph is None:
            graph = build_graph(scn, self.population, employers, self.streams.rng("graph"))
        if graph.n_learners != n or graph.n_employers != len(employers):
            raise ValueError(
                f"graph has {graph.n_learners} learners and {graph.n_employers} employers; "
                f"the scenario has {n} learners and {len(employers)} employers"
            )
        self.network = graph

        if treated is None:
            cells = self.population.stratum.astype(np.int64) * 64 + self.population.batch
            treated = stratified_assignment(cells, scn.study.treated_share,
                                            self.streams.rng("assignment"))
        self.treated = np.asarray(treated, dtype=bool)
        if self.treated.shape != (n,):
            raise ValueError(f"treated must have one entry per learner ({n})")
        self.app_open_week = _app_open_weeks(scn, self.population,
                                             self.streams.rng("behaviour"))

        self.state = LearnerState.initial(self.population, self.app_open_week)
        self.vacancies = dyn.Vacancies.empty()
        self._next_vacancy_id = 0
        self._domain_order = np.argsort(self.population.domain, kind="stable")
        counts = np.bincount(self.population.domain, minlength=len(DOMAINS))
        self._domain_starts = np.cumsum(counts) - counts
        self._employer_cum_size = np.cumsum(employers.size)
        self._seed_vacancies()

        self.week = -cal.burn_in_weeks
        self.end_week = cal.n_weeks
        self._series: list[dict] = []
        self._hires: list[tuple[np.ndarray, ...]] = []
        self._learner_agents: list[Learner] | None = None
        self._employer_agents: list[Employer] | None = None
        if agents:
            self._learner_agents = [Learner(self, i) for i in range(n)]
            self._employer_agents = [Employer(self, e) for e in range(len(employers))]
        self.running = True

    # ---- agent views and the graph ----------------------------------------------------
    def learner(self, i: int) -> Learner:
        """The agent view of learner ``i``."""
        if self._learner_agents is None:
            raise RuntimeError("this model was built with agents=False")
        return self._learner_agents[i]

    def employer(self, e: int) -> Employer:
        """The agent view of employer ``e``."""
        if self._employer_agents is None:
            raise RuntimeError("this model was built with agents=False")
        return self._employer_agents[e]

    @property
    def graph(self) -> nx.Graph:
        """The professional graph as networkx (built on demand; slow for 100k+ nodes)."""
        return self.network.to_networkx()

    # ---- the week ------------------------------------------------------------------
    def step(self) -> None:
        """One week: sharing, visibility, search, screening and hiring, flows."""
        scn, pop, st, w = self.params, self.population, self.state, self.week
        n = len(pop)
        vac_open = len(self.vacancies)

        # 1. sharing
        new = dyn.share(scn, w, shared=st.shared, grant_week=pop.grant_week,
                        activity=pop.activity, treated=self.treated,
                        app_open_week=st.app_open_week, rng=self.streams.weekly(w, "share"))
        st.shared |= new
        st.share_week[new] = w
        new_sharers = np.flatnonzero(new)

        # 2. visibility
        seen = dyn.visibility(scn, w, new_sharers=new_sharers, shared=st.shared,
                              grant_week=pop.grant_week, activity=pop.activity,
                              graph=self.network, rng=self.streams.weekly(w, "visibility"))

        # 3. search and applications
        pause = scn.market.search_pause_weeks
        available = None if pause == 0 else ~(
            st.employed & (w - st.last_hire_week.astype(np.int64) < pause))
        cand = dyn.search_and_apply(
            scn, vac=self.vacancies, employed=st.employed, domain=pop.domain,
            shared=st.shared, activity=pop.activity, domain_order=self._domain_order,
            domain_starts=self._domain_starts, n_employers=len(self.employers_traits),
            seen=seen, rng_apply=self.streams.weekly(w, "apply"),
            rng_source=self.streams.weekly(w, "source"), available=available,
        )
        st.views += seen.views + cand.sourced_views
        st.own_views += seen.own_views

        # 4. screening and hiring
        score = dyn.posterior_mean(scn, cand.learner, shared=st.shared,
                                   prior_mean=pop.prior_mean,
                                   prior_precision=pop.prior_precision, signal=pop.signal,
                                   signal_precision=pop.signal_precision)
        hires = dyn.screen_and_hire(scn, cand, vac_open, score, self.streams.weekly(w, "screen"))
        hired = np.zeros(n, bool)
        hired[hires.learner] = True
        self._record_hires(hires)

        # 5. flows
        filled = np.zeros(vac_open, bool)
        filled[hires.vacancy] = True
        filled[hires.background] = True
        flow = dyn.flows(scn, w, employed=st.employed, hired=hired, vac=self.vacancies,
                         filled=filled, employer_domain=self.employers_traits.domain,
                         employer_cum_size=self._employer_cum_size,
                         next_id=self._next_vacancy_id, n_learners=n,
                         rng_sep=self.streams.weekly(w, "separate"),
                         rng_vac=self.streams.weekly(w, "vacancies"))
        st.employed &= ~flow.separated
        self.vacancies = self.vacancies.keep(flow.keep_vacancy).extend(flow.new_vacancies)
        self._next_vacancy_id += len(flow.new_vacancies)

        granted = pop.grant_week <= w
        self._series.append({
            "week": w,
            "date": scn.calendar.start_date + timedelta(weeks=w),
            "granted": int(granted.sum()),
            "shared_treated": _share(st.shared, granted & self.treated),
            "shared_control": _share(st.shared, granted & ~self.treated),
            "employed": float(st.employed.mean()) if n else 0.0,
            "hires_learners": len(hires.learner),
            "hires_background": len(hires.background),
            "vacancies_open": vac_open,
            "vacancies_posted": len(flow.new_vacancies),
            "vacancies_filled": int(filled.sum()),
            "vacancies_expired": flow.n_expired,
            "applications": cand.n_applications,
            "sourced": cand.n_sourced,
            "feed_candidates": cand.n_feed,
            "views": int(seen.views.sum() + cand.sourced_views.sum()),
            "own_views": int(seen.own_views.sum()),
            "separations": int(flow.separated.sum()),
        })
        self.week += 1
        if self.week >= self.end_week:
            self.running = False

    def run(self, progress=None) -> RunResult:
        """Step to the data-collection date; ``progress(done, total)`` is called weekly."""
        total = self.end_week + self.params.calendar.burn_in_weeks
        while self.running:
            self.step()
            if progress is not None:
                progress(total - (self.end_week - self.week), total)
        return self.result()

    # ---- bookkeeping ----------------------------------------------------------------
    def _record_hires(self, hires: dyn.Hires) -> None:
        st, pop, w, vac = self.state, self.population, self.week, self.vacancies
        i = hires.learner
        in_scope = vac.in_scope[hires.vacancy]
        st.employed[i] = True
        st.job_employer[i] = vac.employer[hires.vacancy]
        st.job_in_scope[i] = in_scope
        st.jobs_started[i] += 1
        st.last_hire_week[i] = w
        cal, mk = self.params.calendar, self.params.market
        counts = (w - pop.grant_week[i]) >= cal.new_job_min_weeks
        # Reporting uses per-learner draws (common random numbers across twin runs).
        rrng = self.streams.weekly(w, "report")
        n = len(pop)
        reported_u, lag_u = rrng.random(n)[i], rrng.random(n)[i]
        lag = -mk.report_lag_weeks * np.log1p(-lag_u)
        seen = counts & (reported_u < mk.report_prob) & (w + lag <= self.end_week)
        for arr, mask in (
            (st.first_job_week, counts),
            (st.first_scope_job_week, counts & in_scope),
            (st.seen_job_week, seen),
            (st.seen_scope_job_week, seen & in_scope),
        ):
            idx = i[mask & (arr[i] == NO_WEEK)]
            arr[idx] = w
        self._hires.append((np.full(len(i), w, np.int16), vac.id[hires.vacancy], i,
                            in_scope, np.full(len(i), False)))
        bg = hires.background
        self._hires.append((np.full(len(bg), w, np.int16), vac.id[bg],
                            np.full(len(bg), -1, np.int64), vac.in_scope[bg],
                            np.full(len(bg), True)))

    def _seed_vacancies(self) -> None:
        """Open vacancies at the start: arrivals over one mean duration."""
        m = self.params.market
        rng = self.streams.weekly(-self.params.calendar.burn_in_weeks - 1, "vacancies")
        k = rng.poisson(m.vacancies_per_1000 * len(self.population) / 1000.0
                        * m.vacancy_duration_weeks)
        cum = self._employer_cum_size
        emp = np.minimum(np.searchsorted(cum, rng.random(k) * cum[-1], side="right"),
                         len(cum) - 1).astype(np.int32)
        self.vacancies = dyn.Vacancies(
            id=np.arange(k, dtype=np.int64), employer=emp,
            domain=self.employers_traits.domain[emp].astype(np.int8),
            in_scope=rng.random(k) < m.in_scope_share,
            posted_week=np.full(k, -self.params.calendar.burn_in_weeks, np.int16))
        self._next_vacancy_id = k

    def series(self) -> pd.DataFrame:
        """The weekly time series so far."""
        return pd.DataFrame(self._series)

    def hires_log(self) -> pd.DataFrame:
        """Every filled vacancy: week, vacancy id, learner (-1: background), in scope."""
        cols = ["week", "vacancy_id", "learner", "in_scope", "background"]
        if not self._hires:
            return pd.DataFrame(columns=cols)
        return pd.DataFrame({c: np.concatenate([h[k] for h in self._hires])
                             for k, c in enumerate(cols)})

    def learners_frame(self) -> pd.DataFrame:
        """One row per learner: traits, assignment and final state."""
        pop, st = self.population, self.state
        df = pd.DataFrame({
            "learner": np.arange(len(pop)),
            "batch": pop.batch,
            "grant_week": pop.grant_week,
            "treated": self.treated,
            "stratum": pop.stratum,
            "matched": pop.matched,
            "domain": pd.Categorical.from_codes(pop.domain, DOMAINS),
            "developing": pop.developing,
            "education": pd.Categorical.from_codes(pop.education, EDUCATION_LEVELS),
            "college": pop.college,
            "experience_years": pop.experience,
            "past_tech": pop.past_tech,
            "past_manager": pop.past_manager,
            "employed_baseline": pop.employed0,
            "credential_type": pd.Categorical.from_codes(pop.credential, CREDENTIAL_TYPES),
            "activity": pop.activity,
            "degree": self.network.learner_degree().astype(np.int32),
            "skill": pop.skill,
            "prior_mean": pop.prior_mean,
            "prior_precision": pop.prior_precision,
            "app_open_week": st.app_open_week,
        })
        for f in fields(st):
            if f.name != "app_open_week":
                df[f.name] = getattr(st, f.name)
        return df

    def result(self) -> RunResult:
        """The run's result object (series, per-learner frame, hires log)."""
        return RunResult(self.params, self.seed, self.series(), self.learners_frame(),
                         self.hires_log(), meta={"spawn_key": list(self.spawn_key)})


def _share(flag: np.ndarray, among: np.ndarray) -> float:
    k = int(among.sum())
    return float(flag[among].sum() / k) if k else float("nan")


def _app_open_weeks(scn: Scenario, pop: Learners, rng: np.random.Generator) -> np.ndarray:
    """Week each learner would open the app: within 30 days of the grant for a batch-level
    share drawn in ``app_open_share``; -1 for learners who never open it."""
    lo, hi = scn.sharing.app_open_share
    batch_share = lo + (hi - lo) * rng.random(scn.calendar.n_batches)
    n = len(pop)
    opens = rng.random(n) < batch_share[pop.batch]
    delay = rng.integers(0, 5, n)  # weeks 0..4 after the grant, i.e. within 30 days
    return np.where(opens, pop.grant_week + delay, -1).astype(np.int16)


def _employers_for_graph(scn: Scenario, graph: ProfessionalGraph, rng) -> Employers:
    """Employers for a user graph: one per employer node, domain drawn, size by degree."""
    p = np.array([scn.population.domain_shares[k] for k in DOMAINS])
    domain = np.searchsorted(np.cumsum(p) / p.sum(), rng.random(graph.n_employers),
                             side="right").astype(np.int8)
    deg = np.diff(graph.el_indptr).astype(float) + 1.0
    return Employers(domain=domain, size=deg / deg.mean())
