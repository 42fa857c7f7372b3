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
expected estimate is its true effect. Every twin run is appended to
``evaluations.jsonl`` in the output folder; a rerun reads it back and replays the
optimiser's path from the cache, so an interrupted calibration resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from sim import dynamics as dyn
from sim.model import CredentialMarket
from sim.params import Scenario, dumps_toml, load_scenario
from sim.store import git_info
from sim.study import run_study
from sim.targets import TARGETS

_log = logging.getLogger(__name__).info  # progress lines; the CLI shows them

__all__ = [
    "MARKET_PARAMS",
    "SHARING_PARAMS",
    "Calibration",
    "fit_sharing",
    "moment_targets",
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
    "new_job.control": 1 / 3, "new_job.itt": 0.17,
    "new_job_in_scope.control": 1 / 3, "new_job_in_scope.itt": 0.397 / 2,
    "any_view.control": 0.1, "any_view.itt": 0.09 / 2,
    "new_job_low.control": 2 / 3, "new_job_low.itt": 0.16,
    "new_job_medium.control": 2 / 3, "new_job_medium.itt": 0.2,
    "new_job_high.control": 2 / 3, "new_job_high.itt": 1.141 / 2,
}


def moment_targets() -> list[tuple[str, float, float]]:
    """The moments the market block matches: id, paper value (pp), scale (pp)."""
    out = []
    for tid in ("new_job", "new_job_in_scope", "any_view", "new_job_low", "new_job_medium",
                "new_job_high"):
        t = TARGETS[tid]
        out.append((f"{tid}.control", t.control_mean, SCALES[f"{tid}.control"]))
        out.append((f"{tid}.itt", t.itt_pp, SCALES[f"{tid}.itt"]))
    return out


# ---- simulated moments ----------------------------------------------------------------


def simulate_moments(scenario: Scenario, seed: int | np.random.SeedSequence
                     ) -> dict[str, float]:
    """Control means and true ITTs (pp) of one pair of twin runs, as the paper defines
    them: matched sample for sharing and jobs, whole population for views, tertiles of
    cross-fitted predicted employability (:func:`sim.study.run_study`, no estimators)."""
    res = run_study(scenario, seed, twin=True, estimate=False)
    out: dict[str, float] = {}
    for row in res.truth.itertuples():
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


def fit_sharing(scenario: Scenario, seeds: Sequence[int | np.random.SeedSequence],
                log: Callable[[str], None] = _log) -> dict:
    """Block 1: hazard at grant to the control sharing rate, nudge to the sharing ITT.

    Rates are averaged over the calibration seeds. The control rate does not depend on
    the nudge, so the two one-dimensional root problems are solved in turn (Brent).
    """
    models = [CredentialMarket(scenario, rng=sd) for sd in seeds]
    t_ctrl, t_itt = TARGETS["shared"].control_mean, TARGETS["shared"].itt_pp

    def rates(h: float, k: float) -> tuple[float, float]:
        scn = scenario.with_overrides({"sharing.hazard_at_grant": h,
                                       "sharing.nudge_strength": k})
        got = np.array([_sharing_rates(m, scn) for m in models])
        return float(got[:, 0].mean()), float(got[:, 1].mean())

    lo, hi = SHARING_PARAMS[0].lo, SHARING_PARAMS[0].hi
    h = brentq(lambda h: rates(h, 0.0)[0] - t_ctrl, lo, hi, xtol=1e-6)
    lo, hi = SHARING_PARAMS[1].lo, SHARING_PARAMS[1].hi
    k = brentq(lambda k: rates(h, k)[1] - t_itt, lo, hi, xtol=1e-6)
    ctrl, itt = rates(h, k)
    log(f"sharing: hazard_at_grant={h:.5f} nudge_strength={k:.5f} -> control {ctrl:.2f}% "
        f"(target {t_ctrl}), ITT {itt:.2f} pp (target {t_itt})")
    return {"sharing.hazard_at_grant": h, "sharing.nudge_strength": k,
            "moments": {"shared.control": ctrl, "shared.itt": itt}}


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


