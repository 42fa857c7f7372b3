"""Fake task functions for the runner's tests: fast, deterministic, importable by workers.

Worker processes (a spawned local pool, a Dask worker) import this module by name, so
the tests put its folder on the path (``sys.path`` here, ``PYTHONPATH`` for helper
processes). Nothing here imports the model, so workers start quickly. The ``slow_*``
functions append the task id to the file named by ``$CREDSIM_TEST_TASK_LOG`` and sleep
``$CREDSIM_TEST_TASK_SECONDS``: the SIGKILL tests read which tasks ran in which session.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from sim.runner import TaskOutput


def estimates(task):
    """Two estimates drawn from the task's seed (so reruns must give the same)."""
    rng = np.random.default_rng(task.seed)
    ids = ["shared", "new_job"]
    return pd.DataFrame(
        {
            "id": ids,
            "outcome": ids,
            "group": "all",
            "estimator": "fake",
            "effect": rng.normal(size=2),
            "se": 1.0,
            "n": 100,
            "control_mean": 10.0,
            "rel": 0.1,
            "rel_se": 0.01,
            "true_effect": 0.5,
        }
    )


def fail_on_point_1(task):
    if task.point == 1:
        raise RuntimeError(f"boom at {task.task_id}")
    return estimates(task)


def slow(task, seconds=0.5, log=None):
    """Log the task id (one line, appended), sleep, return estimates."""
    if log:
        with open(log, "a") as fh:
            fh.write(task.task_id + "\n")
    time.sleep(seconds)
    return estimates(task)


