"""Tests of the shared runner and result store (``sim.runner``) under ``credsim reproduce``
and ``credsim calibrate``: a SIGKILL then a rerun loses and duplicates nothing, and a
Dask cluster gives the local pool's results task by task.

The SIGKILL tests run the command in a helper process with a slow fake task function
(``tests/task_fakes.py``; it logs each task it runs), kill the command and its workers
mid-way, tear one finished file, rerun, and compare with an uninterrupted run. The Dask
test runs real studies at 2,000 learners on the loopback cluster of ``conftest``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, Cluster, helper_env

from sim import calibrate as cal
from sim import cli, reproduce
from sim.params import Scenario
from sim.runner import (
    ESTIMATE_COLUMNS,
    Record,
    StoreError,
    Task,
    execute,
    open_store,
    read_tables,
)
from sim.store import jsonable

#: A tiny scenario: 2,000 learners, a fifth of them matched (400 in the study).
TINY = '[meta]\nname = "tiny"\n\n[population]\nn_learners = 2000\nmatched_share = 0.2\n'

#: `credsim` with the fake task functions in place of real studies.
_CLI_WITH_FAKES = """\
import functools, sys

import task_fakes
from sim import calibrate, cli, reproduce

if __name__ == "__main__":
    reproduce.replicate = functools.partial(reproduce.replicate, task_fn=task_fakes.slow_study)
    calibrate.calibrate = functools.partial(calibrate.calibrate,
                                            task_fn=task_fakes.slow_moments)
    sys.exit(cli.main(sys.argv[1:]))
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _task_ids(out: Path) -> list[str]:
    return sorted(p.stem for p in (out / "tasks").glob("*.parquet") if not p.name.startswith("."))


def _never(task: Task) -> None:
    raise AssertionError(f"{task.task_id} ran again")


