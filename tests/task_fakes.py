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

#: The calibrated market parameters and their ranges (sim.calibrate.MARKET_PARAMS).
_RANGES = {
    "market.vacancies_per_1000": (0.5, 20.0),
    "market.in_scope_share": (0.2, 0.95),
    "market.applications_employed": (0.01, 0.8),
    "market.fit_noise_sd": (0.1, 3.0),
    "signal.credibility": (0.01, 1.0),
    "signal.prior_precision_thin": (0.05, 3.9),
    "signal.course_skill_gain": (-1.0, 2.0),
    "visibility.search_boost": (0.0, 30.0),
    "visibility.unshared_view_rate": (1e-4, 0.05),
    "visibility.recruiter_view_prob": (0.0, 1.0),
}


def moments(task):
    """A twin run's rows: control means and true effects, smooth in the market
    parameters (so the optimiser moves), plus a small offset by seed."""
    u = [(task.overrides[k] - lo) / (hi - lo) for k, (lo, hi) in _RANGES.items()]
    ids = [
        "shared",
        "new_job",
        "new_job_in_scope",
        "any_view",
        "new_job_low",
        "new_job_medium",
        "new_job_high",
    ]
    control = [10 + 20 * u[j] + 2 * u[(j + 3) % 10] ** 2 for j in range(len(ids))]
    effect = [0.5 + 2 * u[(j + 5) % 10] - u[(j + 1) % 10] * u[j] for j in range(len(ids))]
    offset = 0.05 * task.replication
    return pd.DataFrame(
        {
            "id": ids,
            "outcome": ids,
            "group": "all",
            "estimator": "twin",
            "n": 1000,
            "control_mean": np.add(control, offset),
            "true_effect": np.add(effect, offset),
        }
    )


def slow_moments(task):
    """:func:`moments`, after logging the task id and sleeping."""
    _logged_pause(task)
    return moments(task)
