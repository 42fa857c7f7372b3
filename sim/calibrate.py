"""Calibration: fit the model's free parameters to the study's numbers (TARGETS.md).

Method: simulated method of moments with common random numbers, in two blocks.

1. **Sharing** (``sharing.hazard_at_grant``, ``sharing.nudge_strength``) is fitted first
   to the matched sample's control sharing rate and the true ITT on sharing. Sharing
   depends on nothing in the labour market, so this block replays phase 1 alone on the
   calibration populations (exactly the draws the full model makes) and solves the two
   equations by Brent's method in seconds.
2. **Market, channels and views** (the parameters of :data:`MARKET_PARAMS`) are fitted
   jointly to the remaining moments: control means of new job, new job in scope and
   (population) any certificate view; the true ITTs of those three; and the control mean
   and true ITT of a new job within each tertile of predicted employability (the
   paper's cross-fitted classifier, :func:`sim.estimate.employability_tertiles`).
   An evaluation runs twin worlds at the study's full scale for each of ``n_seeds``
   seeds (spawned from the master seed) and averages the moments; the seeds are the
   same at every point (common random numbers), so the objective is a deterministic
   function of the parameters. The residuals are ``(simulated - paper) / scale`` with
   the scales of :data:`SCALES`; their sum of squares is minimised by Levenberg-Marquardt
   steps with Broyden updates of a finite-difference Jacobian (see :class:`Calibration`),
   in the logit space of each parameter's calibration range.

The search starts from the base scenario's values: by default ``uncalibrated``, whose free
parameters are the schema's round pre-calibration defaults (:mod:`sim.params`). The
result is written to the packaged ``sim/scenarios/paper.toml``, the one home of the
calibrated values.

Simulated ITTs are the *true* effects from the twin runs (each learner under both
arms), not one noisy estimate: the paper's estimate is the target, and the model's
expected estimate is its true effect.

Every twin run is a task of :mod:`sim.runner` (``<hash of the point>-s<seed index>``),
and the optimiser asks the runner for one batch at a time (the start, the points of a
finite-difference Jacobian, each step), on a local process pool or a Dask cluster. Each
finished run is written at once to the output folder, one file per run::

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

import numpy as np
from scipy.optimize import brentq

from sim import defaults
from sim import dynamics as dyn
from sim.model import CredentialMarket
from sim.params import Scenario, dumps_toml, load_scenario
from sim.runner import (
    Record,
    Task,
    TaskFn,
    default_workers,
    open_executor,
    open_store,
    raise_failed,
    run_task,
    run_tasks,
    scenario_record,
    write_atomic,
)
from sim.store import git_info
from sim.targets import TARGETS

_log = logging.getLogger(__name__).info  # progress lines; the CLI shows them

__all__ = [
    "MARKET_PARAMS",
    "SHARING_PARAMS",
    "Calibration",
    "calibrate",
    "fit_sharing",
    "moment_targets",
    "moments_from_rows",
    "simulate_moments",
]


@dataclass(frozen=True)
class FreeParam:
    """A calibrated parameter and the range the optimiser searches."""

    key: str
    lo: float
    hi: float


SHARING_PARAMS = (
    FreeParam("sharing.hazard_at_grant", 0.001, 0.5),
    FreeParam("sharing.nudge_strength", 0.0, 5.0),
)

MARKET_PARAMS = (
    FreeParam("market.vacancies_per_1000", 0.5, 20.0),
    FreeParam("market.in_scope_share", 0.2, 0.95),
    FreeParam("market.applications_employed", 0.01, 0.8),
    FreeParam("market.fit_noise_sd", 0.1, 3.0),
    FreeParam("signal.credibility", 0.01, 1.0),
    FreeParam("signal.prior_precision_thin", 0.05, 3.9),
    FreeParam("signal.course_skill_gain", -1.0, 2.0),
    FreeParam("visibility.search_boost", 0.0, 30.0),
    FreeParam("visibility.unshared_view_rate", 1e-4, 0.05),
    FreeParam("visibility.recruiter_view_prob", 0.0, 1.0),
)

#: How closely each moment must be matched (pp): the scale of its residual. Effects are
#: what the study is about, so they get the tight scales: the half-width of the
#: reproduction windows (a 5-7% overall and a 9.5-12.5% low-tertile relative effect, i.e.
#: +-0.17 pp and +-0.16 pp), 0.2 pp for the medium tertile (whose relative effect must stay
#: below the low tertile's) and half the paper's SE for the other effects; control means
#: a third of their tolerance (1 pp overall, 2 pp by tertile); views, whose SE is
#: tiny, half their SE (effect) or 0.1 pp (control mean).
SCALES = {
    "new_job.control": 1 / 3,
    "new_job.itt": 0.17,
    "new_job_in_scope.control": 1 / 3,
    "new_job_in_scope.itt": 0.397 / 2,
    "any_view.control": 0.1,
    "any_view.itt": 0.09 / 2,
    "new_job_low.control": 2 / 3,
    "new_job_low.itt": 0.16,
    "new_job_medium.control": 2 / 3,
    "new_job_medium.itt": 0.2,
    "new_job_high.control": 2 / 3,
    "new_job_high.itt": 1.141 / 2,
}


def moment_targets() -> list[tuple[str, float, float]]:
    """The moments the market block matches: id, paper value (pp), scale (pp)."""
    out = []
    for tid in (
        "new_job",
        "new_job_in_scope",
        "any_view",
        "new_job_low",
        "new_job_medium",
        "new_job_high",
    ):
        t = TARGETS[tid]
        out.append((f"{tid}.control", t.control_mean, SCALES[f"{tid}.control"]))
        out.append((f"{tid}.itt", t.itt_pp, SCALES[f"{tid}.itt"]))
    return out


# ---- simulated moments ----------------------------------------------------------------


def simulate_moments(scenario: Scenario, seed: int | np.random.SeedSequence) -> dict[str, float]:
    """Control means and true ITTs (pp) of one pair of twin runs, as the paper defines
    them: matched sample for sharing and jobs, whole population for views, tertiles of
    cross-fitted predicted employability (:func:`sim.study.run_study`, no estimators)."""
    from sim.study import run_study

    return moments_from_rows(run_study(scenario, seed, twin=True, estimate=False).rows())


def moments_from_rows(rows) -> dict[str, float]:
    """The moments of one twin run from its rows (the twins' rows of
    :meth:`sim.study.StudyResult.rows`): ``<id>.control`` (mean of Y(0), %),
    ``<id>.itt`` (true effect, pp) and ``<id>.n`` for the tertiles."""
    out: dict[str, float] = {}
    for row in rows.itertuples():
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


# ---- the market block -------------------------------------------------------------------


def _to_z(x: np.ndarray, params: Sequence[FreeParam]) -> np.ndarray:
    lo = np.array([p.lo for p in params])
    hi = np.array([p.hi for p in params])
    u = np.clip((x - lo) / (hi - lo), 1e-6, 1 - 1e-6)
    return np.log(u / (1 - u))


def _from_z(z: np.ndarray, params: Sequence[FreeParam]) -> np.ndarray:
    lo = np.array([p.lo for p in params])
    hi = np.array([p.hi for p in params])
    return lo + (hi - lo) / (1 + np.exp(-z))


class Calibration:
    """The whole procedure, its twin runs kept in a result folder (see the module docstring).

    The market block is minimised by Levenberg-Marquardt steps in the logit space of the
    parameters. The Jacobian is computed once by forward differences (its columns are one
    batch of runs) and then kept current with Broyden's rank-one update after every step,
    so each later step costs one evaluation; it is recomputed after repeated rejected
    steps. Each evaluation averages the moments over ``n_seeds`` twin runs.

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
        max_minutes: float = defaults.CALIBRATE_MAX_MINUTES,
        task_fn: TaskFn = run_task,
        manifest: dict | None = None,
        session: dict | None = None,
        base_source: str | None = None,
    ):
        self.base, self.seed, self.out = base, seed, Path(out)
        self.seeds = np.random.SeedSequence(seed).spawn(n_seeds)
        self.workers, self.executor, self.task_fn = workers, executor, task_fn
        self.log, self.max_iterations, self.max_minutes = log, max_iterations, max_minutes
        self.manifest, self.session_info = manifest, dict(session or {})
        self.base_source = base_source or f"base scenario {base.meta.name!r}"
        self.targets = moment_targets()
        self.t0 = time.monotonic()
        self.best: tuple[float, dict, dict] | None = None
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
        """The twin run of the point ``overrides`` at seed ``k``; its id hashes the point."""
        point = {key: float(v) for key, v in sorted(overrides.items())}
        digest = hashlib.sha256(json.dumps(point).encode()).hexdigest()[:16]
        sd = self.seeds[k]
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

    def evaluate_many(self, overrides: list[dict]) -> list[dict]:
        """Moments at each point, averaged over the seeds: one batch for the runner, which
        runs the twin runs missing from the folder and writes them; all are read back."""
        tasks = [[self.task(o, k) for k in range(len(self.seeds))] for o in overrides]
        batch = [t for ts in tasks for t in ts]
        with self.session():
            run = run_tasks(batch, self._store, self._executor, self.task_fn, log=self.log)
            self.ran += run.ran
            raise_failed(self._store, batch, "twin runs")
            moments = {t.task_id: moments_from_rows(self._store.read(t)) for t in batch}
        self.evaluated.update((t.task_id, t) for t in batch)
        out = []
        for ts in tasks:
            runs = [moments[t.task_id] for t in ts]
            out.append({m: float(np.mean([r[m] for r in runs])) for m in runs[0]})
        return out

    def residuals(self, moments: dict) -> np.ndarray:
        return np.array([(moments[m] - t) / s for m, t, s in self.targets])

    # the procedure --------------------------------------------------------------------
    def run(self) -> dict:
        with self.session():
            return self._run()

    def _run(self) -> dict:
        where = self.session_info.get("executor") or (
            f"{self.workers or default_workers()} workers"
        )
        self.log(
            f"calibration of {self.base.meta.name}: {self.base.population.n_learners:,}"
            f" learners, {len(self.seeds)} seeds from master seed {self.seed}, "
            f"{where}"
        )
        sharing = fit_sharing(self.base, self.seeds, self.log)
        fixed = {k: v for k, v in sharing.items() if k != "moments"}
        params = MARKET_PARAMS
        keys = [p.key for p in params]
        z = _to_z(np.array([_get(self.base, k) for k in keys], dtype=float), params)

        def at(z: np.ndarray) -> dict:
            return {**fixed, **dict(zip(keys, map(float, _from_z(z, params)), strict=True))}

        def evaluate(points: list[np.ndarray]) -> list[np.ndarray]:
            moms = self.evaluate_many([at(p) for p in points])
            out = []
            for p, m in zip(points, moms, strict=True):
                r = self.residuals(m)
                obj = float(r @ r)
                if self.best is None or obj < self.best[0]:
                    self.best = (obj, at(p), m)
                out.append(r)
            return out

        def jacobian(z: np.ndarray, r: np.ndarray, h: float = 0.25) -> np.ndarray:
            cols = evaluate([z + h * e for e in np.eye(len(z))])
            return np.column_stack([(c - r) / h for c in cols])

        r = evaluate([z])[0]
        self.log(f"  start: objective {r @ r:9.3f}")
        jac = jacobian(z, r)
        lam, rejected, message = 1e-2, 0, "iteration limit reached"
        for it in range(1, self.max_iterations + 1):
            if time.monotonic() - self.t0 > 60 * self.max_minutes:
                message = f"time limit ({self.max_minutes:.0f} min) reached"
                break
            g = jac.T @ r
            a = jac.T @ jac
            dz = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-9), -g)
            dz *= min(1.0, 1.5 / max(np.abs(dz).max(), 1e-12))  # trust region (logit)
            r_new = evaluate([z + dz])[0]
            # Broyden: make the Jacobian agree with the step just taken
            jac += np.outer(r_new - r - jac @ dz, dz) / float(dz @ dz)
            accepted = r_new @ r_new < r @ r
            if accepted:
                z, r, lam, rejected = z + dz, r_new, lam / 3, 0
            else:
                lam, rejected = lam * 4, rejected + 1
            self.log(
                f"  step {it:2d}: objective {r_new @ r_new:9.3f} "
                f"({'accepted' if accepted else 'rejected'}), best "
                f"{self.best[0]:9.3f}, {time.monotonic() - self.t0:6.0f} s"
            )
            if rejected >= 3:
                self.log("  recomputing the Jacobian")
                jac, lam, rejected = jacobian(z, r), 1e-2, 0
            if float(np.abs(dz).max()) < 1e-3 and accepted:
                message = "step below tolerance"
                break
        obj, best_over, best_mom = self.best
        seconds = time.monotonic() - self.t0
        self._store.record_session(
            {
                **self.session_info,
                "ran": self.ran,
                "already_done": len(self.evaluated) - self.ran,
                "wall_seconds": round(seconds, 3),
            }
        )
        self.log(
            f"done: objective {obj:.3f} ({len(self.evaluated)} twin runs, {self.ran} "
            f"run now, the others read from {self.out}; {seconds:.0f} s); {message}"
        )
        return {
            "fitted": best_over,
            "objective": obj,
            "moments": {**sharing["moments"], **best_mom},
            "targets": {m: {"value": t, "scale": s} for m, t, s in self.targets},
            "evaluations": len(self.evaluated),
            "seeds": [[sd.entropy, *sd.spawn_key] for sd in self.seeds],
            "optimizer": {"message": message},
        }


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