def _evaluate(args: tuple[dict, np.random.SeedSequence]) -> dict[str, float]:
    """Worker entry point (top level so it pickles): one pair of twin runs."""
    from threadpoolctl import threadpool_limits

    data, seed = args
    with threadpool_limits(1):
        return simulate_moments(Scenario.from_dict(data), seed)


class Calibration:
    """The whole procedure, with its cache of evaluations (see the module docstring).

    The market block is minimised by Levenberg-Marquardt steps in the logit space of the
    parameters. The Jacobian is computed once by forward differences (its columns in
    parallel) and then kept current with Broyden's rank-one update after every step,
    so each later step costs one evaluation; it is recomputed after repeated rejected
    steps. Each evaluation averages the moments over ``n_seeds`` twin runs.
    """

    def __init__(self, base: Scenario, seed: int, out: Path, workers: int = 2,
                 log: Callable[[str], None] = _log, max_iterations: int = 12,
                 n_seeds: int = 2, max_minutes: float = 55.0):
        self.base, self.seed, self.out = base, seed, Path(out)
        self.seeds = np.random.SeedSequence(seed).spawn(n_seeds)
        self.workers, self.log, self.max_iterations = workers, log, max_iterations
        self.max_minutes = max_minutes
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache_path = self.out / "evaluations.jsonl"
        self.cache: dict[str, dict] = {}
        if self.cache_path.exists():
            for line in self.cache_path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption
                self.cache[rec["key"]] = rec["moments"]
        self.targets = moment_targets()
        self.t0 = time.monotonic()
        self.best: tuple[float, dict, dict] | None = None

    # evaluation with cache ------------------------------------------------------------
    def _key(self, overrides: dict, seed: np.random.SeedSequence) -> str:
        point = {k: round(float(v), 10) for k, v in sorted(overrides.items())}
        return json.dumps({"seed": [seed.entropy, *seed.spawn_key], **point})

    def evaluate_many(self, overrides: list[dict], pool: Executor | None) -> list[dict]:
        """Moments at each point, averaged over the seeds (cached run by run)."""
        jobs = {}
        for o in overrides:
            for sd in self.seeds:
                k = self._key(o, sd)
                if k not in self.cache:
                    jobs[k] = (o, sd)
        if jobs:
            args = [(self.base.with_overrides(o).to_dict(), sd) for o, sd in jobs.values()]
            results = pool.map(_evaluate, args) if pool else map(_evaluate, args)
            for (k, (o, _sd)), res in zip(jobs.items(), results, strict=True):
                self.cache[k] = res
                with self.cache_path.open("a") as fh:  # one line per finished run
                    fh.write(json.dumps({"key": k, "overrides": o, "moments": res}) + "\n")
        out = []
        for o in overrides:
            runs = [self.cache[self._key(o, sd)] for sd in self.seeds]
            out.append({m: float(np.mean([r[m] for r in runs])) for m in runs[0]})
        return out

    def residuals(self, moments: dict) -> np.ndarray:
        return np.array([(moments[m] - t) / s for m, t, s in self.targets])

    # the procedure --------------------------------------------------------------------
    def run(self) -> dict:
        self.log(f"calibration of {self.base.meta.name}: {self.base.population.n_learners:,}"
                 f" learners, {len(self.seeds)} seeds from master seed {self.seed}, "
                 f"{self.workers} workers")
        sharing = fit_sharing(self.base, self.seeds, self.log)
        fixed = {k: v for k, v in sharing.items() if k != "moments"}
        params = MARKET_PARAMS
        keys = [p.key for p in params]
        z = _to_z(np.array([_get(self.base, k) for k in keys], dtype=float), params)

        def at(z: np.ndarray) -> dict:
            return {**fixed, **dict(zip(keys, map(float, _from_z(z, params)), strict=True))}

        with ProcessPoolExecutor(self.workers) if self.workers > 1 else _NoPool() as pool:
            def evaluate(points: list[np.ndarray]) -> list[np.ndarray]:
                moms = self.evaluate_many([at(p) for p in points], pool)
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
                self.log(f"  step {it:2d}: objective {r_new @ r_new:9.3f} "
                         f"({'accepted' if accepted else 'rejected'}), best "
                         f"{self.best[0]:9.3f}, {time.monotonic() - self.t0:6.0f} s")
                if rejected >= 3:
                    self.log("  recomputing the Jacobian")
                    jac, lam, rejected = jacobian(z, r), 1e-2, 0
                if float(np.abs(dz).max()) < 1e-3 and accepted:
                    message = "step below tolerance"
                    break
        obj, best_over, best_mom = self.best
        self.log(f"done: objective {obj:.3f} ({len(self.cache)} twin runs, "
                 f"{time.monotonic() - self.t0:.0f} s); {message}")
        return {
            "fitted": best_over,
            "objective": obj,
            "moments": {**sharing["moments"], **best_mom},
            "targets": {m: {"value": t, "scale": s} for m, t, s in self.targets},
            "evaluations": len(self.cache),
            "seeds": [[sd.entropy, *sd.spawn_key] for sd in self.seeds],
            "optimizer": {"message": message},
        }


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _get(scn: Scenario, key: str) -> float:
    section, name = key.split(".")
    return float(getattr(getattr(scn, section), name))


