"""The market block of ``credsim calibrate`` on a fake twin run (``tests/task_fakes.py``):
moments a known smooth function of the parameters plus seed noise, so that the optimiser,
its standard errors and its identification checks can be checked against the truth.

Each calibration here runs in this process on the fake (one fitting seed, four for the
standard errors) and takes a second or two.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from sim import calibrate as cal
from sim.params import Scenario
from sim.targets import MomentTarget

#: A tiny base scenario (the fake never runs it; the sharing block does, once).
TINY = '[meta]\nname = "tiny"\n\n[population]\nn_learners = 2000\nmatched_share = 0.2\n'
#: The truth of the fake, in unit-range space: every parameter inside its range.
TRUTH = np.array([0.3, 0.6, 0.7, 0.4, 0.55, 0.35])


@pytest.fixture
def params(fakes) -> tuple[cal.FreeParam, ...]:
    """The parameters the fake responds to (the provisional MARKET_PARAMS)."""
    return tuple(cal.FreeParam(k, lo, hi) for k, (lo, hi) in fakes.RANGES.items())


def _targets(fakes, u, shape: str, se_factor: float = 1.0, ids=None) -> list[MomentTarget]:
    """The fake's noise-free moments at ``u`` as targets, with the paper's SEs."""
    truth = fakes.market_moments(u, shape)
    se = {t.id: t.se for t in (*cal.MOMENT_TARGETS, *cal.PREDICTIONS)}
    ids = ids or [t.id for t in cal.MOMENT_TARGETS if t.id in fakes.MOMENTS]
    return [MomentTarget(i, truth[i], se[i] * se_factor, "fake truth", "paper") for i in ids]


def _calibrate(tmp_path: Path, fakes, task_fn, params, targets, **kw) -> tuple[dict, list]:
    """A calibration of the market block alone on a fake; its result and log lines."""
    lines: list[str] = []
    c = cal.Calibration(
        Scenario.from_toml_text(TINY),
        7,
        tmp_path / kw.pop("folder", "out"),
        workers=1,
        log=lines.append,
        task_fn=task_fn,
        params=params,
        targets=targets,
        sharing_block=False,
        **{"n_seeds": 1, "n_se_seeds": 4, "max_iterations": 30, **kw},
    )
    return c.run(), lines


def _unit(result: dict, params) -> np.ndarray:
    return cal.to_unit(np.array([result["fitted"][p.key] for p in params]), params)


def test_the_tertiles_are_predictions_not_targets():
    fitted = [t.id for t in cal.MOMENT_TARGETS]
    assert fitted == [
        "new_job.control",
        "new_job.itt",
        "new_job_in_scope.control",
        "new_job_in_scope.itt",
        "any_view.control",
        "any_view.itt",
        "flow.ue_monthly",
        "flow.ee_monthly",
        "flow.hired_2plus_share",
        "flow.tenure_survival_52w",
        "flow.employment_drift_pp",
    ]
    assert {t.kind for t in cal.MOMENT_TARGETS if t.id.startswith("flow.")} == {"flow"}
    assert all(t.source for t in cal.MOMENT_TARGETS)
    tertiles = {f"new_job_{g}.{s}" for g in ("low", "medium", "high") for s in ("control", "itt")}
    assert {t.id for t in cal.PREDICTIONS} == tertiles
    assert not tertiles & set(fitted)
    paper = [t for t in cal.MOMENT_TARGETS if t.kind == "paper"]
    assert all("2405.00247" in t.source for t in paper) and len(paper) == 6
    c = cal.Calibration(Scenario.from_toml_text(TINY), 1, "unused", log=lambda _m: None)
    moments = {t.id: t.value + t.se for t in (*cal.MOMENT_TARGETS, *cal.PREDICTIONS)}
    r = c.residuals(moments)
    assert np.allclose(r, 1.0) and len(r) == len(cal.MOMENT_TARGETS)
    moments.update({t: 1e6 for t in tertiles})  # the tertiles do not enter the objective
    assert np.array_equal(c.residuals(moments), r)


def test_the_optimiser_recovers_the_fakes_parameters(tmp_path, fakes, params):
    targets = _targets(fakes, TRUTH, "smooth")
    res, lines = _calibrate(tmp_path, fakes, fakes.moments, params, targets)
    opt = res["optimizer"]
    assert opt["status"] > 0 and opt["converged"] and opt["stopped_on"] == "tolerance", opt
    assert opt["name"] == "scipy.optimize.least_squares" and opt["method"] == "trf"
    assert (opt["ftol"], opt["xtol"], opt["gtol"]) == (cal.FTOL, cal.XTOL, cal.GTOL)
    assert np.abs(_unit(res, params) - TRUTH).max() < 0.03  # the seed's noise is ~0.005
    assert res["objective"] < 0.1
    for key, p in res["parameters"].items():
        assert abs(p["value"] - res["fitted"][key]) < 1e-12 and not p["at_bound"]
        assert np.isfinite(p["se"]) and p["se"] > 0 and np.isfinite(p["t_ratio"])
    assert not res["identification"]["weakly_identified"]
    assert res["identification"]["condition_number"] < 10
    # every residual batch and Jacobian is logged with its objective and time
    batches = [m for m in lines if m.lstrip().startswith("batch")]
    assert len(batches) == opt["batches"] and all("objective" in m and " s" in m for m in batches)
    assert any("Jacobian" in m for m in batches)


def test_a_jacobian_is_one_batch_and_a_rerun_replays_the_path(tmp_path, fakes, params):
    sizes: list[int] = []

    class Counting(cal.Calibration):
        def runs(self, overrides, seeds):
            sizes.append(len(overrides))
            return super().runs(overrides, seeds)

    targets = _targets(fakes, TRUTH, "linear")
    kw = {"workers": 1, "log": lambda _m: None, "task_fn": fakes.linear_moments}
    kw.update(params=params, targets=targets, sharing_block=False, n_seeds=1, n_se_seeds=2)
    first = Counting(Scenario.from_toml_text(TINY), 7, tmp_path, **kw)
    res = first.run()
    n = len(params)
    opt = res["optimizer"]
    assert sizes.count(n) == opt["njev"] >= 1  # each Jacobian: its n points in one batch
    assert len(sizes) == opt["batches"] + 1 == opt["nfev"] + opt["njev"] + 1  # + SE seeds
    assert first.ran == res["evaluations"] == len(list((tmp_path / "tasks").glob("*.parquet")))
    again = cal.Calibration(Scenario.from_toml_text(TINY), 7, tmp_path, **kw)
    assert again.run() == res and again.ran == 0  # the same points, read from the folder


def test_standard_errors_are_the_delta_method_of_a_linear_fake(tmp_path, fakes, params):
    targets = _targets(fakes, TRUTH, "linear")
    res, _ = _calibrate(tmp_path, fakes, fakes.linear_moments, params, targets)
    # by hand: G = d moments / d theta = SLOPES / width; W = diag(1/se^2); Sigma_sim the
    # covariance of the fake's noise over the standard errors' seeds; S = 1 fitting seed
    se = np.array([t.se for t in targets])
    width = np.array([p.hi - p.lo for p in params])
    rows = [fakes.MOMENTS.index(t.id) for t in targets]
    g = fakes.SLOPES[rows] / width
    seeds = [np.random.SeedSequence(e, spawn_key=tuple(key)) for e, *key in res["se_seeds"]]
    sigma = np.cov(np.array([fakes.noise(s)[rows] for s in seeds]), rowvar=False)
    assert np.allclose(res["inference"]["sim_cov"]["matrix"], sigma)
    w = np.diag(1 / se**2)
    omega = np.diag(se**2) + sigma / 1
    bread = np.linalg.inv(g.T @ w @ g)
    var = bread @ g.T @ w @ omega @ w @ g @ bread
    got = np.array([res["parameters"][p.key]["se"] for p in params])
    assert np.allclose(got, np.sqrt(np.diag(var)), rtol=1e-6)
    assert np.all(got > 0)
    # the data's uncertainty halved: every SE shrinks, by about half (the simulation
    # noise is small against the targets' SEs); the same fit, weighted anew
    x = cal.to_unit(np.array([res["fitted"][p.key] for p in params]), params)
    half = [MomentTarget(t.id, t.value, t.se / 2, t.source, t.kind) for t in targets]
    jac_half = (g * width) / (se / 2)[:, None]  # d residual / d x with the halved SEs
    tight = cal.smm_inference(jac_half, np.zeros(len(targets)), half, params, x, sigma, 1)
    ratio = np.array([tight["parameters"][p.key]["se"] for p in params]) / got
    assert np.all(ratio < 0.55) and np.all(ratio > 0.45), ratio


def test_a_parameter_against_its_bound_is_flagged(tmp_path, fakes, params):
    truth = TRUTH.copy()
    truth[3] = 1.3  # beyond the top of its range: the best fit is at the bound
    res, lines = _calibrate(
        tmp_path, fakes, fakes.linear_moments, params, _targets(fakes, truth, "linear")
    )
    flagged = {k for k, p in res["parameters"].items() if p["at_bound"]}
    key = params[3].key
    assert flagged == {key}
    assert res["parameters"][key]["value"] == pytest.approx(
        params[3].hi, abs=0.01 * (params[3].hi - params[3].lo)
    )
    assert any(key in m and "AT BOUND" in m for m in lines)


def test_parameters_entering_only_through_their_sum_are_weakly_identified(tmp_path, fakes, params):
    res, lines = _calibrate(
        tmp_path, fakes, fakes.sum_moments, params, _targets(fakes, TRUTH, "sum")
    )
    ident = res["identification"]
    assert ident["condition_number"] > 1e3 and ident["weakly_identified"]
    assert ident["rank"] == len(params) - 1
    assert min(ident["singular_values"]) < 1e-8 * max(ident["singular_values"])
    assert set(ident["weakest_direction"]) == {params[0].key, params[1].key}
    assert any("weakly identified" in m for m in lines)
    # no standard errors, said so, and nothing crashed
    assert all(np.isnan(p["se"]) for p in res["parameters"].values())
    assert "singular" in res["inference"]["message"]
    assert np.abs(_unit(res, params)[2:] - TRUTH[2:]).max() < 0.03  # the others are found
    assert abs(sum(_unit(res, params)[:2]) - sum(TRUTH[:2])) < 0.03  # and the sum


def test_hansen_j_with_more_moments_than_parameters(tmp_path, fakes, params):
    ids = [t.id for t in cal.MOMENT_TARGETS] + ["new_job_low.control", "new_job_high.itt"]
    truth = fakes.market_moments(TRUTH, "linear")
    targets = _targets(fakes, TRUTH, "linear", ids=ids)
    targets[-1] = MomentTarget(ids[-1], truth[ids[-1]] + 1.0, targets[-1].se, "off", "paper")
    predictions = [t for t in cal.PREDICTIONS if t.id not in ids]
    res, lines = _calibrate(
        tmp_path, fakes, fakes.linear_moments, params, targets, predictions=predictions
    )
    over = res["overidentification"]
    assert over["df"] == len(ids) - len(params) and over["j_stat"] == pytest.approx(
        res["objective"]
    )
    assert over["j_stat"] > 0.5 and 0 < over["p_value"] < 1
    assert any("over-identification: J =" in m for m in lines)


def test_the_time_budget_and_the_evaluation_limit_stop_cleanly(tmp_path, fakes, params):
    targets = _targets(fakes, TRUTH, "linear")
    res, lines = _calibrate(tmp_path, fakes, fakes.linear_moments, params, targets, max_minutes=0.0)
    opt = res["optimizer"]
    assert (opt["status"], opt["stopped_on"], opt["converged"]) == (-2, "time", False)
    assert "wall-time budget" in opt["message"] and "not converged" in opt["message"]
    assert any(m.startswith("done:") and "time: stopped" in m for m in lines)
    assert all(np.isfinite(p["se"]) for p in res["parameters"].values())  # still reported
    assert np.allclose(
        _unit(res, params),
        cal.to_unit(
            np.array([cal._get(Scenario.from_toml_text(TINY), p.key) for p in params]), params
        ),
    )  # nothing was accepted: the start
    res, _ = _calibrate(
        tmp_path, fakes, fakes.linear_moments, params, targets, max_iterations=2, folder="n"
    )
    opt = res["optimizer"]
    assert (opt["status"], opt["stopped_on"], opt["nfev"]) == (0, "max_nfev", 2)


def test_calibrate_records_the_fit_and_its_inference(tmp_path, fakes):
    base = tmp_path / "tiny.toml"
    base.write_text(TINY)
    out, paper = tmp_path / "out", tmp_path / "paper.toml"
    res = cal.calibrate(
        str(base),
        3,
        out,
        paper,
        workers=1,
        n_seeds=1,
        n_se_seeds=3,
        max_iterations=4,
        log=lambda _m: None,
        clock=lambda: "2026-01-01T00:00:00+00:00",
        task_fn=fakes.moments,
    )
    got = json.loads((out / "calibration.json").read_text())
    for key in (
        "fitted",
        "objective",
        "moments",
        "targets",
        "predictions",
        "parameters",
        "identification",
        "overidentification",
        "inference",
        "optimizer",
        "seeds",
        "se_seeds",
        "evaluations",
    ):
        assert key in got, key
    assert set(got["targets"]) == {t.id for t in cal.MOMENT_TARGETS}
    assert set(got["predictions"]) == {t.id for t in cal.PREDICTIONS}
    for t in cal.MOMENT_TARGETS:
        rec = got["targets"][t.id]
        assert (rec["value"], rec["se"], rec["source"], rec["kind"]) == (
            t.value,
            t.se,
            t.source,
            t.kind,
        )
        assert rec["residual"] == pytest.approx((rec["simulated"] - t.value) / t.se)
    assert got["predictions"]["new_job_low.itt"]["simulated"] == res["moments"]["new_job_low.itt"]
    assert set(got["fitted"]) == {p.key for p in (*cal.SHARING_PARAMS, *cal.MARKET_PARAMS)}
    assert set(got["parameters"]) == {p.key for p in cal.MARKET_PARAMS}
    assert len(got["se_seeds"]) == 3 and not {str(s) for s in got["se_seeds"]} & {
        str(s) for s in got["seeds"]
    }
    df = len(cal.MOMENT_TARGETS) - len(cal.MARKET_PARAMS)
    assert got["overidentification"]["df"] == df
    assert (got["overidentification"]["p_value"] is None) == (df == 0)

    scn = Scenario.from_toml(paper)  # a valid scenario with the fitted values
    for key, value in res["fitted"].items():
        section, name = key.split(".")
        assert getattr(getattr(scn, section), name) == pytest.approx(value, rel=1e-12)
    prov = tomllib.loads(paper.read_text())["provenance"]
    assert prov["fitted"] == res["fitted"]
    opt = prov["optimizer"]
    assert (
        opt["name"] == "scipy.optimize.least_squares"
        and opt["status"] == res["optimizer"]["status"]
    )
    assert {"ftol", "xtol", "gtol", "message", "nfev", "stopped_on"} <= set(opt)
    assert {
        "objective",
        "j_stat",
        "j_df",
        "condition_number",
        "singular_values",
        "se_seeds",
    } <= set(prov)
    assert ("j_pvalue" in prov) == (df > 0)  # exactly identified: no test (TOML has no null)
    for key, p in prov["parameters"].items():
        assert set(p) == {"value", "se", "lo", "hi", "at_bound", "t_ratio"}, key
        # (NaN for all when the fake ignores some parameters: G'WG is then singular)
        assert p["se"] == pytest.approx(res["parameters"][key]["se"], nan_ok=True)
    assert prov["targets"]["new_job.itt"]["se"] == 0.452
    assert "T2 col 1" in prov["targets"]["new_job.itt"]["source"]
    assert set(prov["predictions"]) == {t.id for t in cal.PREDICTIONS}
    assert "new_job_low.control" in prov["simulated"]
