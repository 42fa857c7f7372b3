"""Shared fixtures: small scenarios and one small model run reused by many tests; the
runner's fake tasks and a loopback Dask cluster.

Runs here are small (a few thousand learners) so that the default test run stays fast;
the model is array-based, so a 5,000-learner year takes well under a second.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim import scenarios
from sim.model import CredentialMarket, RunResult
from sim.params import Scenario

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
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
    open_before: int  # vacancies open when the week started
    open_after: int  # vacancies open when it ended
    stock_after: np.ndarray  # open vacancies per segment when it ended
    shared: np.ndarray  # state.shared after the step
    share_week: np.ndarray  # state.share_week after the step
    employed: np.ndarray  # state.employed after the step
    match: np.ndarray  # state.match (the job ladder's rung) after the step


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
        before = model.vacancies_open
        model.step()
        st = model.state
        trace.weeks.append(
            WeekRecord(
                week=week,
                open_before=before,
                open_after=model.vacancies_open,
                stock_after=model.market.stock.copy(),
                shared=st.shared.copy(),
                share_week=st.share_week.copy(),
                employed=st.employed.copy(),
                match=st.match.copy(),
            )
        )
    return trace


# ---- the runner: fake tasks, helper processes, a Dask cluster ----------------------------


@pytest.fixture(scope="session")
def fakes() -> Any:
    """tests/task_fakes.py: fake task functions, importable by spawned workers too (spawn
    passes ``sys.path`` on) and by Dask workers (:func:`helper_env`)."""
    return importlib.import_module("task_fakes")


def helper_env(**extra: str) -> dict[str, str]:
    """Environment of helper processes: the project and the fakes importable."""
    path = os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep), "OMP_NUM_THREADS": "1", **extra}


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a helper process group, then kill it if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass


class Cluster:
    """A scheduler and workers started as separate processes (one session each)."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder, self.env = folder, env
        self.procs: list[subprocess.Popen] = []
        self.address = ""

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "wb") as log:  # the child keeps its copy
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> None:
        file = self.folder / "scheduler.json"
        self._start(
            "scheduler",
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(file),
            ],
        )
        deadline = time.monotonic() + 90
        while not file.exists() or not file.read_text().strip():
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.1)
        self.address = json.loads(file.read_text())["address"]

    def start_worker(self, name: str) -> subprocess.Popen:
        return self._start(
            name,
            [
                "distributed.cli.dask_worker",
                self.address,
                "--name",
                name,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--death-timeout",
                "60",
            ],
        )

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-2000:] for p in sorted(self.folder.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Dask scheduler and two single-thread workers on 127.0.0.1, for the session (the
    sweep and the reproduce tests share it)."""
    import distributed  # a declared dependency (dask[distributed]): never skipped

    cluster = Cluster(tmp_path_factory.mktemp("dask"), helper_env())
    try:
        cluster.start_scheduler()
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        with distributed.Client(cluster.address, timeout="30s") as client:
            try:
                client.wait_for_workers(2, timeout=120)
            except TimeoutError:
                pytest.fail(f"Dask workers did not start:\n{cluster.logs()}")
        yield cluster
    finally:
        cluster.stop()