def provenance_toml(
    result: dict, base_path: str, seed: int, commit: str, when: str, seconds: float
) -> str:
    """The ``[provenance]`` table appended to ``paper.toml`` (read back as information)."""
    method = (
        "SMM with common random numbers: sharing block by Brent root-finding, market "
        "block by Levenberg-Marquardt with Broyden updates on (sim - paper)/scale, "
        "moments averaged over twin runs of several seeds; see sim/calibrate.py"
    )
    provenance = {
        "command": f"credsim calibrate --base {base_path}",
        "base_scenario": base_path,
        "seed": seed,
        "commit": commit,
        "finished": when,
        "wall_seconds": round(seconds, 1),
        "method": method,
        "seeds": [str(x) for x in result["seeds"]],
        "objective": result["objective"],
        "evaluations": result["evaluations"],
        "optimizer": result["optimizer"]["message"],
        "fitted": dict(result["fitted"]),
        "targets": {k: v["value"] for k, v in result["targets"].items()},
        "simulated": {k: round(v, 4) for k, v in result["moments"].items() if math.isfinite(v)},
    }
    return dumps_toml({"provenance": provenance})


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
    max_minutes: float = defaults.CALIBRATE_MAX_MINUTES,
    log: Callable[[str], None] = _log,
    clock: Callable[[], str] | None = None,
    command: Sequence[str] | None = None,
    executor_info: str | None = None,
    task_fn: TaskFn = run_task,
) -> dict:
    """Run the whole calibration and write ``scenario_out`` (e.g. sim/scenarios/paper.toml).

    ``out_dir`` keeps every twin run (a rerun resumes; see the module docstring) and
    ``calibration.json`` (inputs, outputs, every moment). The twin runs go to
    ``executor`` when given, else to ``workers`` local processes. The scenario file is
    written only when the fit is complete.

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
        {"calibration": {"base_scenario": str(base_path), "seeds": n_seeds}, "sessions": []},
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
            {
                "base": str(base_path),
                "seed": seed,
                "commit": commit,
                "finished": when,
                "wall_seconds": seconds,
                **result,
            },
            indent=2,
            default=str,
        ),
    )
    log(f"wrote {scenario_out} ({seconds / 60:.1f} min)")
    return result
