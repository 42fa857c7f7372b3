"""sim.population: helpers that replace numpy routines for speed (same results), and the
baseline steady state of the market (attachment, employment, the job ladder)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import small_scenario
from scipy.stats import kstest

from sim.params import ScenarioError
from sim.population import (
    _categorical,
    _lexsort2,
    draw_learners,
    ladder_kappa,
    separation_monthly,
    steady_state_start,
)
from sim.targets import FLOW_TARGETS


@pytest.mark.parametrize("p", [[0.5, 0.5], [0.1, 0.0, 0.6, 0.3, 0.0], [1.0], [0.2, 0.8, 0.0]])
def test_categorical_is_the_inverse_cdf_by_searchsorted(p):
    p = np.array(p)
    got = _categorical(np.random.default_rng(1), p, 20_000)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    u = np.random.default_rng(1).random(20_000)
    np.testing.assert_array_equal(got, np.searchsorted(cdf, u, side="right").astype(np.int8))
    assert got.dtype == np.int8


@pytest.mark.parametrize("groups", ["small", "negative", "wide"])
@pytest.mark.parametrize("ties", [False, True])
def test_lexsort2_is_lexsort(groups, ties):
    rng = np.random.default_rng(2)
    n = 10_000
    key = rng.random(n)
    if ties:  # repeated keys, within and across groups: broken by position
        key = np.round(key, 2)
    g = {
        "small": rng.integers(0, 900, n),
        "negative": rng.integers(-5, 5, n),
        "wide": rng.integers(0, 1 << 40, n) // (1 << 30),
    }[groups]
    np.testing.assert_array_equal(_lexsort2(key, g), np.lexsort((key, g)))


def test_lexsort2_handles_empty_and_single():
    for n in (0, 1):
        np.testing.assert_array_equal(
            _lexsort2(np.zeros(n), np.zeros(n, np.int64)), np.lexsort((np.zeros(n), np.zeros(n)))
        )


# ---- the market's steady state at baseline -------------------------------------------------


def test_ladder_kappa_solves_the_job_to_job_equation():
    d = 0.025
    # by hand: k = 1 gives ee = d (2 ln 2 - 1)
    assert ladder_kappa(d * (2 * math.log(2) - 1), d) == pytest.approx(1.0, rel=1e-6)
    for ee in (0.005, 0.025, 0.1):
        k = ladder_kappa(ee, d)
        assert k > 0
        assert d * ((1 + k) * math.log1p(k) / k - 1) == pytest.approx(ee, rel=1e-6)
    assert ladder_kappa(0.05, d) > ladder_kappa(0.025, d)  # more moves, more offers
    assert ladder_kappa(0.0, d) == 0.0


def _steady(employed: float, attached: float, n: int = 60_000):
    scn = small_scenario(
        n, {"population.employed_share": employed, "market.attached_share": attached}
    )
    return scn, steady_state_start(scn, np.zeros(n), np.random.default_rng(4))


def _attached_employment(scn) -> float:
    d = separation_monthly(scn)
    f = FLOW_TARGETS["flow.ue_monthly"].value
    return f / (f + d)


def test_the_baseline_is_the_steady_state_of_the_targeted_flows():
    """Attached learners are employed at f / (f + d), the others at the rate that makes
    the population's employment employed_share; jobs sit on the ladder's steady-state
    distribution G(q) = q / (1 + k (1 - q))."""
    scn, (attached, employed0, match0) = _steady(0.45, 0.4)
    n = len(attached)
    e_att = _attached_employment(scn)
    for got, p, k in (
        (attached.mean(), 0.4, n),
        (employed0[attached].mean(), e_att, attached.sum()),
        (employed0.mean(), 0.45, n),
    ):
        assert abs(got - p) < 4 * np.sqrt(p * (1 - p) / k), (got, p)
    kappa = ladder_kappa(FLOW_TARGETS["flow.ee_monthly"].value, separation_monthly(scn))
    assert ((match0 > 0) & (match0 < 1)).all()
    assert kstest(match0, lambda q: q / (1 + kappa * (1 - q))).pvalue > 1e-3


@pytest.mark.parametrize(
    ("employed", "attached"),
    [(0.3, 0.5), (0.95, 0.6), (0.45, 1.0)],
    ids=["others below 0", "others above 1", "nobody left to be the others"],
)
def test_inconsistent_shares_are_a_scenario_error_with_the_allowed_range(employed, attached):
    scn = small_scenario(
        2_000, {"population.employed_share": employed, "market.attached_share": attached}
    )
    with pytest.raises(ScenarioError) as err:
        draw_learners(scn, np.random.default_rng(0))
    msg = str(err.value)
    assert msg.startswith("key 'market.attached_share'"), msg
    found = re.search(r"allowed range for market\.attached_share \(0, ([0-9.]+)\]", msg)
    assert found, msg
    hi = float(found.group(1))
    assert 0 < hi < attached
    # the range is the right one: just inside it the steady state exists (and the
    # population's employment is employed_share), just outside it does not
    inside = scn.with_overrides({"market.attached_share": hi - 1e-3})
    _, employed0, _ = steady_state_start(inside, np.zeros(40_000), np.random.default_rng(1))
    assert abs(employed0.mean() - employed) < 0.01
    if hi + 1e-3 <= 1:
        with pytest.raises(ScenarioError, match=r"market\.attached_share"):
            steady_state_start(
                scn.with_overrides({"market.attached_share": hi + 1e-3}),
                np.zeros(10),
                np.random.default_rng(1),
            )
