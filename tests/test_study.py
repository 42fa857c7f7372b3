"""The study layer, replications, calibration machinery and the calibrated scenario."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import calibrate as cal
from sim import estimate, reproduce, scenarios, study
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
    true_late,
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


def test_true_late_is_the_ratio_of_true_effects():
    # eight learners' potential outcomes: 1-3 are compliers (share only if nudged), the
    # others share either way or never; the nudge moves new jobs only through sharing
    po = pd.DataFrame(
        {
            "shared_1": [1, 1, 1, 1, 0, 0, 1, 0],
            "shared_0": [0, 0, 0, 1, 0, 0, 1, 0],
            "new_job_1": [1, 0, 1, 1, 0, 1, 0, 0],
            "new_job_0": [0, 0, 1, 1, 0, 1, 0, 0],
        }
    )
    te = true_effects(po)
    assert te == {"shared": 100 * 3 / 8, "new_job": 100 * 1 / 8}
    assert true_late(po, "new_job") == pytest.approx(100 * te["new_job"] / te["shared"])
    # = the compliers' effect here: one in three compliers gets a job because it shared
    assert true_late(po, "new_job") == pytest.approx(100 / 3)
    mask = np.array([True, False, True, True, True, False, False, False])
    assert true_late(po, "new_job", mask) == pytest.approx(100 * (1 / 4) / (2 / 4))
    # no one's sharing moves, or no one at all: undefined
    assert math.isnan(true_late(po, "new_job", np.arange(8) >= 3))
    assert math.isnan(true_late(po, "new_job", np.zeros(8, dtype=bool)))


def test_truth_has_true_lates_and_subgroups(twins):
    scn, tw = twins
    po = tw.potential_outcomes()
    ds = study_dataset(tw.study.learners, scn)
    tert = pd.Series(np.array(estimate.TERTILE_LABELS)[np.arange(len(ds)) % 3])
    truth = study._truth(po, ds, tert, single=False).set_index("id")
    assert set(reproduce.SUBGROUP_IDS) | set(reproduce.LATE_IDS) <= set(truth.index)
    te = truth["true_effect"]
    assert te["late_new_job"] == pytest.approx(100 * te["new_job"] / te["shared"], rel=1e-12)
    assert te["late_new_job_in_scope"] == pytest.approx(
        100 * te["new_job_in_scope"] / te["shared"], rel=1e-12
    )
    matched = po[po["matched"].to_numpy()].reset_index(drop=True)
    for g in estimate.TERTILE_LABELS:
        sub = true_effects(matched, (tert == g).to_numpy())
        late = truth.loc[f"late_new_job_{g}"]
        assert late["true_effect"] == pytest.approx(100 * sub["new_job"] / sub["shared"])
        assert (late["outcome"], late["group"], late["n"]) == ("new_job", g, (tert == g).sum())
    masks = estimate.subgroup_masks(ds)
    for g in estimate.SUBGROUP_LABELS:
        row = truth.loc[f"new_job_{g}"]
        assert row["n"] == masks[g].sum() and row["group"] == g
        assert row["true_effect"] == pytest.approx(true_effects(matched, masks[g])["new_job"])
        y0 = matched.loc[masks[g], "new_job_0"]
        assert row["control_mean"] == pytest.approx(100 * y0.mean())


def test_reproduce_ids_agree_with_the_estimators():
    assert reproduce.SUBGROUP_IDS == tuple(f"new_job_{g}" for g in estimate.SUBGROUP_LABELS)
    assert reproduce.WEAK_IV_F == estimate.WEAK_IV_F
    ids = (*reproduce.ROW_IDS, *reproduce.SUBGROUP_IDS, *reproduce.COX_IDS, *reproduce.LATE_IDS)
    assert set(ids) == set(estimate.STUDY_IDS) == set(reproduce.ROLES)


def test_t_interval_has_r_minus_1_degrees_of_freedom():
    from scipy import stats

    vals = [1.0, 2.0, 4.0, math.nan]  # NaN (a failed estimate) is left out: R = 3
    mean, lo, hi = reproduce.t_interval(vals)
    half = stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(7 / 3)
    assert (lo, hi) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert stats.t.ppf(0.975, 2) > 4  # not 1.96, not R = 3 df
    assert all(math.isnan(v) for v in reproduce.t_interval([3.0])[1:])


def _fake_replications(reps: int = 3) -> list[reproduce.Replication]:
    """Replications with known numbers: estimate 1 + i pp, SE 0.5, control 20%, true
    effect 0.5 + i, first-stage F 20 + i (overall LATEs) or 5 + i (tertile LATEs)."""
    ids = list(estimate.STUDY_IDS)
    out = []
    for i in range(reps):
        late = [x.startswith("late_") for x in ids]
        est = pd.DataFrame(
            {
                "id": ids,
                "outcome": "new_job",
                "group": "all",
                "estimator": ["2sls" if x else "lpm" for x in late],
                "effect": 1.0 + i,
                "se": 0.5,
                "n": 1000,
                "control_mean": 20.0,
                "rel": (1.0 + i) / 20,
                "rel_se": 0.03,
                "first_stage_f": [
                    (20.0 if x in ("late_new_job", "late_new_job_in_scope") else 5.0) + i
                    if x.startswith("late_")
                    else math.nan
                    for x in ids
                ],
            }
        )
        truth_ids = [x for x in ids if not x.endswith("_cox")]
        truth = pd.DataFrame(
            {"id": truth_ids, "group": "all", "n": 1000, "control_mean": 25.0}
        ).assign(true_effect=0.5 + i)
        true = dict(zip(truth["id"], truth["true_effect"], strict=True))
        out.append(reproduce.Replication(i, [i], est, true, pd.DataFrame(), None, truth))
    return out


def test_reproduce_table_reports_inference_truth_and_predictions():
    from scipy import stats

    table = reproduce.summarize(_fake_replications())
    t = table.set_index("id")
    for col in (
        "role",
        "itt_pp",
        "rel",
        "itt_se",
        "sim_sd",
        "mean_lo",
        "mean_hi",
        "true_itt_pp",
        "true_sd",
        "true_rel",
        "first_stage_f",
        "weak_iv",
        "weak_iv_reps",
        "paper_itt_pp",
        "paper_lo",
        "paper_hi",
        "paper_rel",
    ):
        assert col in t.columns, col
    assert list(t.index) == [
        *reproduce.ROW_IDS,
        *reproduce.SUBGROUP_IDS,
        *reproduce.COX_IDS,
        *reproduce.LATE_IDS,
    ]
    r = t.loc["new_job"]
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # estimates 1, 2, 3: SD 1
    assert (r["itt_pp"], r["itt_se"], r["sim_sd"]) == pytest.approx((2.0, 0.5, 1.0))
    assert (r["mean_lo"], r["mean_hi"]) == pytest.approx((2 - half, 2 + half))
    assert (r["true_itt_pp"], r["true_sd"], r["true_rel"]) == pytest.approx((1.5, 1.0, 0.06))
    assert r["paper_lo"] == pytest.approx(TARGETS["new_job"].ci95()[0])
    assert t.loc["new_job", "role"] == "fitted target"
    assert (t.loc[list(reproduce.PREDICTED_IDS), "role"] == "prediction").all()
    sub = t.loc[list(reproduce.SUBGROUP_IDS)]
    assert sub["role"].str.startswith("prediction").all()
    assert sub["paper_itt_pp"].isna().all() and sub["true_itt_pp"].notna().all()
    # the LATE: first-stage F, flagged when weak, beside the true LATE
    assert t.loc["late_new_job", "first_stage_f"] == pytest.approx(21.0)
    assert t.loc["late_new_job", "weak_iv"] is False
    assert t.loc["late_new_job_low", "weak_iv"] is True
    assert t.loc["late_new_job_low", "weak_iv_reps"] == 3
    assert t.loc["late_new_job", "true_itt_pp"] == pytest.approx(1.5)
    assert pd.isna(t.loc["new_job", "first_stage_f"])

    itt, late = reproduce.text_tables(table)
    labels = [label for label, _ in itt.sections]
    assert labels == [
        "fitted targets",
        "predicted: tertiles",
        "predicted: subgroups",
        "fitted targets, Cox",
    ]
    by_id = {row[0]: row for row in itt.rows}
    assert set(reproduce.SUBGROUP_IDS) <= set(by_id)
    assert by_id["new_job_college"][-3:] == ("", "", "")  # no paper number
    assert by_id["new_job_low"][-1] in ("yes", "no")
    assert any("TARGETS.md gives no paper" in n for n in itt.notes)
    assert any("2 df" in n for n in itt.notes)
    f_col = late.columns.index("first-stage F")
    weak = {row[0]: row[f_col] for row in late.rows}
    assert weak["late_new_job_low"].endswith("(weak)")
    assert not weak["late_new_job"].endswith("(weak)")
    md = reproduce.markdown_table(table)
    assert "| *predicted: tertiles* |" in md and "true LATE pp" in md

    checks = reproduce.checks(table)
    for i in reproduce.FITTED_IDS:
        assert f"(fitted target) {i}: mean estimate inside the paper's 95% CI" in checks
    for i in reproduce.PREDICTED_IDS:
        assert f"(prediction) {i}: mean estimate inside the paper's 95% CI" in checks
    assert all(k.startswith(("(fitted target)", "(prediction)", "(design)")) for k in checks)


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
    # the LATE rows carry the true LATE: true ITT on a new job over true ITT on sharing
    rows = direct.rows().set_index("id")
    true = direct.true
    assert rows.loc["late_new_job", "true_effect"] == pytest.approx(
        100 * true["new_job"] / true["shared"]
    )
    assert rows.loc["new_job_college", "true_effect"] == true["new_job_college"]

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
    assert set(reproduce.SUBGROUP_IDS) | set(reproduce.LATE_IDS) <= set(table["id"])
    assert {"mean_lo", "mean_hi", "true_sd", "true_rel", "role"} <= set(table.columns)
    assert table.set_index("id").loc["late_new_job", "first_stage_f"] > 0
    checks = reproduce.checks(table)
    assert len(checks) == 13 and all(isinstance(v, bool) for v in checks.values())
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
        calls.append((task.overrides["market.sourced_per_vacancy"], task.replication))
        v = task.overrides["market.sourced_per_vacancy"] + task.replication
        ids = sorted(
            {
                m.rsplit(".", 1)[0] if m.endswith((".control", ".itt")) else m
                for m, _, _ in cal.moment_targets()
            }
        )
        return pd.DataFrame({"id": ids, "control_mean": v, "true_effect": v, "n": 10})

    def calibration(seed: int = 1) -> cal.Calibration:
        return cal.Calibration(
            _small(2_000), seed, tmp_path, workers=1, log=lambda _m: None, n_seeds=2, task_fn=fake
        )

    pts = [{"market.sourced_per_vacancy": 5.0}, {"market.sourced_per_vacancy": 6.0}]
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
