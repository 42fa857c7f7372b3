"""Intent-to-treat estimators of the credential-sharing experiment, as pure functions.

Every function takes one study dataframe (one row per learner, see the column list in
:func:`study_estimates`) and returns an :class:`Estimate` or a table of them. Effects,
standard errors and control means are reported in **percentage points / percent**
(100 x a probability); relative effects (``rel``) are plain fractions (0.10 = +10 %).

Estimators and the choices behind them
--------------------------------------
``itt_lpm``
    Linear probability model ``y ~ treated + stratum fixed effects + pre-treatment
    covariates`` (categoricals as 0/1 dummies, first level dropped), fitted by
    statsmodels OLS on a numpy design matrix, HC1 robust standard errors. Covariates
    that carry no variation beyond the strata (``domain``, ``developing`` and
    ``college`` define the strata; the college levels of ``education`` sum to
    ``college``) are dropped automatically by a greedy rank check on the
    within-stratum-demeaned design, so the same covariate list works for any subset.
    ``method="within"`` gives the identical point estimate and HC1 standard error by the
    Frisch-Waugh-Lovell theorem: strata are absorbed (within-stratum Gram matrix from
    ``X'X`` and per-stratum column sums, so no demeaned copy of the design is made),
    residuals and the treatment row of ``(X'X)^{-1}X'`` come from demeaned vectors, and
    the HC1 degrees of freedom count the absorbed strata. It is used for the 880k-row
    population sample (~0.4 s instead of ~5 s).

Relative effect and its delta-method standard error
    ``rel = b / c`` with ``c`` the raw control mean. Both are asymptotically linear,
    ``b - beta = sum_i phi_i`` and ``c - gamma = sum_i psi_i`` with
    ``phi_i = [(X'X)^{-1} x_i u_i]_treat`` (the OLS / 2SLS / Cox influence terms whose
    sum of squares is the HC0 / robust variance) and ``psi_i = (1 - T_i)(y_i - c) / n_0``.
    ``Cov(b, c) = sum_i phi_i psi_i`` ("stacked influence functions"); ``Var(b)`` is the
    reported (HC1 / robust / model-based) variance and ``Var(c) = s^2_0 / n_0``; then
    ``Var(rel) = Var(b)/c^2 + b^2 Var(c)/c^4 - 2 b Cov(b, c)/c^3``. Under randomization
    the covariance is negative (a high control mean lowers ``b``), so ignoring it would
    understate ``rel_se`` when the effect is positive (by ~7 % at rel = 0.16 on 37k
    learners; the tests check the formula against the exact difference-in-means case).

``itt_cox``
    Cox proportional hazards with a baseline hazard stratified by ``stratum``, Breslow
    ties, events = non-missing duration (durations later than the learner's own
    follow-up are treated as not observed by the collection date), time = duration if
    event else ``followup_weeks``. The hazard ratio is turned into percentage points as
    the sample average of ``P(event by own follow-up | x, treat=1) - P(... | x,
    treat=0)`` with ``P = 1 - exp(-Lambda_s(t) exp(x'beta))`` and ``Lambda_s`` the
    Breslow baseline cumulative hazard of the learner's stratum; this mirrors the
    censored design, so it estimates the same quantity as the LPM on the binary
    outcome. Its standard error is the delta method on the coefficient vector, with the
    analytic gradient that includes the dependence of the Breslow baseline on ``beta``
    (the sampling noise of the baseline given ``beta`` and of the covariate average is
    second order for a difference and is ignored: the target is the effect for this
    sample's covariates; simulated coverage of the 95 % interval is ~94 %).
    statsmodels ``PHReg`` spends ~2.3 s per fit on 37k rows in pure-Python loops over
    event times, so the default ``engine="numpy"`` maximises the same Breslow partial
    likelihood with a vectorised Newton-Raphson (same estimates and model-based
    covariance as ``PHReg`` to ~1e-8, checked in the tests; ~80 ms);
    ``engine="statsmodels"`` fits with ``PHReg``.

``predict_employability`` / ``employability_tertiles``
    A histogram gradient-boosted classifier trained on the control group only predicts
    the outcome from pre-treatment features. Cross-fitting: all learners are split into
    ``n_folds`` folds within each arm (the split does not depend on the outcome); each
    fold, treated and control alike, is scored by the model trained on the controls of
    the other folds. No learner is scored by a model that saw its outcome, and both arms
    get scores of the same kind (see ``predict_employability``). Tertile cut-offs are the 1/3
    and 2/3 quantiles of the control scores, so control tertiles are equal-sized and the
    treated ones need not be.

``late_2sls``
    Local average treatment effect of sharing, 2SLS (``linearmodels`` ``IV2SLS``) with
    ``treated`` instrumenting ``shared`` and the same exogenous controls as the LPM;
    heteroskedasticity-robust (HC0, ``linearmodels`` "robust") covariance. By default
    the strata and covariates are partialled out of outcome, ``shared`` and ``treated``
    first (Frisch-Waugh-Lovell: identical estimate, residuals and robust covariance), as
    ``IV2SLS`` on the full 37k x 40 design spends ~0.35 s in repeated SVDs. The first
    stage (``shared`` on ``treated`` and the same controls) comes with its robust Wald F
    of the instrument: with one instrument ``F = t^2``, ``t`` the first-stage coefficient
    over its HC0 standard error (the covariance of the 2SLS fit). ``F <`` :data:`WEAK_IV_F`
    flags a weak instrument: the 2SLS estimate is then biased towards the OLS one and its
    normal interval unreliable.

``subgroup_masks``
    The subgroups named by the study's public summary: no college degree / college
    degree, no experience / some, developed / developing country. ``study_estimates``
    reports the LPM ITT on a new job within each (same covariates and strata; the ones
    constant within a subgroup drop out by the rank check).

``study_estimates``
    All the rows one replication needs, with stable ids (:data:`STUDY_IDS`); runs with
    one BLAS/OpenMP thread by default (oversubscribed thread pools were 3-4x slower when
    other processes shared the CPUs).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from linearmodels.iv import IV2SLS
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from sim.runner.tasks import ESTIMATE_COLUMNS

__all__ = [
    "DEFAULT_COVARIATES",
    "DEFAULT_FEATURES",
    "STUDY_COLUMNS",
    "STUDY_IDS",
    "SUBGROUP_LABELS",
    "TERTILE_LABELS",
    "WEAK_IV_F",
    "Estimate",
    "employability_tertiles",
    "itt_cox",
    "itt_lpm",
    "late_2sls",
    "predict_employability",
    "study_estimates",
    "subgroup_masks",
    "tertiles_from_scores",
]

#: Pre-treatment covariates of the regressions (strata components included: they are
#: dropped automatically when strata fixed effects absorb them).
DEFAULT_COVARIATES: tuple[str, ...] = (
    "domain",
    "developing",
    "college",
    "education",
    "experience_years",
    "past_tech",
    "past_manager",
    "employed_baseline",
    "credential_type",
)
#: Pre-treatment features of the employability model (``batch`` sets the follow-up
#: length, hence the chance to find a job by the collection date).
DEFAULT_FEATURES: tuple[str, ...] = (*DEFAULT_COVARIATES, "batch")
TERTILE_LABELS: tuple[str, str, str] = ("low", "medium", "high")
#: Subgroups of the study's public summary (see :func:`subgroup_masks`); the study table
#: has the new-job ITT within each, row id ``new_job_<label>``.
SUBGROUP_LABELS: tuple[str, ...] = (
    "no_college",
    "college",
    "no_experience",
    "experience",
    "developed",
    "developing",
)
#: First-stage F below which an instrument is called weak (Staiger and Stock's rule of
#: thumb for one instrument).
WEAK_IV_F = 10.0
#: Row ids of :func:`study_estimates` (``any_view`` only with a population dataframe).
STUDY_IDS: tuple[str, ...] = (
    "shared",
    "new_job",
    "new_job_in_scope",
    "new_job_cox",
    "new_job_in_scope_cox",
    "new_job_low",
    "new_job_medium",
    "new_job_high",
    *(f"new_job_{lab}" for lab in SUBGROUP_LABELS),
    "late_new_job",
    "late_new_job_in_scope",
    "late_new_job_low",
    "late_new_job_medium",
    "late_new_job_high",
    "any_view",
)
#: Columns of :func:`study_estimates`: the study rows' columns without the true effect.
STUDY_COLUMNS: tuple[str, ...] = tuple(c for c in ESTIMATE_COLUMNS if c != "true_effect")

_Z95 = 1.959963984540054  # 97.5 % normal quantile
_RANK_TOL = 1e-9  # relative residual variance below which a column is collinear


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Estimate:
    """One treatment-effect estimate.

    Attributes:
        effect: effect in percentage points (100 x difference in probabilities).
        se: standard error of ``effect``, percentage points.
        n: number of observations used.
        control_mean: mean outcome among controls, percent.
        rel: ``effect / control_mean`` as a fraction (0.1 = +10 %); NaN if the control
            mean is 0.
        rel_se: delta-method standard error of ``rel`` (fraction), accounting for the
            estimation error of the control mean and its covariance with ``effect``.
        estimator: short name of the estimator (``"lpm"``, ``"cox"``, ``"2sls"``).
        details: estimator-specific extras (e.g. the log hazard ratio, the first stage),
            not part of equality or of :meth:`as_dict`.
    """

    effect: float
    se: float
    n: int
    control_mean: float
    rel: float
    rel_se: float
    estimator: str
    details: Mapping[str, float] = field(default_factory=dict, compare=False, repr=False)

    def ci95(self) -> tuple[float, float]:
        """Normal 95 % confidence interval of ``effect`` (percentage points)."""
        return (self.effect - _Z95 * self.se, self.effect + _Z95 * self.se)

    def rel_ci95(self) -> tuple[float, float]:
        """Normal 95 % confidence interval of ``rel`` (fraction)."""
        return (self.rel - _Z95 * self.rel_se, self.rel + _Z95 * self.rel_se)

    def as_dict(self) -> dict[str, float | int | str]:
        """The core fields as a flat dict (``details`` left out)."""
        return {
            "effect": self.effect,
            "se": self.se,
            "n": self.n,
            "control_mean": self.control_mean,
            "rel": self.rel,
            "rel_se": self.rel_se,
            "estimator": self.estimator,
        }


def _ratio_delta(
    b: float, c: float, var_b: float, var_c: float, cov_bc: float
) -> tuple[float, float]:
    """``b / c`` and its delta-method standard error (all on the probability scale)."""
    if c == 0 or not math.isfinite(c):
        return math.nan, math.nan
    # keep the 2x2 covariance positive semi-definite despite mixing HC1 and HC0 pieces
    bound = math.sqrt(max(var_b, 0.0) * max(var_c, 0.0))
    cov_bc = min(max(cov_bc, -bound), bound)
    var = var_b / c**2 + b**2 * var_c / c**4 - 2.0 * b * cov_bc / c**3
    return b / c, math.sqrt(max(var, 0.0))


def _make_estimate(
    b: float,
    var_b: float,
    phi: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    estimator: str,
    details: Mapping[str, float] | None = None,
) -> Estimate:
    """Assemble an :class:`Estimate` from a probability-scale effect ``b``.

    ``phi`` are the influence terms of ``b`` (``b - beta ~ sum(phi)``); ``y``/``t`` the
    outcome and treatment of the same rows, for the control mean and its influence.
    """
    control = t == 0
    n0 = int(control.sum())
    if n0 == 0:
        raise ValueError("no control observations")
    y0 = y[control]
    c = float(y0.mean())
    var_c = float(y0.var(ddof=1)) / n0 if n0 > 1 else math.nan
    psi = np.where(control, y - c, 0.0) / n0
    cov_bc = float(phi @ psi)
    rel, rel_se = _ratio_delta(b, c, var_b, var_c, cov_bc)
    return Estimate(
        effect=100.0 * b,
        se=100.0 * math.sqrt(var_b),
        n=len(y),
        control_mean=100.0 * c,
        rel=rel,
        rel_se=rel_se,
        estimator=estimator,
        details=dict(details or {}),
    )


# --------------------------------------------------------------------------- design


def _is_categorical(s: pd.Series) -> bool:
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return False
    return True


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"columns missing from the dataframe: {missing}")


def _treat_and_covariates(
    df: pd.DataFrame, treat: str, covariates: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """One float matrix: the treatment, then numeric covariates and categorical dummies.

    Filled in place (one allocation), which matters for the 880k-row population sample.
    """
    parts: list[tuple[str, np.ndarray, list[str]]] = []
    width = 1
    for col in covariates:
        s = df[col]
        if _is_categorical(s):
            if isinstance(s.dtype, pd.CategoricalDtype):
                codes, levels = s.cat.codes.to_numpy(), list(s.cat.categories)
            else:
                codes, uniques = pd.factorize(s, sort=True)
                levels = list(uniques)
            parts.append(("cat", codes, [f"{col}[{lev}]" for lev in levels[1:]]))
            width += max(len(levels) - 1, 0)
        else:
            parts.append(("num", s.to_numpy(dtype=float), [col]))
            width += 1
    x = np.zeros((len(df), width))
    x[:, 0] = df[treat].to_numpy(dtype=float)
    names = [treat]
    j = 1
    for kind, values, cnames in parts:
        if kind == "num":
            x[:, j] = values
        else:
            rows = np.flatnonzero(values > 0)
            x[rows, j + values[rows] - 1] = 1.0
        names.extend(cnames)
        j += len(cnames)
    return x, names


def _group_codes(df: pd.DataFrame, strata: str | None) -> tuple[np.ndarray, int]:
    if strata is None:
        return np.zeros(len(df), dtype=np.intp), 1
    codes, uniques = pd.factorize(df[strata], sort=True)
    return codes.astype(np.intp), len(uniques)


def _group_sums(m: np.ndarray, g: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``m`` (1-D or 2-D) within each group, ``n_groups`` rows."""
    ind = sparse.csr_matrix((np.ones(len(g)), (g, np.arange(len(g)))), shape=(n_groups, len(g)))
    return np.asarray(ind @ m)


