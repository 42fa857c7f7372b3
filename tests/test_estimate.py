"""Tests of sim.estimate on synthetic studies with known effects.

``make_study`` draws a dataset shaped like the simulator's study sample, with:

* ``new_job``: Bernoulli(p0(x) + tau_i * treated), ``tau_i = itt + itt_low_extra`` for
  the bottom third of p0 (low employability), ``itt`` otherwise; or, with ``late`` set,
  Bernoulli(p0(x) + late * shared) so the assignment acts only through sharing;
* ``shared``: Bernoulli(base_share + first_stage * treated);
* ``new_job_in_scope_weeks``: exponential durations with a proportional hazard
  ``lam0 exp(z(x)) hr^treated``, censored at ``followup_weeks`` (26-52 by batch);
  ``new_job_in_scope`` = event by follow-up;
* truth columns (probability scale): ``_p0`` (baseline probability), ``_py0``
  (P(new_job | x, control), which includes sharing among controls when ``late`` is
  set), ``_tau`` (ITT of new_job) and ``_dF`` (P(event by follow-up | x, treated) -
  P(... | x, control) under the duration model).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.duration.hazard_regression import PHReg
from threadpoolctl import threadpool_limits

from sim import estimate as est
from sim.estimate import (
    STUDY_COLUMNS,
    STUDY_IDS,
    SUBGROUP_LABELS,
    WEAK_IV_F,
    Estimate,
    employability_tertiles,
    itt_cox,
    itt_lpm,
    late_2sls,
    predict_employability,
    study_estimates,
    subgroup_masks,
    tertiles_from_scores,
)
from sim.params import COLLEGE_LEVELS, CREDENTIAL_TYPES, DOMAINS, EDUCATION_LEVELS

EDU_P = (0.08, 0.02, 0.12, 0.12, 0.06, 0.35, 0.2, 0.02, 0.03)
COLLEGE = COLLEGE_LEVELS
CREDENTIALS = CREDENTIAL_TYPES
EDUCATION = EDUCATION_LEVELS


def make_study(
    n: int,
    seed: int,
    *,
    itt: float = 0.02,
    itt_low_extra: float = 0.0,
    hr: float = 1.0,
    first_stage: float = 0.03,
    base_share: float = 0.10,
    late: float | None = None,
    common_followup: bool = False,
    view_effect: float = 0.0,
) -> pd.DataFrame:
    """A synthetic study sample with known effects (probabilities, not pp)."""
    rng = np.random.default_rng(seed)
    dom_i = rng.integers(0, 4, n)
    developing = rng.binomial(1, 0.4, n)
    education = np.asarray(EDUCATION, dtype=object)[rng.choice(9, n, p=EDU_P)]
    college = np.isin(education, COLLEGE).astype(int)
    experience = rng.gamma(2.0, 3.0, n)
    experience[experience < 1.5] = 0.0  # ~9% with no experience (a subgroup of the table)
    past_tech = rng.binomial(1, 0.35, n)
    past_manager = rng.binomial(1, 0.2, n)
    employed = rng.binomial(1, 0.6, n)
    cred_i = rng.integers(0, 4, n)
    batch = rng.integers(0, 5, n)
    followup = np.full(n, 39.0) if common_followup else 52.0 - 6.5 * batch
    stratum = dom_i * 4 + developing * 2 + college
    # complete randomization: half of each stratum treated
    treated = np.zeros(n, dtype=int)
    for s in np.unique(stratum):
        rows = rng.permutation(np.flatnonzero(stratum == s))
        treated[rows[: len(rows) // 2]] = 1
    z = (
        -0.35 * developing
        + 0.35 * college
        + 0.6 * employed
        + 0.35 * past_tech
        + 0.2 * past_manager
        + 0.04 * experience
        + np.array([0.0, 0.2, 0.3, 0.1])[dom_i]
        + np.array([0.0, -0.1, 0.1, 0.25])[cred_i]
    )
    z = z - z.mean()
    p0 = 1.0 / (1.0 + np.exp(-(-1.9 + z + 0.03 * (followup - 39.0))))
    low = p0 <= np.quantile(p0, 1 / 3)
    tau = itt + itt_low_extra * low
    shared = (rng.random(n) < base_share + first_stage * treated).astype(int)
    if late is None:
        new_job = rng.random(n) < p0 + tau * treated
        py0 = p0
    else:
        new_job = rng.random(n) < p0 + late * shared
        tau = np.full(n, late * first_stage)
        py0 = p0 + late * base_share
    new_job_weeks = np.where(new_job, rng.uniform(0.0, followup), np.nan)
    lam0 = 0.0028
    lam_c = lam0 * np.exp(z)
    lam = lam_c * hr**treated
    dur = rng.exponential(1.0 / lam)
    in_scope = dur <= followup
    d_f = np.exp(-lam_c * followup) - np.exp(-lam_c * hr * followup)
    return pd.DataFrame(
        {
            "treated": treated,
            "stratum": stratum,
            "batch": batch,
            "domain": pd.array(np.asarray(DOMAINS)[dom_i], dtype="str"),
            "developing": developing,
            "college": college,
            "education": pd.array(education.astype(str), dtype="str"),
            "experience_years": experience,
            "past_tech": past_tech,
            "past_manager": past_manager,
            "employed_baseline": employed,
            "credential_type": pd.array(np.asarray(CREDENTIALS)[cred_i], dtype="str"),
            "shared": shared,
            "new_job": new_job.astype(int),
            "new_job_in_scope": in_scope.astype(int),
            "any_view": (rng.random(n) < 0.3 + view_effect * treated).astype(int),
            "new_job_weeks": new_job_weeks,
            "new_job_in_scope_weeks": np.where(in_scope, dur, np.nan),
            "followup_weeks": followup,
            "_p0": p0,
            "_py0": py0,
            "_tau": tau,
            "_dF": d_f,
        }
    )


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    """One BLAS/OpenMP thread: stable timings when other processes share the CPUs."""
    with threadpool_limits(limits=1):
        yield


def within(e: Estimate, truth_pp: float, k: float = 4.0) -> bool:
    return abs(e.effect - truth_pp) < k * e.se


# --------------------------------------------------------------------------- Estimate


def test_estimate_container() -> None:
    e = Estimate(2.0, 0.5, 100, 15.0, 2.0 / 15.0, 0.04, "lpm", {"x": 1.0})
    lo, hi = e.ci95()
    assert lo == pytest.approx(2.0 - 1.96 * 0.5, abs=1e-3)
    assert hi == pytest.approx(2.0 + 1.96 * 0.5, abs=1e-3)
    d = e.as_dict()
    assert set(d) == {"effect", "se", "n", "control_mean", "rel", "rel_se", "estimator"}
    assert e == Estimate(2.0, 0.5, 100, 15.0, 2.0 / 15.0, 0.04, "lpm")  # details ignored
    with pytest.raises(AttributeError):
        e.effect = 3.0  # type: ignore[misc]


# --------------------------------------------------------------------------- LPM


def test_lpm_recovers_itt_large_n() -> None:
    df = make_study(200_000, 1, itt=0.02)
    e = itt_lpm(df, "new_job")
    assert e.estimator == "lpm" and e.n == len(df)
    assert within(e, 2.0), e
    assert e.se < 0.25
    assert e.control_mean == pytest.approx(100 * df.loc[df.treated == 0, "new_job"].mean())
    assert e.rel == pytest.approx(e.effect / e.control_mean)
    assert abs(e.rel - 2.0 / (100 * df["_p0"].mean())) < 4 * e.rel_se


def test_lpm_zero_effect_within_3se() -> None:
    for seed in (2, 3):
        e = itt_lpm(make_study(40_000, seed, itt=0.0), "new_job")
        assert abs(e.effect) < 3 * e.se, e


def test_lpm_hc1_matches_hand_computation() -> None:
    rng = np.random.default_rng(7)
    n = 40
    df = pd.DataFrame(
        {
            "treated": np.tile([0, 1], n // 2),
            "stratum": np.repeat(["a", "b", "c", "d"], n // 4),
            "x": rng.normal(size=n),
            "cat": rng.choice(["p", "q", "r"], n),
        }
    )
    df["y"] = (rng.random(n) < 0.3 + 0.2 * df["treated"]).astype(int)
    e = itt_lpm(df, "y", covariates=("x", "cat"))
    # hand-built design: constant, treated, strata b/c/d, x, cat q/r
    x = np.column_stack(
        [
            np.ones(n),
            df["treated"],
            *[(df["stratum"] == s).to_numpy(float) for s in "bcd"],
            df["x"],
            *[(df["cat"] == c).to_numpy(float) for c in "qr"],
        ]
    )
    y = df["y"].to_numpy(float)
    xtx_inv = np.linalg.inv(x.T @ x)
    b = xtx_inv @ x.T @ y
    u = y - x @ b
    meat = (x * u[:, None] ** 2).T @ x
    v = n / (n - x.shape[1]) * xtx_inv @ meat @ xtx_inv
    assert e.effect == pytest.approx(100 * b[1], rel=1e-10)
    assert e.se == pytest.approx(100 * math.sqrt(v[1, 1]), rel=1e-10)
    # and the statsmodels formula reference
    ref = smf.ols("y ~ treated + C(stratum) + x + C(cat)", df).fit(cov_type="HC1")
    assert e.se == pytest.approx(100 * ref.bse["treated"], rel=1e-10)


@pytest.mark.filterwarnings("ignore:The design matrix is rank-deficient")
def test_lpm_collinear_covariates_dropped_and_within_path_identical() -> None:
    df = make_study(20_000, 4)
    a = itt_lpm(df, "new_job")
    b = itt_lpm(df, "new_job", method="within")
    for f in ("effect", "se", "control_mean", "rel", "rel_se"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-9, abs=1e-12)
    # formula reference with only the covariates that vary within strata
    ref = smf.ols(
        "new_job ~ treated + C(stratum) + C(education) + experience_years + past_tech"
        " + past_manager + employed_baseline + C(credential_type)",
        df,
    ).fit(cov_type="HC1")
    assert a.effect == pytest.approx(100 * ref.params["treated"], rel=1e-8)
    assert a.se == pytest.approx(100 * ref.bse["treated"], rel=1e-8)


def test_lpm_drops_incomplete_rows_and_validates() -> None:
    df = make_study(3000, 5)
    df.loc[:9, "new_job"] = np.nan
    assert itt_lpm(df, "new_job").n == len(df) - 10
    with pytest.raises(KeyError):
        itt_lpm(df, "nope")
    bad = df.assign(treated=2)
    with pytest.raises(ValueError):
        itt_lpm(bad, "new_job")


def test_rel_se_matches_difference_in_means_delta_method() -> None:
    """No covariates, no strata: rel = m1/m0 - 1 with independent arm means."""
    df = make_study(30_000, 6, itt=0.03)
    e = itt_lpm(df, "new_job", strata=None, covariates=())
    y1 = df.loc[df.treated == 1, "new_job"].to_numpy(float)
    y0 = df.loc[df.treated == 0, "new_job"].to_numpy(float)
    m1, m0 = y1.mean(), y0.mean()
    v1, v0 = y1.var(ddof=1) / len(y1), y0.var(ddof=1) / len(y0)
    assert e.effect == pytest.approx(100 * (m1 - m0), rel=1e-10)
    rel_se = math.sqrt(v1 / m0**2 + m1**2 * v0 / m0**4)
    assert e.rel == pytest.approx(m1 / m0 - 1, rel=1e-10)
    assert e.rel_se == pytest.approx(rel_se, rel=2e-3)
    # ignoring the covariance of b and c would be visibly off
    naive = math.sqrt((v1 + v0) / m0**2 + (m1 - m0) ** 2 * v0 / m0**4)
    assert abs(naive - e.rel_se) / e.rel_se > 0.01


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(300, 1500))
def test_lpm_invariant_to_row_order(seed: int, n: int) -> None:
    df = make_study(n, seed)
    a = itt_lpm(df, "new_job")
    b = itt_lpm(df.sample(frac=1.0, random_state=seed), "new_job", method="within")
    assert a.effect == pytest.approx(b.effect, rel=1e-8, abs=1e-10)
    assert a.se == pytest.approx(b.se, rel=1e-8)
    assert a.rel_se == pytest.approx(b.rel_se, rel=1e-8, abs=1e-12)


def test_lpm_coverage_200_draws() -> None:
    """95 % CI of the LPM ITT covers the true 2 pp in 91-98 % of 200 small studies."""
    hits = 0
    for seed in range(200):
        lo, hi = itt_lpm(make_study(2000, 10_000 + seed, itt=0.02), "new_job").ci95()
        hits += lo <= 2.0 <= hi
    assert 0.91 <= hits / 200 <= 0.98, hits


# --------------------------------------------------------------------------- Cox


def _cox_inputs(df: pd.DataFrame, duration: str = "new_job_in_scope_weeks"):
    des = est._design(df, "treated", "stratum", est.DEFAULT_COVARIATES, ("followup_weeks",))
    fu = df["followup_weeks"].to_numpy(float)
    dur = df[duration].to_numpy(float)
    event = ~np.isnan(dur) & (dur <= fu)
    tm = np.where(event, dur, fu)
    x = np.column_stack([des.t, des.cov])
    return tm, event, des.g, x, fu


def test_cox_numpy_engine_matches_phreg_with_ties() -> None:
    df = make_study(2500, 8, hr=1.3)
    # whole weeks: many tied event times, and censoring times tied with events
    df["new_job_in_scope_weeks"] = np.ceil(df["new_job_in_scope_weeks"])
    tm, event, g, x, fu = _cox_inputs(df)
    model = est._Breslow(tm, event, g, x, fu)
    beta, cov = model.fit()
    ph = PHReg(tm, x, status=event.astype(float), strata=g, ties="breslow")
    res = ph.fit()
    np.testing.assert_allclose(beta, res.params, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(cov, res.cov_params(), rtol=1e-5, atol=1e-10)
    ll, _grad, info = model.loglike_grad_info(res.params)
    assert ll == pytest.approx(ph.loglike(res.params), rel=1e-10)
    np.testing.assert_allclose(info, -ph.hessian(res.params), rtol=1e-8, atol=1e-8)
    # Breslow baseline: statsmodels reports the value just before each event time
    ours = model.cumhaz_at_events(res.params)
    theirs = res.baseline_cumulative_hazard
    offset = 0
    for s_times, s_cumhaz, _ in theirs:
        k = len(s_times)
        mine = ours[offset : offset + k]
        np.testing.assert_allclose(mine[:-1], s_cumhaz[1:], rtol=1e-8)
        offset += k
    assert offset == len(ours)
    # score residuals (sorted rows) agree with PHReg's and sum to the score
    sr = model.score_residuals(res.params)
    np.testing.assert_allclose(sr, res.score_residuals[model.order], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sr.sum(axis=0), ph.score(res.params), atol=1e-6)
    # the public function gives the same estimate with either engine
    a = itt_cox(df, "new_job_in_scope_weeks")
    b = itt_cox(df, "new_job_in_scope_weeks", engine="statsmodels")
    assert a.effect == pytest.approx(b.effect, rel=1e-6)
    assert a.se == pytest.approx(b.se, rel=1e-5)


def test_cox_converges_under_monotone_likelihood() -> None:
    """A category without events (common in small studies) sends its coefficient to -inf;
    the fit converges on the likelihood, as R's coxph, and the treatment's estimate is
    the one without those learners (their hazard is zero in the limit)."""
    df = make_study(3000, 21, hr=1.3)
    rare = df["education"] == "doctorate"
    assert 0 < rare.sum() < 100
    df.loc[rare, "new_job_in_scope_weeks"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither "did not converge" nor "diverging"
        full = itt_cox(df, "new_job_in_scope_weeks")
        rest = itt_cox(df[~rare], "new_job_in_scope_weeks")
    assert full.details["log_hr"] == pytest.approx(rest.details["log_hr"], abs=1e-6)
    assert full.details["log_hr_se"] == pytest.approx(rest.details["log_hr_se"], rel=1e-4)


def test_cox_pp_gradient_matches_numerical() -> None:
    df = make_study(3000, 9, hr=1.4)
    tm, event, g, x, fu = _cox_inputs(df)
    model = est._Breslow(tm, event, g, x, fu)
    beta, _ = model.fit()
    _, grad = model.pp_effect(beta, 0)
    h = 1e-6
    num = np.array(
        [
            (
                model.pp_effect(beta + h * np.eye(len(beta))[j], 0)[0]
                - model.pp_effect(beta - h * np.eye(len(beta))[j], 0)[0]
            )
            / (2 * h)
            for j in range(len(beta))
        ]
    )
    np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-8)


def test_cox_recovers_hazard_ratio_and_pp_effect() -> None:
    df = make_study(100_000, 11, hr=1.25)
    e = itt_cox(df, "new_job_in_scope_weeks")
    assert e.estimator == "cox" and e.n == len(df)
    assert abs(e.details["log_hr"] - math.log(1.25)) < 4 * e.details["log_hr_se"]
    truth = 100 * df["_dF"].mean()
    assert within(e, truth), (e, truth)
    assert e.control_mean == pytest.approx(100 * df.loc[df.treated == 0, "new_job_in_scope"].mean())


def test_cox_zero_effect_within_3se() -> None:
    for seed in (12, 13):
        e = itt_cox(make_study(30_000, seed, hr=1.0), "new_job_in_scope_weeks")
        assert abs(e.effect) < 3 * e.se, e


@pytest.mark.parametrize("common_followup", [True, False])
def test_cox_pp_agrees_with_lpm(common_followup: bool) -> None:
    df = make_study(60_000, 14, hr=1.3, common_followup=common_followup)
    cox = itt_cox(df, "new_job_in_scope_weeks")
    lpm = itt_lpm(df, "new_job_in_scope")
    assert abs(cox.effect - lpm.effect) < 0.5 * lpm.se + 0.1, (cox, lpm)
    assert cox.se == pytest.approx(lpm.se, rel=0.25)
    assert cox.control_mean == pytest.approx(lpm.control_mean)


def test_cox_horizon() -> None:
    df = make_study(20_000, 15, hr=1.3)
    full = itt_cox(df, "new_job_in_scope_weeks")
    short = itt_cox(df, "new_job_in_scope_weeks", horizon=13.0)
    assert 0 < short.effect < full.effect
    assert short.control_mean < full.control_mean


# --------------------------------------------------------------------------- employability


@pytest.fixture(scope="module")
def emp_df() -> pd.DataFrame:
    return make_study(12_000, 21, itt=0.02, itt_low_extra=0.04)


@pytest.fixture(scope="module")
def emp_scores(emp_df: pd.DataFrame) -> pd.Series:
    return predict_employability(emp_df, seed=3)


def test_tertiles_control_thirds_and_labels(emp_df: pd.DataFrame, emp_scores: pd.Series) -> None:
    tert = tertiles_from_scores(emp_scores, emp_df["treated"] == 0)
    assert tert.index.equals(emp_df.index)
    assert tert.cat.ordered and list(tert.cat.categories) == ["low", "medium", "high"]
    shares = tert[emp_df["treated"] == 0].value_counts(normalize=True)
    np.testing.assert_allclose(shares[["low", "medium", "high"]], 1 / 3, atol=0.005)
    assert not tert.isna().any()
    # the scores track the true control probability, equally well in both arms: each
    # learner is scored by one fold model (12,000 synthetic learners, ~6,000 controls)
    arms = [emp_df["treated"].to_numpy() == a for a in (0, 1)]
    corr = [np.corrcoef(emp_scores[m], emp_df["_p0"][m])[0, 1] for m in arms]
    assert min(corr) > 0.45, corr
    assert abs(corr[0] - corr[1]) < 0.08, corr
    # symmetric cross-fitting: the arms' scores are equally dispersed
    sd = [emp_scores[m].std() for m in arms]
    assert abs(sd[1] / sd[0] - 1) < 0.1, sd
    same = employability_tertiles(emp_df, seed=3)
    pd.testing.assert_series_equal(same, tert)


def test_employability_cross_fitting_is_structural(
    emp_df: pd.DataFrame, emp_scores: pd.Series
) -> None:
    """Changing a learner's own outcome never changes that learner's own score."""
    ctrl = np.flatnonzero(emp_df["treated"].to_numpy() == 0)
    trt = np.flatnonzero(emp_df["treated"].to_numpy() == 1)
    flipped = emp_df.copy()
    i = ctrl[17]
    flipped.iloc[i, flipped.columns.get_loc("new_job")] = 1 - flipped["new_job"].iloc[i]
    s2 = predict_employability(flipped, seed=3)
    assert s2.iloc[i] == emp_scores.iloc[i]  # its own fold model never saw row i
    assert not np.allclose(s2.to_numpy(), emp_scores.to_numpy())  # but other models did
    # outcomes of treated learners are never used at all
    flipped_t = emp_df.copy()
    flipped_t.iloc[trt, flipped_t.columns.get_loc("new_job")] = 1 - emp_df["new_job"].iloc[trt]
    pd.testing.assert_series_equal(predict_employability(flipped_t, seed=3), emp_scores)


def test_employability_deterministic_given_seed(
    emp_df: pd.DataFrame, emp_scores: pd.Series
) -> None:
    pd.testing.assert_series_equal(predict_employability(emp_df, seed=3), emp_scores)
    with threadpool_limits(limits=2):  # thread count does not change the scores
        two = predict_employability(emp_df, seed=3, n_threads=None)
    pd.testing.assert_series_equal(two, emp_scores)
    other = predict_employability(emp_df, seed=4)
    assert not np.allclose(other.to_numpy(), emp_scores.to_numpy())


def test_tertile_effects_recover_heterogeneity() -> None:
    df = make_study(60_000, 22, itt=0.02, itt_low_extra=0.04)
    tert = employability_tertiles(df, seed=1)
    effects = {}
    for lab in ("low", "medium", "high"):
        sub = df[tert == lab]
        e = itt_lpm(sub, "new_job")
        truth = 100 * sub["_tau"].mean()
        assert within(e, truth), (lab, e, truth)
        effects[lab] = e
    assert effects["low"].effect > effects["high"].effect


# --------------------------------------------------------------------------- LATE


def test_late_recovers_truth_strong_first_stage() -> None:
    df = make_study(100_000, 31, first_stage=0.3, base_share=0.05, late=0.2)
    e = late_2sls(df, "new_job")
    assert e.estimator == "2sls"
    assert within(e, 20.0), e
    assert e.details["first_stage_pp"] == pytest.approx(30.0, abs=1.0)


def test_late_weak_first_stage_paper_like() -> None:
    df = make_study(100_000, 32, first_stage=0.03, late=0.4)
    e = late_2sls(df, "new_job")
    assert within(e, 40.0), e
    assert abs(e.details["first_stage_pp"] - 3.0) < 4 * e.details["first_stage_se"]
    zero = late_2sls(make_study(40_000, 33, first_stage=0.2, late=0.0), "new_job")
    assert abs(zero.effect) < 3 * zero.se


def test_late_equals_wald_ratio_without_controls() -> None:
    df = make_study(20_000, 34, first_stage=0.2, late=0.3)
    e = late_2sls(df, "new_job", strata=None, covariates=())
    m = df.groupby("treated")[["new_job", "shared"]].mean()
    wald = (m.loc[1, "new_job"] - m.loc[0, "new_job"]) / (m.loc[1, "shared"] - m.loc[0, "shared"])
    assert e.effect == pytest.approx(100 * wald, rel=1e-9)


def _first_stage_t(df: pd.DataFrame, strata: bool = True) -> float:
    """t of ``treated`` in an OLS of ``shared`` on it, strata dummies and the covariates
    (statsmodels, HC0: the covariance of the 2SLS fit)."""
    if not strata:
        x = sm.add_constant(df["treated"].to_numpy(float))
        return float(sm.OLS(df["shared"].to_numpy(float), x).fit(cov_type="HC0").tvalues[1])
    rhs = (
        "treated + C(stratum) + C(education) + experience_years + past_tech"
        " + past_manager + employed_baseline + C(credential_type)"
    )
    res = smf.ols(f"shared ~ {rhs}", data=df).fit(cov_type="HC0")
    return float(res.tvalues["treated"])


@pytest.mark.filterwarnings("ignore:The design matrix is rank-deficient")
def test_first_stage_f_is_t_squared_and_weak_below_10() -> None:
    strong = make_study(3000, 36, first_stage=0.2, late=0.3)
    weak = make_study(3000, 37, first_stage=0.005, late=0.3)
    for df, is_weak in ((strong, False), (weak, True)):
        e = late_2sls(df, "new_job")
        f = e.details["first_stage_f"]
        assert f == pytest.approx(_first_stage_t(df) ** 2, rel=1e-8)
        assert f == pytest.approx((e.details["first_stage_pp"] / e.details["first_stage_se"]) ** 2)
        assert (f < WEAK_IV_F) is is_weak, f
        # the full linearmodels design gives the same F; without controls, the plain t^2
        full = late_2sls(df, "new_job", partial_out=False)
        assert full.details["first_stage_f"] == pytest.approx(f, rel=1e-8)
        bare = late_2sls(df, "new_job", strata=None, covariates=())
        assert bare.details["first_stage_f"] == pytest.approx(
            _first_stage_t(df, strata=False) ** 2, rel=1e-8
        )


# --------------------------------------------------------------------------- study table


def test_subgroup_masks_split_the_sample() -> None:
    df = make_study(2000, 45)
    m = subgroup_masks(df)
    assert tuple(m) == SUBGROUP_LABELS
    for a, b in (("no_college", "college"), ("no_experience", "experience")):
        assert (m[a] ^ m[b]).all()
    assert (m["developed"] ^ m["developing"]).all()
    assert (m["college"] == (df["college"] == 1)).all()
    assert (m["no_experience"] == (df["experience_years"] == 0)).all()
    assert (m["developing"] == (df["developing"] == 1)).all()
    assert 0 < m["no_experience"].sum() < len(df)


def test_study_estimates_table() -> None:
    df = make_study(15_000, 41, itt=0.02)
    pop = make_study(60_000, 42, view_effect=0.05)
    tab = study_estimates(df, pop_df=pop, seed=0)
    assert list(tab.columns) == list(STUDY_COLUMNS)
    assert list(tab["id"]) == list(STUDY_IDS)
    num = tab[["effect", "se", "control_mean", "rel", "rel_se"]].to_numpy(float)
    assert np.isfinite(num).all()
    assert (tab["se"] > 0).all()
    assert (tab["n"] > 0).all()
    groups = tab.set_index("id")["group"]
    assert groups["new_job_low"] == "low" and groups["any_view"] == "population"
    n_tert = tab.set_index("id").loc[["new_job_low", "new_job_medium", "new_job_high"], "n"]
    assert n_tert.sum() == len(df)
    av = tab.set_index("id").loc["any_view"]
    assert abs(av["effect"] - 5.0) < 4 * av["se"]
    # the first-stage F is on the 2SLS rows only
    t = tab.set_index("id")
    iv = t["estimator"] == "2sls"
    assert (t.loc[iv, "first_stage_f"] > 0).all() and t.loc[~iv, "first_stage_f"].isna().all()
    # subgroup rows: the LPM within each subgroup, same covariates
    masks = subgroup_masks(df)
    for lab in SUBGROUP_LABELS:
        row = t.loc[f"new_job_{lab}"]
        assert (row["group"], row["estimator"], row["n"]) == (lab, "lpm", masks[lab].sum())
        direct = itt_lpm(df.loc[masks[lab]], "new_job")
        assert row["effect"] == pytest.approx(direct.effect, rel=1e-10)
        assert row["control_mean"] == pytest.approx(direct.control_mean, rel=1e-10)
    assert t.loc["new_job_college", "n"] + t.loc["new_job_no_college", "n"] == len(df)


def test_study_estimates_given_tertiles_and_no_pop() -> None:
    df = make_study(8000, 43)
    tert = pd.Series(
        np.where(df["_p0"] < 0.12, "low", np.where(df["_p0"] < 0.17, "medium", "high")),
        index=df.index,
    )
    tab = study_estimates(df, tertiles=tert)
    assert list(tab["id"]) == list(STUDY_IDS[:-1])
    n = tab.set_index("id")["n"]
    assert n["new_job_low"] == (tert == "low").sum()
    # plain array labels are accepted too
    same = study_estimates(df, tertiles=tert.to_numpy())
    pd.testing.assert_frame_equal(same, tab)


def test_study_estimates_failed_row_is_nan_with_warning() -> None:
    df = make_study(4000, 44)
    tert = pd.Series("low", index=df.index)  # medium/high groups are empty
    with pytest.warns(RuntimeWarning) as record:
        tab = study_estimates(df, tertiles=tert).set_index("id")
    failed = {str(w.message).split("'")[1] for w in record}
    assert failed == {f"{p}new_job_{g}" for p in ("", "late_") for g in ("medium", "high")}
    assert np.isnan(tab.loc["new_job_medium", "effect"])
    assert tab.loc["new_job_medium", "n"] == 0
    assert tab.loc["late_new_job_high", "estimator"] == "2sls"
    assert np.isfinite(tab.loc["new_job_low", "effect"])


# --------------------------------------------------------------------------- slow coverage


@pytest.mark.slow
def test_cox_and_late_coverage_slow() -> None:
    """Coverage of the Cox pp effect (sample-conditional truth), the LATE and rel."""
    draws = 200
    cox_hits = late_hits = rel_hits = 0
    for seed in range(draws):
        df = make_study(4000, 50_000 + seed, hr=1.3, first_stage=0.3, late=0.2)
        c = itt_cox(df, "new_job_in_scope_weeks")
        lo, hi = c.ci95()
        cox_hits += lo <= 100 * df["_dF"].mean() <= hi
        e = late_2sls(df, "new_job")
        lo, hi = e.ci95()
        late_hits += lo <= 20.0 <= hi
        r = itt_lpm(df, "new_job")
        lo, hi = r.rel_ci95()
        rel_hits += lo <= 0.2 * 0.3 / df["_py0"].mean() <= hi
    for hits in (cox_hits, late_hits, rel_hits):
        assert 0.91 <= hits / draws <= 0.985, (cox_hits, late_hits, rel_hits)


def test_late_partialled_equals_full_linearmodels_design() -> None:
    df = make_study(6000, 35, first_stage=0.2, late=0.3)
    a = late_2sls(df, "new_job")
    b = late_2sls(df, "new_job", partial_out=False)
    for f in ("effect", "se", "control_mean", "rel", "rel_se"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-8)
    assert a.details["first_stage_pp"] == pytest.approx(b.details["first_stage_pp"], rel=1e-8)
