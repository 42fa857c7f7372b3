"""The packaged scenario files (``sim/scenarios/``): they load, resolve to complete
scenarios, hold calibrated numbers only in ``paper.toml``, and run."""

from __future__ import annotations

import importlib.util
import tomllib

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SCENARIO_DIR

from sim import calibrate, scenarios
from sim.model import CredentialMarket
from sim.params import BASE_KEY, Scenario, field_info, load_scenario

FILES = sorted(SCENARIO_DIR.glob("*.toml"))
IDS = [p.stem for p in FILES]
SCHEMA_KEYS = {f"{s}.{k}" for s, body in Scenario().to_dict().items() for k in body}
#: Study-design keys (issue 11) that a paper.toml calibrated before them may leave out.
STUDY_KEYS_AFTER_CALIBRATION = {"study.targeting", "study.mirror"}
#: The parameters `credsim calibrate` fits.
FREE = {p.key: p for p in (*calibrate.SHARING_PARAMS, *calibrate.MARKET_PARAMS)}


def _written(path) -> dict[str, object]:
    """The dotted keys a scenario file itself writes (not its base's), with values."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.pop("provenance", None)
    return {f"{s}.{k}": v for s, body in data.items() for k, v in body.items()}


def _make_scenarios():
    spec = importlib.util.spec_from_file_location(
        "make_scenarios", ROOT / "experiments" / "make_scenarios.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scenario_folder_has_the_study_scenarios():
    assert {"paper", "baseline", "small", "no_nudge", "no_channels", "uncalibrated"} <= set(IDS)
    assert set(scenarios.names()) >= set(IDS)


@pytest.mark.parametrize("path", FILES)
def test_scenario_file_loads_and_resolves_to_a_complete_scenario(path):
    scn = Scenario.from_toml(path)
    assert scn.meta.name == path.stem
    assert load_scenario(path.stem) == scn == scenarios.load(path.stem)
    resolved = tomllib.loads(scn.to_toml())
    assert {f"{s}.{k}" for s, body in resolved.items() for k in body} == SCHEMA_KEYS
    assert Scenario.from_dict(resolved) == scn


@pytest.mark.parametrize("path", FILES)
def test_calibrated_numbers_are_written_in_paper_toml_only(path):
    written = _written(path)
    if path.stem == "paper":  # the calibration's output: every key explicit
        # except study-design keys added to the schema after the committed calibration:
        # they take their defaults until the next `credsim calibrate` writes them
        missing = SCHEMA_KEYS - set(written)
        assert missing <= STUDY_KEYS_AFTER_CALIBRATION, missing
        assert set(written) <= SCHEMA_KEYS
        return
    assert set(written) - {f"meta.{BASE_KEY}"} <= SCHEMA_KEYS
    paper = scenarios.load("paper")
    for key in set(written) & set(FREE):  # only a deliberate change (no_channels: 0)
        section, _, name = key.partition(".")
        assert written[key] != getattr(getattr(paper, section), name), (path.name, key)
    expected_base = None if path.stem == "uncalibrated" else "paper"
    assert written.get(f"meta.{BASE_KEY}") == expected_base


def test_the_hand_made_files_are_what_make_scenarios_writes():
    make = _make_scenarios()
    assert set(make.SCENARIOS) == set(IDS) - {"paper"}
    for name in make.SCENARIOS:
        text = (SCENARIO_DIR / f"{name}.toml").read_text(encoding="utf-8")
        assert text == make.scenario_text(name), f"rerun experiments/make_scenarios.py ({name})"


def _calibrated_keys() -> set[str]:
    return {
        f"{s}.{k}"
        for s, body in Scenario().to_dict().items()
        for k in body
        if field_info(f"{s}.{k}").get("calibrated")
    }


def test_schema_defaults_of_calibrated_parameters_are_round_starting_values():
    """The schema holds the calibration's starting values; paper.toml the fitted ones."""
    keys = _calibrated_keys()
    assert keys
    for key in keys:
        info = field_info(key)
        start = info["default"]
        assert float(f"{start:.2g}") == start, f"{key} = {start} is not a round start value"
        assert "paper.toml" in info["doc"], key
    assert scenarios.load("uncalibrated").model_copy(update={"meta": Scenario().meta}) == (
        Scenario()
    )


