"""Tests of issue 11's experiments: targeted assignment, policies measured against a world
where no one is nudged, their sweeps and analyses, and the out-of-sample mapping.

Runs are tiny (a few thousand learners) and the analyses run on synthetic result tables
with known numbers, so the whole file stays fast.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sim import analysis, scenarios, sweep, targeting
from sim.analysis import crowding_share, other_experiments, targeted_nudging
from sim.params import Scenario, ScenarioError
from sim.population import draw_learners, stratified_assignment
from sim.study import assign, policy_truth, run_study, run_twins

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper() -> Scenario:
    return scenarios.load("paper")


def tiny(paper: Scenario, n: int = 3_000, **overrides: Any) -> Scenario:
    return paper.with_overrides(
        {"population.n_learners": n, "population.matched_share": 0.3, **overrides}
    )


class FixedScore:
    """A stand-in targeting model: a known score per learner."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def score(self, traits: pd.DataFrame) -> np.ndarray:
        assert len(traits) == len(self.scores)
        return self.scores


# ---- assignment ----------------------------------------------------------------------


def test_select_treats_the_best_scored_share_of_every_group() -> None:
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 5, 4_001)
    scores = rng.normal(size=4_001).round(1)  # many ties
    share = 0.3
    treated = targeting.select(scores, groups, share, np.random.default_rng(1))
    for g in range(5):
        in_g = groups == g
        size = int(in_g.sum())
        k = int(treated[in_g].sum())
        assert k in (int(np.floor(size * share)), int(np.floor(size * share)) + 1)
        # nobody untreated scores above anybody treated within the group
        assert scores[in_g & ~treated].max() <= scores[in_g & treated].min()
    assert targeting.select(scores, groups, 0.0, rng).sum() == 0
    assert targeting.select(scores, groups, 1.0, rng).all()


@pytest.mark.parametrize("rule", ["low_employability", "predicted_effect"])
def test_targeted_assign_picks_the_ranked_learners_and_count(paper: Scenario, rule: str) -> None:
    scn = tiny(
        paper,
        n=2_000,
        **{"study.targeting": rule, "study.mirror": "no_nudge", "study.treated_share": 0.25},
    )
    pop = draw_learners(scn, np.random.default_rng(0))
    scores = np.random.default_rng(5).normal(size=len(pop))
    treated = assign(scn, pop, np.random.default_rng(2), model=FixedScore(scores))
    for b in np.unique(pop.batch):
        in_b = pop.batch == b
        assert abs(treated[in_b].sum() - 0.25 * in_b.sum()) < 1
        assert scores[in_b & ~treated].max() <= scores[in_b & treated].min()
    assert abs(treated.sum() - 0.25 * len(pop)) <= len(np.unique(pop.batch))


def test_random_targeting_is_the_old_stratified_assignment(paper: Scenario) -> None:
    scn = tiny(paper, n=2_000)
    assert scn.study.targeting == "random" and scn.study.mirror == "flipped"
    pop = draw_learners(scn, np.random.default_rng(0))
    new = assign(scn, pop, np.random.default_rng(9))
    cells = pop.stratum.astype(np.int64) * 64 + pop.batch
    old = stratified_assignment(cells, scn.study.treated_share, np.random.default_rng(9))
    assert np.array_equal(new, old)


def test_random_targeting_gives_bit_identical_worlds(paper: Scenario) -> None:
    scn = tiny(paper, n=2_000)
    explicit = scn.with_overrides({"study.targeting": "random", "study.mirror": "flipped"})
    a, b = run_twins(scn, 4), run_twins(explicit, 4)
    for x, y in ((a.study, b.study), (a.mirror, b.mirror)):
        pd.testing.assert_frame_equal(x.learners, y.learners)
        pd.testing.assert_frame_equal(x.hires, y.hires)
    assert np.array_equal(a.mirror.learners["treated"], ~a.study.learners["treated"])


# ---- validation ------------------------------------------------------------------------


