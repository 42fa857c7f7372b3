"""The market's flow moments (sim.flows) on hand-computed examples, and the logs a run
feeds them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import small_scenario

from sim.flows import BARS, bar_checks, kaplan_meier_median, market_flows
from sim.model import STATUSES

MONTH = 52 / 12


def test_kaplan_meier_median_by_hand():
    """Durations 2, 3, 3+, 5, 6+ (+: censored). S(2) = 4/5; at 3 four are at risk (the
    one censored at 3 still is) and one dies: S(3) = 4/5 * 3/4 = 0.6; at 5 two are at
    risk: S(5) = 0.3, the first time at or below one half."""
    median, surv = kaplan_meier_median(
        np.array([2, 3, 3, 5, 6]), np.array([True, True, False, True, False])
    )
    assert median == 5.0
    np.testing.assert_allclose(surv, [1, 1, 0.8, 0.6, 0.6, 0.3, 0.3, 0.3])
    # exactly one half counts; all censored never falls; nothing is undefined
    assert kaplan_meier_median(np.array([1, 2]), np.array([True, True]))[0] == 1.0
    assert kaplan_meier_median(np.array([4, 9]), np.array([False, False]))[0] == math.inf
    assert math.isnan(kaplan_meier_median(np.array([], np.int64), np.array([], bool))[0])


def _series() -> pd.DataFrame:
    """Four weeks of the study window and one burn-in week (ignored: huge numbers)."""
    weeks = [-1, 0, 1, 2, 3]
    df = pd.DataFrame(
        {
            "week": weeks,
            "n_employed": [10_000, 100, 101, 102, 103],
            "n_unemployed": [10_000, 50, 49, 48, 47],
            "n_marginal": [10_000, 50, 50, 50, 50],
            "hires_from_unemployed": [999, 5, 5, 5, 5],
            "hires_from_marginal": [999, 1, 1, 1, 1],
            "hires_job_to_job": [999, 2, 2, 2, 2],
            "separations": [999, 3, 3, 3, 3],
            "hires_learners": [999, 8, 8, 8, 8],
            "hires_background": [999, 10, 10, 10, 10],
            "vacancies_open": [999, 100, 100, 100, 100],
            "vacancies_expired": [999, 2, 2, 2, 2],
        }
    )
    df["vacancies_filled"] = df["hires_learners"] + df["hires_background"]
    return df


def _hires() -> pd.DataFrame:
    rows = [  # (week, learner, status)
        (-2, 2, "unemployed"),  # burn-in: not counted
        (0, 1, "unemployed"),
        (2, 1, "employed"),
        (1, 2, "marginal"),
        (0, 3, "unemployed"),
        (1, 3, "employed"),
        (3, 3, "employed"),
        (3, 4, "unemployed"),
    ]
    df = pd.DataFrame(rows, columns=["week", "learner", "status"])
    df["status"] = pd.Categorical(df["status"], STATUSES)
    return df


def test_market_flows_on_a_hand_built_run():
    scn = small_scenario(2_000)
    end = scn.calendar.n_weeks
    seps = pd.DataFrame({"week": [-1, 3], "learner": [9, 1]})
    f = market_flows(scn, _series(), _hires(), seps)

    def monthly(h):
        return 1 - (1 - h) ** MONTH

    # transition rates: events over people at risk at the start of each week, pooled
    assert f["ue_monthly"] == pytest.approx(monthly(20 / 194))
    assert f["ne_monthly"] == pytest.approx(monthly(4 / 200))
    assert f["ee_monthly"] == pytest.approx(monthly(8 / 406))
    assert f["eu_monthly"] == pytest.approx(monthly(12 / 406))
    # employment rises 0.5 pp a week for 3 weeks
    assert f["employment_drift_pp"] == pytest.approx(1.5)
    assert f["abs_employment_drift_pp"] == pytest.approx(1.5)
    assert f["employment_rate"] == pytest.approx(np.mean([0.5, 0.505, 0.51, 0.515]))
    # hired in the window: learners 1 (2 hires), 2 (1), 3 (3), 4 (1)
    assert f["hired_2plus_share"] == 0.5
    assert f["hired_5plus_share"] == 0.0
    assert f["median_gap_weeks"] == 2.0  # gaps 2 (learner 1), 1 and 2 (learner 3)
    assert f["job_to_job_share_of_hires"] == pytest.approx(3 / 7)
    # job spells: 1 [0, 2), [2, 3) separated; 2 [1, end); 3 [0, 1), [1, 3), [3, end);
    # 4 [3, end): durations 2, 1, 1, 2 ended and three censored beyond a year, so
    # S(1) = 5/7, S(2) = 5/7 * 3/5 = 3/7
    assert f["median_tenure_weeks"] == 2.0
    assert end - 3 >= 49 and f["tenure_survival_52w"] == pytest.approx(3 / 7)
    # vacancies: 40 of 72 filled from the background; open 100 over 20 exits a week
    assert f["background_fill_share"] == pytest.approx(40 / 72)
    assert f["vacancy_duration_weeks"] == pytest.approx(5.0)


def test_bar_checks_compare_each_bar():
    good = {
        "hired_2plus_share": 0.1,
        "hired_5plus_share": 0.0,
        "median_gap_weeks": 20.0,
        "background_fill_share": 0.9,
        "abs_employment_drift_pp": 0.2,
    }
    assert set(good) == set(BARS)
    assert all(bar_checks(good).values())
    bad = {**good, "hired_2plus_share": 0.2, "median_gap_weeks": 12.0}
    checks = bar_checks(bad)
    assert not checks["hired_2plus_share"] and not checks["median_gap_weeks"]
    assert checks["background_fill_share"]
    assert not bar_checks({})["background_fill_share"]  # a missing moment fails its bar


def test_a_runs_logs_agree_with_its_series(small_run):
    """The hires and separations logs that market_flows reads add up to the series."""
    model = small_run.model
    s, hires, seps = model.series(), model.hires_log(), model.separations_log()
    weeks = s["week"]
    np.testing.assert_array_equal(
        seps.groupby("week").size().reindex(weeks, fill_value=0), s["separations"]
    )
    for status, col in zip(
        STATUSES, ("hires_job_to_job", "hires_from_unemployed", "hires_from_marginal"), strict=True
    ):
        got = hires[hires["status"] == status].groupby("week").size()
        np.testing.assert_array_equal(got.reindex(weeks, fill_value=0), s[col], err_msg=col)
    flows = model.flows()
    assert set(BARS) <= set(flows)
    for key in ("ue_monthly", "ee_monthly", "eu_monthly", "background_fill_share"):
        assert 0 < flows[key] < 1, key
