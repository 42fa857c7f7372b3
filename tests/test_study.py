"""The study layer, replications, calibration machinery and the calibrated scenario."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import calibrate as cal
from sim import reproduce, scenarios
from sim.model import NO_WEEK
from sim.params import Scenario, load_scenario
from sim.runner import StoreError, TaskFailed
from sim.study import (
    OUTCOMES,
    population_dataset,
    run_study,
    run_twins,
    study_dataset,
    true_effects,
)
from sim.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent


def _small(n: int = 6_000, **overrides) -> Scenario:
    return Scenario().with_overrides({"population.n_learners": n, **overrides})


@pytest.fixture(scope="module")
def twins():
    scn = _small(8_000)
    return scn, run_twins(scn, 11)


def test_study_dataset_measures_as_the_study_did(twins):
    scn, tw = twins
    lf = tw.study.learners
    ds = study_dataset(lf, scn)
    assert len(ds) == int(lf["matched"].sum())
    for col in (
        *OUTCOMES,
        "treated",
        "stratum",
        "batch",
        "new_job_weeks",
        "followup_weeks",
        "any_view",
        "employed_baseline",
        "education",
    ):
        assert col in ds
    assert ds["batch"].max() < scn.calendar.matched_batches
    m = lf[lf["matched"]].reset_index(drop=True)
    assert (ds["new_job"] == (m["seen_job_week"] != NO_WEEK)).all()
    got = ds["new_job"] == 1
    assert (ds.loc[got, "new_job_weeks"] >= scn.calendar.new_job_min_weeks).all()
    assert (ds.loc[got, "new_job_weeks"] <= ds.loc[got, "followup_weeks"]).all()
    assert ds.loc[~got, "new_job_weeks"].isna().all()
    assert (ds["new_job_in_scope"] <= ds["new_job"]).all()
    assert (ds["followup_weeks"] == scn.calendar.n_weeks - m["grant_week"]).all()
    # the first batch is followed ~12 months, the last matched batch ~8
    assert ds["followup_weeks"].max() == 52
    assert 30 <= ds["followup_weeks"].min() <= 36
    pop = population_dataset(lf, scn)
    assert len(pop) == scn.population.n_learners
    assert set(pop["any_view"].unique()) <= {0, 1}


def test_twins_mirror_the_assignment_on_the_same_population(twins):
    _, tw = twins
    a, b = tw.study.learners, tw.mirror.learners
    assert (a["treated"].to_numpy() == ~b["treated"].to_numpy()).all()
    for col in ("skill", "domain", "grant_week", "matched", "degree"):
        assert (a[col] == b[col]).all()
    po = tw.potential_outcomes()
    # each learner is treated in exactly one world
    t = a["treated"].to_numpy()
    assert (po["shared_1"].to_numpy()[t] == a["shared"].to_numpy()[t]).all()
    assert (po["shared_0"].to_numpy()[t] == b["shared"].to_numpy()[t]).all()


def test_true_effects_are_exactly_zero_without_a_nudge_or_a_channel():
    scn = load_scenario("no_nudge").with_overrides({"population.n_learners": 5_000})
    te = true_effects(run_twins(scn, 3).potential_outcomes())
    assert all(v == 0 for v in te.values()), te
    scn = load_scenario("no_channels").with_overrides({"population.n_learners": 5_000})
    te = true_effects(run_twins(scn, 3).potential_outcomes())
    assert te["shared"] > 0
    assert te["new_job"] == 0 and te["new_job_in_scope"] == 0


def test_true_effect_on_sharing_is_positive_with_a_nudge(twins):
    _, tw = twins
    po = tw.potential_outcomes()
    assert true_effects(po)["shared"] > 0
    # sharing never falls for a learner because it was nudged
    assert (po["shared_1"] >= po["shared_0"]).mean() > 0.999


def test_replications_resume_from_the_store(tmp_path):
    scn = _small(3_000)
    first = reproduce.replicate(scn, 3, seed=5, workers=1, true_reps=1, out=tmp_path)
    assert [r.index for r in first] == [0, 1, 2]
    assert first[0].true and not first[1].true
    assert first[0].dataset is not None and first[1].dataset is None
    # what the store gives back is what the study gave
    direct = run_study(scn, np.random.SeedSequence(5).spawn(3)[0], twin=True, keep_dataset=True)
    pd.testing.assert_frame_equal(first[0].estimates, direct.estimates)
    assert pd.Series(first[0].true).equals(pd.Series(direct.true))  # NaN == NaN
    pd.testing.assert_frame_equal(first[0].curves, direct.curves)
    pd.testing.assert_frame_equal(first[0].dataset, direct.dataset)

    def boom(task):
        raise AssertionError(f"{task.task_id} ran again")

    again = reproduce.replicate(scn, 3, seed=5, workers=1, true_reps=1, out=tmp_path, task_fn=boom)
    for r1, r2 in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(r1.estimates, r2.estimates)
    # a replication file cut short by an interruption is run again, not trusted
    victim = tmp_path / "tasks" / "r0002.parquet"
    victim.write_bytes(victim.read_bytes()[:20])
    with pytest.raises(TaskFailed, match="r0002 ran again"):
        reproduce.replicate(scn, 3, seed=5, workers=1, true_reps=1, out=tmp_path, task_fn=boom)
    third = reproduce.replicate(scn, 3, seed=5, workers=1, true_reps=1, out=tmp_path)
    pd.testing.assert_frame_equal(first[2].estimates, third[2].estimates)
    # another seed is another study: refused, nothing touched
    with pytest.raises(StoreError, match="different reproduced study"):
        reproduce.replicate(scn, 3, seed=6, workers=1, out=tmp_path, task_fn=boom)


def test_replications_differ_and_table_has_every_row(tmp_path):
    scn = _small(4_000)
    reps = reproduce.replicate(scn, 3, seed=9, workers=1, true_reps=1)
    effects = [r.estimates.set_index("id").loc["shared", "effect"] for r in reps]
    assert len(set(effects)) == 3
    table = reproduce.summarize(reps)
    assert set(reproduce.ROW_IDS) <= set(table["id"])
    row = table.set_index("id").loc["new_job"]
    assert row["replications"] == 3 and row["true_replications"] == 1
    assert row["paper_itt_pp"] == TARGETS["new_job"].itt_pp
    assert math.isfinite(row["sim_sd"])
    checks = reproduce.checks(table)
    assert len(checks) == 6 and all(isinstance(v, bool) for v in checks.values())
    reproduce.write_outputs(tmp_path, table, reps, {"seed": 9, "scenario": "t"})
    for f in (
        "reproduce.json",
        "study.parquet",
        "cumulative_new_jobs.png",
        "tertile_effects.png",
        "report.md",
    ):
        assert (tmp_path / f).stat().st_size > 0
    study = pd.read_parquet(tmp_path / "study.parquet")
    assert {"treated", "stratum", "batch", "new_job", "new_job_weeks", "views"} <= set(study)


def test_sharing_block_hits_its_targets():
    scn = _small(150_000)
    fit = cal.fit_sharing(scn, [1], log=lambda _m: None)
    # a matched sample of ~6,000 makes the rates step in ~0.02 pp increments
    assert abs(fit["moments"]["shared.control"] - TARGETS["shared"].control_mean) < 0.1
    assert abs(fit["moments"]["shared.itt"] - TARGETS["shared"].itt_pp) < 0.15
    assert fit["sharing.nudge_strength"] > 0


def test_calibration_replays_evaluations_from_the_store(tmp_path):
    calls = []

    def fake(task):
        calls.append((task.overrides["market.vacancies_per_1000"], task.replication))
        v = task.overrides["market.vacancies_per_1000"] + task.replication
        ids = [m.removesuffix(".control") for m, _, _ in cal.moment_targets()[::2]]
        return pd.DataFrame({"id": ids, "control_mean": v, "true_effect": v, "n": 10})

    def calibration(seed: int = 1) -> cal.Calibration:
        return cal.Calibration(
            _small(2_000), seed, tmp_path, workers=1, log=lambda _m: None, n_seeds=2, task_fn=fake
        )

    pts = [{"market.vacancies_per_1000": 5.0}, {"market.vacancies_per_1000": 6.0}]
    first = calibration().evaluate_many(pts)
    assert sorted(calls) == [(5.0, 0), (5.0, 1), (6.0, 0), (6.0, 1)]  # each point, each seed
    assert first[1]["new_job.itt"] == 6.5  # moments are averaged over the seeds
    assert len(list((tmp_path / "tasks").glob("*.parquet"))) == 4  # one file per twin run
    c2 = calibration()
    assert c2.evaluate_many([*pts, pts[0]]) == [*first, first[0]]
    assert len(calls) == 4  # nothing ran again
    assert c2.ran == 0 and len(c2.evaluated) == 4
    r = c2.residuals(first[0])
    assert r.shape == (len(cal.moment_targets()),) and np.isfinite(r).all()
    with pytest.raises(StoreError, match="different calibration"):
        calibration(seed=2).evaluate_many(pts)


def test_logit_transform_round_trips():
    x = np.array([(p.lo + p.hi) / 3 + p.lo / 3 for p in cal.MARKET_PARAMS])
    z = cal._to_z(x, cal.MARKET_PARAMS)
    assert np.allclose(cal._from_z(z, cal.MARKET_PARAMS), x)


PAPER = scenarios.PACKAGED / "paper.toml"


def test_paper_scenario_is_the_calibration_output():
    text = PAPER.read_text()
    prov = tomllib.loads(text)["provenance"]
    scn = Scenario.from_toml(PAPER)
    assert scn.meta.name == "paper"
    assert prov["command"].startswith("credsim calibrate")
    # every fitted value is what the scenario holds (the file was not edited by hand)
    for key, value in prov["fitted"].items():
        section, name = key.split(".")
        assert getattr(getattr(scn, section), name) == pytest.approx(value, rel=1e-12)
    # the calibration starts from the schema's defaults (the `uncalibrated` scenario) and
    # moves exactly the fitted parameters
    base = load_scenario("uncalibrated")
    changed = {
        f"{s}.{k}"
        for s, sec in scn.to_dict().items()
        if s != "meta"
        for k, v in sec.items()
        if base.to_dict()[s][k] != v
    }
    assert changed == set(prov["fitted"]), changed ^ set(prov["fitted"])
    assert {"objective", "seed", "commit", "targets", "simulated"} <= set(prov)


def test_twins_from_a_spawned_seed_share_their_random_numbers():
    """Twin worlds given one SeedSequence object must get the same streams (a spawned
    replication seed is such an object; ``SeedSequence.spawn`` would advance it)."""
    seed = np.random.SeedSequence(99).spawn(3)[2]
    scn = load_scenario("no_nudge").with_overrides({"population.n_learners": 4_000})
    tw = run_twins(scn, seed)
    assert seed.n_children_spawned == 0
    te = true_effects(tw.potential_outcomes())
    assert all(v == 0 for v in te.values()), te
    cols = ["shared", "first_job_week", "seen_job_week", "views", "app_open_week"]
    pd.testing.assert_frame_equal(tw.study.learners[cols], tw.mirror.learners[cols])