def test_bad_targeting_key_names_file_key_and_allowed_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[meta]\nbase = "paper"\n\n[study]\ntargeting = "lowest"\n')
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(bad)
    msg = str(err.value)
    assert str(bad) in msg and "study.targeting" in msg
    for allowed in ("random", "low_employability", "predicted_effect"):
        assert allowed in msg
    mixed = tmp_path / "mixed.toml"
    mixed.write_text('[study]\ntargeting = "predicted_effect"\n')
    with pytest.raises(ScenarioError, match=r"study\.mirror.*no_nudge"):
        Scenario.from_toml(mixed)
    with pytest.raises(ScenarioError, match=r"study\.mirror.*allowed values"):
        Scenario.from_dict({"study": {"mirror": "flip"}}, source="x")


def test_a_policy_sweep_needs_twins() -> None:
    text = (
        '[sweep]\nname = "x"\nbase = "paper"\nreplications = 1\nseed = 1\n\n'
        '[sweep.overrides]\n"study.mirror" = "no_nudge"\n'
    )
    with pytest.raises(sweep.SweepError, match="twin = true"):
        sweep.parse_sweep(text, source="x.toml", folder=ROOT / "experiments" / "sweeps")


def test_common_seeds_share_a_seed_across_points() -> None:
    spec = sweep.load_sweep(ROOT / "experiments" / "sweeps" / "targeted_nudging.toml")
    tasks = sweep.expand(spec)
    by_rep: dict[int, set] = {}
    for t in tasks:
        by_rep.setdefault(t.replication, set()).add(t.spawn_key)
    assert all(len(keys) == 1 for keys in by_rep.values())
    assert len({t.spawn_key for t in tasks}) == spec.replications


@pytest.mark.parametrize("name", ["crowding_share", "targeted_nudging"])
def test_new_sweep_files_are_study_scale_policies(name: str, paper: Scenario) -> None:
    spec = sweep.load_sweep(ROOT / "experiments" / "sweeps" / f"{name}.toml")
    assert spec.base_ref == "paper" and spec.twin and spec.common_seeds
    assert spec.base.population.n_learners == paper.population.n_learners
    assert spec.base.study.mirror == "no_nudge"
    assert spec.replications >= 3  # Student-t intervals
    assert "uv run credsim sweep experiments/sweeps/" in spec.text.split("[sweep]")[0]
    assert name in analysis.EXPERIMENTS


# ---- policies against the world where no one is nudged ----------------------------------


def test_policy_twins_give_total_effects_by_arm(paper: Scenario) -> None:
    scn = tiny(paper, **{"study.mirror": "no_nudge", "study.treated_share": 0.5})
    res = run_study(scn, 11, twin=True)
    assert res.estimates.empty  # a policy is measured by its twins
    t = res.truth.set_index("id")
    pop, yes, no = (t.loc[f"pop_new_job{s}"] for s in ("", "_nudged", "_not_nudged"))
    assert yes["n"] + no["n"] == pop["n"] == 3_000
    mix = (yes["n"] * yes["true_effect"] + no["n"] * no["true_effect"]) / pop["n"]
    assert mix == pytest.approx(pop["true_effect"])
    thirds = [t.loc[f"pop_new_job_{g}"] for g in ("low", "medium", "high")]
    assert sum(r["n"] for r in thirds) == 3_000
    assert t.loc["pop_itt_new_job", "true_effect"] == pytest.approx(
        yes["true_effect"] - no["true_effect"]
    )
    assert t.loc["pop_shared", "true_effect"] > 0
    rows = res.rows()
    assert (rows["estimator"] == "twin").all() and rows["id"].is_unique


