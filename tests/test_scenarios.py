"""Every packaged scenario file (``sim/scenarios/``) loads, is complete, and runs."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from conftest import SCENARIO_DIR

from sim.model import CredentialMarket
from sim.params import Scenario, load_scenario

FILES = sorted(SCENARIO_DIR.glob("*.toml"))
IDS = [p.stem for p in FILES]
SCHEMA_KEYS = {f"{s}.{k}" for s, body in Scenario().to_dict().items() for k in body}


def test_the_scenario_folder_has_the_study_scenarios():
    assert {"baseline", "no_nudge", "no_channels"} <= set(IDS)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_scenario_file_loads_and_is_complete(path):
    scn = Scenario.from_toml(path)
    assert scn.meta.name == path.stem
    assert load_scenario(path.stem, scenarios_dir=SCENARIO_DIR) == scn
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.pop("provenance", None)
    written = {f"{s}.{k}" for s, body in data.items() for k in body}
    assert written == SCHEMA_KEYS, "every parameter is written out explicitly"
    assert Scenario.from_dict(tomllib.loads(scn.to_toml())) == scn


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_scenario_runs_a_few_weeks(path):
    scn = Scenario.from_toml(path).with_overrides({"population.n_learners": 3_000})
    model = CredentialMarket(scn, rng=7, agents=False)
    burn_in = scn.calendar.burn_in_weeks
    for _ in range(burn_in + 6):
        model.step()
    assert model.week == 6
    s = model.series()
    assert len(s) == burn_in + 6
    after = s[s["week"] >= 0].drop(columns=["date"])
    values = after.to_numpy(dtype=float)
    assert np.isfinite(values).all(), after.columns[~np.isfinite(values).all(axis=0)].tolist()
    assert (after["granted"] > 0).all()
    df = model.learners_frame()
    numeric = df.select_dtypes(include="number").to_numpy(dtype=float)
    assert np.isfinite(numeric).all()


def test_no_nudge_and_no_channels_say_what_they_mean():
    no_nudge = load_scenario("no_nudge", scenarios_dir=SCENARIO_DIR)
    assert no_nudge.sharing.nudge_strength == 0
    assert no_nudge.sharing.two_click_multiplier == 1
    no_channels = load_scenario("no_channels", scenarios_dir=SCENARIO_DIR)
    assert no_channels.signal.credibility == 0 or not no_channels.signal.enabled
    assert not no_channels.visibility.enabled
    # everything else is the baseline's
    base = load_scenario("baseline", scenarios_dir=SCENARIO_DIR).to_dict()
    for scn, changed in (
        (no_nudge, {"sharing.nudge_strength", "sharing.two_click_multiplier"}),
        (no_channels, {"signal.credibility", "visibility.enabled"}),
    ):
        d = scn.to_dict()
        for section, body in d.items():
            if section == "meta":
                continue
            for k, v in body.items():
                key = f"{section}.{k}"
                if key not in changed and key != "population.n_learners":
                    assert v == base[section][k], (scn.meta.name, key)
