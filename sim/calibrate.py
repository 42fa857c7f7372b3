"""Calibration: fit the model's free parameters to the study's numbers (TARGETS.md).

Method: simulated method of moments (SMM) with common random numbers, in two blocks.

1. **Sharing** (:data:`SHARING_PARAMS`: ``sharing.hazard_at_grant``,
   ``sharing.nudge_strength``) is fitted first to the matched sample's control sharing
   rate and the true ITT on sharing. Sharing depends on nothing in the labour market, so
   this block replays phase 1 alone on the calibration populations (exactly the draws the
   full model makes) and solves the two equations by Brent's method in seconds.
2. **The market block** fits the parameters of :data:`MARKET_PARAMS` to the moments of
   :data:`MOMENT_TARGETS`, both plain data near the top of this module (one tuple each:
   add a parameter or a moment by adding a line). Each target is a
   :class:`~sim.targets.MomentTarget` ``(id, value, se, source, kind)``: ``se`` is the
   data-side uncertainty of ``value`` (the paper's published SE; for an outside flow
   moment, a stated tolerance). The residuals are ``(simulated - value) / se``, i.e. the
   weighting matrix is ``W = diag(1/se^2)``, and ``r'r`` is minimised by
   ``scipy.optimize.least_squares`` (trust-region reflective, ``method="trf"``) within
   the bounds of each parameter's range. The moments of :data:`PREDICTIONS` (new job by
   tertile of predicted employability) are *not* fitted: they are computed at the
   optimum and reported as out-of-sample predictions.

An evaluation runs twin worlds at the study's full scale for each of ``n_seeds`` fitting
seeds (spawned from the master seed) and averages their moments; the seeds are the same at
every point (common random numbers), so the objective is a deterministic function of the
parameters. Simulated ITTs are the *true* effects of the twin runs (each learner under both
arms): the paper's estimate is the target, and the model's expected estimate is its true
effect.

**Parameterisation.** The optimiser works on ``x = (value - lo) / (hi - lo)`` in ``[0, 1]``
for each parameter (``trf`` handles the bounds itself, so a parameter can reach its bound,
where :func:`Calibration.run` flags it, and the Jacobian stays that of the model rather
than shrinking near a bound as a logit's would). The Jacobian is computed by forward
differences of :data:`FD_STEP` in that space (backward at the upper bound); all its
points are one batch of twin runs. The fit stops on the tolerances :data:`FTOL`,
:data:`XTOL`, :data:`GTOL` (scipy's ``status`` > 0), after ``max_iterations`` evaluations
of the residuals (scipy's ``max_nfev``; ``status`` 0), or when the wall-time budget
``max_minutes`` is spent before another batch starts (``status`` -2, scipy's code for a
stop asked for by the caller; the result is the last accepted point).

**Inference** (:func:`smm_inference`). At the optimum the twin runs are repeated at
``n_se_seeds`` further seeds (spawned from the master seed, disjoint from the fitting
seeds) to estimate ``Sigma_sim``, the covariance of one seed's moments. With ``G`` the
Jacobian of the simulated moments in natural units (the last finite-difference Jacobian,
rescaled), ``S`` fitting seeds and ``Omega = diag(se^2) + Sigma_sim / S``::

    Var(theta) = (G'WG)^-1 G'W Omega W G (G'WG)^-1

Each parameter is reported with its SE, t-ratio, range and an ``at_bound`` flag (within
:data:`AT_BOUND_SHARE` of its range's width from a bound: the SE there is not a valid
interval); identification by the singular values and condition number of ``W^1/2 G``
with each column scaled by its parameter's range width (``weakly identified`` above
:data:`WEAK_CONDITION`, or a singular value ~0: then there are no SEs) and each
parameter's most sensitive moment; over-identification, when there are more moments than
parameters, by Hansen's ``J = r'r`` and its chi-square p-value (``df = moments -
params``; exact when the simulation noise is small against ``se``).

The search starts from the base scenario's values: by default ``uncalibrated``, whose free
parameters are the schema's round pre-calibration defaults (:mod:`sim.params`). The
result is written to the packaged ``sim/scenarios/paper.toml``, the one home of the
calibrated values, with every input and output above in its ``[provenance]`` table.

Every twin run is a task of :mod:`sim.runner` (``<hash of the point>-s<seed index>``),
and the optimiser asks the runner for one batch at a time (the start, the points of a
finite-difference Jacobian, each trial step, the extra seeds at the optimum), on a local
process pool or a Dask cluster. Each finished run is written at once to the output
folder, one file per run::

    <out>/calibration.toml       the master seed (the folder's record)
    <out>/base.toml              the base scenario (a record too)
    <out>/manifest.json          provenance and one entry per session
    <out>/tasks/<id>.parquet     one file per twin run: its moments as rows
    <out>/calibration.json       inputs, outputs and every moment (at the end)

The optimiser is deterministic given its inputs, so a rerun asks for the same points in
the same order and reads the finished runs from the folder: it replays its path and
resumes where an interrupted calibration stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
from scipy.optimize import brentq, least_squares
from scipy.stats import chi2

from sim import defaults
from sim import dynamics as dyn
from sim.model import CredentialMarket
from sim.params import Scenario, dumps_toml, load_scenario
from sim.runner import (
    Record,
    Task,
    TaskFn,
    TaskOutput,
    default_workers,
    open_executor,
    open_store,
    raise_failed,
    run_tasks,
    scenario_record,
    write_atomic,
)
from sim.store import git_info, jsonable
from sim.targets import TARGETS, MomentTarget, flow_moments, paper_moments

_log = logging.getLogger(__name__).info  # progress lines; the CLI shows them

__all__ = [
    "HELD_PARAMS",
    "MARKET_PARAMS",
    "MOMENT_TARGETS",
    "PREDICTIONS",
    "SHARING_PARAMS",
    "Calibration",
    "FreeParam",
    "MomentTarget",
    "calibrate",
    "fit_sharing",
    "moment_targets",
    "moments_from_rows",
    "simulate_moments",
    "smm_inference",
]


@dataclass(frozen=True)
class FreeParam:
    """A calibrated parameter and the range the optimiser searches."""

    key: str
    lo: float
    hi: float


# ---- what is fitted: parameters and moments (edit here) ----------------------------------

SHARING_PARAMS = (
    FreeParam("sharing.hazard_at_grant", 0.001, 0.5),
    FreeParam("sharing.nudge_strength", 0.0, 5.0),
)

#: The market block's free parameters and the ranges the optimiser searches. Each is
#: identified mainly by one moment (the Jacobian's most sensitive moment is recorded):
#: search intensities by the flow rates (unemployed by U->E, employed by E->E, marginally
#: attached by the employment drift: the steady state), the report probability by the
#: control mean of a new job, the in-scope share by that of an in-scope job, the search
#: boost (visibility) by the effect on certificate views (recruiters who find a shared
#: credential open it), the unshared view rate by the views' control mean, and
#: credibility by the effect on a new job beyond what visibility gives.
MARKET_PARAMS = (
    FreeParam("market.applications_unemployed", 0.2, 20.0),
    FreeParam("market.applications_employed", 0.02, 5.0),
    FreeParam("market.applications_marginal", 0.0, 1.0),
    FreeParam("market.report_prob", 0.2, 1.0),
    FreeParam("market.in_scope_share", 0.2, 0.95),
    FreeParam("signal.credibility", 0.0, 20.0),
    FreeParam("visibility.search_boost", 0.0, 30.0),
    FreeParam("visibility.unshared_view_rate", 1e-4, 0.05),
)

#: Parameters the schema marks as calibrated that the market block does not fit (none).
HELD_PARAMS: tuple[str, ...] = ()

#: The moments the market block matches: the paper's control means and effects (with
#: their published SEs) and the outside flow moments (with their tolerances and sources,
#: :data:`sim.targets.FLOW_TARGETS`). Eleven moments, eight parameters: three
#: over-identifying restrictions (Hansen's J). The tertile effects are not here.
MOMENT_TARGETS: tuple[MomentTarget, ...] = (
    *paper_moments("new_job", "new_job_in_scope", "any_view"),
    *flow_moments(),
)

#: Computed at the optimum and reported next to the paper's numbers, never fitted: the
#: control mean and true ITT of a new job by tertile of predicted employability (the
#: paper's cross-fitted classifier, :func:`sim.estimate.employability_tertiles`).
PREDICTIONS: tuple[MomentTarget, ...] = paper_moments(
    "new_job_low", "new_job_medium", "new_job_high"
)

# ---- how it is fitted ----------------------------------------------------------------------

#: Finite-difference step in unit-range space (5% of each parameter's range). The simulated
#: moments are deterministic under common random numbers but not smooth at fine scales
#: (finite agents, discrete events: a tiny change moves a few learners' outcomes at once),
#: so a derivative over a small step is mostly that jitter; a step of 5% of the range
#: averages over it while staying small against the curvature of the moments.
FD_STEP = 0.05
#: scipy ``ftol``: stop when a step lowers ``r'r`` by less than this fraction of it.
FTOL = 1e-3
#: scipy ``xtol``: stop when a step is shorter than ~1% of the point's norm in unit-range
#: space (about 1% of a range: below the resolution of a 5% finite-difference step). Coarse
#: for a parameter near the low end of a wide range (the search boost in [0, 30]).
XTOL = 1e-2
#: scipy ``gtol``: stop when the scaled gradient of ``r'r / 2`` (in SE units per range
#: width) is below this (the first-order condition, met exactly by a perfect fit).
GTOL = 1e-4
#: Extra seeds at the optimum for the covariance of the simulated moments.
N_SE_SEEDS = 8
#: ``at_bound`` within this share of the range's width of either bound.
AT_BOUND_SHARE = 0.01
#: ``weakly identified`` when the condition number of ``W^1/2 G`` (columns per range
#: width) exceeds this ...
WEAK_CONDITION = 1e3
#: ... or when a singular value is below this fraction of the largest (numerically 0:
#: ``G'WG`` is singular and there are no standard errors).
SINGULAR_RTOL = 1e-10


def moment_targets() -> list[tuple[str, float, float]]:
    """The moments the market block matches: id, target value, se (its residual's scale)."""
    return [(t.id, t.value, t.se) for t in MOMENT_TARGETS]


# ---- simulated moments ----------------------------------------------------------------


def simulate_moments(scenario: Scenario, seed: int | np.random.SeedSequence) -> dict[str, float]:
    """Control means and true ITTs (pp) of one pair of twin runs, as the paper defines
    them: matched sample for sharing and jobs, whole population for views, tertiles of
    cross-fitted predicted employability (:func:`sim.study.run_study`, no estimators);
    and the study world's market flows (``flow.<name>``, :mod:`sim.flows`)."""
    from sim.study import run_study

    return moments_from_rows(study_rows(run_study(scenario, seed, twin=True, estimate=False)))


def study_rows(res) -> pd.DataFrame:
    """A study's rows (:meth:`sim.study.StudyResult.rows`) plus one row per market flow:
    id ``flow.<name>``, estimator ``"flow"``, its value in ``control_mean``."""
    rows = res.rows()
    flows = pd.DataFrame(
        {
            "id": [f"flow.{k}" for k in res.flows],
            "outcome": [f"flow.{k}" for k in res.flows],
            "group": "all",
            "estimator": "flow",
            "control_mean": [float(v) for v in res.flows.values()],
        }
    )
    return pd.concat([rows, flows.reindex(columns=rows.columns)], ignore_index=True)


def calibration_task(task: Task) -> TaskOutput:
    """One twin run of the calibration (:func:`sim.study.run_study` without estimators):
    its rows with the market's flows (:func:`study_rows`), and the twins' truth."""
    from sim.study import run_study

    res = run_study(task.scenario(), task.seed, twin=True, estimate=False)
    return TaskOutput(study_rows(res), {"truth": res.truth})


def moments_from_rows(rows) -> dict[str, float]:
    """The moments of one twin run from its rows (the twins' rows of
    :meth:`sim.study.StudyResult.rows`): ``<id>.control`` (mean of Y(0), %),
    ``<id>.itt`` (true effect, pp) and ``<id>.n`` for the tertiles. A row whose id has a
    dot (``flow.ue_monthly``) is one moment by itself, its value in ``control_mean``."""
    out: dict[str, float] = {}
    for row in rows.itertuples():
        if "." in row.id:
            out[row.id] = float(row.control_mean)
            continue
        out[f"{row.id}.control"] = float(row.control_mean)
        out[f"{row.id}.itt"] = float(row.true_effect)
        if row.id.startswith("new_job_") and row.id != "new_job_in_scope":
            out[f"{row.id}.n"] = float(row.n)
    return out


def _sharing_rates(model: CredentialMarket, scenario: Scenario) -> tuple[float, float]:
    """Matched control sharing rate and true ITT on sharing (pp), replaying phase 1."""
    pop = model.population
    shared = {}
    for arm, treated in (("a", model.treated), ("b", ~model.treated)):
        st = dyn.LearnerState.initial(pop, model.state.app_open_week)
        for w in range(-scenario.calendar.burn_in_weeks, scenario.calendar.n_weeks):
            dyn.share(scenario, w, pop, st, treated, model.streams.weekly(w, "share"))
        shared[arm] = st.shared
    m, t = pop.matched, model.treated
    y1 = np.where(t, shared["a"], shared["b"])[m]
    y0 = np.where(t, shared["b"], shared["a"])[m]
    ctrl = 100 * float(shared["a"][m & ~t].mean())
    return ctrl, 100 * float(y1.mean() - y0.mean())


def fit_sharing(
    scenario: Scenario,
    seeds: Sequence[int | np.random.SeedSequence],
    log: Callable[[str], None] = _log,
) -> dict:
    """Block 1: hazard at grant to the control sharing rate, nudge to the sharing ITT.

    Rates are averaged over the calibration seeds. The control rate does not depend on
    the nudge, so the two one-dimensional root problems are solved in turn (Brent).
    """
    models = [CredentialMarket(scenario, rng=sd) for sd in seeds]
    t_ctrl, t_itt = TARGETS["shared"].control_mean, TARGETS["shared"].itt_pp

    def rates(h: float, k: float) -> tuple[float, float]:
        scn = scenario.with_overrides({"sharing.hazard_at_grant": h, "sharing.nudge_strength": k})
        got = np.array([_sharing_rates(m, scn) for m in models])
        return float(got[:, 0].mean()), float(got[:, 1].mean())

    lo, hi = SHARING_PARAMS[0].lo, SHARING_PARAMS[0].hi
    h = brentq(lambda h: rates(h, 0.0)[0] - t_ctrl, lo, hi, xtol=1e-6)
    lo, hi = SHARING_PARAMS[1].lo, SHARING_PARAMS[1].hi
    k = brentq(lambda k: rates(h, k)[1] - t_itt, lo, hi, xtol=1e-6)
    ctrl, itt = rates(h, k)
    log(
        f"sharing: hazard_at_grant={h:.5f} nudge_strength={k:.5f} -> control {ctrl:.2f}% "
        f"(target {t_ctrl}), ITT {itt:.2f} pp (target {t_itt})"
    )
    return {
        "sharing.hazard_at_grant": h,
        "sharing.nudge_strength": k,
        "moments": {"shared.control": ctrl, "shared.itt": itt},
    }


# ---- the market block: parameterisation and inference ----------------------------------------


def _bounds(params: Sequence[FreeParam]) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([p.lo for p in params], dtype=float)
    return lo, np.array([p.hi for p in params], dtype=float) - lo


def to_unit(value: np.ndarray, params: Sequence[FreeParam]) -> np.ndarray:
    """Natural values -> the optimiser's ``x = (value - lo) / (hi - lo)``."""
    lo, width = _bounds(params)
    return (np.asarray(value, dtype=float) - lo) / width


def from_unit(x: np.ndarray, params: Sequence[FreeParam]) -> np.ndarray:
    """The optimiser's ``x`` in ``[0, 1]`` -> natural values."""
    lo, width = _bounds(params)
    return lo + width * np.asarray(x, dtype=float)


# The names of the former logit transform (tests/test_study.py round-trips them).
_to_z, _from_z = to_unit, from_unit


def smm_inference(
    jac_unit: np.ndarray,
    residuals: np.ndarray,
    targets: Sequence[MomentTarget],
    params: Sequence[FreeParam],
    x: np.ndarray,
    sigma_sim: np.ndarray | None,
    n_fit_seeds: int,
) -> dict[str, Any]:
    """Standard errors, identification and over-identification at the optimum ``x``.

    ``jac_unit`` is ``d residual / d x`` (moments x parameters, ``x`` in unit-range
    space), i.e. ``W^1/2 G D`` with ``G`` the Jacobian of the simulated moments in natural
    units and ``D = diag(hi - lo)``; ``residuals`` are ``(simulated - value) / se`` at the
    optimum; ``sigma_sim`` is the covariance of one seed's simulated target moments
    (None: not estimated, taken as 0) and ``n_fit_seeds`` the seeds averaged in a fit
    evaluation. The sandwich (module docstring) is computed in unit space,
    ``D (A'A)^-1 A' Omega~ A (A'A)^-1 D`` with ``A = W^1/2 G D`` and
    ``Omega~ = W^1/2 Omega W^1/2``, which is the same matrix and better conditioned.
    Never raises on a singular ``G'WG``: the SEs are then NaN and ``message`` says why.
    """
    a = np.asarray(jac_unit, dtype=float)
    r = np.asarray(residuals, dtype=float)
    m, n = a.shape
    se_data = np.array([t.se for t in targets], dtype=float)
    lo, width = _bounds(params)
    theta = lo + width * np.asarray(x, dtype=float)
    # identification: singular values of W^1/2 G with columns per range width (= A)
    sv_full, weakest = np.zeros(n), {}
    finite = bool(np.isfinite(a).all())
    if finite and a.size:
        _, sv, vt = np.linalg.svd(a, full_matrices=True)
        sv_full[: len(sv)] = sv
        v = vt[-1] * np.sign(vt[-1][np.argmax(np.abs(vt[-1]))])
        weakest = {p.key: float(c) for p, c in zip(params, v, strict=True) if abs(c) >= 0.1}
    top = float(sv_full.max()) if n else 0.0
    rank = int(np.sum(sv_full > SINGULAR_RTOL * top)) if top > 0 else 0
    cond = float(top / sv_full.min()) if n and sv_full.min() > 0 else math.inf
    weak = rank < n or cond > WEAK_CONDITION
    # the sandwich
    omega = np.eye(m)
    if sigma_sim is not None:
        omega = omega + np.asarray(sigma_sim, dtype=float) / n_fit_seeds / np.outer(
            se_data, se_data
        )
    if not finite:
        cov = np.full((n, n), np.nan)
        message = "the Jacobian of the moments is not finite: no standard errors"
    elif rank < n:
        cov = np.full((n, n), np.nan)
        message = (
            f"G'WG is singular (rank {rank} of {n} parameters): the moments do not identify "
            f"the parameters separately (weakest direction {_direction(weakest)}); no "
            "standard errors"
        )
    else:
        ainv = np.linalg.pinv(a)  # = (A'A)^-1 A' at full column rank, by the SVD
        cov = (ainv @ omega @ ainv.T) * np.outer(width, width)
        message = "SMM sandwich (G'WG)^-1 G'W Omega W G (G'WG)^-1, Omega = diag(se^2) + "
        message += "Sigma_sim/S" if sigma_sim is not None else "0 (simulation noise not estimated)"
    se = np.sqrt(np.diag(cov))
    parameters = {}
    for j, p in enumerate(params):
        near = min(theta[j] - p.lo, p.hi - theta[j]) <= AT_BOUND_SHARE * (p.hi - p.lo)
        i = int(np.argmax(np.abs(a[:, j]))) if m else 0
        parameters[p.key] = {
            "value": float(theta[j]),
            "se": float(se[j]),
            "lo": p.lo,
            "hi": p.hi,
            "at_bound": bool(near),
            "t_ratio": float(theta[j] / se[j]) if se[j] > 0 else math.nan,
            "most_sensitive_moment": targets[i].id if m else None,
            # d residual / d x: SEs of that moment per range width of the parameter
            "sensitivity": float(a[i, j]) if m else math.nan,
        }
    j_stat = float(r @ r)
    df = m - n
    return {
        "parameters": parameters,
        "cov": cov,
        "message": message,
        "identification": {
            "singular_values": [float(s) for s in sv_full],
            "condition_number": cond,
            "rank": rank,
            "weakly_identified": bool(weak),
            "weakest_direction": weakest,
        },
        "overidentification": {
            "j_stat": j_stat,
            "df": df,
            "p_value": float(chi2.sf(j_stat, df)) if df > 0 else None,
        },
    }


def _direction(loadings: dict[str, float]) -> str:
    return " ".join(f"{c:+.2f} {k}" for k, c in loadings.items()) or "none"


class _OutOfTime(Exception):
    """The wall-time budget was spent before the next batch of twin runs."""


class Calibration:
    """The whole procedure, its twin runs kept in a result folder (see the module docstring).

    ``params`` (default :data:`MARKET_PARAMS`) are fitted to ``targets`` (default
    :data:`MOMENT_TARGETS`) by ``scipy.optimize.least_squares``; ``predictions`` (default
    :data:`PREDICTIONS`) are reported at the optimum. Each evaluation averages the moments
    over ``n_seeds`` twin runs; ``n_se_seeds`` more runs at the optimum estimate the
    simulation noise for the standard errors (0: not estimated). ``sharing_block`` fits
    the sharing parameters first (off: they keep the base scenario's values).

    The runs go to ``executor`` when given (e.g. a Dask cluster's), else to a local pool
    of ``workers`` processes (one: this process); ``task_fn`` runs one of them (default
    :func:`sim.runner.run_task`). ``manifest`` is written when the folder is started and
    ``session`` recorded in it at the end; ``base_source`` names the base in messages.
    """

    def __init__(
        self,
        base: Scenario,
        seed: int,
        out: str | Path,
        *,
        workers: int | None = None,
        executor: Executor | None = None,
        log: Callable[[str], None] = _log,
        max_iterations: int = defaults.CALIBRATE_MAX_ITERATIONS,
        n_seeds: int = defaults.CALIBRATE_SEEDS,
        n_se_seeds: int = N_SE_SEEDS,
        max_minutes: float = defaults.CALIBRATE_MAX_MINUTES,
        task_fn: TaskFn | None = None,
        manifest: dict | None = None,
        session: dict | None = None,
        base_source: str | None = None,
        params: Sequence[FreeParam] = MARKET_PARAMS,
        targets: Sequence[MomentTarget] = MOMENT_TARGETS,
        predictions: Sequence[MomentTarget] = PREDICTIONS,
        sharing_block: bool = True,
    ):
        if n_seeds < 1 or n_se_seeds < 0 or n_se_seeds == 1:
            raise ValueError(
                f"need n_seeds >= 1 and n_se_seeds 0 or >= 2 (a covariance), got "
                f"{n_seeds} and {n_se_seeds}"
            )
        ids = [t.id for t in (*targets, *predictions)]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a moment is listed twice among targets and predictions: {ids}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        self.base, self.seed, self.out = base, seed, Path(out)
        # fitting seeds first, then the extra seeds of the standard errors: all children of
        # the master seed, so disjoint, and the fitting seeds do not depend on n_se_seeds
        children = np.random.SeedSequence(seed).spawn(n_seeds + n_se_seeds)
        self.seeds, self.se_seeds = children[:n_seeds], children[n_seeds:]
        self._children = children
        self.workers, self.executor = workers, executor
        self.task_fn = task_fn or calibration_task
        self.log, self.max_iterations, self.max_minutes = log, max_iterations, max_minutes
        self.manifest, self.session_info = manifest, dict(session or {})
        self.base_source = base_source or f"base scenario {base.meta.name!r}"
        self.params, self.targets = tuple(params), tuple(targets)
        self.predictions, self.sharing_block = tuple(predictions), sharing_block
        self.t0 = time.monotonic()
        self.evaluated: dict[str, Task] = {}  # the twin runs this calibration asked for
        self.ran = 0  # of which run now (the others were read from the folder)
        self._store = self._executor = None

    # evaluation through the runner --------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """The result folder (locked) and the executor, open for the block (reentrant)."""
        if self._store is not None:
            yield
            return
        records = [
            Record(
                "calibration.toml",
                f"[calibration]\nseed = {int(self.seed)}\n",
                f"--seed {self.seed}",
            ),
            scenario_record("base.toml", self.base, self.base_source),
        ]
        with contextlib.ExitStack() as stack:
            try:
                self._store = stack.enter_context(
                    open_store(self.out, "calibration", records, self.manifest)
                )
                if self.executor is not None:
                    self._executor = self.executor
                else:
                    pool = open_executor(self.workers, in_process=True)
                    self._executor = stack.enter_context(pool).executor
                yield
            finally:
                self._store = self._executor = None

    def task(self, overrides: dict, k: int) -> Task:
        """The twin run of the point ``overrides`` at seed ``k`` (the fitting seeds are
        ``0 .. n_seeds-1``, the standard errors' follow); its id hashes the point."""
        point = {key: float(v) for key, v in sorted(overrides.items())}
        digest = hashlib.sha256(json.dumps(point).encode()).hexdigest()[:16]
        sd = self._children[k]
        return Task(
            task_id=f"{digest}-s{k}",
            overrides=point,
            seed_entropy=int(sd.entropy),
            spawn_key=tuple(int(x) for x in sd.spawn_key),
            base=self.base,
            twin=True,
            estimate=False,
            replication=k,
            index=k,
        )

    def runs(self, overrides: list[dict], seeds: Sequence[int]) -> list[list[dict]]:
        """The moments of each point at each seed index: one batch for the runner, which
        runs the twin runs missing from the folder and writes them; all are read back."""
        tasks = [[self.task(o, k) for k in seeds] for o in overrides]
        batch = [t for ts in tasks for t in ts]
        with self.session():
            run = run_tasks(batch, self._store, self._executor, self.task_fn, log=self.log)
            self.ran += run.ran
            rows = {t.task_id: self._store.read(t) for t in batch}
            if any(df is None or not (df["status"] == "ok").all() for df in rows.values()):
                raise_failed(self._store, batch, "twin runs")
            moments = {task_id: moments_from_rows(df) for task_id, df in rows.items()}
        self.evaluated.update((t.task_id, t) for t in batch)
        return [[moments[t.task_id] for t in ts] for ts in tasks]

    def evaluate_many(self, overrides: list[dict]) -> list[dict]:
        """Moments at each point, averaged over the fitting seeds (one batch)."""
        out = []
        for runs in self.runs(overrides, range(len(self.seeds))):
            out.append({m: float(np.mean([r[m] for r in runs])) for m in runs[0]})
        return out

    def residuals(self, moments: dict) -> np.ndarray:
        """``(simulated - value) / se`` of each target, in the order of ``targets``."""
        missing = [t.id for t in self.targets if t.id not in moments]
        if missing:
            raise KeyError(
                f"the twin runs report no moment {', '.join(missing)} (they report "
                f"{', '.join(sorted(moments))})"
            )
        return np.array([(moments[t.id] - t.value) / t.se for t in self.targets])

    # the procedure --------------------------------------------------------------------
    def run(self) -> dict:
        with self.session():
            return self._run()

    def _elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> dict:
        where = self.session_info.get("executor") or (
            f"{self.workers or default_workers()} workers"
        )
        self.log(
            f"calibration of {self.base.meta.name}: {self.base.population.n_learners:,}"
            f" learners, {len(self.seeds)} seeds (+{len(self.se_seeds)} for the standard "
            f"errors) from master seed {self.seed}, {where}; {len(self.params)} parameters, "
            f"{len(self.targets)} moments"
        )
        held = [k for k in HELD_PARAMS if k not in {p.key for p in self.params}]
        if held:
            self.log(f"  held at the base scenario's values: {', '.join(held)}")
        if len(self.targets) < len(self.params):
            self.log(
                f"  fewer moments ({len(self.targets)}) than parameters ({len(self.params)}): "
                "the parameters cannot all be identified"
            )
        if self.sharing_block:
            sharing = fit_sharing(self.base, self.seeds, self.log)
        else:
            sharing = {"moments": {}}
        fixed = {k: v for k, v in sharing.items() if k != "moments"}
        fit = self._fit(fixed)
        x, keys = fit["x"], [p.key for p in self.params]
        at = {**fixed, **dict(zip(keys, map(float, from_unit(x, self.params)), strict=True))}

        # simulation noise: the optimum at the extra seeds
        sigma, se_moments = None, {}
        if self.se_seeds:
            k0 = len(self.seeds)
            t_batch = time.monotonic()
            per_seed = self.runs([at], range(k0, k0 + len(self.se_seeds)))[0]
            ids = [t.id for t in self.targets]
            mat = np.array([[r[i] for i in ids] for r in per_seed])
            sigma = np.atleast_2d(np.cov(mat, rowvar=False, ddof=1))
            se_moments = {m: float(np.std([r[m] for r in per_seed], ddof=1)) for m in per_seed[0]}
            self.log(
                f"  {len(self.se_seeds)} more seeds at the optimum for the simulation noise "
                f"({time.monotonic() - t_batch:.0f} s)"
            )
        inf = smm_inference(
            fit["jac"], fit["r"], self.targets, self.params, x, sigma, len(self.seeds)
        )
        self._log_inference(inf, fit["r"])

        seconds = self._elapsed()
        self._store.record_session(
            {
                **self.session_info,
                "ran": self.ran,
                "already_done": len(self.evaluated) - self.ran,
                "wall_seconds": round(seconds, 3),
            }
        )
        obj = float(fit["r"] @ fit["r"])
        opt = fit["optimizer"]
        self.log(
            f"done: objective {obj:.3f} ({len(self.evaluated)} twin runs, {self.ran} "
            f"run now, the others read from {self.out}; {seconds:.0f} s); "
            f"{opt['stopped_on']}: {opt['message']}"
        )
        moments = fit["moments"]
        return {
            "fitted": at,
            "objective": obj,
            "moments": {**sharing["moments"], **moments},
            "targets": {
                t.id: {
                    "value": t.value,
                    "se": t.se,
                    "source": t.source,
                    "kind": t.kind,
                    "simulated": moments[t.id],
                    "residual": float(ri),
                }
                for t, ri in zip(self.targets, fit["r"], strict=True)
            },
            "predictions": {
                t.id: {
                    "value": t.value,
                    "se": t.se,
                    "source": t.source,
                    "simulated": moments.get(t.id, math.nan),
                    "sim_se": se_moments.get(t.id, math.nan),
                }
                for t in self.predictions
            },
            "parameters": inf["parameters"],
            "identification": inf["identification"],
            "overidentification": inf["overidentification"],
            "inference": {
                "message": inf["message"],
                "n_fitting_seeds": len(self.seeds),
                "n_se_seeds": len(self.se_seeds),
                "cov": [[float(v) for v in row] for row in inf["cov"]],
                "sim_cov": {
                    "moments": [t.id for t in self.targets],
                    "matrix": None if sigma is None else [[float(v) for v in r] for r in sigma],
                },
                "sim_se": se_moments,
            },
            "optimizer": opt,
            "evaluations": len(self.evaluated),
            "seeds": [[sd.entropy, *sd.spawn_key] for sd in self.seeds],
            "se_seeds": [[sd.entropy, *sd.spawn_key] for sd in self.se_seeds],
        }

    def _fit(self, fixed: dict) -> dict:
        """Minimise ``r'r`` over the market parameters: the optimum in unit-range space,
        the residual Jacobian there, the moments and the optimiser's record."""
        params, keys = self.params, [p.key for p in self.params]
        n = len(params)
        start = np.array([_get(self.base, k) for k in keys], dtype=float)
        x0 = to_unit(start, params)
        if np.any((x0 < 0) | (x0 > 1)):
            outside = [k for k, u in zip(keys, x0, strict=True) if not 0 <= u <= 1]
            self.log(f"  base values outside their range, clipped: {', '.join(outside)}")
            x0 = np.clip(x0, 0.0, 1.0)
        evals: dict[bytes, tuple[np.ndarray, dict]] = {}  # x -> (residuals, moments)
        jacs: dict[bytes, np.ndarray] = {}
        state = {"deadline": True, "batches": 0, "nfev": 0, "njev": 0, "best": math.inf}
        accepted = [np.array(x0)]  # where the Jacobian was last taken: trf's current point

        def at(x: np.ndarray) -> dict:
            return {**fixed, **dict(zip(keys, map(float, from_unit(x, params)), strict=True))}

        def batch(xs: list[np.ndarray], what: str) -> list[tuple[np.ndarray, dict]]:
            todo = [x for x in xs if x.tobytes() not in evals]
            if todo:
                if state["deadline"] and self._elapsed() > 60 * self.max_minutes:
                    raise _OutOfTime
                t_batch = time.monotonic()
                for x, mom in zip(todo, self.evaluate_many([at(x) for x in todo]), strict=True):
                    r = self.residuals(mom)
                    evals[x.tobytes()] = (r, mom)
                    state["best"] = min(state["best"], float(r @ r))
                state["batches"] += 1
                got = [evals[x.tobytes()][0] for x in xs]
                self.log(
                    f"  batch {state['batches']:3d} ({what}, {len(todo)} points x "
                    f"{len(self.seeds)} seeds): objective {got[0] @ got[0]:9.3f}, best "
                    f"{state['best']:9.3f}; {time.monotonic() - t_batch:5.0f} s, "
                    f"{self._elapsed():6.0f} s in all"
                )
            return [evals[x.tobytes()] for x in xs]

        def fun(x: np.ndarray) -> np.ndarray:
            state["nfev"] += 1
            return batch([np.array(x, dtype=float)], "residuals")[0][0]

        def jac(x: np.ndarray) -> np.ndarray:
            x = np.array(x, dtype=float)
            if x.tobytes() in jacs:
                return jacs[x.tobytes()]
            state["njev"] += 1
            steps = np.where(x + FD_STEP <= 1.0, FD_STEP, -FD_STEP)  # backward at the top
            points = [x + steps[j] * np.eye(n)[j] for j in range(n)]
            got = batch([x, *points], f"Jacobian, {n} parameters")
            r0 = got[0][0]
            a = np.column_stack([(got[j + 1][0] - r0) / steps[j] for j in range(n)])
            jacs[x.tobytes()] = a
            accepted[0] = x
            return a

        opt = {
            "name": "scipy.optimize.least_squares",
            "method": "trf",
            "scipy_version": scipy.__version__,
            "transform": "unit range: x = (value - lo) / (hi - lo), bounds [0, 1]",
            "fd_step": FD_STEP,
            "ftol": FTOL,
            "xtol": XTOL,
            "gtol": GTOL,
            "max_nfev": self.max_iterations,
            "max_minutes": self.max_minutes,
        }
        try:
            res = least_squares(
                fun,
                x0,
                jac=jac,
                bounds=(np.zeros(n), np.ones(n)),
                method="trf",
                ftol=FTOL,
                xtol=XTOL,
                gtol=GTOL,
                x_scale=1.0,
                max_nfev=self.max_iterations,
            )
            x, status, message = np.array(res.x, dtype=float), int(res.status), str(res.message)
            stopped_on = "tolerance" if status > 0 else "max_nfev" if status == 0 else "error"
        except _OutOfTime:
            x, status, stopped_on = accepted[0], -2, "time"
            message = (
                f"stopped: the wall-time budget ({self.max_minutes:g} min) was spent before "
                "the tolerances were met (not converged); the result is the last accepted "
                "point"
            )
        state["deadline"] = False  # the rest is needed for the result, whatever the time
        r, moments = batch([x], "the optimum")[0]
        a = jac(x)
        opt.update(
            status=status,
            message=message,
            stopped_on=stopped_on,
            converged=status > 0,
            nfev=state["nfev"],
            njev=state["njev"],
            batches=state["batches"],
        )
        return {"x": x, "r": r, "jac": a, "moments": moments, "optimizer": opt}

    def _log_inference(self, inf: dict, r: np.ndarray) -> None:
        ident, over = inf["identification"], inf["overidentification"]
        for key, p in inf["parameters"].items():
            flag = "  AT BOUND" if p["at_bound"] else ""
            self.log(
                f"  {key:32s} {p['value']:10.5g} (SE {p['se']:9.3g}, t {p['t_ratio']:7.2f}) "
                f"in [{p['lo']:g}, {p['hi']:g}]; most sensitive moment "
                f"{p['most_sensitive_moment']}{flag}"
            )
        svs = ", ".join(f"{s:.3g}" for s in ident["singular_values"])
        verdict = "weakly identified" if ident["weakly_identified"] else "identified"
        self.log(
            f"  identification: condition number {ident['condition_number']:.3g}, singular "
            f"values {svs}: {verdict}"
            + (
                f" (weakest direction {_direction(ident['weakest_direction'])})"
                if ident["weakly_identified"]
                else ""
            )
        )
        if not all(math.isfinite(p["se"]) for p in inf["parameters"].values()):
            self.log(f"  {inf['message']}")
        if over["df"] > 0:
            self.log(
                f"  over-identification: J = {over['j_stat']:.3f}, df {over['df']}, "
                f"p = {over['p_value']:.3g}"
            )
        else:
            self.log(
                f"  exactly identified (J = {over['j_stat']:.3f}, no over-identification test)"
            )
        for t, ri in zip(self.targets, r, strict=True):
            self.log(f"  {t.id:28s} target {t.value:8.4g} (se {t.se:.3g}): residual {ri:+.2f} se")


def _get(scn: Scenario, key: str) -> float:
    section, name = key.split(".")
    return float(getattr(getattr(scn, section), name))


# ---- the command's work -------------------------------------------------------------------


def calibrated_scenario(base: Scenario, result: dict) -> Scenario:
    """The base scenario with the fitted values, named ``paper``."""
    return base.with_overrides(
        {
            **result["fitted"],
            "meta.name": "paper",
            "meta.description": "Calibrated to the study's numbers (TARGETS.md) by `credsim "
            "calibrate`; see [provenance].",
        }
    )


def _toml_ready(obj: Any) -> Any:
    """Plain Python values for TOML: numpy scalars as numbers, None (no TOML null) left out."""
    if isinstance(obj, dict):
        return {str(k): _toml_ready(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_toml_ready(v) for v in obj if v is not None]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def provenance_toml(
    result: dict, base_path: str, seed: int, commit: str, when: str, seconds: float
) -> str:
    """The ``[provenance]`` table appended to ``paper.toml`` (read back as information)."""
    method = (
        "SMM with common random numbers: sharing block by Brent root-finding; market "
        "block by scipy.optimize.least_squares (trf, bounds) on (simulated - target)/se "
        "with finite-difference Jacobians, moments averaged over twin runs of several "
        "seeds; SMM sandwich standard errors with simulation noise from extra seeds; see "
        "sim/calibrate.py"
    )
    opt = result["optimizer"]
    ident, over = result["identification"], result["overidentification"]
    provenance = {
        "command": (
            f"credsim calibrate --base {base_path} --seed {seed} --seeds {len(result['seeds'])}"
        ),
        "base_scenario": base_path,
        "seed": seed,
        "commit": commit,
        "finished": when,
        "wall_seconds": round(seconds, 1),
        "method": method,
        "seeds": [str(x) for x in result["seeds"]],
        "se_seeds": [str(x) for x in result["se_seeds"]],
        "objective": result["objective"],
        "evaluations": result["evaluations"],
        "j_stat": over["j_stat"],
        "j_df": over["df"],
        "j_pvalue": over["p_value"],
        "condition_number": ident["condition_number"],
        "singular_values": ident["singular_values"],
        "weakly_identified": ident["weakly_identified"],
        "inference": result["inference"]["message"],
        "fitted": dict(result["fitted"]),
        "optimizer": {
            k: opt[k]
            for k in (
                "name",
                "method",
                "transform",
                "fd_step",
                "ftol",
                "xtol",
                "gtol",
                "max_nfev",
                "max_minutes",
                "status",
                "message",
                "stopped_on",
                "nfev",
                "njev",
            )
        },
        "parameters": {
            k: {f: p[f] for f in ("value", "se", "lo", "hi", "at_bound", "t_ratio")}
            for k, p in result["parameters"].items()
        },
        "targets": {
            k: {f: t[f] for f in ("value", "se", "source", "kind")}
            for k, t in result["targets"].items()
        },
        "simulated": {k: round(v, 4) for k, v in result["moments"].items() if math.isfinite(v)},
        "predictions": {
            k: {f: p[f] for f in ("value", "se", "simulated", "sim_se")}
            for k, p in result["predictions"].items()
        },
    }
    return dumps_toml({"provenance": _toml_ready(provenance)})


def calibrate(
    base_path: str | Path,
    seed: int = defaults.CALIBRATE_SEED,
    out_dir: str | Path = defaults.CALIBRATE_DIR,
    scenario_out: str | Path = defaults.CALIBRATE_SCENARIO_OUT,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    max_iterations: int = defaults.CALIBRATE_MAX_ITERATIONS,
    n_seeds: int = defaults.CALIBRATE_SEEDS,
    n_se_seeds: int = N_SE_SEEDS,
    max_minutes: float = defaults.CALIBRATE_MAX_MINUTES,
    log: Callable[[str], None] = _log,
    clock: Callable[[], str] | None = None,
    command: Sequence[str] | None = None,
    executor_info: str | None = None,
    task_fn: TaskFn | None = None,
) -> dict:
    """Run the whole calibration and write ``scenario_out`` (e.g. sim/scenarios/paper.toml).

    ``out_dir`` keeps every twin run (a rerun resumes; see the module docstring) and
    ``calibration.json`` (inputs, outputs, every moment). The twin runs go to
    ``executor`` when given, else to ``workers`` local processes. Each evaluation
    averages ``n_seeds`` twin runs; ``n_se_seeds`` more at the optimum give the
    simulation noise of the standard errors (see :class:`Calibration`). ``max_iterations``
    bounds the evaluations of the residuals (scipy's ``max_nfev``; the Jacobians come on
    top). The scenario file is written when the fit has finished (converged or stopped on
    ``max_iterations`` or ``max_minutes``: its ``[provenance]`` says which).

    Raises:
        sim.runner.StoreError: ``out_dir`` holds another calibration, or is in use.
        sim.runner.TaskFailed: a twin run failed (recorded in ``out_dir``).
    """
    from sim import store

    t0 = time.monotonic()
    git = git_info()  # the code the calibration runs with, read before it starts
    base = load_scenario(base_path)
    started = clock() if clock else None
    manifest = store.manifest(
        base,
        seed,
        {
            "calibration": {
                "base_scenario": str(base_path),
                "seeds": n_seeds,
                "se_seeds": n_se_seeds,
            },
            "sessions": [],
        },
        timestamp=started,
        command=command,
    )
    cal = Calibration(
        base,
        seed,
        Path(out_dir),
        workers=workers,
        executor=executor,
        log=log,
        max_iterations=max_iterations,
        n_seeds=n_seeds,
        n_se_seeds=n_se_seeds,
        max_minutes=max_minutes,
        task_fn=task_fn,
        manifest=manifest,
        session={"timestamp": started, "command": list(command or []), "executor": executor_info},
        base_source=str(base_path),
    )
    result = cal.run()
    scn = calibrated_scenario(base, result)
    commit = git["commit"] + ("-dirty" if git["dirty"] else "")
    when = clock() if clock else ""
    seconds = time.monotonic() - t0
    text = (
        "# Calibrated scenario: the output of `credsim calibrate`; do not edit by hand.\n"
        "# Rerun the command to reproduce it (inputs and outputs in [provenance]).\n\n"
        + scn.to_toml()
        + "\n"
        + provenance_toml(result, str(base_path), seed, commit, when, seconds)
    )
    Scenario.from_toml_text(text, source=str(scenario_out))  # validates what we write
    write_atomic(scenario_out, text)
    write_atomic(
        Path(out_dir) / "calibration.json",
        json.dumps(
            jsonable(
                {
                    "base": str(base_path),
                    "seed": seed,
                    "commit": commit,
                    "finished": when,
                    "wall_seconds": seconds,
                    **result,
                }
            ),
            indent=2,
            allow_nan=False,
            default=str,
        ),
    )
    log(f"wrote {scenario_out} ({seconds / 60:.1f} min)")
    return result