def test_policy_truth_on_known_outcomes() -> None:
    po = pd.DataFrame(
        {
            "learner": range(6),
            "matched": [True] * 6,
            "treated": [1, 1, 1, 0, 0, 0],
            **{f"{k}_{a}": 0 for k in ("shared", "new_job_in_scope", "any_view") for a in (0, 1)},
            "new_job_1": [1, 1, 0, 0, 0, 1],
            "new_job_0": [0, 1, 0, 1, 0, 1],
        }
    )
    t = policy_truth(po, np.array([0, 1, 2, 0, 1, 2]), itt=True).set_index("id")
    assert t.loc["pop_new_job", "true_effect"] == pytest.approx(0.0)
    assert t.loc["pop_new_job_nudged", "true_effect"] == pytest.approx(100 / 3)
    assert t.loc["pop_new_job_not_nudged", "true_effect"] == pytest.approx(-100 / 3)
    assert t.loc["pop_itt_new_job", "true_effect"] == pytest.approx(200 / 3)
    assert t.loc["pop_new_job_low_nudged", "n"] == 1


def test_targeted_policy_runs_from_a_pilot(paper: Scenario) -> None:
    scn = tiny(
        paper,
        n=2_500,
        **{
            "study.targeting": "low_employability",
            "study.mirror": "no_nudge",
            "study.treated_share": 0.3,
        },
    )
    res = run_study(scn, 2, twin=True)
    t = res.truth.set_index("id")
    assert t.loc["pop_new_job_nudged", "n"] == pytest.approx(750, abs=8)
    # the least employable were picked: fewer of them find a job without the nudge
    assert (
        t.loc["pop_new_job_nudged", "control_mean"]
        < t.loc["pop_new_job_not_nudged", "control_mean"]
    )
    assert "pop_itt_new_job" not in t.index  # not a randomized design


def test_models_rank_by_what_they_learnt() -> None:
    rng = np.random.default_rng(0)
    n = 6_000
    frame = pd.DataFrame(
        {
            "domain": pd.Categorical(
                rng.choice(["business", "data_science"], n),
                categories=[
                    "business",
                    "computer_science",
                    "data_science",
                    "information_technology",
                ],
            ),
            "developing": rng.random(n) < 0.5,
            "college": rng.random(n) < 0.5,
            "education": pd.Categorical(["bachelor"] * n),
            "experience_years": rng.exponential(2, n).astype("float32"),
            "past_tech": np.zeros(n, bool),
            "past_manager": np.zeros(n, bool),
            "employed_baseline": np.zeros(n, bool),
            "credential_type": pd.Categorical(["course"] * n),
            "batch": np.zeros(n, np.int8),
            "treated": rng.random(n) < 0.5,
        }
    )
    ds = (frame["domain"] == "data_science").to_numpy()
    # employable if college; the nudge works only in data science
    p = 0.1 + 0.4 * frame["college"].to_numpy() + 0.3 * (ds & frame["treated"].to_numpy())
    frame["seen_job_week"] = pd.array(np.where(rng.random(n) < p, 10, pd.NA), dtype="Int16")
    low = targeting.learn("low_employability", frame, n_batches=1, seed=1)
    eff = targeting.learn("predicted_effect", frame, n_batches=1, seed=1)
    s_low, s_eff = low.score(frame), eff.score(frame)
    college = frame["college"].to_numpy()
    assert s_low[~college].mean() > s_low[college].mean()  # the non-college first
    assert s_eff[ds].mean() > s_eff[~ds].mean() + 0.2  # data science first
    with pytest.raises(ValueError, match="unknown targeting model"):
        targeting.learn("lucky", frame, n_batches=1)


# ---- analyses on synthetic results -----------------------------------------------------


def results_frame(points: list[dict[str, Any]], rows_of, reps: int = 3) -> pd.DataFrame:
    """A results table in the store's long form: ``rows_of(point, r)`` gives
    ``{id: (true_effect, n, control_mean)}`` (twin rows)."""
    out = []
    for p, values in enumerate(points):
        for r in range(reps):
            head = {
                "task_id": f"p{p:04d}-r{r:02d}",
                "point": p,
                "replication": r,
                **values,
                "seed_entropy": 1,
                "spawn_key": json.dumps([r]),
                "status": "ok",
                "error": None,
                "wall_seconds": 1.0,
            }
            for rid, (true, n, cm) in rows_of(values, r).items():
                out.append(
                    {
                        **head,
                        "id": rid,
                        "outcome": "new_job",
                        "group": "x",
                        "estimator": "twin",
                        "effect": np.nan,
                        "se": np.nan,
                        "n": n,
                        "control_mean": cm,
                        "rel": np.nan,
                        "rel_se": np.nan,
                        "true_effect": true,
                    }
                )
    return pd.DataFrame(out)