def _logged_pause(task) -> None:
    log = os.environ.get("CREDSIM_TEST_TASK_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(task.task_id + "\n")
    time.sleep(float(os.environ.get("CREDSIM_TEST_TASK_SECONDS", "0")))


# ---- a study, as sim.runner.run_task returns it -------------------------------------------

#: (id, outcome, group, estimator) of every row of a study's estimates.
STUDY_ROWS = [
    ("shared", "shared", "all", "lpm"),
    ("new_job", "new_job", "all", "lpm"),
    ("new_job_in_scope", "new_job_in_scope", "all", "lpm"),
    ("new_job_cox", "new_job", "all", "cox"),
    ("new_job_in_scope_cox", "new_job_in_scope", "all", "cox"),
    ("new_job_low", "new_job", "low", "lpm"),
    ("new_job_medium", "new_job", "medium", "lpm"),
    ("new_job_high", "new_job", "high", "lpm"),
    ("late_new_job", "new_job", "all", "2sls"),
    ("any_view", "any_view", "population", "lpm"),
]
TRUTH_IDS = [
    "shared",
    "new_job",
    "new_job_in_scope",
    "any_view",
    "new_job_low",
    "new_job_medium",
    "new_job_high",
]


def study(task):
    """A study's rows and tables, drawn from the task's seed: estimates (with true
    effects under a twin), the twins' truth, curves and, when asked, a dataset."""
    rng = np.random.default_rng(task.seed)
    n = len(STUDY_ROWS)
    control = 15 + rng.normal(size=n)
    effect = rng.normal(1.0, 0.5, size=n)
    true = dict(zip(TRUTH_IDS, rng.normal(1.0, 0.1, size=len(TRUTH_IDS)), strict=True))
    est = pd.DataFrame(STUDY_ROWS, columns=["id", "outcome", "group", "estimator"])
    est = est.assign(
        effect=effect,
        se=0.4,
        n=1000 + rng.integers(0, 50, size=n),
        control_mean=control,
        rel=effect / control,
        rel_se=0.4 / control,
    )
    est["true_effect"] = [
        true.get(i.removesuffix("_cox"), np.nan)
        if task.twin and not i.startswith("late_")
        else np.nan
        for i in est["id"]
    ]
    truth = pd.DataFrame(
        {
            "id": TRUTH_IDS,
            "group": "all",
            "n": 1000,
            "control_mean": 15.0,
            "true_effect": [true[i] for i in TRUTH_IDS],
        }
    )
    if not task.twin:
        truth = truth.iloc[:0]
    months = np.repeat(np.arange(13), 2)
    curves = pd.DataFrame(
        {
            "months": months,
            "treated": np.tile([0, 1], 13),
            "share": np.sort(rng.uniform(0, 0.2, size=26)),
            "n": 500,
        }
    )
    tables = {"truth": truth, "curves": curves}
    if task.keep_dataset:
        tables["dataset"] = pd.DataFrame(
            {
                "learner": np.arange(50),
                "treated": rng.integers(0, 2, 50).astype(np.int8),
                "domain": pd.Categorical(rng.choice(["data", "it"], 50)),
                "new_job": rng.integers(0, 2, 50).astype(np.int8),
                "tertile": rng.choice(["low", "medium", "high"], 50),
            }
        )
    return TaskOutput(est, tables)


def slow_study(task):
    """:func:`study`, after logging the task id and sleeping (see the module docstring)."""
    _logged_pause(task)
    return study(task)


# ---- a calibration's twin run ---------------------------------------------------------------
#
# The moments are a known smooth function of the market parameters in unit-range space,
# ``m(u) = CENTRE + SLOPES @ f(u - 1/2)`` (``f`` the identity for the linear fakes, with a
# quadratic term for :func:`moments`), plus seed noise: the same at every point for one seed
# (common random numbers), as in the model.

#: The market parameters the fake responds to, and their ranges (scenario keys, so a point
#: is a valid scenario; tests/test_calibrate.py fits these, whatever sim.calibrate's list
#: is; a parameter the fake does not know moves none of its moments).
RANGES = {
    "market.in_scope_share": (0.2, 0.95),
    "market.applications_employed": (0.01, 0.8),
    "signal.credibility": (0.01, 1.0),
    "visibility.unshared_view_rate": (1e-4, 0.05),
    "visibility.recruiter_view_prob": (0.0, 1.0),
    "market.report_prob": (0.2, 1.0),
}
#: The moments the market parameters move, in the order of the rows of SLOPES.
MOMENTS = (
    "new_job.control",
    "new_job.itt",
    "new_job_in_scope.control",
    "new_job_in_scope.itt",
    "any_view.control",
    "any_view.itt",
    "new_job_low.control",
    "new_job_low.itt",
    "new_job_medium.control",
    "new_job_medium.itt",
    "new_job_high.control",
    "new_job_high.itt",
    "flow.ue_monthly",
    "flow.ee_monthly",
    "flow.hired_2plus_share",
    "flow.tenure_survival_52w",
    "flow.employment_drift_pp",
)
#: The moments at u = 1/2: the paper's numbers, near enough.
CENTRE = np.array(
    [17.0, 1.1, 12.5, 1.0, 18.9, 0.6, 11.5, 1.2, 12.3, 0.8, 31.0, 0.5, 0.2, 0.02, 0.15, 0.5, 0.0]
)
#: The scale of each moment's response (pp): about the paper's SE of that moment, so that
#: the residuals in SE units respond alike.
SCALE = np.array(
    [
        *(0.3, 0.45, 0.25, 0.4, 0.06, 0.09, 0.35, 0.5, 0.3, 0.6, 0.5, 1.1),
        *(0.03, 0.005, 0.04, 0.1, 0.5),  # the flows: U->E, E->E, 2+ hires, survival, drift
    ]
)
#: d moment / d u (pp per range width): for the six fitted moments, ``SCALE`` times a
#: well-conditioned matrix (each moment moved mostly by "its" parameter); the tertile
#: moments follow the overall new-job moments.
SLOPES = SCALE[:, None] * np.array(
    [
        [10.0, 2.0, 0.0, -1.0, 0.0, 0.0],
        [0.0, 10.0, 2.0, 0.0, -1.0, 0.0],
        [0.0, 0.0, 10.0, 2.0, 0.0, -1.0],
        [-1.0, 0.0, 0.0, 10.0, 2.0, 0.0],
        [0.0, -1.0, 0.0, 0.0, 10.0, 2.0],
        [2.0, 0.0, -1.0, 0.0, 0.0, 10.0],
        [8.0, 3.0, 0.0, 0.0, 0.0, 2.0],
        [0.0, 8.0, 3.0, 0.0, 0.0, 0.0],
        [9.0, 2.0, 0.0, 0.0, 0.0, 1.0],
        [0.0, 9.0, 2.0, 0.0, 0.0, 0.0],
        [10.0, 1.0, 0.0, 0.0, 0.0, 3.0],
        [0.0, 5.0, 1.0, 0.0, 0.0, 0.0],
        [3.0, 0.0, 0.0, 0.0, 0.0, 8.0],
        [0.0, 8.0, 0.0, 0.0, 0.0, 3.0],
        [0.0, 6.0, 0.0, 0.0, 2.0, 1.0],
        [0.0, -5.0, 0.0, 0.0, 0.0, 2.0],
        [2.0, 2.0, 0.0, 0.0, 0.0, 6.0],
    ]
)
#: SD of a seed's noise on each moment: 5% of its scale.
NOISE_SD = 0.05 * SCALE


def unit(overrides) -> np.ndarray:
    """The market parameters of a point in unit-range space (the middle when absent)."""
    return np.array(
        [(overrides.get(k, (lo + hi) / 2) - lo) / (hi - lo) for k, (lo, hi) in RANGES.items()]
    )


def market_moments(u, shape: str = "smooth") -> dict[str, float]:
    """The noise-free moments at ``u``: ``smooth`` (with a quadratic term), ``linear``, or
    ``sum`` (linear, the first two parameters entering only through their sum)."""
    d = np.asarray(u, dtype=float) - 0.5
    if shape == "smooth":
        d = d + 0.5 * d**2
    elif shape == "sum":
        d = np.array([(d[0] + d[1]) / 2, (d[0] + d[1]) / 2, *d[2:]])
    elif shape != "linear":
        raise ValueError(shape)
    return dict(zip(MOMENTS, CENTRE + SLOPES @ d, strict=True))


def noise(seed) -> np.ndarray:
    """One seed's noise on :data:`MOMENTS` (the same at every point)."""
    return NOISE_SD * np.random.default_rng(seed).standard_normal(len(MOMENTS))


def _twin_rows(task, shape: str) -> pd.DataFrame:
    values = np.array(list(market_moments(unit(task.overrides), shape).values()))
    values = values + noise(task.seed)
    got = dict(zip(MOMENTS, values, strict=True))
    ids = ["shared", "new_job", "new_job_in_scope", "any_view"]
    ids += ["new_job_low", "new_job_medium", "new_job_high"]
    rows = pd.DataFrame(
        {
            "id": ids,
            "outcome": ids,
            "group": "all",
            "estimator": "twin",
            "n": 1000,
            "control_mean": [got.get(f"{i}.control", 16.5) for i in ids],
            "true_effect": [got.get(f"{i}.itt", 2.8) for i in ids],
        }
    )
    flows = [m for m in MOMENTS if m.startswith("flow.")]
    flow_rows = pd.DataFrame(
        {
            "id": flows,
            "outcome": flows,
            "group": "all",
            "estimator": "flow",
            "n": 1000,
            "control_mean": [got[m] for m in flows],
            "true_effect": np.nan,
        }
    )
    return pd.concat([rows, flow_rows], ignore_index=True)


def moments(task):
    """A twin run's rows: :func:`market_moments` (smooth) plus the seed's noise."""
    return _twin_rows(task, "smooth")


def linear_moments(task):
    """:func:`moments` with linear moments (the delta method is exact)."""
    return _twin_rows(task, "linear")


def sum_moments(task):
    """:func:`linear_moments` where two parameters enter only through their sum."""
    return _twin_rows(task, "sum")


def slow_moments(task):
    """:func:`moments`, after logging the task id and sleeping."""
    _logged_pause(task)
    return moments(task)