def _demean(v: np.ndarray, g: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Subtract group means from a vector (groups ``g``, group sizes ``counts`` > 0)."""
    return v - (np.bincount(g, weights=v, minlength=len(counts)) / counts)[g]


def _independent_columns(gram_w: np.ndarray, ss_raw: np.ndarray) -> list[int]:
    """Greedy left-to-right selection of linearly independent columns.

    ``gram_w`` is the Gram matrix of the within-stratum-demeaned columns, ``ss_raw``
    their raw centred sums of squares. Column ``j`` is kept if the part of it not
    explained by the strata and the columns kept so far has a sum of squares above
    ``_RANK_TOL * ss_raw[j]``.
    """
    keep: list[int] = []
    for j in range(gram_w.shape[0]):
        if ss_raw[j] <= 0.0:
            continue
        resid = gram_w[j, j]
        if keep:
            v = gram_w[keep, j]
            resid -= v @ np.linalg.solve(gram_w[np.ix_(keep, keep)], v)
        if resid > _RANK_TOL * ss_raw[j]:
            keep.append(j)
    return keep


#: |log hazard ratio| beyond which a Cox coefficient is taken as diverging (HR e^15).
_DIVERGED = 15.0


@dataclass
class _Design:
    """Complete-case arrays shared by the estimators (rows = ``mask`` of the input).

    ``x`` holds the treatment (column 0) and the covariates kept after the rank check,
    undemeaned; ``gram_w`` is the Gram matrix of ``x`` demeaned within strata and
    ``gsum`` the per-stratum column sums of ``x``, so that within-stratum regressions
    never need a demeaned copy of ``x``.
    """

    mask: np.ndarray  # bool, rows of the input used
    g: np.ndarray  # stratum codes 0..n_groups-1
    counts: np.ndarray  # rows per stratum (float)
    x: np.ndarray  # n x (1 + q): treatment, kept covariates
    names: list[str]
    gram_w: np.ndarray
    gsum: np.ndarray

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def n_groups(self) -> int:
        return len(self.counts)

    @property
    def t(self) -> np.ndarray:
        return self.x[:, 0]

    @property
    def cov(self) -> np.ndarray:
        return self.x[:, 1:]

    def strata_dummies(self) -> np.ndarray:
        out = np.zeros((self.n, self.n_groups - 1))
        rows = np.flatnonzero(self.g > 0)
        out[rows, self.g[rows] - 1] = 1.0
        return out

    def exog(self) -> np.ndarray:
        """Constant, strata dummies (first dropped) and covariates."""
        return np.hstack([np.ones((self.n, 1)), self.strata_dummies(), self.cov])

    def within_coef(self, v: np.ndarray, cols: slice) -> np.ndarray:
        """Coefficients of ``x[:, cols]`` in a regression of ``v`` with strata effects."""
        xv_w = self.x[:, cols].T @ v - self.gsum[:, cols].T @ (
            np.bincount(self.g, weights=v, minlength=self.n_groups) / self.counts
        )
        return np.linalg.solve(self.gram_w[cols, cols], xv_w)


def _design(
    df: pd.DataFrame,
    treat: str,
    strata: str | None,
    covariates: Sequence[str],
    needed: Sequence[str] = (),
) -> _Design:
    """Validate, drop incomplete rows, dummy-code and drop collinear covariates."""
    covariates = list(covariates)
    cols = list(dict.fromkeys([treat, *([strata] if strata else []), *covariates, *needed]))
    _require(df, cols)
    mask = ~df[cols].isna().any(axis=1).to_numpy()
    sub = df.loc[mask] if not mask.all() else df
    if len(sub) == 0:
        raise ValueError("no complete observations")
    x, names = _treat_and_covariates(sub, treat, covariates)
    t = x[:, 0]
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError(f"{treat!r} must be 0/1")
    if t.min() == t.max():
        raise ValueError(f"{treat!r} has no variation: need treated and control rows")
    g, n_groups = _group_codes(sub, strata)
    counts = np.bincount(g, minlength=n_groups).astype(float)
    # centre the columns first: less cancellation in the Gram-matrix identities below
    centre = x.mean(axis=0)
    xtx = x.T @ x - len(x) * np.outer(centre, centre)
    gsum = _group_sums(x, g, n_groups)
    gdev = gsum - np.outer(counts, centre)
    gram_w = xtx - gdev.T @ (gdev / counts[:, None])
    keep = _independent_columns(gram_w, np.diag(xtx).copy())
    if not keep or keep[0] != 0:
        raise ValueError(f"{treat!r} is collinear with the strata (no within-stratum variation)")
    if len(keep) < x.shape[1]:
        x = x[:, keep]
        gsum = gsum[:, keep]
        gram_w = gram_w[np.ix_(keep, keep)]
    return _Design(
        mask=mask,
        g=g,
        counts=counts,
        x=x,
        names=[names[k] for k in keep],
        gram_w=gram_w,
        gsum=gsum,
    )


def _column(df: pd.DataFrame, col: str, mask: np.ndarray) -> np.ndarray:
    return df[col].to_numpy(dtype=float)[mask]


# --------------------------------------------------------------------------- LPM


def _lpm(des: _Design, y: np.ndarray, method: str) -> tuple[float, float, np.ndarray]:
    """Treatment coefficient, its HC1 variance and HC0 influence terms (probability scale)."""
    n = des.n
    if method == "ols":
        x = np.column_stack([np.ones(n), des.t, des.strata_dummies(), des.cov])
        res = sm.OLS(y, x).fit(cov_type="HC1")
        b = float(res.params[1])
        var_b = float(res.cov_params()[1, 1])
        phi = (x @ res.normalized_cov_params[:, 1]) * res.resid
        return b, var_b, phi
    if method == "within":
        # Frisch-Waugh-Lovell: residuals and the treatment row of (X'X)^{-1}X' of the
        # dummy regression, from demeaned 1-D vectors only
        every = slice(None)
        beta = des.within_coef(y, every)
        u = _demean(y - des.x @ beta, des.g, des.counts)
        a = np.linalg.solve(des.gram_w, np.eye(len(beta))[:, 0])
        phi = _demean(des.x @ a, des.g, des.counts) * u
        k = des.x.shape[1] + des.n_groups  # + constant and strata absorbed
        var_b = float(phi @ phi) * n / (n - k)
        return float(beta[0]), var_b, phi
    raise ValueError(f"method must be 'ols' or 'within', not {method!r}")


def itt_lpm(
    df: pd.DataFrame,
    outcome: str,
    treat: str = "treated",
    strata: str | None = "stratum",
    covariates: Sequence[str] = DEFAULT_COVARIATES,
    *,
    method: str = "ols",
) -> Estimate:
    """Intent-to-treat effect by a linear probability model with HC1 standard errors.

    ``outcome ~ treat + stratum fixed effects + covariates`` (categoricals dummy-coded;
    covariates collinear with the strata dropped). Rows with a missing value in any used
    column are dropped.

    Args:
        df: one row per learner.
        outcome: 0/1 (or any numeric) outcome column.
        treat: 0/1 assignment column.
        strata: randomization strata column (``None``: a single constant).
        covariates: pre-treatment covariates.
        method: ``"ols"`` (statsmodels OLS with strata dummies) or ``"within"`` (numpy,
            strata absorbed by demeaning; identical estimate and HC1 SE, much faster
            on large samples).

    Returns:
        :class:`Estimate` with ``effect``/``se`` in percentage points, ``control_mean``
        the raw control mean in percent, ``rel`` = effect / control mean (fraction).
    """
    des = _design(df, treat, strata, covariates, needed=(outcome,))
    y = _column(df, outcome, des.mask)
    b, var_b, phi = _lpm(des, y, method)
    return _make_estimate(b, var_b, phi, y, des.t, "lpm")


# --------------------------------------------------------------------------- Cox


class _Breslow:
    """Stratified Breslow partial likelihood, vectorised over rows and event times.

    Rows are sorted by (stratum, time); ``ev_*`` arrays have one entry per distinct
    (stratum, event time) pair in the same order.
    """

    def __init__(
        self,
        time: np.ndarray,
        event: np.ndarray,
        g: np.ndarray,
        x: np.ndarray,
        pred_time: np.ndarray,
    ) -> None:
        order = np.lexsort((time, g))
        self.order = order
        self.time = time[order]
        self.event = event[order].astype(bool)
        self.g = g[order]
        self.x = x[order]
        self.pred_time = pred_time[order]
        n = len(time)
        starts = np.flatnonzero(np.r_[True, np.diff(self.g) != 0])
        ends = np.r_[starts[1:], n]
        ev_pos, ev_end, ev_d = [], [], []
        row_idx = np.full(n, -1, dtype=np.intp)
        pred_idx = np.full(n, -1, dtype=np.intp)
        offset = 0
        for a, b in zip(starts, ends, strict=True):
            ts = self.time[a:b]
            ut, d = np.unique(ts[self.event[a:b]], return_counts=True)
            ev_pos.append(a + np.searchsorted(ts, ut, side="left"))
            ev_end.append(np.full(len(ut), b))
            ev_d.append(d)
            k = np.searchsorted(ut, ts, side="right") - 1
            row_idx[a:b] = np.where(k >= 0, offset + k, -1)
            kp = np.searchsorted(ut, self.pred_time[a:b], side="right") - 1
            pred_idx[a:b] = np.where(kp >= 0, offset + kp, -1)
            offset += len(ut)
        self.m = offset
        self.ev_pos = np.concatenate(ev_pos)
        self.ev_end = np.concatenate(ev_end)
        self.ev_d = np.concatenate(ev_d).astype(float)
        # first event index of each event's stratum, for within-stratum cumulative sums
        ev_stratum = self.g[self.ev_pos]
        first = np.r_[True, np.diff(ev_stratum) != 0]
        self.ev_first = np.maximum.accumulate(np.where(first, np.arange(self.m), 0))
        # index m points to an appended zero (no event yet)
        self.row_idx = np.where(row_idx >= 0, row_idx, self.m)
        self.pred_idx = np.where(pred_idx >= 0, pred_idx, self.m)

    def _within_cumsum(self, v: np.ndarray) -> np.ndarray:
        """Cumulative sum over event times within each stratum, padded with a zero row."""
        c = np.cumsum(v, axis=0)
        base = c[self.ev_first] - v[self.ev_first]
        out = c - base
        pad = np.zeros((1, *v.shape[1:]))
        return np.concatenate([out, pad], axis=0)

    def _risk_sums(
        self, e: np.ndarray, ex: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        rc = np.r_[np.cumsum(e[::-1])[::-1], 0.0]
        s0 = rc[self.ev_pos] - rc[self.ev_end]
        if ex is None:
            return s0, None
        rc1 = np.vstack([np.cumsum(ex[::-1], axis=0)[::-1], np.zeros((1, ex.shape[1]))])
        s1 = rc1[self.ev_pos] - rc1[self.ev_end]
        return s0, s1

    def _eta(self, beta: np.ndarray) -> np.ndarray:
        eta = self.x @ beta
        return eta - eta.max()

    def loglike_grad_info(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Log partial likelihood, score and observed information at ``beta``."""
        eta = self._eta(beta)
        e = np.exp(eta)
        ex = self.x * e[:, None]
        s0, s1 = self._risk_sums(e, ex)
        assert s1 is not None
        xbar = s1 / s0[:, None]
        ll = float(eta[self.event].sum() - self.ev_d @ np.log(s0))
        grad = self.x[self.event].sum(axis=0) - self.ev_d @ xbar
        lam = self._within_cumsum(self.ev_d / s0)[self.row_idx]
        info = (self.x * (e * lam)[:, None]).T @ self.x - (xbar * self.ev_d[:, None]).T @ xbar
        return ll, grad, info

    def fit(self, max_iter: int = 50, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
        """Newton-Raphson with step halving; returns ``beta`` and its model-based covariance."""
        beta = np.zeros(self.x.shape[1])
        ll, grad, info = self.loglike_grad_info(beta)
        for _ in range(max_iter):
            step = np.linalg.solve(info, grad)
            for _half in range(30):
                cand = beta + step
                ll_c, grad_c, info_c = self.loglike_grad_info(cand)
                if ll_c >= ll - 1e-12 * abs(ll):
                    break
                step = step / 2.0
            # converged on the log-likelihood, as R's coxph: under monotone likelihood (a
            # rare category with no events) that covariate's coefficient drifts to -inf
            # while the likelihood, and every other coefficient, has settled
            converged = abs(ll_c - ll) < tol * max(1.0, abs(ll))
            beta, ll, grad, info = cand, ll_c, grad_c, info_c
            if converged:
                break
        else:
            warnings.warn("Cox Newton-Raphson did not converge", RuntimeWarning, stacklevel=3)
        if abs(beta[0]) > _DIVERGED:
            warnings.warn(
                f"Cox: the treatment's log hazard ratio {beta[0]:.1f} is diverging "
                "(no events in one arm?)",
                RuntimeWarning,
                stacklevel=3,
            )
        return beta, np.linalg.inv(info)

    def score_residuals(self, beta: np.ndarray) -> np.ndarray:
        """Per-row score contributions (sorted order); they sum to the score."""
        eta = self._eta(beta)
        e = np.exp(eta)
        s0, s1 = self._risk_sums(e, self.x * e[:, None])
        assert s1 is not None
        xbar = s1 / s0[:, None]
        dlam = self.ev_d / s0
        lam = self._within_cumsum(dlam)[self.row_idx]
        a = self._within_cumsum(xbar * dlam[:, None])[self.row_idx]
        xbar_pad = np.vstack([xbar, np.zeros((1, xbar.shape[1]))])
        own = np.where(self.event[:, None], self.x - xbar_pad[self.row_idx], 0.0)
        return own - e[:, None] * (self.x * lam[:, None] - a)

    def cumhaz_at_events(self, beta: np.ndarray) -> np.ndarray:
        """Breslow baseline cumulative hazard at each (stratum, event time), unshifted."""
        eta = self.x @ beta
        s0, _ = self._risk_sums(np.exp(eta))
        return self._within_cumsum(self.ev_d / s0)[:-1]

    def pp_effect(self, beta: np.ndarray, treat_col: int) -> tuple[float, np.ndarray]:
        """Mean of P(event by pred_time | x, T=1) - P(... | T=0) and its gradient in beta."""
        eta = self.x @ beta
        shift = eta.max()
        e = np.exp(eta - shift)
        s0, s1 = self._risk_sums(e, self.x * e[:, None])
        assert s1 is not None
        xbar = s1 / s0[:, None]
        dlam = self.ev_d / s0
        lam = self._within_cumsum(dlam)[self.pred_idx]
        a = self._within_cumsum(xbar * dlam[:, None])[self.pred_idx]  # = -dLambda/dbeta
        t_eff = self.x[:, treat_col] * beta[treat_col]
        n = len(eta)
        diff = 0.0
        grad = np.zeros(len(beta))
        for arm, sign in ((1.0, 1.0), (0.0, -1.0)):
            xa = self.x.copy()
            xa[:, treat_col] = arm
            ea = np.exp(eta - t_eff + arm * beta[treat_col] - shift)
            h = lam * ea
            surv = np.exp(-h)
            diff += sign * float((1.0 - surv).mean())
            # dF/dbeta = S * (dLambda/dbeta * e_a + Lambda * e_a * x_a)
            dfdb = (surv * ea)[:, None] * (lam[:, None] * xa - a)
            grad += sign * dfdb.sum(axis=0) / n
        return diff, grad


def itt_cox(
    df: pd.DataFrame,
    duration: str,
    followup: str = "followup_weeks",
    treat: str = "treated",
    strata: str | None = "stratum",
    covariates: Sequence[str] = DEFAULT_COVARIATES,
    horizon: float | None = None,
    *,
    engine: str = "numpy",
) -> Estimate:
    """Intent-to-treat effect on a time-to-event outcome by stratified Cox regression.

    Events are rows with a non-missing ``duration`` no later than ``followup``; time is
    the duration for events and the follow-up (censoring) time otherwise. The hazard
    ratio is expressed in percentage points as the sample mean of the predicted
    probability of an event by each learner's own follow-up (or by ``horizon`` weeks,
    if given) with ``treat`` set to 1 minus the same with ``treat`` set to 0.

    Args:
        df: one row per learner.
        duration: weeks from randomization to the event, NaN if none by collection.
        followup: weeks from randomization to the collection date (censoring time).
        treat: 0/1 assignment column.
        strata: baseline-hazard strata (``None``: one common baseline).
        covariates: pre-treatment covariates (those constant within strata drop out).
        horizon: optional common horizon in weeks for the predicted probabilities
            (the Breslow baseline is flat after a stratum's last event time). The
            control mean is then the raw share of controls with an event within
            ``min(horizon, followup)`` weeks.
        engine: ``"numpy"`` (vectorised Newton-Raphson, default) or ``"statsmodels"``
            (``PHReg``); both maximise the same Breslow partial likelihood.

    Returns:
        :class:`Estimate` (``effect``, ``se`` in percentage points, ``control_mean``
        the raw percent of controls with an event, ``details`` with ``log_hr``,
        ``log_hr_se`` and ``hr``).
    """
    des = _design(df, treat, strata, covariates, needed=(followup,))
    fu = _column(df, followup, des.mask)
    _require(df, [duration])
    dur = _column(df, duration, des.mask)
    event = ~np.isnan(dur) & (dur <= fu)
    if not event.any():
        raise ValueError(f"no events in {duration!r}")
    time = np.where(event, dur, fu)
    pred_time = fu if horizon is None else np.full(len(fu), float(horizon))
    model = _Breslow(time, event, des.g, des.x, pred_time)
    if engine == "numpy":
        beta, cov = model.fit()
    elif engine == "statsmodels":
        from statsmodels.duration.hazard_regression import PHReg

        res = PHReg(time, des.x, status=event.astype(float), strata=des.g, ties="breslow").fit()
        beta, cov = np.asarray(res.params), np.asarray(res.cov_params())
    else:
        raise ValueError(f"engine must be 'numpy' or 'statsmodels', not {engine!r}")
    b, grad = model.pp_effect(beta, treat_col=0)
    var_b = float(grad @ cov @ grad)
    # influence terms of b through beta (sorted order, as are the outcome and treatment)
    phi = model.score_residuals(beta) @ cov @ grad
    t_sorted = model.x[:, 0]
    if horizon is None:
        y_sorted = model.event.astype(float)
    else:
        y_sorted = (model.event & (model.time <= horizon)).astype(float)
    details = {
        "log_hr": float(beta[0]),
        "log_hr_se": float(math.sqrt(cov[0, 0])),
        "hr": float(math.exp(beta[0])),
        "events": float(event.sum()),
    }
    return _make_estimate(b, var_b, phi, y_sorted, t_sorted, "cox", details)


# --------------------------------------------------------------------------- employability


def _feature_frame(df: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Features for the boosted trees: categoricals as ``category`` with sorted levels."""
    _require(df, features)
    out = {}
    for col in features:
        s = df[col]
        if _is_categorical(s):
            if isinstance(s.dtype, pd.CategoricalDtype):
                out[col] = s.cat.remove_unused_categories()
            else:
                levels = sorted(pd.unique(s.dropna()), key=str)
                out[col] = pd.Categorical(s, categories=levels)
        else:
            out[col] = s.to_numpy(dtype=float)
    return pd.DataFrame(out, index=df.index)


def _classifier(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=200,
        max_leaf_nodes=15,
        min_samples_leaf=50,
        l2_regularization=1.0,
        categorical_features="from_dtype",
        early_stopping="auto",  # on above 10,000 training rows (the study's scale)
        validation_fraction=0.15,
        n_iter_no_change=15,
        random_state=seed,
    )


def predict_employability(
    df: pd.DataFrame,
    features: Sequence[str] = DEFAULT_FEATURES,
    outcome: str = "new_job",
    treat: str = "treated",
    n_folds: int = 5,
    seed: int = 0,
    *,
    n_threads: int | None = 1,
) -> pd.Series:
    """Cross-fitted predicted probability of ``outcome`` absent treatment (0-1 scale).

    Every learner is put in one of ``n_folds`` folds, drawn within each arm (shuffled
    ``StratifiedKFold`` on the arm, independent of the outcome). For each fold a
    ``HistGradientBoostingClassifier`` is trained on the control learners *outside* it
    (with an observed outcome) and scores every learner *in* it, treated or control. So
    no learner is scored by a model that saw it, and both arms are scored by the same
    kind of model: averaging the fold models for treated learners only would give them
    smoother scores than the controls, put different mixes of learners in each arm's
    tertiles and bias the within-tertile effects (the endogenous-stratification problem
    of Abadie, Chingos and West, 2018). Deterministic given ``seed`` (and identical for any
    ``n_threads``: the OpenMP threads of the boosted trees, 1 by default because
    oversubscribed pools are several times slower when other processes share the CPUs;
    ``None``: unchanged).

    Returns:
        float Series named ``"employability"`` aligned with ``df.index``.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be >= 2")
    _require(df, [outcome, treat])
    x = _feature_frame(df, features)
    y = df[outcome].to_numpy(dtype=float)
    arm = df[treat].to_numpy(dtype=float)
    train = (arm == 0) & ~np.isnan(y)
    if train.sum() < 2 * n_folds:
        raise ValueError("too few control learners with an observed outcome")
    scores = np.full(len(df), np.nan)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=n_threads):
        for k, (_, te) in enumerate(folds.split(np.zeros(len(df)), arm)):
            fit_rows = np.flatnonzero(train & ~np.isin(np.arange(len(df)), te))
            y_fit = y[fit_rows].astype(int)
            if len(np.unique(y_fit)) < 2:  # a tiny sample with one outcome only
                scores[te] = float(y_fit.mean()) if len(y_fit) else np.nan
                continue
            model = _classifier(seed * 1000 + k)
            model.fit(x.iloc[fit_rows], y_fit)
            scores[te] = model.predict_proba(x.iloc[te])[:, 1]
    return pd.Series(scores, index=df.index, name="employability")


def tertiles_from_scores(scores: pd.Series, control: pd.Series | np.ndarray) -> pd.Series:
    """Label scores low/medium/high at the 1/3 and 2/3 quantiles of the control scores.

    Args:
        scores: predicted employability (any scale), one per learner.
        control: boolean mask of the control learners (same order as ``scores``).

    Returns:
        Ordered categorical Series (low < medium < high) aligned with ``scores.index``;
        a score equal to a cut-off goes to the lower group.
    """
    s = scores.to_numpy(dtype=float)
    ctrl = np.asarray(control, dtype=bool)
    q1, q2 = np.quantile(s[ctrl & ~np.isnan(s)], [1 / 3, 2 / 3])
    codes = np.where(s <= q1, 0, np.where(s <= q2, 1, 2))
    codes = np.where(np.isnan(s), -1, codes)
    cat = pd.Categorical.from_codes(codes, categories=list(TERTILE_LABELS), ordered=True)
    return pd.Series(cat, index=scores.index, name="employability_tertile")


def employability_tertiles(
    df: pd.DataFrame,
    features: Sequence[str] = DEFAULT_FEATURES,
    outcome: str = "new_job",
    treat: str = "treated",
    n_folds: int = 5,
    seed: int = 0,
    *,
    n_threads: int | None = 1,
) -> pd.Series:
    """Employability tertile of each learner from cross-fitted control-group predictions.

    See :func:`predict_employability` (the scores) and :func:`tertiles_from_scores`
    (the cut at the control group's 1/3 and 2/3 quantiles).

    Returns:
        Ordered categorical Series ``"low" < "medium" < "high"`` aligned with
        ``df.index``; control learners are ~1/3 in each group, treated ones need not be.
    """
    scores = predict_employability(df, features, outcome, treat, n_folds, seed, n_threads=n_threads)
    return tertiles_from_scores(scores, df[treat].to_numpy(dtype=float) == 0)


# --------------------------------------------------------------------------- LATE


def late_2sls(
    df: pd.DataFrame,
    outcome: str,
    endog: str = "shared",
    instrument: str = "treated",
    strata: str | None = "stratum",
    covariates: Sequence[str] = DEFAULT_COVARIATES,
    *,
    partial_out: bool = True,
) -> Estimate:
    """Local average treatment effect of ``endog`` (sharing) by two-stage least squares.

    ``outcome ~ endog + strata dummies + covariates`` with ``endog`` instrumented by the
    random assignment ``instrument``; linearmodels ``IV2SLS`` with robust (HC0)
    covariance.

    Args:
        df: one row per learner.
        outcome: outcome column (0/1).
        endog: endogenous treatment actually taken (0/1 sharing).
        instrument: the random assignment (0/1).
        strata: strata fixed effects (``None``: constant only).
        covariates: exogenous pre-treatment covariates.
        partial_out: if true (default), the strata effects and covariates are first
            partialled out of the outcome, ``endog`` and the instrument, and ``IV2SLS``
            runs on the residuals (Frisch-Waugh-Lovell: identical estimate, residuals
            and HC0 covariance, ~10x faster because linearmodels' rank checks and
            pseudo-inverses then act on one column). If false, ``IV2SLS`` gets the full
            exogenous design.

    Returns:
        :class:`Estimate` with the LATE in percentage points, ``control_mean`` the raw
        mean outcome of the instrument==0 group (percent), ``rel`` = LATE / control mean
        and ``details`` with the first stage (``first_stage_pp``, ``first_stage_se``, pp;
        ``first_stage_f``, the robust Wald F of the instrument, ``(pp / se)^2``).
    """
    des = _design(df, instrument, strata, covariates, needed=(outcome, endog))
    y = _column(df, outcome, des.mask)
    d = _column(df, endog, des.mask)
    z = des.t
    if partial_out:
        covs = slice(1, None)

        def resid(v: np.ndarray) -> np.ndarray:
            if des.x.shape[1] == 1:
                return _demean(v, des.g, des.counts)
            return _demean(v - des.cov @ des.within_coef(v, covs), des.g, des.counts)

        y_r, d_r, z_r = resid(y), resid(d), resid(z)
        res = IV2SLS(
            dependent=pd.Series(y_r, name=outcome),
            exog=None,
            endog=pd.Series(d_r, name=endog),
            instruments=pd.Series(z_r, name=instrument),
        ).fit(cov_type="robust")
        zh, dh = z_r, d_r
    else:
        exog = des.exog()
        res = IV2SLS(
            dependent=pd.Series(y, name=outcome),
            exog=pd.DataFrame(exog, columns=[f"x{j}" for j in range(exog.shape[1])]),
            endog=pd.Series(d, name=endog),
            instruments=pd.Series(z, name=instrument),
        ).fit(cov_type="robust")
        # the instrument and endog net of the exogenous regressors, by least squares
        zh = z - exog @ np.linalg.lstsq(exog, z, rcond=None)[0]
        dh = d - exog @ np.linalg.lstsq(exog, d, rcond=None)[0]
    b = float(res.params[endog])
    var_b = float(res.cov.loc[endog, endog])
    # influence terms (just identified): b - beta ~ sum_i zh_i u_i / (zh'dh), with zh, dh
    # net of the exogenous regressors and u the structural residuals
    phi = zh * res.resids.to_numpy() / float(zh @ dh)
    fs = float(zh @ dh) / float(zh @ zh)
    # first-stage influence terms: their sum of squares is the HC0 variance of ``fs``
    fs_phi = zh * (dh - fs * zh) / float(zh @ zh)
    fs_se = float(math.sqrt(fs_phi @ fs_phi))
    details = {
        "first_stage_pp": 100.0 * fs,
        "first_stage_se": 100.0 * fs_se,
        "first_stage_f": (fs / fs_se) ** 2 if fs_se > 0 else math.nan,
    }
    return _make_estimate(b, var_b, phi, y, z, "2sls", details)


# --------------------------------------------------------------------------- study table


def subgroup_masks(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Boolean masks of the subgroups of :data:`SUBGROUP_LABELS`, by label.

    ``college`` (0/1) splits ``no_college`` / ``college``; ``experience_years == 0``
    splits ``no_experience`` / ``experience``; ``developing`` (0/1) splits ``developed``
    / ``developing``. Works on any frame with those columns (the study dataset).
    """
    _require(df, ["college", "experience_years", "developing"])
    college = df["college"].to_numpy(dtype=float) == 1
    none = df["experience_years"].to_numpy(dtype=float) == 0
    developing = df["developing"].to_numpy(dtype=float) == 1
    return {
        "no_college": ~college,
        "college": college,
        "no_experience": none,
        "experience": ~none,
        "developed": ~developing,
        "developing": developing,
    }


def _row(
    rid: str, outcome: str, group: str, fn: Callable[..., Estimate], *args: object, **kwargs: object
) -> dict[str, object]:
    """One table row; an estimator failure gives a NaN row and a warning, not a crash."""
    try:
        est = fn(*args, **kwargs)
        vals: dict[str, object] = est.as_dict()
        vals["first_stage_f"] = float(est.details.get("first_stage_f", math.nan))
    except (ValueError, np.linalg.LinAlgError) as exc:
        warnings.warn(f"estimate {rid!r} failed: {exc}", RuntimeWarning, stacklevel=3)
        est_name = {itt_lpm: "lpm", itt_cox: "cox", late_2sls: "2sls"}.get(fn, "?")
        vals = dict.fromkeys(
            ("effect", "se", "control_mean", "rel", "rel_se", "first_stage_f"), math.nan
        )
        vals.update(n=0, estimator=est_name)
    return {"id": rid, "outcome": outcome, "group": group, **vals}


def study_estimates(
    df: pd.DataFrame,
    tertiles: pd.Series | np.ndarray | None = None,
    pop_df: pd.DataFrame | None = None,
    seed: int = 0,
    *,
    n_threads: int | None = 1,
) -> pd.DataFrame:
    """Every estimate one replication reports, one row each.

    Args:
        df: the matched study sample (columns ``treated``, ``stratum``, ``batch``, the
            covariates of :data:`DEFAULT_COVARIATES`, outcomes ``shared``, ``new_job``,
            ``new_job_in_scope``, durations ``new_job_weeks``,
            ``new_job_in_scope_weeks`` and ``followup_weeks``).
        tertiles: employability tertile per learner (low/medium/high, aligned with
            ``df.index``); computed by :func:`employability_tertiles` with ``seed`` if
            omitted.
        pop_df: optional population sample (``treated``, ``stratum``, ``any_view`` and
            the covariates) for the ``any_view`` row (LPM, within-strata fast path).
        seed: seed of the employability model.
        n_threads: BLAS/OpenMP threads while estimating (``threadpoolctl``); the default
            1 is as fast as 2 threads on these sizes and avoids the large slow-downs of
            oversubscribed OpenMP/OpenBLAS when other processes share the CPUs (e.g.
            parallel replications). ``None`` leaves the thread pools alone. Results do
            not depend on it.

    Returns:
        DataFrame with columns :data:`STUDY_COLUMNS` and rows in :data:`STUDY_IDS` order
        (``any_view`` only with ``pop_df``). Effects/SEs in percentage points, control
        means in percent, ``rel``/``rel_se`` as fractions, ``first_stage_f`` the 2SLS
        rows' first-stage F (NaN on the other rows). The ``new_job_<subgroup>`` rows
        (:func:`subgroup_masks`) are LPM ITTs within each subgroup.
    """
    with threadpool_limits(limits=n_threads):
        return _study_estimates(df, tertiles, pop_df, seed, n_threads)


def _study_estimates(
    df: pd.DataFrame,
    tertiles: pd.Series | np.ndarray | None,
    pop_df: pd.DataFrame | None,
    seed: int,
    n_threads: int | None,
) -> pd.DataFrame:
    if tertiles is None:
        tertiles = employability_tertiles(df, seed=seed, n_threads=n_threads)
    elif isinstance(tertiles, pd.Series):
        tertiles = tertiles.reindex(df.index)
    else:
        tertiles = pd.Series(np.asarray(tertiles), index=df.index)
    labels = tertiles.astype(object).to_numpy()
    rows = [
        _row("shared", "shared", "all", itt_lpm, df, "shared"),
        _row("new_job", "new_job", "all", itt_lpm, df, "new_job"),
        _row("new_job_in_scope", "new_job_in_scope", "all", itt_lpm, df, "new_job_in_scope"),
        _row("new_job_cox", "new_job", "all", itt_cox, df, "new_job_weeks"),
        _row(
            "new_job_in_scope_cox",
            "new_job_in_scope",
            "all",
            itt_cox,
            df,
            "new_job_in_scope_weeks",
        ),
    ]
    subsets = {lab: df.loc[labels == lab] for lab in TERTILE_LABELS}
    rows += [
        _row(f"new_job_{lab}", "new_job", lab, itt_lpm, subsets[lab], "new_job")
        for lab in TERTILE_LABELS
    ]
    masks = subgroup_masks(df)
    rows += [
        _row(f"new_job_{lab}", "new_job", lab, itt_lpm, df.loc[masks[lab]], "new_job")
        for lab in SUBGROUP_LABELS
    ]
    rows += [
        _row("late_new_job", "new_job", "all", late_2sls, df, "new_job"),
        _row("late_new_job_in_scope", "new_job_in_scope", "all", late_2sls, df, "new_job_in_scope"),
    ]
    rows += [
        _row(f"late_new_job_{lab}", "new_job", lab, late_2sls, subsets[lab], "new_job")
        for lab in TERTILE_LABELS
    ]
    if pop_df is not None:
        rows.append(
            _row("any_view", "any_view", "population", itt_lpm, pop_df, "any_view", method="within")
        )
    out = pd.DataFrame(rows, columns=list(STUDY_COLUMNS))
    out["n"] = out["n"].astype(int)
    return out