def sweep_results(name: str, frame: pd.DataFrame, keys: tuple[str, ...], base: Scenario):
    return analysis.SweepResults(name=name, results=frame, keys=keys, base=base)


def test_crowding_share_analysis_on_known_numbers(paper: Scenario, tmp_path: Path) -> None:
    n = 1_000_000
    base = paper.with_overrides({"population.n_learners": n, "study.mirror": "no_nudge"})
    shares = [0.01, 0.05, 0.5]
    points = [
        {crowding_share.LEARNER_SHARE: s, analysis.TREATED_SHARE: t}
        for s in shares
        for t in (0.5, 1.0)
    ]

    def rows_of(v: dict, r: int) -> dict:
        s, half = v[crowding_share.LEARNER_SHARE], v[analysis.TREATED_SHARE] == 0.5
        itt = 0.4 + 0.01 * (r - 1)
        total = itt * (1 - s)  # crowding out = the learners' share, exactly
        noise = 0.001 * r
        if half:
            return {
                "pop_itt_new_job": (itt, n, 17.0),
                "itt_new_job": (itt + 0.1, 30_000, 17.0),
                "pop_new_job": (itt / 2 + noise, n, 17.0),
            }
        return {"pop_new_job": (total, n, 17.0)}

    res = sweep_results(
        "crowding_share",
        results_frame(points, rows_of),
        (crowding_share.LEARNER_SHARE, analysis.TREATED_SHARE),
        base,
    )
    a = analysis.analyze_experiment("crowding_share", res)
    t = a.extra["crowding_share"].set_index("learner_share")
    for s in shares:
        assert t.loc[s, "crowding"] == pytest.approx(s, abs=1e-9)
        assert t.loc[s, "predicted"] == pytest.approx(0.4 * n / 100)
        assert t.loc[s, "predicted_lo"] < t.loc[s, "predicted"] < t.loc[s, "predicted_hi"]
    assert t.loc[0.05, "base"] and not t.loc[0.5, "base"]
    assert "crowding out rises" in a.conclusion and "50%" in a.conclusion
    paths = analysis.save_figures(a, tmp_path)
    assert {p.suffix for p in paths} == {".png", ".svg", ".csv"}
    csv = pd.read_csv(tmp_path / "crowding_share_by_share.csv")
    assert list(csv["learner_share"]) == shares


