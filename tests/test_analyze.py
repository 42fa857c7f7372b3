"""Tests of the policy-experiment analysis (:mod:`sim.analysis`, its figures, and the
script ``experiments/analysis.py`` that prints it).

Most tests run the analysis on synthetic result tables shaped like the sweep store's
``results.parquet`` (made here, with known numbers); one runs a tiny real sweep (2 x 2
points, one replication, 2,000 learners, twins) through :mod:`sim.sweep` and analyses it.
"""

from __future__ import annotations

import importlib.util
import json
import runpy
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure

from sim import analysis, plots, sweep
from sim.params import Scenario

ROOT = Path(__file__).resolve().parents[1]


def analyze_script(argv: list[str]) -> int:
    """Run ``experiments/analysis.py`` with ``argv`` in this process (its ``main``)."""
    return runpy.run_path(str(ROOT / "experiments" / "analyze.py"))["main"](argv)


NUDGE, CRED = analysis.NUDGE, analysis.CREDIBILITY
T95_1DOF = 12.706205  # Student's t, 97.5% quantile, 1 degree of freedom
BASE_NUDGE = 0.01


# ---- synthetic stores --------------------------------------------------------------------


def store(
    points: list[dict[str, Any]], estimates, reps: int = 2, failed: tuple[tuple[int, int], ...] = ()
) -> pd.DataFrame:
    """A results table in the store's long form.

    ``estimates(point_values, replication)`` returns ``{id: (effect, se, control_mean,
    true_effect)}``; ``failed`` lists (point, replication) tasks recorded as errors.
    """
    keys = list(points[0])
    rows = []
    for p, values in enumerate(points):
        for r in range(reps):
            head = {
                "task_id": f"p{p:04d}-r{r:02d}",
                "point": p,
                "replication": r,
                **values,
                "seed_entropy": 1,
                "spawn_key": json.dumps([p * reps + r]),
                "status": "ok",
                "error": None,
                "traceback": None,
                "warnings": None,
                "wall_seconds": 1.0,
            }
            if (p, r) in failed:
                rows.append(
                    {
                        **head,
                        "status": "error",
                        "error": "RuntimeError: boom",
                        "id": None,
                        "effect": np.nan,
                    }
                )
                continue
            for rid, (eff, se, cm, true) in estimates(values, r).items():
                rows.append(
                    {
                        **head,
                        "id": rid,
                        "outcome": rid,
                        "group": "all",
                        "estimator": "lpm",
                        "effect": eff,
                        "se": se,
                        "n": 1000,
                        "control_mean": cm,
                        "rel": eff / cm,
                        "rel_se": se / cm,
                        "true_effect": true,
                    }
                )
    df = pd.DataFrame(rows)
    cols = [
        "task_id",
        "point",
        "replication",
        *keys,
        "seed_entropy",
        "spawn_key",
        "status",
        "error",
        "traceback",
        "warnings",
        "wall_seconds",
        *sweep.ESTIMATE_COLUMNS,
    ]
    return df.reindex(columns=cols)


def sweep_results(
    name: str, results: pd.DataFrame, keys: list[str], n_learners: int = 100_000
) -> Any:
    base = Scenario().with_overrides(
        {"population.n_learners": n_learners, NUDGE: BASE_NUDGE, CRED: 0.8}
    )
    return analysis.SweepResults(name=name, results=results, keys=tuple(keys), base=base)