def test_the_calibration_fits_the_calibrated_parameters_and_paper_toml_holds_the_fits():
    """`credsim calibrate` fits exactly the fields the schema marks calibrated, starting
    inside its search ranges, and paper.toml holds fitted values, not the starts."""
    assert _calibrated_keys() == set(FREE)
    paper = scenarios.load("paper")
    for key, p in FREE.items():
        start = field_info(key)["default"]
        assert p.lo <= start <= p.hi, key
        section, _, name = key.partition(".")
        assert getattr(getattr(paper, section), name) != start, key


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_scenario_runs_a_few_weeks(path):
    scn = Scenario.from_toml(path).with_overrides({"population.n_learners": 3_000})
    model = CredentialMarket(scn, rng=7)
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
    numeric = df.select_dtypes(include="number")
    nullable = [c for c in numeric if isinstance(df[c].dtype, pd.api.extensions.ExtensionDtype)]
    assert np.isfinite(numeric.drop(columns=nullable).to_numpy(dtype=float)).all()
    weeks = [c for c in numeric if c.endswith("_week") and c != "grant_week"]
    assert set(weeks) <= set(nullable)  # <NA>: never, not a sentinel


def test_no_nudge_and_no_channels_say_what_they_mean():
    no_nudge = load_scenario("no_nudge")
    assert no_nudge.sharing.nudge_strength == 0
    assert no_nudge.sharing.two_click_multiplier == 1
    no_channels = load_scenario("no_channels")
    assert not no_channels.signal.enabled  # not even the news of completion
    assert not no_channels.visibility.enabled
    # everything else is the calibrated study's (baseline: paper under another name)
    paper = load_scenario("paper").to_dict()
    base = load_scenario("baseline").to_dict()
    assert {s: b for s, b in base.items() if s != "meta"} == {
        s: b for s, b in paper.items() if s != "meta"
    }
    for scn, changed in (
        (no_nudge, {"sharing.nudge_strength", "sharing.two_click_multiplier"}),
        (no_channels, {"signal.enabled", "visibility.enabled"}),
        (load_scenario("small"), set()),
    ):
        d = scn.to_dict()
        for section, body in d.items():
            if section == "meta":
                continue
            for k, v in body.items():
                key = f"{section}.{k}"
                if key not in changed and key != "population.n_learners":
                    assert v == paper[section][k], (scn.meta.name, key)


# ---- finding a scenario: sim.scenarios.find ------------------------------------------------


def test_a_bare_name_is_packaged_unless_the_current_folder_has_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert scenarios.find("small") == SCENARIO_DIR / "small.toml"
    assert scenarios.find("small.toml") == SCENARIO_DIR / "small.toml"
    own = tmp_path / "scenarios" / "small.toml"
    own.parent.mkdir()
    own.write_text('[meta]\nbase = "paper"\nname = "small"\n[population]\nn_learners = 2500\n')
    assert scenarios.find("small").resolve() == own.resolve()
    assert scenarios.load("small").population.n_learners == 2500  # its base: packaged paper
    (tmp_path / "scenarios" / "mine.toml").write_text("")
    assert "mine" in scenarios.names() and "paper" in scenarios.names()


def test_a_path_is_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.toml").write_text("[population]\nn_learners = 2222\n")
    assert scenarios.load("sub/x.toml").population.n_learners == 2222
    assert scenarios.find("x.toml", folder=tmp_path / "sub") == tmp_path / "sub" / "x.toml"
    with pytest.raises(scenarios.ScenarioError, match=r"no such scenario file 'sub/y\.toml'"):
        scenarios.find("sub/y.toml")


def test_an_unknown_name_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(scenarios.ScenarioError) as err:
        scenarios.find("smal")
    msg = str(err.value)
    assert "'smal'" in msg and str(SCENARIO_DIR / "smal.toml") in msg
    assert "known scenarios: " in msg
    for name in IDS:
        assert name in msg