def default_workers() -> int:
    """Worker processes for calibration: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


# ---- the command's work -------------------------------------------------------------------


def calibrated_scenario(base: Scenario, result: dict) -> Scenario:
    """The base scenario with the fitted values, named ``paper``."""
    return base.with_overrides({
        **result["fitted"],
        "meta.name": "paper",
        "meta.description": "Calibrated to the study's numbers (TARGETS.md) by `credsim "
        "calibrate`; see [provenance].",
    })


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


def calibrate(base_path: str | Path, seed: int, out_dir: str | Path, scenario_out: str | Path,
              workers: int | None = None, max_iterations: int = 12, n_seeds: int = 2,
              max_minutes: float = 55.0, log: Callable[[str], None] = _log,
              clock: Callable[[], str] | None = None) -> dict:
    """Run the whole calibration and write ``scenario_out`` (e.g. sim/scenarios/paper.toml).

    ``out_dir`` keeps the evaluation cache (resume) and ``calibration.json`` (inputs,
    outputs, every moment). The scenario file is written only when the fit is complete.
    """
    t0 = time.monotonic()
    git = git_info()  # the code the calibration runs with, read before it starts
    base = load_scenario(base_path)
    cal = Calibration(base, seed, Path(out_dir), workers or default_workers(), log,
                      max_iterations, n_seeds=n_seeds, max_minutes=max_minutes)
    result = cal.run()
    scn = calibrated_scenario(base, result)
    commit = git["commit"] + ("-dirty" if git["dirty"] else "")
    when = clock() if clock else ""
    seconds = time.monotonic() - t0
    text = ("# Calibrated scenario: the output of `credsim calibrate`; do not edit by hand.\n"
            "# Rerun the command to reproduce it (inputs and outputs in [provenance]).\n\n"
            + scn.to_toml() + "\n" + provenance_toml(result, str(base_path), seed, commit,
                                                      when, seconds))
    Scenario.from_toml_text(text, source=str(scenario_out))  # validates what we write
    scenario_out = Path(scenario_out)
    tmp = scenario_out.with_suffix(".toml.partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(scenario_out)
    (Path(out_dir) / "calibration.json").write_text(json.dumps(
        {"base": str(base_path), "seed": seed, "commit": commit, "finished": when,
         "wall_seconds": seconds, **result}, indent=2, default=str))
    log(f"wrote {scenario_out} ({seconds / 60:.1f} min)")
    return result
