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

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from functools import cache, partial
from pathlib import Path
from typing import Any

import mesa
import networkx as nx
import numpy as np
import pandas as pd
from mesa.agentset import AbstractAgentSet

from sim import dynamics as dyn
from sim.agents import Employer, Learner
from sim.network import ProfessionalGraph, build_graph
from sim.params import CREDENTIAL_TYPES, DOMAINS, EDUCATION_LEVELS, Scenario
from sim.population import Employers, Learners, draw_employers, draw_learners

__all__ = [
    "NO_WEEK",
    "SERIES_COLUMNS",
    "STATUSES",
    "CredentialMarket",
    "RunResult",
    "Streams",
    "second_core",
]

NO_WEEK = dyn.NO_WEEK
#: Search status before a hire (codes of :func:`sim.dynamics.search_status`).
STATUSES = ("employed", "unemployed", "marginal")
_PHASES = ("share", "visibility", "apply", "source", "screen", "separate", "vacancies", "report")


class Streams:
    """The run's named random streams (SPEC 7: one root, spawned in a fixed order)."""

    NAMES = ("population", "graph", "assignment", "dynamics", "behaviour", "employers")

    def __init__(self, seed: int | np.random.SeedSequence | None):
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self.root = root
        self.seed = root.entropy
        #: With ``seed``, what reproduces a spawned stream: ``SeedSequence(seed, spawn_key=...)``
        self.spawn_key = tuple(root.spawn_key)
        # The children ``root.spawn`` would give, built without calling it: ``spawn``
        # advances the caller's SeedSequence, so a second model given the same object
        # (a twin) would silently get other streams.
        self._children = {
            name: np.random.SeedSequence(
                root.entropy, spawn_key=(*root.spawn_key, i), pool_size=root.pool_size
            )
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
class RunResult:
    """What one run produced: its inputs, weekly series and final per-learner state."""

    scenario: Scenario
    seed: int
    series: pd.DataFrame
    learners: pd.DataFrame
    hires: pd.DataFrame
    meta: dict = field(default_factory=dict)
    flows: dict = field(default_factory=dict)  # the market's flows (sim.flows)


class CredentialMarket(mesa.Model):
    """Learners, employers and background job seekers on a professional graph.

    The scenario is ``model.params`` (Mesa reserves ``model.scenario``).

    Parameters
    ----------
    scenario:
        A validated :class:`~sim.params.Scenario`, or the name or path of a scenario file
        (default: the schema's defaults).
    rng:
        Seed (int or ``SeedSequence``) of the run's root stream. Recorded as ``seed``.
    graph:
        Optional ``networkx.Graph`` (nodes with ``kind`` = learner/employer) or
        :class:`~sim.network.ProfessionalGraph`; its learner count must equal
        ``population.n_learners``. Default: the generator of :mod:`sim.network`.
    treated:
        Optional boolean assignment vector. Default: the study's design
        (:func:`sim.study.assign`), drawn from the ``assignment`` stream.
    population, employers:
        Optional pre-drawn traits (twin runs share them).
    agents:
        Build the ``Learner``/``Employer`` agent views now rather than on first access
        of :attr:`learners` / :attr:`employers` (no number depends on it).
    **overrides:
        Scenario values by dotted key, e.g. ``**{"signal.credibility": 0.5}``; this is how
        ``mesa.batch_run`` passes its parameters.
    """

    def __init__(
        self,
        scenario: Scenario | str | None = None,
        *,
        rng: int | np.random.SeedSequence | None = None,
        graph: nx.Graph | ProfessionalGraph | None = None,
        treated: np.ndarray | None = None,
        population: Learners | None = None,
        employers: Employers | None = None,
        agents: bool = False,
        **overrides: Any,
    ) -> None:
        self.streams = Streams(rng)
        super().__init__(rng=int(self.streams.root.generate_state(1)[0]))
        scn = _scenario(scenario, overrides)
        self.params = scn
        self.seed = self.streams.seed
        self.spawn_key = self.streams.spawn_key

        self.population = (
            population
            if population is not None
            else draw_learners(scn, self.streams.rng("population"))
        )
        n = len(self.population)
        if isinstance(graph, nx.Graph):
            graph = ProfessionalGraph.from_networkx(graph)
        if graph is not None and graph.n_employers == 0:
            raise ValueError(
                "graph has no employer nodes (kind='employer'); vacancies need "
                "at least one employer"
            )
        if employers is None:
            rng_emp = self.streams.rng("employers")
            employers = (
                draw_employers(scn, rng_emp)
                if graph is None
                else _employers_for_graph(scn, graph, rng_emp)
            )
        if graph is None:
            graph = build_graph(
                scn, self.population, employers, self.streams.rng("graph"), second_core()
            )
        if graph.n_learners != n or graph.n_employers != len(employers):
            raise ValueError(
                f"graph has {graph.n_learners} learners and {graph.n_employers} employers; "
                f"the scenario has {n} learners and {len(employers)} employers"
            )
        self.network = graph

        if treated is None:
            from sim.study import assign

            treated = assign(scn, self.population, self.streams.rng("assignment"))
        self.treated = np.asarray(treated, dtype=bool)
        if self.treated.shape != (n,):
            raise ValueError(f"treated must have one entry per learner ({n})")

        self.week = -scn.calendar.burn_in_weeks
        self.end_week = scn.calendar.n_weeks
        self.state = dyn.LearnerState.initial(
            self.population, dyn.app_open_weeks(scn, self.population, self.streams.rng("behaviour"))
        )
        self.market = dyn.Market.open(
            scn, self.population, employers, self.streams.weekly(self.week - 1, "vacancies")
        )
        #: (week, phase -> its first draws made ahead), for the week to come
        self._ahead: tuple[int, dict[str, _DrawnAhead]] = (self.week, {})
        self._series: list[dict[str, Any]] = []
        self._hires: list[tuple[np.ndarray, ...]] = []
        self._separations: list[tuple[np.ndarray, np.ndarray]] = []
        self._learner_agents: list[Learner] | None = None
        self._employer_agents: list[Employer] | None = None
        self.datacollector = mesa.DataCollector(
            model_reporters={col: partial(_series_value, col) for col in SERIES_COLUMNS}
        )
        if agents:
            self._build_agents()
        self.running = True

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the draws made ahead (a thread's futures): the next week then
        draws in place, the same numbers."""
        state = self.__dict__.copy()
        state["_ahead"] = (self.week, {})
        return state

    # ---- the week ------------------------------------------------------------------
    def step(self) -> None:
        """One week: MODEL.md's five phases in order, then the week's record.

        After the week before the collection date ``running`` turns false and further
        calls do nothing.
        """
        if not self.running:
            return
        scn, pop, st, mk, w = self.params, self.population, self.state, self.market, self.week
        (week_ahead, ahead), self._ahead = self._ahead, (w + 1, {})
        if w + 1 < self.end_week:  # next week's fixed-size draws, on the second core
            self._ahead = (w + 1, _draw_ahead(self.streams, w + 1, len(pop)))

        def rng(week: int, phase: str) -> np.random.Generator | _DrawnAhead:
            made = ahead.get(phase) if week_ahead == week else None
            return made or self.streams.weekly(week, phase)

        status = dyn.status_counts(st.employed, pop.attached)
        new = dyn.share(scn, w, pop, st, self.treated, rng(w, "share"))
        seen = dyn.visibility(scn, w, pop, st, self.network, new, rng(w, "visibility"))
        cand = dyn.search_and_apply(
            scn, w, pop, st, mk, seen, rng(w, "apply"), rng(w, "source"), second_core()
        )
        hires = dyn.screen_and_hire(scn, w, pop, st, mk, cand, rng(w, "screen"), second_core())
        dyn.report_new_jobs(scn, w, pop, st, hires, rng(w, "report"))
        self._log_hires(hires)
        flow = dyn.flows(scn, w, st, mk, hires, rng(w, "separate"), rng(w, "vacancies"))
        self._separations.append((np.full(len(flow.separated), w, np.int16), flow.separated))
        self._record_week(status, seen, cand, hires, flow)
        self.week += 1
        self.running = self.week < self.end_week

    def run(self, progress: Callable[[int, int], None] | None = None) -> RunResult:
        """Step to the data-collection date; ``progress(done, total)`` is called weekly."""
        total = self.weeks_total
        while self.running:
            self.step()
            if progress is not None:
                progress(total - (self.end_week - self.week), total)
        return self.result()

    @property
    def weeks_total(self) -> int:
        """Weeks from the start of the burn-in to the collection date."""
        return self.end_week + self.params.calendar.burn_in_weeks

    # ---- agents and the graph -----------------------------------------------------------
    @property
    def learners(self) -> AbstractAgentSet:
        """The learners as a Mesa ``AgentSet`` of :class:`~sim.agents.Learner` views
        (built on first access: a few seconds for the study's 880,000)."""
        self._build_agents()
        return self.agents_by_type[Learner]

    @property
    def employers(self) -> AbstractAgentSet:
        """The employers as a Mesa ``AgentSet`` of :class:`~sim.agents.Employer` views."""
        self._build_agents()
        return self.agents_by_type[Employer]

    def learner(self, i: int) -> Learner:
        """The agent view of learner ``i``."""
        self._build_agents()
        return self._learner_agents[i]

    def employer(self, e: int) -> Employer:
        """The agent view of employer ``e``."""
        self._build_agents()
        return self._employer_agents[e]

    def _build_agents(self) -> None:
        if self._learner_agents is None:
            self._learner_agents = [Learner(self, i) for i in range(len(self.population))]
            self._employer_agents = [Employer(self, e) for e in range(len(self.market.employers))]

    @property
    def vacancies_open(self) -> int:
        """Vacancies open now, in all segments (the steady stock)."""
        return self.market.n_slots

    @property
    def graph(self) -> nx.Graph:
        """The professional graph as networkx (built on demand; slow for 100k+ nodes)."""
        return self.network.to_networkx()

    # ---- records ----------------------------------------------------------------------
    def _log_hires(self, hires: dyn.Hires) -> None:
        self._hires.append(
            (
                np.full(len(hires.learner), self.week, np.int16),
                hires.learner.astype(np.int64),
                hires.vacancy.astype(np.int64),
                hires.employer.astype(np.int32),
                hires.in_scope,
                hires.status,
            )
        )

    def _record_week(
        self,
        status: np.ndarray,
        seen: dyn.Seen,
        cand: dyn.Candidates,
        hires: dyn.Hires,
        flow: dyn.Flow,
    ) -> None:
        st, w = self.state, self.week
        granted = self.population.grant_week <= w
        by_status = np.bincount(hires.status, minlength=3)
        self._series.append(
            {
                "week": w,
                "date": pd.Timestamp(self.params.calendar.start_date) + pd.Timedelta(weeks=w),
                "granted": int(granted.sum()),
                "shared_treated": _share(st.shared, granted & self.treated),
                "shared_control": _share(st.shared, granted & ~self.treated),
                "employed": float(st.employed.mean()) if len(st.employed) else 0.0,
                "n_employed": int(status[0]),
                "n_unemployed": int(status[1]),
                "n_marginal": int(status[2]),
                "hires_learners": len(hires.learner),
                "hires_job_to_job": int(by_status[0]),
                "hires_from_unemployed": int(by_status[1]),
                "hires_from_marginal": int(by_status[2]),
                "hires_background": flow.n_filled_background,
                "offers_to_learners": hires.n_offers,
                "vacancies_open": self.market.n_slots,
                "vacancies_posted": flow.n_posted,
                "vacancies_filled": len(hires.learner) + flow.n_filled_background,
                "vacancies_expired": flow.n_expired,
                "applications": cand.n_applications,
                "sourced": cand.n_sourced,
                "feed_candidates": cand.n_feed,
                "views": int(seen.views.sum()) + len(cand.sourced_views),
                "own_views": int(seen.own_views.sum()),
                "separations": len(flow.separated),
            }
        )
        self.datacollector.collect(self)

    def series(self) -> pd.DataFrame:
        """The weekly time series so far (one row per week; ``date`` is the week's start)."""
        return pd.DataFrame(self._series, columns=list(SERIES_COLUMNS))

    def hires_log(self) -> pd.DataFrame:
        """Every learner's hire: ``week`` and ``date``, ``learner``, the vacancy ``slot``
        and its ``employer``, ``in_scope``, and the learner's ``status`` before the hire
        (``employed``: a job-to-job move, ``unemployed``, ``marginal``). Vacancies filled
        by background job seekers are counted in the series (``hires_background``)."""
        cols = ["week", "learner", "slot", "employer", "in_scope", "status"]
        dts = (np.int16, np.int64, np.int64, np.int32, bool, np.int8)
        parts = [
            np.concatenate([h[k] for h in self._hires]) if self._hires else np.empty(0, dt)
            for k, dt in enumerate(dts)
        ]
        df = pd.DataFrame(dict(zip(cols, parts, strict=True)))
        df["status"] = pd.Categorical.from_codes(df["status"], STATUSES)
        df.insert(1, "date", self._dates(df["week"].to_numpy(dtype=float)))
        return df

    def separations_log(self) -> pd.DataFrame:
        """Every job of a learner that ended in non-employment: ``week`` and ``learner``."""
        if not self._separations:
            return pd.DataFrame({"week": np.empty(0, np.int16), "learner": np.empty(0, np.int64)})
        return pd.DataFrame(
            {
                "week": np.concatenate([s[0] for s in self._separations]),
                "learner": np.concatenate([s[1] for s in self._separations]).astype(np.int64),
            }
        )

    def flows(self) -> dict[str, float]:
        """The market's flows over the study window (:func:`sim.flows.market_flows`)."""
        from sim.flows import market_flows

        return market_flows(self.params, self.series(), self.hires_log(), self.separations_log())

    def _dates(self, weeks: np.ndarray) -> pd.Series | pd.DatetimeIndex:
        """Dates of week numbers (NaN: ``NaT``)."""
        start = pd.Timestamp(self.params.calendar.start_date)
        return start + pd.to_timedelta(np.asarray(weeks, dtype=float) * 7, unit="D")

    def learners_frame(self) -> pd.DataFrame:
        """One row per learner: traits, assignment and final state.

        Week columns (``grant_week``, ``share_week``, ``*_job_week``, ``app_open_week``)
        count weeks from ``calendar.start_date`` and are nullable integers: ``<NA>`` where
        the event never happened; ``job_employer`` is ``<NA>`` for a job held since before
        the run (or none). ``grant_date``, ``share_date`` and ``seen_job_date``
        give the same events as dates.
        """
        pop, st = self.population, self.state
        df = pd.DataFrame(
            {
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
                "attached": pop.attached,
                "credential_type": pd.Categorical.from_codes(pop.credential, CREDENTIAL_TYPES),
                "activity": pop.activity,
                "degree": self.network.learner_degree().astype(np.int32),
                "skill": pop.skill,
                "prior_mean": pop.prior_mean,
                "prior_precision": pop.prior_precision,
            }
        )
        for f in fields(st):
            v = getattr(st, f.name)
            if f.name.endswith("_week"):  # never: NO_WEEK, or -1 for the app
                never = (v < 0) if f.name == "app_open_week" else (v == NO_WEEK)
                v = pd.arrays.IntegerArray(v.astype(np.int16), never)
            df[f.name] = v
        df["job_employer"] = pd.arrays.IntegerArray(st.job_employer, st.job_employer < 0)
        for col in ("grant", "share", "seen_job"):
            weeks = df[f"{col}_week"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            df[f"{col}_date"] = self._dates(weeks)
        return df

    def result(self) -> RunResult:
        """The run's result object (series, per-learner frame, hires log, flows)."""
        from sim.flows import market_flows

        series, hires = self.series(), self.hires_log()
        return RunResult(
            self.params,
            self.seed,
            series,
            self.learners_frame(),
            hires,
            meta={"spawn_key": list(self.spawn_key)},
            flows=market_flows(self.params, series, hires, self.separations_log()),
        )


#: Columns of the weekly series (and of the model's ``datacollector``).
SERIES_COLUMNS = (
    "week",
    "date",
    "granted",
    "shared_treated",
    "shared_control",
    "employed",
    "n_employed",
    "n_unemployed",
    "n_marginal",
    "hires_learners",
    "hires_job_to_job",
    "hires_from_unemployed",
    "hires_from_marginal",
    "hires_background",
    "offers_to_learners",
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
)


@cache
def second_core() -> ThreadPoolExecutor | None:
    """One worker thread for the work that can run beside the rest: half of the graph's
    searches and sorts when a model is built, recruiter search beside learners'
    applications every week (numpy releases the interpreter lock in its loops, so the two
    run at once). Shared by every model of the process; ``None`` with one core, where a
    thread would only add overhead. The results are the same with or without it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ThreadPoolExecutor(1, thread_name_prefix="credsim-week") if (cores or 1) > 1 else None


# A forked child (e.g. mesa.batch_run's process pool) inherits the executor but not its
# thread: it makes its own.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=second_core.cache_clear)


#: The fixed-size draws each phase makes first (uniforms, float32, one per learner).
#: They depend on the week and the phase alone, so the second core makes them a week
#: ahead (:func:`_draw_ahead`), and the phases find them ready.
FIRST_DRAWS = {"share": 1, "visibility": 2, "apply": 1, "separate": 1}


class _DrawnAhead:
    """A phase's generator whose first draws (:data:`FIRST_DRAWS`) were made ahead, on
    the second core. ``random`` hands them out in order, then the generator, which has
    made them, goes on as if nothing had happened: the numbers are those of drawing in
    place. A first call that is not the expected draw is an error, not a silent shift."""

    def __init__(self, pending: Future) -> None:
        self._pending = pending
        self._gen: np.random.Generator | None = None
        self._queue: list[np.ndarray] = []

    @staticmethod
    def make(streams: Streams, week: int, phase: str, n: int) -> tuple:
        gen = streams.weekly(week, phase)
        return gen, [gen.random(n, dtype=np.float32) for _ in range(FIRST_DRAWS[phase])]

    def _ready(self) -> np.random.Generator:
        if self._gen is None:
            self._gen, self._queue = self._pending.result()
        return self._gen

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        gen = self._ready()
        if not self._queue:
            return gen.random(size, dtype=dtype, out=out)
        head = self._queue[0]
        if out is not None or np.dtype(dtype) != head.dtype or size != len(head):
            raise RuntimeError(
                f"draw out of order: expected random({len(head)}, float32) first, "
                f"got random({size!r}, {np.dtype(dtype)})"
            )
        return self._queue.pop(0)

    def __getattr__(self, name: str) -> Any:
        gen = self._ready()
        if self._queue:
            raise RuntimeError(f"draw out of order: {name} before the draws made ahead")
        return getattr(gen, name)


def _draw_ahead(streams: Streams, week: int, n: int) -> dict[str, _DrawnAhead]:
    """Week ``week``'s :data:`FIRST_DRAWS`, submitted to the second core (none on one)."""
    pool = second_core()
    if pool is None:
        return {}
    return {
        phase: _DrawnAhead(pool.submit(_DrawnAhead.make, streams, week, phase, n))
        for phase in FIRST_DRAWS
    }


def _series_value(column: str, model: CredentialMarket) -> Any:
    """A Mesa model reporter (bound to a column with ``partial``, so it pickles): one
    column of the week just recorded."""
    return model._series[-1][column]


def _scenario(scenario: Scenario | str | Path | None, overrides: dict[str, Any]) -> Scenario:
    if scenario is None:
        scn = Scenario()
    elif isinstance(scenario, Scenario):
        scn = scenario
    else:
        from sim.params import load_scenario

        scn = load_scenario(scenario)
    return (
        scn.with_overrides(overrides, source="CredentialMarket(**overrides)") if overrides else scn
    )


def _share(flag: np.ndarray, among: np.ndarray) -> float:
    k = np.count_nonzero(among)
    return float(np.count_nonzero(flag & among) / k) if k else float("nan")


def _employers_for_graph(scn: Scenario, graph: ProfessionalGraph, rng) -> Employers:
    """Employers for a user graph: one per employer node, domain drawn, size by degree."""
    p = np.array([scn.population.domain_shares[k] for k in DOMAINS])
    domain = np.searchsorted(
        np.cumsum(p) / p.sum(), rng.random(graph.n_employers), side="right"
    ).astype(np.int8)
    deg = np.diff(graph.el_indptr).astype(float) + 1.0
    from sim.population import employer_country_groups

    developing = employer_country_groups(scn, domain, rng)
    return Employers(domain=domain, size=deg / deg.mean(), developing=developing)
