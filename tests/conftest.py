"""Shared fixtures: small scenarios and one small model run reused by many tests.

Runs here are small (a few thousand learners) so that the default test run stays fast;
the model is array-based, so a 5,000-learner year takes well under a second.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim import scenarios
from sim.model import CredentialMarket, RunResult
from sim.params import Scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = scenarios.PACKAGED  # the scenarios that ship with the package
SEED = 20240917


def small_scenario(
    n_learners: int = 5_000,
    overrides: Mapping[str, Any] | None = None,
    base: Scenario | None = None,
) -> Scenario:
    """``base`` (default: all defaults) with ``n_learners`` learners and ``overrides``."""
    base = base if base is not None else Scenario()
    return base.with_overrides({"population.n_learners": n_learners, **(overrides or {})})


def scenario_file(name: str) -> Scenario:
    """A packaged scenario by its stem, e.g. ``"no_nudge"``."""
    return Scenario.from_toml(SCENARIO_DIR / f"{name}.toml")


def global_random_state() -> tuple:
    """The state of the global ``random`` and legacy ``np.random`` generators."""
    return random.getstate(), np.random.get_state()  # noqa: NPY002 (that is the point)


def assert_global_random_state_is(before: tuple) -> None:
    """Fail if anything drew from or reseeded the global generators since ``before``."""
    py_before, np_before = before
    py_after, np_after = global_random_state()
    assert py_after == py_before, "the global `random` state changed"
    assert np_after[0] == np_before[0]
    np.testing.assert_array_equal(np_after[1], np_before[1], err_msg="np.random changed")
    assert np_after[2:] == np_before[2:], "the global `np.random` state changed"


@dataclass
class SmallRun:
    """One finished run: the model (final state) and its result object."""

    model: CredentialMarket
    result: RunResult


@dataclass
class WeekRecord:
    """What one week looked like, recorded around ``model.step()``."""

    week: int
    open_ids_before: np.ndarray  # ids of vacancies open when the week started
    open_ids_after: np.ndarray  # ids open when it ended
    shared: np.ndarray  # state.shared after the step
    share_week: np.ndarray  # state.share_week after the step
    employed: np.ndarray  # state.employed after the step


@dataclass
class Trace:
    model: CredentialMarket
    weeks: list[WeekRecord] = field(default_factory=list)


@pytest.fixture(scope="session")
def small_run() -> SmallRun:
    """The defaults with 5,000 learners, run to the collection date (with agent views)."""
    model = CredentialMarket(small_scenario(5_000), rng=SEED)
    result = model.run()
    return SmallRun(model, result)


@pytest.fixture(scope="session")
def weekly_trace() -> Trace:
    """A 5,000-learner run stepped week by week, with the state copied after each week."""
    model = CredentialMarket(small_scenario(5_000), rng=SEED + 1)
    trace = Trace(model)
    while model.running:
        week = model.week
        before = model.vacancies.id.copy()
        model.step()
        st = model.state
        trace.weeks.append(
            WeekRecord(
                week=week,
                open_ids_before=before,
                open_ids_after=model.vacancies.id.copy(),
                shared=st.shared.copy(),
                share_week=st.share_week.copy(),
                employed=st.employed.copy(),
            )
        )
    return trace
