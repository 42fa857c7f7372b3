"""Calibration: fit the model's free parameters to the study's numbers (TARGETS.md).

Method: simulated method of moments with common random numbers, in two blocks.

1. **Sharing** (``sharing.hazard_at_grant``, ``sharing.nudge_strength``) is fitted first
   to the matched sample's control sharing rate and the true ITT on sharing. Sharing
   depends on nothing in the labour market, so this block replays phase 1 alone on the
   calibration population (exactly the draws the full model makes) and is solved to
   machine precision in seconds.
2. **Market, channels and views** (the parameters of :data:`MARKET_PARAMS`) are fitted
   jointly to the remaining moments: control means of new job, new job in scope and
   (population) any certificate view; the true ITTs of those three; and the control mean
   and true ITT of a new job within each tertile of predicted employability (the
   paper's cross-fitted classifier, :func:`sim.estimate.employability_tertiles`).
   Each evaluation is one pair of twin runs at the study's full scale with the same
   seed, so the objective is a deterministic function of the parameters (common random
   numbers). The residuals are ``(simulated - paper) / paper SE``; they are minimised by
   trust-region least squares (``scipy.optimize.least_squares``) in a transformed space
   (logit of the position within each parameter's calibration range), with a
   finite-difference Jacobian whose columns are evaluated in parallel.

Simulated ITTs are the *true* effects from the twin runs (each learner under both
arms), not one noisy estimate: the paper's estimate is the target, and the model's
expected estimate is its true effect. Every evaluation is appended to
``evaluations.jsonl`` in the output folder; a rerun reads it back and replays the
optimiser's path from the cache, so an interrupted calibration resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq, least_squares

from sim import dynamics as dyn
from sim.estimate import employability_tertiles
from sim.experiment import population_dataset, run_twins, study_dataset, true_effects
from sim.model import CredentialMarket
from sim.params import Scenario, load_scenario
from sim.store import git_info
from sim.targets import TARGETS

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

#: Moments of the market block: (moment id, target, scale).
def moment_targets() -> list[tuple[str, float, float]]:
    """The moments the market block matches: id, paper value, paper SE (all in pp)."""
    out = []
    for tid in ("new_job", "new_job_in_scope", "any_view", "new_job_low", "new_job_medium",
                "new_job_high"):
        t = TARGETS[tid]
        out.append((f"{tid}.control", t.control_mean, t.control_se))
        out.append((f"{tid}.itt", t.itt_pp, t.se_pp))
    return out


# ---- simulated moments ----------------------------------------------------------------


def simulate_moments(scenario: Scenario, seed: int) -> dict[str, float]:
    """Control means and true ITTs (pp) of one pair of twin runs, as the paper defines
    them: matched sample for sharing and jobs, whole population for views, tertiles of
    cross-fitted predicted employability."""
    tw = run_twins(scenario, seed)
    ds = study_dataset(tw.study.learners, scenario)
    pop = population_dataset(tw.study.learners, scenario)
    po = tw.potential_outcomes()
    matched = po["matched"].to_numpy()
    pm = po[matched].reset_index(drop=True)
    ctrl = ds["treated"].to_numpy() == 0
    out: dict[str, float] = {}
    true_m = true_effects(pm)
    for k in ("shared", "new_job", "new_job_in_scope"):
        out[f"{k}.control"] = 100 * float(ds.loc[ctrl, k].mean())
        out[f"{k}.itt"] = true_m[k]
    out["any_view.control"] = 100 * float(pop.loc[pop["treated"] == 0, "any_view"].mean())
    out["any_view.itt"] = true_effects(po)["any_view"]
    tert = employability_tertiles(ds, seed=seed % 100_000).to_numpy()
    for g in ("low", "medium", "high"):
        sel = tert == g
        out[f"new_job_{g}.control"] = 100 * float(ds.loc[sel & ctrl, "new_job"].mean())
        out[f"new_job_{g}.itt"] = true_effects(pm, sel)["new_job"]
        out[f"new_job_{g}.n"] = float(sel.sum())
    return out


def _sharing_rates(model: CredentialMarket, scenario: Scenario) -> tuple[float, float]:
    """Matched control sharing rate and true ITT on sharing (pp), replaying phase 1."""
    pop = model.population
    shared = {}
    for arm, treated in (("a", model.treated), ("b", ~model.treated)):
        s = np.zeros(len(pop), bool)
        for w in range(-scenario.calendar.burn_in_weeks, scenario.calendar.n_weeks):
            s |= dyn.share(scenario, w, shared=s, grant_week=pop.grant_week,
                           activity=pop.activity, treated=treated,
                           app_open_week=model.app_open_week,
                           rng=model.streams.weekly(w, "share"))
        shared[arm] = s
    m, t = pop.matched, model.treated
    y1 = np.where(t, shared["a"], shared["b"])[m]
    y0 = np.where(t, shared["b"], shared["a"])[m]
    ctrl = 100 * float(shared["a"][m & ~t].mean())
    return ctrl, 100 * float(y1.mean() - y0.mean())


def fit_sharing(scenario: Scenario, seed: int, log: Callable[[str], None] = print) -> dict:
    """Block 1: hazard at grant to the control sharing rate, nudge to the sharing ITT.

    The control rate does not depend on the nudge, so the two one-dimensional root
    problems are solved in turn (Brent's method).
    """
    model = CredentialMarket(scenario, rng=seed, agents=False)
    t_ctrl, t_itt = TARGETS["shared"].control_mean, TARGETS["shared"].itt_pp

    def with_(**kw):
        return scenario.with_overrides({f"sharing.{k}": v for k, v in kw.items()})

    def ctrl_gap(h):
        return _sharing_rates(model, with_(hazard_at_grant=h, nudge_strength=0.0))[0] - t_ctrl

    lo, hi = SHARING_PARAMS[0].lo, SHARING_PARAMS[0].hi
    h = brentq(ctrl_gap, lo, hi, xtol=1e-6)

    def itt_gap(k):
        return _sharing_rates(model, with_(hazard_at_grant=h, nudge_strength=k))[1] - t_itt

    k = brentq(itt_gap, SHARING_PARAMS[1].lo, SHARING_PARAMS[1].hi, xtol=1e-6)
    ctrl, itt = _sharing_rates(model, with_(hazard_at_grant=h, nudge_strength=k))
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


def _evaluate(args: tuple[dict, int]) -> dict[str, float]:
    """Worker entry point (top level so it pickles): one twin evaluation."""
    data, seed = args
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return simulate_moments(Scenario.from_dict(data), seed)
    except ImportError:  # pragma: no cover
        return simulate_moments(Scenario.from_dict(data), seed)


class Calibration:
    """The whole procedure, with its cache of evaluations (see the module docstring)."""

    def __init__(self, base: Scenario, seed: int, out: Path, workers: int = 2,
                 log: Callable[[str], None] = print, max_iterations: int = 12):
        self.base, self.seed, self.out = base, seed, Path(out)
        self.workers, self.log, self.max_iterations = workers, log, max_iterations
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
        self.n_evals = 0
        self.t0 = time.monotonic()
        self.best: tuple[float, dict, dict] | None = None

    # evaluation with cache ------------------------------------------------------------
    def _key(self, overrides: dict) -> str:
        return json.dumps({k: round(float(v), 10) for k, v in sorted(overrides.items())})

    def evaluate_many(self, overrides: list[dict], pool: Executor | None) -> list[dict]:
        keys = [self._key(o) for o in overrides]
        todo = [(k, o) for k, o in zip(keys, overrides, strict=True) if k not in self.cache]
        todo = list(dict(todo).items())
        if todo:
            jobs = [(self.base.with_overrides(o).to_dict(), self.seed) for _, o in todo]
            results = list(pool.map(_evaluate, jobs)) if pool else [_evaluate(j) for j in jobs]
            with self.cache_path.open("a") as fh:
                for (k, o), res in zip(todo, results, strict=True):
                    self.cache[k] = res
                    fh.write(json.dumps({"key": k, "overrides": o, "moments": res}) + "\n")
            self.n_evals += len(todo)
        return [self.cache[k] for k in keys]

    def residuals(self, moments: dict) -> np.ndarray:
        return np.array([(moments[m] - t) / s for m, t, s in self.targets])

    # the procedure --------------------------------------------------------------------
    def run(self) -> dict:
        self.log(f"calibration of {self.base.meta.name} at seed {self.seed}: "
                 f"{self.base.population.n_learners:,} learners, {self.workers} workers")
        sharing = fit_sharing(self.base, self.seed, self.log)
        fixed = {k: v for k, v in sharing.items() if k != "moments"}
        params = MARKET_PARAMS
        x0 = np.array([_get(self.base, p.key) for p in params], dtype=float)
        z0 = _to_z(x0, params)
        step = 0.25  # finite-difference step in logit units

        with ProcessPoolExecutor(self.workers) if self.workers > 1 else _NoPool() as pool:
            def overrides_at(z):
                return {**fixed, **dict(zip([p.key for p in params],
                                            map(float, _from_z(z, params)), strict=True))}

            def fun(z):
                mom = self.evaluate_many([overrides_at(z)], pool)[0]
                r = self.residuals(mom)
                obj = float(r @ r)
                if self.best is None or obj < self.best[0]:
                    self.best = (obj, overrides_at(z), mom)
                self.log(f"  eval {len(self.cache):4d}  objective {obj:9.3f}  "
                         f"best {self.best[0]:9.3f}  ({time.monotonic() - self.t0:6.0f} s)")
                return r

            def jac(z):
                pts = [z + step * np.eye(len(z))[i] for i in range(len(z))]
                moms = self.evaluate_many([overrides_at(p) for p in [z, *pts]], pool)
                r0 = self.residuals(moms[0])
                return np.column_stack([(self.residuals(m) - r0) / step for m in moms[1:]])

            sol = least_squares(fun, z0, jac=jac, method="trf", x_scale=1.0,
                                max_nfev=self.max_iterations, xtol=1e-3, ftol=1e-3)
        obj, best_over, best_mom = self.best
        self.log(f"done: objective {obj:.3f} after {len(self.cache)} evaluations "
                 f"({time.monotonic() - self.t0:.0f} s); {sol.message}")
        return {
            "fitted": best_over,
            "objective": obj,
            "moments": {**sharing["moments"], **best_mom},
            "targets": {m: {"value": t, "se": s} for m, t, s in self.targets},
            "evaluations": len(self.cache),
            "optimizer": {"status": int(sol.status), "message": str(sol.message),
                          "nfev": int(sol.nfev), "njev": int(sol.njev or 0)},
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


def provenance_toml(result: dict, base_path: str, seed: int, commit: str, when: str,
                    seconds: float) -> str:
    """The ``[provenance]`` table appended to ``paper.toml`` (read back as information)."""
    from sim.params import _toml_value

    lines = ["[provenance]",
             f"command = {_toml_value('credsim calibrate ' + base_path)}",
             f"base_scenario = {_toml_value(base_path)}",
             f"seed = {seed}",
             f"commit = {_toml_value(commit)}",
             f"finished = {_toml_value(when)}",
             f"wall_seconds = {round(seconds, 1)}",
             f"method = {_toml_value('SMM with common random numbers: sharing block by Brent '
                                     'root-finding, market block by trust-region least '
                                     'squares on (sim - paper)/SE; see sim/calibrate.py')}",
             f"objective = {result['objective']!r}",
             f"evaluations = {result['evaluations']}",
             f"optimizer = {_toml_value(result['optimizer']['message'])}",
             "fitted = { " + ", ".join(f'"{k}" = {v!r}' for k, v in result["fitted"].items())
             + " }",
             "targets = { " + ", ".join(f'"{k}" = {v["value"]!r}'
                                        for k, v in result["targets"].items()) + " }",
             "simulated = { " + ", ".join(f'"{k}" = {round(v, 4)!r}'
                                          for k, v in result["moments"].items()
                                          if math.isfinite(v)) + " }",
             ""]
    return "\n".join(lines)


def calibrate(base_path: str | Path, seed: int, out_dir: str | Path, scenario_out: str | Path,
              workers: int | None = None, max_iterations: int = 12,
              log: Callable[[str], None] = print, clock: Callable[[], str] | None = None
              ) -> dict:
    """Run the whole calibration and write ``scenario_out`` (e.g. scenarios/paper.toml).

    ``out_dir`` keeps the evaluation cache (resume) and ``calibration.json`` (inputs,
    outputs, every moment). The scenario file is written only when the fit is complete.
    """
    t0 = time.monotonic()
    git = git_info()  # the code the calibration runs with, read before it starts
    base = load_scenario(base_path)
    cal = Calibration(base, seed, Path(out_dir), workers or default_workers(), log,
                      max_iterations)
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