def write_folder(folder: Path, res: Any) -> None:
    """Write ``res`` as a sweep result folder (results, base scenario, manifest)."""
    folder.mkdir(parents=True)
    res.results.to_parquet(folder / "results.parquet", index=False)
    (folder / "base.toml").write_text(res.base.to_toml())
    manifest = {
        "sweep": {
            "name": res.name,
            "n_tasks": int(res.results["task_id"].nunique()),
            "parameters": {k: {} for k in res.keys},
        }
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def grid_results(low_nan: bool = False) -> Any:
    """A 4 x 4 nudge x credibility grid; relative effects (%) = 10 x nudge multiple x
    credibility overall, twice that in the low tertile; estimates = truth +- 0.1 pp."""
    points = [
        {NUDGE: BASE_NUDGE * m, CRED: c} for m in (0.0, 1.0, 2.0, 3.0) for c in (0.1, 0.4, 0.7, 1.0)
    ]

    def est(v: dict[str, float], r: int) -> dict[str, tuple]:
        m, c = v[NUDGE] / BASE_NUDGE, v[CRED]
        noise = 0.1 if r == 0 else -0.1
        true_all, true_low = 0.1 * m * c * 20.0, 0.2 * m * c * 10.0  # pp on 20% and 10%
        return {
            "new_job": (true_all + noise, 0.5, 20.0, true_all),
            "new_job_low": (
                np.nan if low_nan else true_low + noise,
                0.8,
                10.0,
                np.nan if low_nan else true_low,
            ),
            "shared": (1.5 * m + noise, 0.3, 16.0, 1.5 * m),
        }

    return sweep_results("nudge_credibility", store(points, est), [NUDGE, CRED])


# ---- per-point statistics ---------------------------------------------------------------


def test_point_table_means_intervals_and_failed_tasks() -> None:
    effects = {(0, 0): 1.0, (0, 1): 3.0, (1, 0): 2.0}
    df = store(
        [{CRED: 0.5}, {CRED: 0.9}],
        lambda v, r: {"new_job": (effects[(0 if v[CRED] == 0.5 else 1, r)], 0.4, 20.0, 1.5)},
        failed=((1, 1),),
    )
    pt = analysis.point_table(df, [CRED]).set_index("point")
    a, b = pt.loc[0], pt.loc[1]
    assert (a["n"], a["effect"], a["effect_sd"]) == (2, 2.0, pytest.approx(np.sqrt(2)))
    hw = T95_1DOF * np.sqrt(2) / np.sqrt(2)  # Student's t, 1 degree of freedom
    assert (a["effect_lo"], a["effect_hi"]) == (pytest.approx(2 - hw), pytest.approx(2 + hw))
    assert a["rel"] == pytest.approx(2.0 / 20.0) and a["true_rel"] == pytest.approx(1.5 / 20)
    assert a["rel_hi"] == pytest.approx((2 + hw) / 20)
    # the failed replication is left out; one replication falls back to the study's SE
    assert b["n"] == 1 and b["effect"] == 2.0 and b[CRED] == 0.9
    assert b["effect_hi"] - b["effect"] == pytest.approx(1.96 * 0.4)
    assert np.isnan(b["true_lo"])  # no spread of the truth from one replication


def test_intervals_over_replications_use_students_t() -> None:
    assert analysis.common.t95(2) == pytest.approx(T95_1DOF)
    assert analysis.common.t95(4) == pytest.approx(3.182446)
    assert list(analysis.common.t95(np.array([30.0, 1.0]))[:1]) == pytest.approx([2.045230])
    assert np.isnan(analysis.common.t95(1))
    # 4 replications of 0, 1, 2, 3: mean 1.5 +- t(3) sd / 2
    df = store([{CRED: 0.5}], lambda v, r: {"new_job": (float(r), 0.4, 20.0, float(r))}, reps=4)
    row = analysis.point_table(df, [CRED]).iloc[0]
    hw = 3.182446 * np.std([0, 1, 2, 3], ddof=1) / 2
    assert (row["effect_lo"], row["true_hi"]) == (pytest.approx(1.5 - hw), pytest.approx(1.5 + hw))


# ---- nudge x credibility -------------------------------------------------------------------


def _contours(fig: Figure) -> list[float]:
    ax = fig.axes[0]
    return sorted(float(lv) for c in ax.collections if isinstance(c, ContourSet) for lv in c.levels)


def test_heatmaps_have_the_contours_the_marker_and_labelled_axes(tmp_path: Path) -> None:
    res = grid_results()
    cal = {NUDGE: BASE_NUDGE, CRED: 0.7, "source": "test"}
    figs = analysis.nudge_credibility_figures(res, cal)
    assert set(figs) == {
        "rel_new_job",
        "rel_new_job_true",
        "rel_new_job_low",
        "rel_new_job_low_true",
        "shared_pp",
    }
    for key in ("rel_new_job", "rel_new_job_true", "rel_new_job_low_true"):
        assert _contours(figs[key]) == [6.0, 11.0], key
    assert _contours(figs["shared_pp"]) == [2.8]
    ax = figs["rel_new_job_true"].axes[0]
    assert "x" in ax.get_xlabel() and "nudge" in ax.get_xlabel()
    assert "credibility" in ax.get_ylabel() and "Bayesian" in ax.get_ylabel()
    assert "%" in figs["rel_new_job_true"].axes[1].get_ylabel()  # the colour bar
    star = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert star and tuple(star[0].get_offsets()[0]) == pytest.approx((1.0, 0.7))
    figs["rel_new_job"].savefig(tmp_path / "map.png")  # draws without error


def test_levels_outside_the_values_are_skipped_quietly() -> None:
    grid = pd.DataFrame({"x": [0, 1, 0, 1], "y": [0, 0, 1, 1], "v": [1.0, 2.0, 3.0, np.nan]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.effect_heatmap(
            grid, "x", "y", "v", levels=(2.5, 11.0), xlabel="x (units)", ylabel="y (units)"
        )
    assert _contours(fig) == [2.5]


def test_grid_thresholds_and_conclusion() -> None:
    res = grid_results()
    grid = analysis.nudge_credibility_grid(res)
    assert len(grid) == 16 and set(grid["nudge_x"]) == {0.0, 1.0, 2.0, 3.0}
    row = grid[(grid["nudge_x"] == 2.0) & (grid[CRED] == 0.7)].iloc[0]
    assert row["true_rel_new_job"] == pytest.approx(14.0)  # 10 x 2 x 0.7 (%)
    assert row["true_rel_new_job_low"] == pytest.approx(28.0)
    assert row["rel_new_job"] == pytest.approx(14.0)  # +0.1 and -0.1 average out
    need = analysis.credibility_needed(grid, "true_rel_new_job", 6.0).set_index("nudge_x")
    assert np.isnan(need.loc[0.0, "needed"])  # no nudge, no effect
    # at x1: 10 x c crosses 6% between c = 0.4 (4%) and 0.7 (7%): c = 0.6
    assert need.loc[1.0, "needed"] == pytest.approx(0.6)
    assert need.loc[3.0, "needed"] == pytest.approx(0.2) and not need.loc[3.0, "at_edge"]
    table = analysis.thresholds_table(grid)
    assert table.loc[1.0].iloc[0] == "~0.60" and table.loc[0.0].iloc[0] == "none on the grid"
    cal = {NUDGE: BASE_NUDGE, CRED: 0.7, "source": "test"}
    text = analysis.conclude_nudge_credibility(grid, cal, BASE_NUDGE, 2)
    assert "nudge x1.00, credibility 0.70" in text
    assert "true 7.0%" in text and "paper reports 5.8% and 10.9%" in text
    assert "6% is reached from credibility ~ 0.60 at nudge x1" in text
    assert "at nudge x0 no credibility on the grid reaches it" not in text  # x0 not picked
    # (x1, 0.7) gives 7% overall and 14% low: no point gives both published numbers
    assert "No grid point gives both" in text


def test_fitted_surface_recovers_a_surface_of_its_form_and_smooths_noise() -> None:
    grid = analysis.nudge_credibility_grid(grid_results())
    sf = analysis.fit_surface(grid, "true_rel_new_job")  # 10 x m x c: in the basis
    assert sf is not None and sf.r2 == pytest.approx(1.0) and sf.resid_sd < 1e-9
    assert float(sf(1.0, 0.6)) == pytest.approx(6.0) and float(sf(0.0, 0.9)) == 0.0
    fitted = analysis.surface_thresholds(
        {"overall": sf, "low": analysis.fit_surface(grid, "true_rel_new_job_low")},
        nudges=(0.5, 1.0, 2.75),
    )
    # 6% overall: c = 0.6 at x1, 6 / 27.5 at x2.75, none up to 1 at x0.5 (5% at most)
    assert list(fitted.iloc[:, 0]) == ["none in range", "~0.60", "~0.22"]
    assert list(fitted.iloc[:, 1]) == ["none in range", "~0.55", "~0.20"]  # 20 x m x c
    # noise around a smooth truth: the fit is closer to the truth than the cells are
    rng = np.random.default_rng(5)
    noisy = grid.assign(v=grid["true_rel_new_job"] + rng.normal(0, 2.0, len(grid)))
    fit = analysis.fit_surface(noisy, "v")
    err_fit = np.abs(fit(noisy["nudge_x"], noisy[CRED]) - noisy["true_rel_new_job"]).mean()
    err_cells = np.abs(noisy["v"] - noisy["true_rel_new_job"]).mean()
    assert err_fit < err_cells
    assert analysis.fit_surface(grid.head(5), "true_rel_new_job") is None  # too few cells
    # the conclusion reads the calibrated point off the surfaces
    cal = {NUDGE: BASE_NUDGE, CRED: 0.7, "source": "test"}
    text = analysis.conclude_nudge_credibility(
        grid, cal, BASE_NUDGE, 2, analysis.nudge_credibility_surfaces(grid)
    )
    assert (
        "at the calibrated point itself (nudge x1.00, credibility 0.70) is 7.0% "
        "overall and 14.0% in the low tertile" in text
    )
    assert "6% needs credibility of at least ~0.60 overall" in text


def test_missing_tertile_estimates_do_not_break_the_map() -> None:
    a = analysis.analyze_experiment(
        "nudge_credibility",
        grid_results(low_nan=True),
        {NUDGE: BASE_NUDGE, CRED: 0.7, "source": "test"},
    )
    assert "rel_new_job_low" not in a.figures and "rel_new_job" in a.figures
    assert "n/a" in a.conclusion


def test_calibrated_point_prefers_paper_toml(tmp_path: Path) -> None:
    res = grid_results()
    assert analysis.calibrated_point(res, tmp_path) == {
        NUDGE: BASE_NUDGE,
        CRED: 0.8,
        "source": "the sweep's base scenario",
    }
    paper = Scenario().with_overrides({NUDGE: 0.02, CRED: 0.6})
    (tmp_path / "paper.toml").write_text(paper.to_toml())
    cal = analysis.calibrated_point(res, tmp_path)
    assert (cal[NUDGE], cal[CRED], cal["source"]) == (0.02, 0.6, "sim/scenarios/paper.toml")


# ---- one parameter, everyone nudged, channels ---------------------------------------------


def test_curves_by_tertile_and_their_conclusion() -> None:
    ids = {
        "new_job": (20.0, 1.0),
        "new_job_low": (10.0, 2.0),
        "new_job_medium": (20.0, 1.0),
        "new_job_high": (30.0, 0.5),
        "shared": (16.0, 0.0),
    }

    def est(v: dict[str, float], r: int) -> dict[str, tuple]:
        c = v[CRED]
        return {
            rid: (
                slope * c * 2 + (0.05 if r else -0.05) + (2.8 if rid == "shared" else 0),
                0.3,
                cm,
                slope * c * 2 + (2.8 if rid == "shared" else 0),
            )
            for rid, (cm, slope) in ids.items()
        }

    res = sweep_results(
        "credibility_boost", store([{CRED: c} for c in (0.25, 0.5, 1.0)], est), [CRED]
    )
    a = analysis.analyze_experiment("credibility_boost", res)
    t = a.extra["curves"]
    assert set(t["group"]) == {"all", "low", "medium", "high", "shared"}
    low = t[t["group"] == "low"].set_index("x")
    assert low.loc[1.0, "true_rel"] == pytest.approx(4.0 / 10.0)
    assert len(a.figures["effects"].axes) == 3
    assert "from 0.25 to 1.00" in a.conclusion
    assert "from 10.0% to 40.0% (10.0% to 40.0%)" in a.conclusion  # low tertile, relative
    assert "largest for the low tertile" in a.conclusion
    assert "sharing goes from +2.80 pp to +2.80 pp" in a.conclusion

    nudge = sweep_results(
        "stronger_nudge",
        store(
            [{NUDGE: BASE_NUDGE * m} for m in (1.0, 5.0)],
            lambda v, r: {"new_job": (v[NUDGE] * 100, 0.2, 20.0, v[NUDGE] * 100)},
        ),
        [NUDGE],
    )
    t = analysis.curve_table(nudge, NUDGE, relative_to_base=True)
    assert list(t["x"]) == pytest.approx([1.0, 5.0])


def test_changes_are_paired_within_worlds_when_seeds_are_common() -> None:
    """Worlds differ a lot (replication r adds 3r pp to every point's effect) but within a
    world credibility adds 0.5 pp per unit: paired, the change is exact and clear of zero;
    without common seeds there is nothing to pair."""

    def est(v: dict[str, float], r: int) -> dict[str, tuple]:
        true = 3.0 * r + 0.5 * v[CRED]
        return {"new_job": (true + 0.1, 0.3, 20.0, true), "new_job_low": (true, 0.3, 10.0, true)}

    points = [{CRED: c} for c in (0.4, 0.8, 1.6)]  # the base scenario's credibility is 0.8
    frame = store(points, est, reps=4, failed=((0, 1),))  # one failed task is left out
    own_seeds = sweep_results("credibility_boost", frame.copy(), [CRED])
    assert analysis.paired_changes(own_seeds, CRED).empty
    frame["spawn_key"] = [json.dumps([int(r)]) for r in frame["replication"]]
    res = sweep_results("credibility_boost", frame, [CRED])
    ch = analysis.paired_changes(res, CRED).set_index(["group", "x"])
    assert ch.loc[("all", 1.6), "true_change"] == pytest.approx(0.4)
    assert ch.loc[("all", 1.6), "true_change_hi"] - ch.loc[("all", 1.6), "true_change_lo"] < 1e-9
    assert ch.loc[("all", 0.4), "change"] == pytest.approx(-0.2)
    assert ch.loc[("all", 0.4), "n"] == 3 and ch.loc[("all", 1.6), "n"] == 4
    assert ch.loc[("all", 0.8), "true_change"] == 0
    pointwise = analysis.curve_table(res, CRED).set_index(["group", "x"])
    assert pointwise.loc[("all", 1.6), "true_lo"] < pointwise.loc[("all", 0.8), "true"]
    a = analysis.analyze_experiment("credibility_boost", res)
    assert "Paired within each of the 4 worlds" in a.conclusion
    assert "at 1.60 +0.40 pp" in a.conclusion and "clear of zero" in a.conclusion
    assert any("paired" in heading for heading in a.tables)


def test_crowding_out_is_paired_world_by_world_with_common_seeds() -> None:
    """Worlds differ (replication r adds r pp to both policies' true effects), but in
    each the total falls 0.2 pp short of the 50/50 truth: paired, the gap is exact."""

    def est(v: dict[str, float], r: int) -> dict[str, tuple]:
        half = v[analysis.TREATED_SHARE] == 0.5
        return {"new_job": (1.0, 0.4, 17.0, 1.0 + r if half else 0.8 + r)}

    frame = store([{analysis.TREATED_SHARE: 0.5}, {analysis.TREATED_SHARE: 1.0}], est, reps=3)
    own = analysis.crowding_out(
        sweep_results("everyone_nudged", frame.copy(), [analysis.TREATED_SHARE])
    )
    assert np.isnan(own["gap_true"])  # each point its own worlds: nothing to pair
    frame["spawn_key"] = [json.dumps([int(r)]) for r in frame["replication"]]
    co = analysis.crowding_out(sweep_results("everyone_nudged", frame, [analysis.TREATED_SHARE]))
    assert co["gap_true"] == pytest.approx(-200)  # -0.2% of 100,000
    assert co["gap_true_lo"] == pytest.approx(-200) and co["gap_true_hi"] == pytest.approx(-200)
    assert co["crowding_true_hi"] - co["crowding_true_lo"] > 0.5  # unpaired: wide
    assert "clear of zero" in analysis.conclude_everyone_nudged(co)


def test_crowding_out_arithmetic() -> None:
    # 50/50: estimates 1.0 and 1.2 pp (true 1.0); everyone nudged: total 0.6 pp (twins)
    def est(v: dict[str, float], r: int) -> dict[str, tuple]:
        if v[analysis.TREATED_SHARE] == 0.5:
            return {"new_job": (1.0 + 0.2 * r, 0.45, 17.0, 1.0)}
        return {"new_job": (np.nan, np.nan, 17.5, 0.6 + 0.1 * (r - 0.5))}

    res = sweep_results(
        "everyone_nudged",
        store([{analysis.TREATED_SHARE: 0.5}, {analysis.TREATED_SHARE: 1.0}], est),
        [analysis.TREATED_SHARE],
        n_learners=100_000,
    )
    co = analysis.crowding_out(res)
    assert co["predicted"] == pytest.approx(1_100)  # 1.1% of 100,000
    assert co["predicted_true"] == pytest.approx(1_000)
    assert co["total"] == pytest.approx(600)
    assert co["crowding"] == pytest.approx(1 - 600 / 1_100)
    assert co["crowding_true"] == pytest.approx(0.4)
    hw_total = 100_000 / 100 * T95_1DOF * np.std([0.55, 0.65], ddof=1) / np.sqrt(2)
    assert co["total_hi"] - co["total"] == pytest.approx(hw_total)
    se_crowding = (hw_total / T95_1DOF) / 1_000  # the 50/50 truth has no spread here
    assert co["crowding_true_lo"] == pytest.approx(0.4 - hw_total / 1_000)
    assert co["crowding_true_hi"] - 0.4 == pytest.approx(T95_1DOF * se_crowding)
    # the estimate's part: t with the fewer degrees of freedom of the two parts (1 here)
    se_itt = np.std([1.0, 1.2], ddof=1) / np.sqrt(2)  # pp
    se_c = np.hypot(se_crowding * 1_000 / 1_100, 0.6 * se_itt / 1.1**2)
    assert co["crowding_hi"] - co["crowding"] == pytest.approx(T95_1DOF * se_c)
    bars = analysis.crowding_out_table(co)
    assert list(bars["kind"]) == ["prediction", "prediction", "total"]
    fig = plots.crowding_out_bars(bars)
    assert "count" in fig.axes[0].get_ylabel()
    text = analysis.conclude_everyone_nudged(co)
    assert "+1,100" in text and "+600" in text and "45%" in text and "40%" in text


def test_channels_table_and_conclusion() -> None:
    true = {(True, True): 1.0, (True, False): 0.4, (False, True): 0.5, (False, False): 0.0}

    def est(v: dict[str, bool], r: int) -> dict[str, tuple]:
        t = true[(v[analysis.VISIBILITY], v[analysis.SIGNAL])]
        return {
            "new_job": (t, 0.4, 17.0, t),
            "new_job_low": (2 * t, 0.6, 11.0, 2 * t),
            "shared": (2.8, 0.4, 16.0, 2.8),
        }

    points = [
        {analysis.VISIBILITY: v, analysis.SIGNAL: s} for v in (True, False) for s in (True, False)
    ]
    res = sweep_results("channels", store(points, est), [analysis.VISIBILITY, analysis.SIGNAL])
    a = analysis.analyze_experiment("channels", res)
    t = a.extra["channels"]
    assert list(dict.fromkeys(t["label"])) == ["both", "visibility only", "signal only", "neither"]
    assert "visibility alone gives +0.40 pp (40% of the joint effect)" in a.conclusion
    assert "signal alone +0.50 pp (50% of the joint effect)" in a.conclusion
    assert "sum to 90% of the joint effect" in a.conclusion
    ax = a.figures["channels"].axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == list(
        analysis.CHANNEL_LABELS.values()
    )


# ---- the script ------------------------------------------------------------------------------


def test_missing_experiments_are_skipped(tmp_path: Path, capsys) -> None:
    write_folder(tmp_path / "sweeps" / "nudge_credibility", grid_results())
    out = tmp_path / "figures"
    assert analyze_script(["--results", str(tmp_path / "sweeps"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in (
        "credibility_boost",
        "signal_precision",
        "stronger_nudge",
        "everyone_nudged",
        "everyone_nudged_pause",
        "channels",
        "crowding_share",
        "targeted_nudging",
    ):
        assert f"skip {name}: no results" in printed
    assert f"1 of {len(analysis.EXPERIMENTS)} experiment(s) analysed" in printed
    assert "paper reports 5.8% and 10.9%" in printed
    assert {p.name for p in out.glob("*.png")} == {
        f"nudge_credibility_{k}.png"
        for k in (
            "rel_new_job",
            "rel_new_job_true",
            "rel_new_job_low",
            "rel_new_job_low_true",
            "shared_pp",
        )
    }


def test_small_sweeps_are_valid_reduced_versions() -> None:
    for name in analysis.EXPERIMENTS:
        spec = analysis.small_sweep(
            name, n_learners=20_000, matched_share=0.2, replications=1, grid_points=3
        )
        full = tomllib_load(ROOT / "experiments" / "sweeps" / f"{name}.toml")
        assert spec.name == f"{name}_small" and spec.replications == 1
        assert spec.base.population.n_learners == 20_000
        assert spec.base.population.matched_share == 0.2
        assert spec.keys == tuple(full["parameters"])
    grid = analysis.small_sweep("nudge_credibility", grid_points=3)
    assert grid.n_points == 9
    nudges = sorted({p[NUDGE] for p in grid.points})
    assert nudges[0] == 0 and nudges[-1] == pytest.approx(4 * grid.base.sharing.nudge_strength)


def tomllib_load(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())


# ---- a tiny real sweep --------------------------------------------------------------------------

TINY = """\
[sweep]
name = "nudge_credibility"
base = "uncalibrated"
replications = 1
seed = 5
twin = true

[sweep.overrides]
"population.n_learners" = 2000
"population.matched_share" = 0.3

[parameters]
"sharing.nudge_strength" = { grid = [0.0, 2.0, 2], relative = true }
"signal.credibility" = { values = [0.3, 0.9] }
"""


def test_a_tiny_real_sweep_is_analysed(tmp_path: Path, capsys) -> None:
    spec = sweep.parse_sweep(TINY, source="tiny", folder=ROOT / "experiments" / "sweeps")
    with ThreadPoolExecutor(1) as pool:
        outcome = sweep.run_sweep(spec, tmp_path / "sweeps" / "nudge_credibility", pool)
    assert outcome.ok and outcome.n_tasks == 4
    assert analysis.load_experiment("channels", tmp_path / "sweeps") is None
    res = analysis.load_experiment("nudge_credibility", tmp_path / "sweeps")
    assert res is not None and res.n_ok == 4
    a = analysis.analyze_experiment("nudge_credibility", res)
    assert "rel_new_job_true" in a.figures
    grid = a.extra["grid"]
    assert len(grid) == 4 and set(grid["nudge_x"]) == {0.0, 2.0}
    # no nudge: the twins are the same world, so the true effects are exactly zero
    assert (grid.loc[grid["nudge_x"] == 0, ["true_rel_new_job", "true_shared_pp"]] == 0).all(
        axis=None
    )
    assert (grid.loc[grid["nudge_x"] == 2, "true_shared_pp"] > 0).all()
    # the script prints the same analysis and saves its figures
    assert (
        analyze_script(
            [
                "--results",
                str(tmp_path / "sweeps"),
                "--out",
                str(tmp_path / "figures"),
                "--only",
                "nudge_credibility",
                "--only",
                "channels",
            ]
        )
        == 0
    )
    assert (tmp_path / "figures" / "nudge_credibility_rel_new_job_true.png").stat().st_size
    printed = capsys.readouterr().out
    assert a.conclusion in printed
    assert "skip channels" in printed and "4 of 4 tasks" in printed


# ---- the everyone-nudged mechanism script ---------------------------------------------------


def test_everyone_nudged_mechanism_script_prints_both_worlds_per_channel(capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        "everyone_nudged_mechanism", ROOT / "experiments" / "everyone_nudged_mechanism.py"
    )
    mech = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mech)
    assert (
        mech.main(
            [
                "--scenario",
                "small",
                "--learners",
                "4000",
                "--seed",
                "3",
                "--set",
                "market.applications_employed=0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "4,000 learners, seed 3, market.applications_employed = 0;" in out
    for label in ("both channels", "visibility only", "signal only"):
        assert out.count(label) >= 2  # its progress line and its two table rows
    assert "hires per hired learner" in out and "everyone" in out and "no one" in out
