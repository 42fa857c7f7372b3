"""The model as Mesa users know it: agent sets, a datacollector, batch_run, a stopping
step, and the EMA Workbench's view of one study as a function of its parameters."""

from __future__ import annotations

import multiprocessing

import mesa
import numpy as np
import pandas as pd
import pytest
from conftest import SEED, small_scenario
from mesa.agentset import AbstractAgentSet

from sim.agents import Employer, Learner
from sim.model import SERIES_COLUMNS, CredentialMarket
from sim.params import Scenario
from sim.study import study_outcomes


@pytest.fixture
def start_method():
    """mesa.batch_run forces the 'spawn' start method for the whole process; put the
    previous one back so later tests' process pools are unaffected."""
    before = multiprocessing.get_start_method(allow_none=True)
    yield
    multiprocessing.set_start_method(before, force=True)


def test_the_datacollector_is_the_weekly_series(small_run):
    model = small_run.model
    df = model.datacollector.get_model_vars_dataframe()
    assert list(df.columns) == list(SERIES_COLUMNS)
    pd.testing.assert_frame_equal(
        df.reset_index(drop=True), small_run.result.series, check_dtype=False
    )


def test_step_stops_at_the_collection_date():
    model = CredentialMarket(small_scenario(2_000), rng=SEED)
    model.run()
    assert not model.running and model.week == model.params.calendar.n_weeks
    before = model.series()
    model.step()  # a no-op now
    assert model.week == model.params.calendar.n_weeks
    pd.testing.assert_frame_equal(model.series(), before)


def test_agent_sets_hold_every_learner_and_employer():
    model = CredentialMarket(small_scenario(2_000), rng=SEED)
    assert isinstance(model.learners, AbstractAgentSet)
    assert len(model.learners) == 2_000
    assert len(model.employers) == len(model.market.employers)
    shared = model.learners.select(lambda a: a.shared)
    assert len(shared) == int(model.state.shared.sum())
    assert {type(a) for a in model.learners} == {Learner}
    assert {type(a) for a in model.employers} == {Employer}


def test_dotted_keyword_overrides_set_scenario_values():
    model = CredentialMarket(small_scenario(2_000), rng=1, **{"signal.credibility": 0.25})
    assert model.params.signal.credibility == 0.25
    assert model.params.population.n_learners == 2_000


def test_mesa_batch_run_over_scenario_parameters(start_method):
    base = small_scenario(2_000)
    rows = mesa.batch_run(
        CredentialMarket,
        parameters={"scenario": [base], "signal.credibility": [0.0, 1.0]},
        rng=[SEED],
        max_steps=500,
        number_processes=1,
        display_progress=False,
    )
    df = pd.DataFrame(rows)
    assert sorted(df["signal.credibility"]) == [0.0, 1.0]
    assert (df["Step"] == base.calendar.burn_in_weeks + base.calendar.n_weeks).all()
    direct = CredentialMarket(base, rng=SEED, **{"signal.credibility": 1.0}).run().series
    got = df[df["signal.credibility"] == 1.0].iloc[0]
    for col in ("employed", "hires_learners", "shared_treated"):
        assert got[col] == pytest.approx(direct[col].iloc[-1])


def test_study_outcomes_is_a_function_of_parameters():
    scn = Scenario.from_dict({"population": {"n_learners": 20_000}})
    out = study_outcomes(scn, seed=3, **{"signal.credibility": 0.5})
    assert {"new_job.effect", "new_job.se", "new_job.true_effect", "shared.control_mean"} <= set(
        out
    )
    assert all(isinstance(v, float) for v in out.values())
    assert np.isfinite(out["shared.effect"]) and out["shared.se"] > 0
    again = study_outcomes(scn, seed=3, **{"signal.credibility": 0.5})
    assert pd.Series(again).equals(pd.Series(out))  # NaN (the LATE's truth) == NaN