def test_targeted_nudging_analysis_on_known_numbers(paper: Scenario) -> None:
    n = 100_000
    base = paper.with_overrides({"population.n_learners": n, "study.mirror": "no_nudge"})
    rules = ("random", "low_employability", "predicted_effect")
    points = [
        {analysis.TREATED_SHARE: s, targeted_nudging.TARGETING: rule}
        for s in (0.1, 0.5)
        for rule in rules
    ]
    per_nudge = {"random": 0.5, "low_employability": 1.0, "predicted_effect": 2.0}  # pp

    def rows_of(v: dict, r: int) -> dict:
        share, rule = v[analysis.TREATED_SHARE], v[targeted_nudging.TARGETING]
        k = int(share * n)
        gain = per_nudge[rule] + 0.01 * r
        loss = -0.1 * gain * k / (n - k)  # 10% of the gain taken from the others
        total = (gain * k + loss * (n - k)) / n
        rows = {
            "pop_new_job": (total, n, 12.0),
            "pop_new_job_nudged": (gain, k, 5.0 if rule == "low_employability" else 12.0),
            "pop_new_job_not_nudged": (loss, n - k, 12.0),
        }
        for g, w in zip(("low", "medium", "high"), (0.5, 0.3, 0.2), strict=True):
            rows[f"pop_new_job_{g}"] = (3 * w * total, n // 3, 12.0)
            rows[f"pop_new_job_{g}_nudged"] = (gain, k // 3, 12.0)
        return rows

    res = sweep_results(
        "targeted_nudging",
        results_frame(points, rows_of),
        (analysis.TREATED_SHARE, targeted_nudging.TARGETING),
        base,
    )
    a = analysis.analyze_experiment("targeted_nudging", res)
    tot = a.extra["totals"].set_index(["treated_share", "rule"])
    r = tot.loc[(0.1, "predicted_effect")]
    k = 0.1 * n
    assert r["gross"] == pytest.approx((2.0 + 0.01) * k / 100)
    assert r["crowding"] == pytest.approx(0.1)
    assert r["total"] == pytest.approx(0.9 * r["gross"])
    assert r["vs_random"] == pytest.approx(0.9 * (2.0 - 0.5) * k / 100)
    assert r["vs_random_lo"] == pytest.approx(r["vs_random"])  # paired: no noise left
    assert "highest predicted effects does best" in a.conclusion
    gains = a.extra["gains"]
    assert set(gains["tertile"]) == {"low", "medium", "high"}
    assert set(a.figure_data) == set(a.figures) == {"totals", "who_gains"}


# ---- the out-of-sample mapping ----------------------------------------------------------


@pytest.mark.parametrize("ext", other_experiments.EXTERNAL, ids=lambda e: e.key)
def test_external_mapping_builds_a_valid_intervention_only_scenario(paper, ext) -> None:
    ov = other_experiments.overrides(ext, paper)
    assert not [k for k in ov if k.split(".")[0] in ("market", "signal", "visibility", "graph")]
    scn = other_experiments.scenario_for(ext, paper, **{"population.n_learners": 2_000})
    cal = scn.calendar
    assert cal.collection_date - cal.start_date == timedelta(weeks=ext.horizon_weeks)
    assert cal.n_weeks == ext.horizon_weeks and cal.n_batches == 1
    assert scn.sharing.hazard_at_grant == 0 == scn.sharing.hazard_floor
    assert (scn.sharing.nudge_strength > 0) == ext.shown
    assert scn.market == paper.market and scn.signal == paper.signal  # not refitted
    assert ext.outcome in other_experiments.OUTCOMES
    assert ext.sample in other_experiments.SAMPLES
    assert ext.published.source and ext.imperfect and ext.mapping


def test_external_rows_and_analysis(paper: Scenario) -> None:
    ext = other_experiments.EXTERNAL[0]
    scn = other_experiments.scenario_for(ext, paper, **{"population.n_learners": 2_000})
    tw = run_twins(scn, 1)
    rows = other_experiments.external_rows(tw.study.learners, tw.mirror.learners)
    r = rows.set_index("id")
    assert r.loc["shared@all", "true_effect"] > 99  # full take-up, no control sharing
    assert r.loc["new_job@all", "n"] == 2_000
    tasks = other_experiments.build_tasks(paper, 2, 5, other_experiments.EXTERNAL[:2])
    assert [t.task_id for t in tasks][:2] == [f"{ext.key}-r00", f"{ext.key}-r01"]
    assert len({t.spawn_key for t in tasks}) == 4
    # an analysis on synthetic rows: published numbers beside the predictions
    frame = []
    for t in tasks:
        e = other_experiments.EXTERNAL[t.point]
        frame.append(
            pd.DataFrame(
                {
                    "task_id": [t.task_id],
                    "replication": [t.replication],
                    "status": ["ok"],
                    "id": [e.row_id],
                    "effect": [1.0],
                    "n": [1000],
                    "control_mean": [10.0],
                    "true_effect": [1.0 + 0.1 * t.replication],
                    "wall_seconds": [1.0],
                }
            )
        )
    a = other_experiments.analyze(pd.concat(frame, ignore_index=True))
    table = a.extra["table"].set_index("key")
    assert table.loc[ext.key, "predicted_rel"] == pytest.approx(0.105)
    assert table.loc[ext.key, "verdict"] == "under"  # 10.5% against the published 45%
    assert ext.published.source in a.conclusion
    assert set(a.figure_data) == {"predictions"}