class _Session:
    """`credsim ...` with the fakes in a helper process (its own process group)."""

    def __init__(self, folder: Path, argv: list[str]):
        self.script = _write(folder, "credsim_fakes.py", _CLI_WITH_FAKES)
        self.argv = argv

    def start(self, log: Path, seconds: float) -> subprocess.Popen:
        env = helper_env(CREDSIM_TEST_TASK_LOG=str(log), CREDSIM_TEST_TASK_SECONDS=str(seconds))
        return subprocess.Popen(
            [sys.executable, str(self.script), *self.argv],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    @staticmethod
    def kill_when(proc: subprocess.Popen, out: Path, n_files: int) -> None:
        """SIGKILL the command and its workers once ``n_files`` tasks are written."""
        try:
            deadline = time.monotonic() + 240
            while len(_task_ids(out)) < n_files if (out / "tasks").exists() else True:
                assert proc.poll() is None, proc.communicate()[0].decode()
                assert time.monotonic() < deadline, "no task finished in time"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    @staticmethod
    def tear(out: Path, task_id: str) -> None:
        """Cut a finished task's file short and leave a torn temporary file behind."""
        path = out / "tasks" / f"{task_id}.parquet"
        path.write_bytes(path.read_bytes()[:200])
        (out / "tasks" / f".{task_id}.parquet.tmp-999999").write_bytes(b"PAR1 torn")


# ---- the task file ----------------------------------------------------------------------


def test_estimate_columns_are_the_studys() -> None:
    from sim.study import ESTIMATE_COLUMNS as STUDY

    assert ESTIMATE_COLUMNS == STUDY


def test_a_task_file_is_trusted_only_for_its_own_definition(fakes, tmp_path: Path) -> None:
    task = Task(
        task_id="r0000",
        overrides={},
        seed_entropy=1,
        spawn_key=(0,),
        base=Scenario(),
        twin=True,
        keep_dataset=True,
    )
    records = [Record("test.toml", "x = 1\n", "the test")]
    with open_store(tmp_path / "out", "test", records) as store:
        output = execute(task, fakes.study)
        store.write(task, output)  # rows, definition and tables: one file
        assert store.done(task)
        pd.testing.assert_frame_equal(store.read(task), output.rows)
        tables = store.tables(task)
        assert set(tables) == {"truth", "curves", "dataset"}
        for name, df in output.tables.items():
            pd.testing.assert_frame_equal(tables[name], df)
        assert not store.done(dataclasses.replace(task, twin=False))  # same id, other task
        assert not store.done(dataclasses.replace(task, seed_entropy=2))
        output.rows.to_parquet(store.path(task.task_id))  # an older file: rows only
        assert store.done(task) and read_tables(store.path(task.task_id)) == {}
        assert not store.done(dataclasses.replace(task, spawn_key=(1,)))
    with pytest.raises(StoreError, match=r"different test \(the test differs .* in: x\)"):
        with open_store(tmp_path / "out", "test", [Record("test.toml", "x = 2\n", "the test")]):
            pass
    with pytest.raises(StoreError, match="is not a other folder"):
        with open_store(tmp_path / "out", "other", [Record("other.toml", "", "")]):
            pass


@pytest.mark.parametrize("command", ["reproduce", "calibrate"])
def test_workers_with_a_scheduler_is_a_usage_error(command: str, tmp_path: Path, capsys) -> None:
    scenario = _write(tmp_path, "tiny.toml", TINY)
    where = [str(scenario)] if command == "reproduce" else ["--base", str(scenario)]
    out = tmp_path / "out"
    argv = [
        command,
        *where,
        "--workers",
        "2",
        "--scheduler",
        "tcp://127.0.0.1:1",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "--workers sets the local pool" in capsys.readouterr().err
    assert not out.exists()


# ---- credsim reproduce --------------------------------------------------------------------


def test_a_replication_written_before_the_first_stage_f_is_still_done(
    fakes, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    scenario = Scenario.from_toml(_write(tmp_path, "tiny.toml", TINY))
    out = tmp_path / "out"
    first = reproduce.replicate(
        scenario, 2, 5, true_reps=1, workers=1, out=out, task_fn=fakes.study
    )
    path = out / "tasks" / "r0000.parquet"
    old = pq.read_table(path)
    pq.write_table(old.drop_columns(["first_stage_f"]), path)  # the older layout
    assert "first_stage_f" not in pd.read_parquet(path).columns
    again = reproduce.replicate(scenario, 2, 5, true_reps=1, workers=1, out=out, task_fn=_never)
    assert again[0].estimates["first_stage_f"].isna().all()
    pd.testing.assert_frame_equal(
        again[0].estimates.drop(columns="first_stage_f"),
        first[0].estimates.drop(columns="first_stage_f"),
    )
    assert again[0].true == first[0].true
    table = reproduce.summarize(again)
    assert "late_new_job" in set(table["id"])


def test_reproduce_resumes_after_sigkill_losing_and_duplicating_nothing(
    fakes, tmp_path: Path
) -> None:
    scenario_file = _write(tmp_path, "tiny.toml", TINY)
    scenario = Scenario.from_toml(scenario_file)
    out = tmp_path / "out"
    session = _Session(
        tmp_path,
        [
            "reproduce",
            str(scenario_file),
            "-r",
            "12",
            "--true-reps",
            "3",
            "--seed",
            "5",
            "--workers",
            "2",
            "--out",
            str(out),
        ],
    )
    first = session.start(tmp_path / "log1", seconds=0.4)
    session.kill_when(first, out, 4)
    assert not (out / "reproduce.json").exists() and not (out / "results.parquet").exists()
    tasks = reproduce.replication_tasks(scenario, 12, 5, true_reps=3)
    ids = [t.task_id for t in tasks]
    finished = _task_ids(out)
    assert 4 <= len(finished) < len(tasks)
    session.tear(out, finished[0])  # a torn file is treated as missing
    missing = set(ids) - set(finished[1:])

    second = session.start(tmp_path / "log2", seconds=0.05)
    output = second.communicate(timeout=300)[0].decode()
    assert second.returncode == 0, output
    ran = (tmp_path / "log2").read_text().split()
    assert sorted(ran) == sorted(missing)  # each missing replication once, nothing else
    assert _task_ids(out) == ids and sorted(p.name for p in (out / "tasks").iterdir()) == [
        f"{i}.parquet" for i in ids
    ]
    results = pd.read_parquet(out / "results.parquet")
    assert list(dict.fromkeys(results["task_id"])) == ids
    assert not results.duplicated(["task_id", "id"]).any()
    sessions = json.loads((out / "manifest.json").read_text())["sessions"]
    assert [(s["ran"], s["already_done"]) for s in sessions] == [
        (len(missing), len(ids) - len(missing))
    ]

    # every replication's outputs come back from the store as an uninterrupted run's
    reference = reproduce.replicate(scenario, 12, 5, true_reps=3, workers=1, task_fn=fakes.study)
    stored = reproduce.replicate(scenario, 12, 5, true_reps=3, workers=1, out=out, task_fn=_never)
    for a, b in zip(reference, stored, strict=True):
        assert (a.index, a.spawn_key, a.true) == (b.index, b.spawn_key, b.true)
        pd.testing.assert_frame_equal(a.estimates, b.estimates)
        pd.testing.assert_frame_equal(a.curves, b.curves)
        if a.dataset is None:
            assert b.dataset is None
        else:
            pd.testing.assert_frame_equal(a.dataset, b.dataset)
    ref = tmp_path / "ref"
    reproduce.write_outputs(ref, reproduce.summarize(reference), reference, {})
    got, want = (json.loads((f / "reproduce.json").read_text()) for f in (out, ref))
    assert {k: got[k] for k in ("rows", "replications")} == {
        k: want[k] for k in ("rows", "replications")
    }
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "study.parquet"), pd.read_parquet(ref / "study.parquet")
    )
    assert "The study, reproduced: tiny (12 simulated studies" in output


def test_dask_reproduce_gives_the_local_results_task_by_task(
    dask_cluster: Cluster, tmp_path: Path
) -> None:
    scenario = _write(tmp_path, "tiny.toml", TINY)
    argv = ["reproduce", str(scenario), "-r", "2", "--true-reps", "1", "--seed", "11"]
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert cli.main([*argv, "--workers", "2", "--out", str(local)]) == 0
    code = cli.main([*argv, "--scheduler", dask_cluster.address, "--out", str(dask)])
    assert code == 0, dask_cluster.logs()
    meta = json.loads((dask / "manifest.json").read_text())
    assert meta["sessions"][0]["executor"].startswith(f"Dask cluster {dask_cluster.address}")
    drop = ["wall_seconds", "warnings"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(dask / "results.parquet").drop(columns=drop),
        pd.read_parquet(local / "results.parquet").drop(columns=drop),
    )
    ids = _task_ids(local)
    assert ids == _task_ids(dask) == ["r0000", "r0001"]
    for task_id in ids:  # the truth, curves and the dataset too
        here = read_tables(dask / "tasks" / f"{task_id}.parquet")
        there = read_tables(local / "tasks" / f"{task_id}.parquet")
        assert set(here) == set(there) >= {"truth", "curves"}
        for name in here:
            pd.testing.assert_frame_equal(here[name], there[name])
    got, want = (json.loads((f / "reproduce.json").read_text()) for f in (dask, local))
    for key in ("rows", "checks", "replications"):
        assert got[key] == want[key], key
    assert (dask / "report.md").read_text() == (local / "report.md").read_text()


# ---- credsim calibrate --------------------------------------------------------------------


def test_calibrate_resumes_after_sigkill_and_replays_its_path(fakes, tmp_path: Path) -> None:
    base = _write(tmp_path, "tiny.toml", TINY)
    out, paper = tmp_path / "out", tmp_path / "paper.toml"
    session = _Session(
        tmp_path,
        [
            "calibrate",
            "--base",
            str(base),
            "--seed",
            "3",
            "--out",
            str(out),
            "--scenario-out",
            str(paper),
            "--workers",
            "2",
            "--max-iterations",
            "3",
            "--seeds",
            "2",
        ],
    )
    first = session.start(tmp_path / "log1", seconds=0.3)
    session.kill_when(first, out, 8)  # the start (2 runs) and some of the Jacobian (12)
    assert not paper.exists() and not (out / "calibration.json").exists()
    finished = _task_ids(out)
    session.tear(out, finished[0])

    second = session.start(tmp_path / "log2", seconds=0.02)
    output = second.communicate(timeout=300)[0].decode()
    assert second.returncode == 0, output

    # an uninterrupted calibration, in this process
    ref = cal.calibrate(
        str(base),
        3,
        tmp_path / "ref",
        tmp_path / "ref.toml",
        workers=1,
        max_iterations=3,
        n_seeds=2,
        log=lambda _m: None,
        task_fn=fakes.moments,
    )
    path = _task_ids(tmp_path / "ref")
    assert len(path) == ref["evaluations"] > len(finished)
    assert _task_ids(out) == path  # the same path: every twin run of it, once
    assert sorted(p.name for p in (out / "tasks").iterdir()) == [f"{i}.parquet" for i in path]
    ran = (tmp_path / "log2").read_text().split()
    assert sorted(ran) == sorted(set(path) - set(finished[1:]))  # only the missing ones
    got = json.loads((out / "calibration.json").read_text())
    for key in (
        "fitted",
        "objective",
        "moments",
        "evaluations",
        "seeds",
        "se_seeds",
        "optimizer",
        "parameters",
        "identification",
        "predictions",
    ):  # the same path, optimum, standard errors and predictions
        assert got[key] == json.loads(json.dumps(jsonable(ref[key]))), key
    assert ref["optimizer"]["nfev"] == 3 and ref["optimizer"]["stopped_on"] == "max_nfev"
    prov = tomllib.loads(paper.read_text())["provenance"]
    assert prov["fitted"] == ref["fitted"] and prov["evaluations"] == ref["evaluations"]
    assert prov["optimizer"]["status"] == ref["optimizer"]["status"]
    sessions = json.loads((out / "manifest.json").read_text())["sessions"]
    assert [(s["ran"], s["already_done"]) for s in sessions] == [(len(ran), len(path) - len(ran))]
